//! The page-cache engine: blocks mapped `MAP_PRIVATE` from extents of a real data file, with an
//! extent source the tests change to simulate commits that move blocks.

#![allow(unsafe_code)]

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{dirty_list, rd, wr, BS};
use outcore_pager::{
    Extent, ExtentSource, FileEngine, FileHandle, Pager, PagerConfig, PagerError, SourceError, View, PAGE,
};
use parking_lot::Mutex;

/// The byte of generation `gen` of block `blk` at `off` (never zero).
fn byte(blk: u64, off: usize, gen: u8) -> u8 {
    (blk.wrapping_mul(37).wrapping_add((off / PAGE) as u64 * 7).wrapping_add(u64::from(gen) * 13) % 250) as u8 + 1
}

/// A data file in a fresh directory (removed on drop).
struct Data {
    dir: PathBuf,
    file: Arc<File>,
    bs: usize,
}

impl Data {
    fn new(bs: usize) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "mapped-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = File::options().read(true).write(true).create(true).truncate(true).open(dir.join("data")).unwrap();
        Data { dir, file: Arc::new(file), bs }
    }

    /// Writes generation `gen` of block `blk` as extent number `slot` of the file.
    fn put(&self, slot: u64, blk: u64, gen: u8) -> Extent {
        let buf: Vec<u8> = (0..self.bs).map(|o| byte(blk, o, gen)).collect();
        self.file.write_all_at(&buf, slot * self.bs as u64).unwrap();
        Extent::File { file: self.file.clone(), offset: slot * self.bs as u64 }
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Block -> extent, changeable by the test; counts calls.
#[derive(Default)]
struct Extents {
    map: Mutex<BTreeMap<u64, Extent>>,
    calls: AtomicUsize,
}

impl Extents {
    fn set(&self, blk: u64, e: Extent) {
        self.map.lock().insert(blk, e);
    }
    fn remove(&self, blk: u64) {
        self.map.lock().remove(&blk);
    }
}

impl ExtentSource for Extents {
    fn extents(&self, blks: Range<u64>) -> Result<Vec<(u64, Extent)>, SourceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.map.lock().range(blks).map(|(b, e)| (*b, e.clone())).collect())
    }
}

fn pager() -> Arc<Pager> {
    Pager::new(PagerConfig::default()).expect("pager")
}

/// A file of `nblk` blocks of `bs`: blocks in `stored` are written (generation 0) to the data
/// file in the order given (`stored[i]` at extent `i`), the others are holes.
fn setup(p: &Pager, bs: usize, nblk: u64, stored: &[u64]) -> (Data, Arc<Extents>, FileHandle) {
    let data = Data::new(bs);
    let src = Arc::new(Extents::default());
    for (slot, &b) in stored.iter().enumerate() {
        src.set(b, data.put(slot as u64, b, 0));
    }
    let f = p.open_mapped_file(src.clone(), bs, nblk * bs as u64, "array 'test'").expect("open");
    (data, src, f)
}

/// Whether block `blk` of view `v` (which starts at block 0) holds generation `gen` at a few
/// offsets of every page (`None`: zeros).
fn check_block(v: &View, bs: usize, blk: u64, gen: Option<u8>) {
    for page in 0..bs / PAGE {
        for o in [0, 1234, PAGE - 1] {
            let off = page * PAGE + o;
            let want = gen.map_or(0, |g| byte(blk, off, g));
            assert_eq!(rd(v, blk as usize * bs + off), want, "block {blk} offset {off}");
        }
    }
}

fn block_bytes(blk: u64, bs: usize, gen: u8) -> Vec<u8> {
    (0..bs).map(|o| byte(blk, o, gen)).collect()
}

#[test]
fn file_handle_is_send_sync() {
    fn ok<T: Send + Sync>() {}
    ok::<FileHandle>();
    ok::<Arc<dyn ExtentSource>>();
}

#[test]
fn reads_stored_blocks_and_holes() {
    let p = pager();
    // Extents out of block order; block 2 is a hole.
    let (_d, src, f) = setup(&p, BS, 4, &[3, 0, 1]);
    assert_eq!(f.engine(), FileEngine::PageCache);
    assert_eq!(f.engine().to_string(), "page cache");
    assert_eq!(src.calls.load(Ordering::SeqCst), 1, "one extent query at open");
    assert_eq!((f.size(), f.blksize()), (4 * BS as u64, BS));
    let v = f.map(0..4).unwrap();
    assert_eq!((v.len(), v.blocks()), (4 * BS, 0..4));
    for b in [0, 1, 3] {
        check_block(&v, BS, b, Some(0));
    }
    check_block(&v, BS, 2, None);
    assert_eq!(dirty_list(&f), vec![], "reads (also of holes) write nothing");
    let mut buf = vec![0u8; BS];
    f.read_block(1, &mut buf).unwrap();
    assert!(buf == block_bytes(1, BS, 0));
    f.read_block(2, &mut buf).unwrap();
    assert!(buf.iter().all(|b| *b == 0));
    // The userfaultfd engine says so too.
    let u = p.open_file(common::MemSource::new(), BS, BS as u64).unwrap();
    assert_eq!((u.engine(), u.engine().to_string()), (FileEngine::Userfaultfd, "userfaultfd".to_string()));
}

#[test]
fn views_alias() {
    let p = pager();
    let (_d, _src, f) = setup(&p, BS, 4, &[0, 1, 2, 3]);
    let v1 = f.map(0..4).unwrap();
    let v2 = f.map(1..3).unwrap();
    assert_eq!(v2.as_ptr() as usize, v1.as_ptr() as usize + BS, "views are parts of one reservation");
    wr(&v1, 2 * BS + 10, 0xAB);
    assert_eq!(rd(&v2, BS + 10), 0xAB);
    wr(&v2, 5, 0xCD);
    assert_eq!(rd(&v1, BS + 5), 0xCD);
    drop(v1);
    // The memory stays mapped for the other view and the file.
    assert_eq!(rd(&v2, BS + 10), 0xAB);
    assert_eq!(dirty_list(&f), vec![(1, vec![0]), (2, vec![0])]);
}

#[test]
fn dirty_reports_exactly_the_written_pages() {
    let p = pager();
    let (d, _src, f) = setup(&p, BS, 4, &[0, 1, 3]);
    let v = f.map(0..4).unwrap();
    // Read everything first (2 MiB folios may map whole blocks).
    for b in 0..4 {
        check_block(&v, BS, b, (b != 2).then_some(0));
    }
    wr(&v, 3 * PAGE + 17, 1); // stored block 0, page 3
    wr(&v, 2 * BS, 1); // hole block 2, page 0
    wr(&v, 3 * BS - 1, 1); // hole block 2, page 511
                           // A page filled by a system call (pread from the data file into block 1, page 7).
    let dst = v.as_ptr().wrapping_add(BS + 7 * PAGE);
    // SAFETY: one page inside the live view.
    let n = unsafe { libc::pread(d.file.as_raw_fd(), dst.cast(), PAGE, 0) };
    assert_eq!(n, PAGE as isize);
    assert_eq!(dirty_list(&f), vec![(0, vec![3]), (1, vec![7]), (2, vec![0, 511])]);
    // read(2) from a pipe counts too.
    let mut fds = [0; 2];
    // SAFETY: plain pipe creation and I/O into one page of the live view.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        assert_eq!(libc::write(fds[1], [5u8; 16].as_ptr().cast(), 16), 16);
        assert_eq!(libc::read(fds[0], v.as_ptr().wrapping_add(3 * BS + 9 * PAGE).cast(), 16), 16);
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    let dirty = f.dirty().unwrap();
    assert_eq!(dirty.iter().map(|d| d.blk).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(dirty[3].pages.iter().collect::<Vec<_>>(), vec![9]);
    // read_pages copies the written bytes; read_block the whole current content.
    let mut buf = vec![0xEEu8; BS];
    f.read_pages(1, &[7], &mut buf).unwrap();
    assert!(buf[7 * PAGE..8 * PAGE] == block_bytes(0, BS, 0)[..PAGE]);
    assert!(buf[..7 * PAGE].iter().all(|b| *b == 0xEE), "other pages untouched");
    f.read_pages(2, &[0, 511], &mut buf).unwrap();
    assert_eq!((buf[0], buf[1], buf[BS - 1], buf[BS - 2]), (1, 0, 1, 0));
    f.read_block(0, &mut buf).unwrap();
    let mut want = block_bytes(0, BS, 0);
    want[3 * PAGE + 17] = 1;
    assert!(buf == want);
    assert!(f.read_pages(0, &[512], &mut buf).is_err());
    assert!(f.read_block(0, &mut buf[..PAGE]).is_err());
}

#[test]
fn discard_restores_file_content_and_zeros() {
    let p = pager();
    let (_d, _src, f) = setup(&p, BS, 4, &[0, 1, 3]);
    let v = f.map(0..4).unwrap();
    let before = p.stats().pages_discarded;
    let mut written = 0;
    for b in 0..4 {
        for page in (0..BS / PAGE).step_by(3) {
            wr(&v, b * BS + page * PAGE + 11, 0);
            wr(&v, b * BS + page * PAGE + 12, 0xFF);
            written += 1;
        }
    }
    assert_eq!(f.dirty().unwrap().iter().map(|d| d.pages.len()).sum::<usize>(), written);
    f.discard().unwrap();
    assert_eq!(dirty_list(&f), vec![]);
    for b in 0..4u64 {
        check_block(&v, BS, b, (b != 2).then_some(0));
        assert_eq!(rd(&v, b as usize * BS + 12), if b == 2 { 0 } else { byte(b, 12, 0) });
    }
    // Only the written pages were dropped.
    assert_eq!(p.stats().pages_discarded - before, written as u64);
}

#[test]
fn mark_clean_maps_the_new_extents() {
    let p = pager();
    let (d, src, f) = setup(&p, BS, 4, &[0, 1, 2]);
    let v = f.map(0..4).unwrap();
    wr(&v, BS + 100, 0);
    wr(&v, 2 * BS + 5 * PAGE, 0);
    wr(&v, 3 * BS + 5, 9); // hole block 3 written
    assert_eq!(dirty_list(&f), vec![(1, vec![0]), (2, vec![5]), (3, vec![0])]);
    // The "commit": block 1 moves to a new extent with new bytes; block 2 becomes a hole; block
    // 3 gets stored.
    src.set(1, d.put(10, 1, 1));
    src.remove(2);
    src.set(3, d.put(11, 3, 1));
    let remapped = p.stats().blocks_remapped;
    f.mark_clean(&[1, 2, 3]).unwrap();
    assert_eq!(p.stats().blocks_remapped - remapped, 3);
    assert_eq!(dirty_list(&f), vec![]);
    check_block(&v, BS, 0, Some(0));
    check_block(&v, BS, 1, Some(1));
    check_block(&v, BS, 2, None);
    check_block(&v, BS, 3, Some(1));
    assert_eq!(dirty_list(&f), vec![], "reading the new extents writes nothing");
}

#[test]
fn invalidate_maps_the_new_extents() {
    let p = pager();
    let (d, src, f) = setup(&p, BS, 4, &[0, 1, 2, 3]);
    let v = f.map(0..4).unwrap();
    check_block(&v, BS, 0, Some(0));
    wr(&v, 2 * BS + 7, 0);
    // Another transaction moved blocks 0 (read here, never written) and 2 (written here).
    src.set(0, d.put(20, 0, 2));
    src.set(2, d.put(21, 2, 2));
    f.invalidate(&[0, 2]).unwrap();
    check_block(&v, BS, 0, Some(2));
    check_block(&v, BS, 1, Some(0));
    check_block(&v, BS, 2, Some(2));
    assert_eq!(dirty_list(&f), vec![]);
}

#[test]
fn shrink_then_grow_reads_zeros_and_discard_restores() {
    let p = pager();
    let bs = BS as u64;
    let (_d, _src, f) = setup(&p, BS, 4, &[0, 1, 2, 3]);
    let v = f.map(0..4).unwrap();
    check_block(&v, BS, 2, Some(0));
    wr(&v, 3 * BS + 3, 0); // written, then cut off
    let cut = bs + 5 * PAGE as u64 + 100;
    f.set_size(cut).unwrap();
    assert_eq!(f.size(), cut);
    assert_eq!(rd(&v, cut as usize - 1), byte(1, cut as usize - 1 - BS, 0));
    for off in [cut as usize, cut as usize + 1, 6 * PAGE + BS, 2 * BS - 1, 2 * BS, 3 * BS + 3, 4 * BS - 1] {
        assert_eq!(rd(&v, off), 0, "offset {off} beyond the size");
    }
    // The zeroed tail of the boundary block is written (pages 5..512 of block 1).
    assert_eq!(dirty_list(&f), vec![(1, (5..512).collect())]);
    f.set_size(4 * bs).unwrap();
    for off in [cut as usize, 2 * BS - 1, 2 * BS + 77, 3 * BS + 3, 4 * BS - 1] {
        assert_eq!(rd(&v, off), 0, "offset {off} re-exposed by growing");
    }
    check_block(&v, BS, 0, Some(0));
    // Abort: everything shows the committed content again.
    f.discard().unwrap();
    for b in 0..4 {
        check_block(&v, BS, b, Some(0));
    }
    assert_eq!(dirty_list(&f), vec![]);
}

#[test]
fn page_cache_writes_show_until_a_page_is_written_here() {
    let p = pager();
    let (d, src, f) = setup(&p, BS, 2, &[0, 1]);
    let v = f.map(0..2).unwrap();
    check_block(&v, BS, 0, Some(0));
    wr(&v, 6 * PAGE, 0x11); // page 6 becomes a private copy
    let Extent::File { offset, .. } = src.map.lock()[&0].clone() else { panic!("stored") };
    d.file.write_all_at(&[0x77; PAGE], offset + 5 * PAGE as u64).unwrap();
    d.file.write_all_at(&[0x66; PAGE], offset + 6 * PAGE as u64).unwrap();
    assert_eq!(rd(&v, 5 * PAGE + 9), 0x77, "a clean page shows the file's new bytes");
    assert_eq!(rd(&v, 6 * PAGE), 0x11, "a written page keeps its private copy");
    assert_eq!(rd(&v, 6 * PAGE + 1), byte(0, 6 * PAGE + 1, 0));
    assert_eq!(dirty_list(&f), vec![(0, vec![6])]);
}

#[test]
fn forked_child_reads_written_and_clean_bytes() {
    let p = pager();
    let (_d, _src, f) = setup(&p, BS, 3, &[0, 2]);
    let v = f.map(0..3).unwrap();
    wr(&v, 10, 0xA1);
    wr(&v, BS + 20, 0xB2); // in the hole
    let addr = v.as_ptr() as usize;
    let expect = [(10, 0xA1), (11, byte(0, 11, 0)), (BS + 20, 0xB2), (BS + 21, 0), (2 * BS + 99, byte(2, 99, 0))];
    // SAFETY: the child only reads memory and calls _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut code = 0;
        for (i, (off, want)) in expect.iter().enumerate() {
            // SAFETY: the view's memory is inherited by the child (not MADV_DONTFORK).
            let got = unsafe { std::ptr::read_volatile((addr + off) as *const u8) };
            if got != *want {
                code |= 1 << i;
            }
        }
        // A write in the child stays in the child.
        // SAFETY: as above.
        unsafe {
            std::ptr::write_volatile((addr + 10) as *mut u8, 0x55);
            libc::_exit(code);
        }
    }
    assert!(pid > 0);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child died: {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "bit i: expectation i failed in the child");
    assert_eq!(rd(&v, 10), 0xA1);
    assert_eq!(dirty_list(&f), vec![(0, vec![0]), (1, vec![0])]);
}

#[test]
fn write_syscall_from_an_untouched_view() {
    let p = pager();
    let (d, _src, f) = setup(&p, BS, 2, &[0]);
    let v = f.map(0..2).unwrap();
    let out = File::options().read(true).write(true).create(true).truncate(true).open(d.dir.join("out")).unwrap();
    // SAFETY: reads 2 blocks of the live view.
    let n = unsafe { libc::write(out.as_raw_fd(), v.as_ptr().cast(), 2 * BS) };
    assert_eq!(n, 2 * BS as isize);
    let mut got = vec![0u8; 2 * BS];
    out.read_exact_at(&mut got, 0).unwrap();
    assert!(got[..BS] == block_bytes(0, BS, 0));
    assert!(got[BS..].iter().all(|b| *b == 0));
    assert_eq!(dirty_list(&f), vec![]);
}

/// VMAs of this process intersecting `[start, end)`.
fn vmas_in(start: usize, end: usize) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| {
            let r = l.split_whitespace().next().unwrap();
            let (a, b) = r.split_once('-').unwrap();
            let (a, b) = (usize::from_str_radix(a, 16).unwrap(), usize::from_str_radix(b, 16).unwrap());
            a < end && b > start
        })
        .count()
}

#[test]
fn extents_in_file_order_use_few_mappings() {
    let p = pager();
    let bs = 64 << 10;
    let order: Vec<u64> = (0..64).collect();
    let (_d, _src, f) = setup(&p, bs, 64, &order);
    let v = f.map(0..64).unwrap();
    let (s, e) = (v.as_ptr() as usize, v.as_ptr() as usize + v.len());
    // One mapping of the extents (plus the reservation's anonymous rest beyond).
    assert!(vmas_in(s, e + 1) <= 3, "{} VMAs", vmas_in(s, e + 1));
    // Remapped one block at a time, the kernel merges them again.
    for b in 0..64 {
        f.mark_clean(&[b]).unwrap();
    }
    assert!(vmas_in(s, e + 1) <= 3, "{} VMAs after remapping block by block", vmas_in(s, e + 1));
    assert_eq!(rd(&v, 63 * bs + 5), byte(63, 5, 0));
    // Shuffled extents cannot merge (the test can fail).
    let shuffled: Vec<u64> = (0..64).map(|i| (i * 17) % 64).collect();
    let (_d2, _src2, f2) = setup(&p, bs, 64, &shuffled);
    let v2 = f2.map(0..64).unwrap();
    let (s2, e2) = (v2.as_ptr() as usize, v2.as_ptr() as usize + v2.len());
    assert!(vmas_in(s2, e2) > 3);
}

#[test]
fn prefetch_reads_in_and_reports_errors() {
    let p = pager();
    let (d, _src, f) = setup(&p, BS, 3, &[0, 1]);
    f.prefetch(0..3).unwrap();
    f.prefetch(0..1000).unwrap(); // clipped to the reservation, holes read zeros
    assert_eq!(dirty_list(&f), vec![]);
    // An extent beyond the end of its data file: an error, not a SIGBUS.
    d.file.set_len(BS as u64 / 2).unwrap();
    f.invalidate(&[1]).expect_err("extent beyond the data file's end");
    let e = f.prefetch(0..1).expect_err("truncated data file");
    assert!(matches!(e, PagerError::Io { .. }), "{e}");
}

#[test]
fn extent_source_errors_are_returned() {
    struct Failing;
    impl ExtentSource for Failing {
        fn extents(&self, _: Range<u64>) -> Result<Vec<(u64, Extent)>, SourceError> {
            Err(SourceError::permanent("index unreadable"))
        }
    }
    let p = pager();
    let e = p.open_mapped_file(Arc::new(Failing), BS, BS as u64, "array 'bad'").expect_err("fails");
    let m = e.to_string();
    assert!(m.contains("array 'bad'") && m.contains("index unreadable"), "{m}");
    assert!(p.open_mapped_file(Arc::new(Failing), 1000, 0, "x").is_err(), "blksize not a page multiple");
}

#[test]
fn growing_keeps_view_addresses() {
    let p = pager();
    let (_d, _src, f) = setup(&p, BS, 2, &[0, 1]);
    let v = f.map(0..2).unwrap();
    let addr = v.as_ptr();
    f.set_size(1 << 30).unwrap();
    let w = f.map(0..512).unwrap();
    assert_eq!((v.as_ptr(), w.as_ptr()), (addr, addr));
    assert_eq!(rd(&w, 300 * BS), 0);
    check_block(&v, BS, 1, Some(0));
    // Far beyond the reservation: grown in place, or a clear error.
    match f.set_size(1 << 40) {
        Ok(()) => {
            let far = f.map((1 << 40) / BS as u64 - 1..(1 << 40) / BS as u64).unwrap();
            assert_eq!(far.as_ptr() as usize, addr as usize + (1 << 40) - BS);
            assert_eq!(rd(&far, 5), 0);
        }
        Err(e) => {
            assert!(matches!(e, PagerError::ReservationExceeded { .. }), "{e}");
            assert!(e.to_string().contains("reopen"), "{e}");
            assert_eq!(f.size(), 1 << 30);
        }
    }
    check_block(&v, BS, 0, Some(0));
}

#[test]
fn stats_count_mappings() {
    let p = pager();
    let before = p.stats().extent_mmaps;
    let (_d, _src, f) = setup(&p, BS, 4, &[0, 1, 3]);
    // Blocks 0-1 in one run; block 3 another (holes are left anonymous at open).
    assert_eq!(p.stats().extent_mmaps - before, 2);
    f.invalidate(&[0, 1, 2, 3]).unwrap();
    assert_eq!(p.stats().extent_mmaps - before, 2 + 3);
}

const SIGBUS_DIR: &str = "OUTCORE_MAPPED_SIGBUS_DIR";

/// An I/O error on a mapped page (here: the data file truncated under the mapping) kills the
/// process by SIGBUS, after a line on stderr naming the array and the block.
#[test]
fn sigbus_report_names_label_and_block() {
    use std::os::unix::process::ExitStatusExt;
    let d = Data::new(BS);
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args(["--ignored", "--exact", "sigbus_child", "--nocapture", "--test-threads=1"])
        .env(SIGBUS_DIR, &d.dir)
        .output()
        .expect("run child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.signal(), Some(libc::SIGBUS), "child status {:?}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("CHILD READY"), "{stdout}");
    assert!(
        stderr.contains("outcore: SIGBUS reading array 'signal', block 2 (address 0x"),
        "stderr does not name the array and block:\n{stderr}"
    );
}

#[test]
#[ignore = "child process entry point of sigbus_report_names_label_and_block"]
fn sigbus_child() {
    let Ok(dir) = std::env::var(SIGBUS_DIR) else { return };
    let file = Arc::new(
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(PathBuf::from(dir).join("sig"))
            .unwrap(),
    );
    file.write_all_at(&vec![3u8; 4 * BS], 0).unwrap();
    let src = Arc::new(Extents::default());
    for b in 0..4 {
        src.set(b, Extent::File { file: file.clone(), offset: b * BS as u64 });
    }
    let p = pager();
    let f = p.open_mapped_file(src, BS, 4 * BS as u64, "array 'signal'").unwrap();
    let v = f.map(0..4).unwrap();
    assert_eq!(rd(&v, 5), 3);
    println!("CHILD READY");
    file.set_len(BS as u64).unwrap();
    let x = rd(&v, 2 * BS + 4 * PAGE + 3); // SIGBUS
    println!("CHILD SAW {x}");
}

/// End offset (in the view) of its last page mapped in this process (`/proc/self/pagemap`
/// bit 63), 0 if none is.
fn mapped_end(v: &View) -> usize {
    let pm = File::open("/proc/self/pagemap").unwrap();
    let mut buf = vec![0u8; v.len() / PAGE * 8];
    pm.read_exact_at(&mut buf, v.as_ptr() as u64 / PAGE as u64 * 8).unwrap();
    let last = buf.chunks_exact(8).rposition(|e| u64::from_le_bytes(e.try_into().unwrap()) >> 63 == 1);
    last.map_or(0, |i| (i + 1) * PAGE)
}

#[test]
fn a_scanned_view_is_read_ahead_of_the_scanner_and_no_further() {
    const MIB: usize = 1 << 20;
    let p = Pager::new(PagerConfig { scan_ahead: 32 << 20, ..PagerConfig::default() }).unwrap();
    let stored: Vec<u64> = (0..48).collect(); // 48 MiB of extents, then 80 MiB of holes
    let (_d, _src, f) = setup(&p, MIB, 128, &stored);
    let v = f.map(0..128).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(mapped_end(&v), 0, "nothing is read ahead of a view nobody reads");
    assert_eq!(p.stats().scan_ahead_bytes, 0);
    // A scan of the first 32 MiB, page by page.
    for off in (0..32 * MIB).step_by(PAGE) {
        rd(&v, off);
    }
    // Read ahead: chunks start every 16 MiB, so the last tripwire crossed is at 16 MiB or
    // later, and 32 MiB beyond it are read (the kernel alone maps 64 KiB around a fault).
    assert!(common::eventually(|| mapped_end(&v) >= 48 * MIB), "mapped to {} MiB", mapped_end(&v) / MIB);
    std::thread::sleep(std::time::Duration::from_millis(100));
    // ... and no further than 32 MiB (and a chunk) beyond the scanner, into the holes too.
    let end = mapped_end(&v);
    assert!(end <= 80 * MIB, "read ahead to {} MiB of a scan at 32 MiB", end / MIB);
    assert!(p.stats().scan_ahead_bytes >= 16 << 20);
    // What was read ahead is what the file holds; nothing counts as written.
    for blk in [0, 33, 47] {
        check_block(&v, MIB, blk, Some(0));
    }
    check_block(&v, MIB, 60, None);
    assert_eq!(dirty_list(&f), vec![]);
    // A short view is not watched.
    let (_d2, _src2, f2) = setup(&p, MIB, 16, &(0..16).collect::<Vec<_>>());
    let before = p.stats().scan_ahead_bytes;
    let v2 = f2.map(0..16).unwrap();
    rd(&v2, 0);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(mapped_end(&v2) <= MIB, "a 16 MiB view was read ahead to {} bytes", mapped_end(&v2));
    assert!(p.stats().scan_ahead_bytes <= 80 << 20 && p.stats().scan_ahead_bytes >= before);
}

#[test]
fn random_reads_are_not_read_ahead() {
    const MIB: usize = 1 << 20;
    let p = Pager::new(PagerConfig { scan_ahead: 32 << 20, ..PagerConfig::default() }).unwrap();
    let (d, _src, f) = setup(&p, MIB, 128, &(0..128).collect::<Vec<_>>());
    // Cold: the data file's pages out of the page cache (as after a reboot).
    d.file.sync_all().unwrap();
    // SAFETY: a valid descriptor; the advice only drops clean cached pages.
    assert_eq!(unsafe { libc::posix_fadvise(d.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) }, 0);
    let v = f.map(0..128).unwrap();
    // The view's first page, the first page of every 2 MiB, and 300 pages at random.
    let mut x = 12345u64;
    let mut offs: Vec<usize> = (0..128 * MIB).step_by(2 * MIB).collect();
    for _ in 0..300 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        offs.push((x >> 33) as usize % (128 * MIB / PAGE) * PAGE);
    }
    for off in offs {
        rd(&v, off);
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(p.stats().scan_ahead_bytes, 0, "random reads were read ahead");
    // A scan from the start afterwards is.
    for off in (0..4 * MIB).step_by(PAGE) {
        rd(&v, off);
    }
    assert!(common::eventually(|| p.stats().scan_ahead_bytes > 0));
}

#[test]
fn scan_ahead_stops_without_a_signal_at_a_truncated_data_file() {
    const MIB: usize = 1 << 20;
    let p = Pager::new(PagerConfig { scan_ahead: 64 << 20, ..PagerConfig::default() }).unwrap();
    let (d, _src, f) = setup(&p, MIB, 96, &(0..96).collect::<Vec<_>>());
    let v = f.map(0..96).unwrap();
    // The data file loses all but its first 20 MiB after the extents were mapped: reading
    // ahead beyond that fails (a populate reports EFAULT where a read would raise SIGBUS).
    d.file.set_len(20 * MIB as u64).unwrap();
    for off in (0..4 * MIB).step_by(PAGE) {
        rd(&v, off);
    }
    assert!(common::eventually(|| p.stats().scan_ahead_bytes > 0));
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Still here (no SIGBUS in the pager's thread), and what lies in the file reads right.
    check_block(&v, MIB, 10, Some(0));
    assert!(p.stats().scan_ahead_bytes < 64 << 20, "read ahead {} bytes", p.stats().scan_ahead_bytes);
}

#[test]
fn scan_ahead_off_reads_nothing_ahead() {
    const MIB: usize = 1 << 20;
    let p = Pager::new(PagerConfig { scan_ahead: 0, ..PagerConfig::default() }).unwrap();
    let (_d, _src, f) = setup(&p, MIB, 64, &(0..64).collect::<Vec<_>>());
    let v = f.map(0..64).unwrap();
    for off in (0..16 * MIB).step_by(PAGE) {
        rd(&v, off);
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(mapped_end(&v) <= 17 * MIB, "mapped to {} bytes", mapped_end(&v));
    assert_eq!(p.stats().scan_ahead_bytes, 0);
}
