//! `Array`: a handle on one named array of a connection.

use std::ops::Range;
use std::sync::Arc;

use outcore_pager::{FileHandle, View};
use outcore_store::{ArrayId, ArrayMeta, Order};

use crate::connection::{Change, ConnShared, ConnState};
use crate::dtype::{check_element, Element};
use crate::error::{Error, Result};
use crate::mem::{element_bytes, ArrayGuard, ArrayGuardMut, BytesView, BytesViewMut};
use crate::shape::major_axis;
pub(crate) use crate::shape::nbytes_of;

/// Byte strides of `shape` in `order`.
pub(crate) fn strides_of(shape: &[u64], itemsize: u64, order: Order) -> Vec<u64> {
    let mut strides = vec![0u64; shape.len()];
    let mut acc = itemsize;
    let mut set = |i: usize| {
        strides[i] = acc;
        acc = acc.saturating_mul(shape[i]);
    };
    match order {
        Order::C => (0..shape.len()).rev().for_each(&mut set),
        Order::F => (0..shape.len()).for_each(&mut set),
    }
    strides
}

/// A handle on an array of a [`Connection`](crate::Connection): its metadata as the
/// transaction sees it, views of its memory, and metadata changes (resize, append).
///
/// Cheap to clone; all handles of one array in one connection share the same memory. Methods
/// fail with [`Error::ArrayGone`] once the array was deleted (or its creation aborted).
#[derive(Clone)]
pub struct Array {
    conn: Arc<ConnShared>,
    id: ArrayId,
}

impl std::fmt::Debug for Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Array").field("id", &self.id).finish()
    }
}

/// A mapped slice: view, offset of the first element, shape and strides in elements.
type SliceMap = (Option<View>, usize, Vec<usize>, Vec<usize>);

/// A mapped region: view, offset of the first element in it, shape, byte strides.
struct Mapped {
    view: Option<View>,
    offset: usize,
    shape: Vec<usize>,
    strides: Vec<usize>,
    itemsize: usize,
}

/// What a method needs of an array, read under the connection's lock.
struct Snap {
    meta: ArrayMeta,
    name: String,
    itemsize: u64,
    file: FileHandle,
}

impl Array {
    pub(crate) fn new(conn: Arc<ConnShared>, id: ArrayId) -> Array {
        Array { conn, id }
    }

    fn snap(&self, st: &ConnState) -> Result<Snap> {
        let oa = st.open.get(&self.id).ok_or_else(|| Error::ArrayGone(self.id.to_string()))?;
        let (name, meta) = st.current(self.id).ok_or_else(|| Error::ArrayGone(oa.last_name.clone()))?;
        Ok(Snap { meta, name, itemsize: oa.itemsize, file: oa.file.clone() })
    }

    fn get(&self) -> Result<Snap> {
        self.get_for(None)
    }

    /// [`get`](Self::get), checking first that the connection may do `write` (an operation
    /// name such as `"writing"`), if given.
    fn get_for(&self, write: Option<&'static str>) -> Result<Snap> {
        let st = self.conn.lock();
        if let Some(op) = write {
            st.check_writable(op)?;
        }
        st.check_usable()?;
        self.snap(&st)
    }

    /// The stable id of the array (survives renames).
    pub fn id(&self) -> ArrayId {
        self.id
    }

    /// Current name.
    pub fn name(&self) -> Result<String> {
        Ok(self.get()?.name)
    }

    /// Current metadata (dtype, shape, order, blksize, codec, nbytes).
    pub fn meta(&self) -> Result<ArrayMeta> {
        Ok(self.get()?.meta)
    }

    /// NumPy dtype descr.
    pub fn dtype(&self) -> Result<String> {
        Ok(self.get()?.meta.dtype)
    }

    /// Bytes per element.
    pub fn itemsize(&self) -> Result<u64> {
        Ok(self.get()?.itemsize)
    }

    /// How its memory is served: the kernel page cache over the store's data file (a local
    /// store's uncompressed arrays) or userfaultfd loads (historical snapshots, compressed
    /// arrays, remote stores, arrays with a non-zero fill value).
    pub fn engine(&self) -> Result<outcore_pager::FileEngine> {
        Ok(self.get()?.file.engine())
    }

    /// Current shape.
    pub fn shape(&self) -> Result<Vec<u64>> {
        Ok(self.get()?.meta.shape)
    }

    /// Memory layout.
    pub fn order(&self) -> Result<Order> {
        Ok(self.get()?.meta.order)
    }

    /// Strides in bytes (C or F layout, contiguous).
    pub fn strides(&self) -> Result<Vec<u64>> {
        let s = self.get()?;
        Ok(strides_of(&s.meta.shape, s.itemsize, s.meta.order))
    }

    /// User attributes (a JSON object), as this transaction sees them.
    pub fn attrs(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        Ok(self.get()?.meta.attrs)
    }

    /// Replaces the user attributes (committed with the transaction, versioned with the
    /// array: historical snapshots read the attributes they had).
    pub fn set_attrs(&self, attrs: serde_json::Map<String, serde_json::Value>) -> Result<()> {
        let mut st = self.conn.lock();
        st.check_writable("setting attributes")?;
        let s = self.snap(&st)?;
        if s.meta.attrs == attrs {
            return Ok(());
        }
        let meta = ArrayMeta { attrs, ..s.meta };
        st.txn.insert(self.id, Change::Live { name: s.name, meta });
        Ok(())
    }

    /// The fill value (the bytes of one element) that elements never written read as; `None`
    /// for zeros.
    pub fn fill(&self) -> Result<Option<Vec<u8>>> {
        let s = self.get()?;
        match &s.meta.fill {
            None => Ok(None),
            Some(hex) => decode_hex(hex)
                .map(Some)
                .ok_or_else(|| Error::Dtype(format!("array '{}' has a malformed fill value '{hex}'", s.name))),
        }
    }

    /// The shape of the largest box of elements that one block holds, aligned to blocks: the
    /// minor axes whole while they fit, then as many slices of the next axis as fit (at least
    /// one element per axis). It is exact (each block holds whole boxes) when the block size
    /// is a multiple of the box's bytes, as it is for the usual power-of-two shapes.
    pub fn chunks(&self) -> Result<Vec<u64>> {
        let s = self.get()?;
        Ok(chunk_shape(&s.meta.shape, s.itemsize, s.meta.blksize, s.meta.order))
    }

    /// True if pages of this array were written through views since the transaction began,
    /// also after the connection was closed (such writes are never committed).
    pub fn has_written(&self) -> Result<bool> {
        let st = self.conn.lock();
        match st.open.get(&self.id) {
            Some(oa) => Ok(!oa.file.dirty()?.is_empty()),
            None => Ok(false),
        }
    }

    /// Block size in bytes.
    pub fn blksize(&self) -> Result<u64> {
        Ok(self.get()?.meta.blksize)
    }

    /// Size in bytes (`product(shape) * itemsize`).
    pub fn nbytes(&self) -> Result<u64> {
        Ok(self.get()?.meta.nbytes)
    }

    /// Read-only view of the bytes `range` of the array. Nothing loads until touched.
    pub fn bytes(&self, range: Range<u64>) -> Result<BytesView> {
        let (view, off, len) = self.map_bytes(range, None)?;
        BytesView::new(view, off, len)
    }

    /// Writable view of the bytes `range` of the array; writes are committed with the
    /// transaction.
    pub fn bytes_mut(&self, range: Range<u64>) -> Result<BytesViewMut> {
        let (view, off, len) = self.map_bytes(range, Some("writing"))?;
        BytesViewMut::new(view, off, len)
    }

    /// Read-only typed view of the whole array (its shape at the time of the call).
    pub fn as_array_view<T: Element>(&self) -> Result<ArrayGuard<T>> {
        self.slice_view(&[])
    }

    /// Writable typed view of the whole array (its shape at the time of the call).
    pub fn as_array_view_mut<T: Element>(&self) -> Result<ArrayGuardMut<T>> {
        self.slice_view_mut(&[])
    }

    /// Read-only typed view of the index ranges `ranges` (one per axis; missing trailing axes
    /// are taken whole).
    pub fn slice_view<T: Element>(&self, ranges: &[Range<u64>]) -> Result<ArrayGuard<T>> {
        let (view, off, shape, strides) = self.map_slice::<T>(ranges, None)?;
        ArrayGuard::new(view, off, shape, strides)
    }

    /// Writable typed view of the index ranges `ranges`; see [`slice_view`](Self::slice_view).
    pub fn slice_view_mut<T: Element>(&self, ranges: &[Range<u64>]) -> Result<ArrayGuardMut<T>> {
        let (view, off, shape, strides) = self.map_slice::<T>(ranges, Some("writing"))?;
        ArrayGuardMut::new(view, off, shape, strides)
    }

    /// Maps the blocks covering bytes `range`: the view and the offset of `range.start` in it.
    fn map_bytes(&self, range: Range<u64>, write: Option<&'static str>) -> Result<(Option<View>, usize, usize)> {
        let s = self.get_for(write)?;
        if range.start > range.end || range.end > s.meta.nbytes {
            return Err(Error::OutOfRange(format!("bytes {range:?} of array '{}' of {} bytes", s.name, s.meta.nbytes)));
        }
        map_range(&s.file, range)
    }

    fn map_slice<T: Element>(&self, ranges: &[Range<u64>], write: Option<&'static str>) -> Result<SliceMap> {
        let m = self.map_region(ranges, write, check_element::<T>)?;
        let estrides = m.strides.iter().map(|b| b / m.itemsize).collect();
        Ok((m.view, m.offset, m.shape, estrides))
    }

    fn map_region(
        &self,
        ranges: &[Range<u64>],
        write: Option<&'static str>,
        check: fn(&str) -> Result<()>,
    ) -> Result<Mapped> {
        let s = self.get_for(write)?;
        check(&s.meta.dtype)?;
        let shape = &s.meta.shape;
        if ranges.len() > shape.len() {
            return Err(Error::OutOfRange(format!(
                "{} index ranges for array '{}' of {} dimensions",
                ranges.len(),
                s.name,
                shape.len()
            )));
        }
        let strides = strides_of(shape, s.itemsize, s.meta.order);
        let mut first = 0u64;
        let mut last = 0u64;
        let mut vshape = Vec::with_capacity(shape.len());
        for (axis, n) in shape.iter().enumerate() {
            let r = ranges.get(axis).cloned().unwrap_or(0..*n);
            if r.start > r.end || r.end > *n {
                return Err(Error::OutOfRange(format!(
                    "index range {r:?} on axis {axis} of array '{}' of shape {shape:?}",
                    s.name
                )));
            }
            first += r.start * strides[axis];
            last += r.end.saturating_sub(1).max(r.start) * strides[axis];
            vshape.push(to_usize(r.end - r.start)?);
        }
        let bstrides = strides.iter().map(|b| to_usize(*b)).collect::<Result<Vec<_>>>()?;
        let itemsize = to_usize(s.itemsize)?;
        if vshape.contains(&0) {
            return Ok(Mapped { view: None, offset: 0, shape: vshape, strides: bstrides, itemsize });
        }
        let span = last + s.itemsize - first;
        let (view, offset, _) = map_range(&s.file, first..first + span)?;
        Ok(Mapped { view, offset, shape: vshape, strides: bstrides, itemsize })
    }

    /// Loads the blocks holding bytes `range` now (waiting for them; a load error is returned
    /// here instead of faulting later), e.g. before handing the memory to system calls.
    /// They stay subject to eviction like any clean block.
    pub fn prefetch(&self, range: Range<u64>) -> Result<()> {
        let s = self.get()?;
        if range.start > range.end || range.end > s.meta.nbytes {
            return Err(Error::OutOfRange(format!("bytes {range:?} of array '{}' of {} bytes", s.name, s.meta.nbytes)));
        }
        let bs = s.meta.blksize;
        let blocks = range.start / bs..range.end.div_ceil(bs);
        if s.file.engine() == outcore_pager::FileEngine::PageCache {
            // A mapping cannot verify bytes on access: read and check the blocks' stored bytes
            // (page-cache hits that also warm the mapping), so corruption is an error here.
            let store = &self.conn.db.inner.store;
            let tid = self.conn.tid_cell.load(std::sync::atomic::Ordering::SeqCst);
            let mut buf = vec![0u8; bs as usize];
            for blk in blocks.clone() {
                store.load(self.id, blk, tid, &mut buf)?;
            }
        }
        s.file.prefetch(blocks)?;
        Ok(())
    }

    /// Changes the shape (metadata only, O(1)). Bytes keep their offsets; the area beyond the
    /// old size reads as the fill value (zeros by default), also after a shrink and regrowth in
    /// one transaction.
    pub fn resize(&self, new_shape: &[u64]) -> Result<()> {
        let mut st = self.conn.lock();
        self.resize_locked(&mut st, new_shape).map(|_| ())
    }

    /// Resizes under the lock; returns the old and new sizes in bytes.
    fn resize_locked(&self, st: &mut ConnState, new_shape: &[u64]) -> Result<(u64, u64)> {
        st.check_writable("resize")?;
        let s = self.snap(st)?;
        let nbytes = nbytes_of(new_shape, s.itemsize)?;
        let old = s.meta.nbytes;
        let meta = ArrayMeta { shape: new_shape.to_vec(), nbytes, ..s.meta };
        let Some(oa) = st.open.get(&self.id) else { return Err(Error::ArrayGone(s.name)) };
        if nbytes < old {
            oa.source.hide_from(nbytes);
        }
        oa.file.set_size(nbytes)?;
        if nbytes < old {
            let t = st.truncated.entry(self.id).or_insert(nbytes);
            *t = (*t).min(nbytes);
        }
        st.txn.insert(self.id, Change::Live { name: s.name, meta });
        Ok((old, nbytes))
    }

    /// Appends `values` (in the array's order) along the major axis: axis 0 for C order, the
    /// last axis for F order. Their number must be a multiple of the other axes' product.
    pub fn append<T: Element>(&self, values: &[T]) -> Result<()> {
        check_element::<T>(&self.get()?.meta.dtype)?;
        self.append_bytes(&element_bytes(values))
    }

    /// Appends raw element bytes along the major axis; see [`append`](Self::append).
    pub fn append_bytes(&self, data: &[u8]) -> Result<()> {
        let mut st = self.conn.lock();
        st.check_writable("append")?;
        let s = self.snap(&st)?;
        let shape = &s.meta.shape;
        if shape.is_empty() {
            return Err(Error::Shape(format!("cannot append to 0-dimensional array '{}'", s.name)));
        }
        let major = major_axis(s.meta.order, shape.len());
        let others: Vec<u64> = shape.iter().enumerate().filter(|(i, _)| *i != major).map(|(_, n)| *n).collect();
        let row = nbytes_of(&others, s.itemsize)?;
        let len = data.len() as u64;
        if len == 0 {
            return Ok(());
        }
        if row == 0 || len % row != 0 {
            return Err(Error::Shape(format!(
                "{len} bytes cannot be appended to array '{}' of shape {shape:?}: not a whole number of \
                 {row}-byte slices along axis {major}",
                s.name
            )));
        }
        let mut new_shape = shape.clone();
        new_shape[major] = new_shape[major]
            .checked_add(len / row)
            .ok_or_else(|| Error::Shape(format!("appending to array '{}' overflows its shape", s.name)))?;
        let (old, _) = self.resize_locked(&mut st, &new_shape)?;
        let rest = self.stage_appended(&st, old, data)?;
        // Blocks from here on hold nothing stored at this snapshot: not read before written.
        let unstored_from = st.open.get(&self.id).map_or(u64::MAX, |oa| oa.committed_nbytes().div_ceil(s.meta.blksize));
        drop(st);
        for (at, part) in rest {
            s.file.write_at(at, &data[part], unstored_from)?;
        }
        Ok(())
    }

    /// Writes the parts of `data` (appended at byte `at`) that fall into blocks with no stored
    /// content and no written pages straight into staged extents of the store (each byte written
    /// once, to its place; the view then maps the extent), for arrays served by the page cache.
    /// Returns the parts left to write into the file: `(byte offset, range of data)`.
    fn stage_appended(&self, st: &ConnState, at: u64, data: &[u8]) -> Result<Vec<(u64, Range<usize>)>> {
        let all = vec![(at, 0..data.len())];
        let Some(oa) = st.open.get(&self.id) else { return Ok(all) };
        if oa.file.engine() != outcore_pager::FileEngine::PageCache {
            return Ok(all);
        }
        let store = &self.conn.db.inner.store;
        let bs = oa.file.blksize() as u64;
        // Blocks from here on hold nothing stored at this snapshot.
        let first_new = oa.committed_nbytes().div_ceil(bs);
        let end = at + data.len() as u64;
        let mut rest = Vec::new();
        let mut pos = at;
        while pos < end {
            let blk = pos / bs;
            let stop = ((blk + 1) * bs).min(end);
            let part = (pos - at) as usize..(stop - at) as usize;
            let off = pos - blk * bs;
            let mut done = false;
            if blk >= first_new && !oa.file.has_written(blk..blk + 1)? {
                let (staged, written, fresh) = match oa.source.staged(blk) {
                    Some((s, written)) => (Some(s), written, false),
                    None => (store.stage(self.id, blk, bs)?, 0, true),
                };
                if let Some(staged) = staged {
                    store.write_staged(&staged, off, &data[part.clone()])?;
                    oa.source.set_staged(blk, staged, written.max(off + part.len() as u64));
                    if fresh {
                        oa.file.invalidate(&[blk])?; // map the staged extent
                    }
                    done = true;
                }
            }
            if !done {
                rest.push((pos, part));
            }
            pos = stop;
        }
        Ok(rest)
    }
}

/// The bytes of a lowercase or uppercase hex string.
pub(crate) fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// See [`Array::chunks`].
pub(crate) fn chunk_shape(shape: &[u64], itemsize: u64, blksize: u64, order: Order) -> Vec<u64> {
    let mut chunk = vec![1u64; shape.len()];
    let mut room = (blksize / itemsize.max(1)).max(1); // elements per block
    let axes: Vec<usize> = match order {
        Order::C => (0..shape.len()).rev().collect(),
        Order::F => (0..shape.len()).collect(),
    };
    for ax in axes {
        // An empty axis (an array to be appended to) gets what a block holds.
        let n = if shape[ax] == 0 { room } else { shape[ax] };
        if n <= room {
            chunk[ax] = n;
            room /= n;
        } else {
            chunk[ax] = room;
            break;
        }
    }
    chunk
}

fn to_usize(n: u64) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::Shape(format!("{n} does not fit this platform's address space")))
}

/// Maps the blocks covering bytes `range` of `file`: the view (none for an empty range), the
/// offset of `range.start` in it, and the length.
fn map_range(file: &FileHandle, range: Range<u64>) -> Result<(Option<View>, usize, usize)> {
    let len = to_usize(range.end - range.start)?;
    if len == 0 {
        return Ok((None, 0, 0));
    }
    let bs = file.blksize() as u64;
    let blocks = range.start / bs..range.end.div_ceil(bs);
    let off = to_usize(range.start - blocks.start * bs)?;
    Ok((Some(file.map(blocks)?), off, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(strides_of(&[2, 3, 4], 8, Order::C), vec![96, 32, 8]);
        assert_eq!(strides_of(&[2, 3, 4], 8, Order::F), vec![8, 16, 48]);
        assert_eq!(strides_of(&[], 4, Order::C), Vec::<u64>::new());
    }

    #[test]
    fn chunks() {
        assert_eq!(chunk_shape(&[1000, 1000], 8, 1 << 20, Order::C), vec![131, 1000]);
        assert_eq!(chunk_shape(&[1024, 1024], 8, 1 << 20, Order::C), vec![128, 1024]);
        assert_eq!(chunk_shape(&[1024, 1024], 8, 1 << 20, Order::F), vec![1024, 128]);
        assert_eq!(chunk_shape(&[4, 3], 8, 4096, Order::C), vec![4, 3]);
        assert_eq!(chunk_shape(&[2, 1 << 20], 8, 4096, Order::C), vec![1, 512]);
        assert_eq!(chunk_shape(&[], 8, 4096, Order::C), Vec::<u64>::new());
        assert_eq!(chunk_shape(&[0, 5], 8, 4096, Order::C), vec![102, 5]);
        assert_eq!(decode_hex("00c07f"), Some(vec![0, 0xc0, 0x7f]));
        assert_eq!(decode_hex("0"), None);
    }
}
