//! The page-cache engine over a 1 GiB data file whose extents are in file order: each number
//! next to the kernel baseline measured in the same run, as a ratio (>1 means the pager is
//! faster, or for times, takes less).
//!
//! Run with `cargo bench -p outcore-pager --bench mapped`. `OUTCORE_BENCH_MAPPED_MIB` sets the
//! data size (default 1024).

#![allow(unsafe_code)]

use std::fs::File;
use std::hint::black_box;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outcore_pager::{Extent, ExtentSource, FileHandle, Pager, PagerConfig, SourceError};

const BS: usize = 2 << 20;
const PAGE: usize = 4096;

/// Every block stored at its own place in one file.
struct InOrder {
    file: Arc<File>,
    nblk: u64,
}

impl ExtentSource for InOrder {
    fn extents(&self, blks: Range<u64>) -> Result<Vec<(u64, Extent)>, SourceError> {
        Ok((blks.start..blks.end.min(self.nblk))
            .map(|b| (b, Extent::File { file: self.file.clone(), offset: b * BS as u64 }))
            .collect())
    }
}

/// A plain mapping of the data file, unmapped on drop.
struct Plain {
    ptr: *mut u8,
    len: usize,
}

impl Plain {
    fn new(fd: i32, len: usize, prot: i32, flags: i32) -> Self {
        // SAFETY: a fresh mapping of a file at least `len` long, at an address the kernel picks.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
        assert_ne!(p, libc::MAP_FAILED);
        Self { ptr: p.cast(), len }
    }
    fn anon(len: usize) -> Self {
        Self::new(-1, len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping this value owns.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn sum(ptr: *const u8, len: usize) -> u64 {
    let p = ptr.cast::<u64>();
    let mut s = 0u64;
    for i in 0..len / 8 {
        // SAFETY: inside a live mapping of `len` bytes.
        s = s.wrapping_add(unsafe { std::ptr::read_volatile(p.add(i)) });
    }
    s
}

/// One 8-byte store per 4 KiB page.
fn touch_write(ptr: *mut u8, len: usize, v: u64) {
    for off in (0..len).step_by(PAGE) {
        // SAFETY: inside a live mapping of `len` bytes.
        unsafe { std::ptr::write_volatile(ptr.add(off).cast::<u64>(), v) };
    }
}

fn time<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    black_box(f());
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Row {
    what: &'static str,
    pager: String,
    baseline: String,
    ratio: f64,
}

impl Row {
    /// Throughput over `bytes`: the pager took `p`, the baseline (`note`) `b`.
    fn rate(what: &'static str, bytes: usize, p: Duration, b: Duration, note: &str) -> Row {
        Row {
            what,
            pager: format!("{:.2} GB/s", gbps(bytes, p)),
            baseline: format!("{:.2} GB/s ({note})", gbps(bytes, b)),
            ratio: b.as_secs_f64() / p.as_secs_f64(),
        }
    }

    /// Time taken, in ms with `digits` decimals: the pager took `p`, the baseline (`note`) `b`.
    fn time(what: &'static str, digits: usize, p: Duration, b: Duration, note: &str) -> Row {
        Row {
            what,
            pager: format!("{:.*} ms", digits, ms(p)),
            baseline: format!("{:.*} ms ({note})", digits, ms(b)),
            ratio: b.as_secs_f64() / p.as_secs_f64(),
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let mib: usize = std::env::var("OUTCORE_BENCH_MAPPED_MIB").ok().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let bytes = mib << 20;
    let nblk = (bytes / BS) as u64;
    let dir =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-mapped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("data");
    let file = Arc::new(File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap());
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_dir(&dir).ok();
    let t = Instant::now();
    let mut chunk = vec![0u8; BS];
    for b in 0..nblk {
        for (i, w) in chunk.chunks_exact_mut(8).enumerate() {
            w.copy_from_slice(&(b * 1_000_003 + i as u64).to_le_bytes());
        }
        file.write_all_at(&chunk, b * BS as u64).unwrap();
    }
    eprintln!("wrote {mib} MiB in {:.1} s", t.elapsed().as_secs_f64());
    let fd = file.as_raw_fd();
    let pager = Pager::new(PagerConfig::default()).expect("pager");
    let src = Arc::new(InOrder { file: file.clone(), nblk });
    let open = || -> FileHandle { pager.open_mapped_file(src.clone(), BS, bytes as u64, "array 'bench'").unwrap() };
    let mut rows = Vec::new();

    // Warm the page cache.
    let want = {
        let m = Plain::new(fd, bytes, libc::PROT_READ, libc::MAP_SHARED);
        sum(m.ptr, bytes)
    };

    // 1. Scan of a fresh mapping (page cache warm): view vs numpy.memmap's MAP_SHARED read-only.
    let (mut pv, mut pb, mut pv2, mut pb2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let f = open();
        let v = f.map(0..nblk).unwrap();
        pv.push(time(|| assert_eq!(sum(v.as_ptr(), bytes), want)));
        pv2.push(time(|| sum(v.as_ptr(), bytes)));
        drop((v, f));
        let m = Plain::new(fd, bytes, libc::PROT_READ, libc::MAP_SHARED);
        pb.push(time(|| assert_eq!(sum(m.ptr, bytes), want)));
        pb2.push(time(|| sum(m.ptr, bytes)));
    }
    let (p, b) = (median(pv), median(pb));
    rows.push(Row::rate(
        "warm scan of a fresh view (u64 sum), median of 3",
        bytes,
        p,
        b,
        "MAP_SHARED read-only mmap of the file",
    ));
    let (p, b) = (median(pv2), median(pb2));
    rows.push(Row::rate("second scan (page tables populated)", bytes, p, b, "same mmap, second scan"));

    // 2. First write to clean data: one store per page of 256 MiB (copy-on-write).
    let wlen = (256 << 20).min(bytes);
    let f = open();
    let v = f.map(0..nblk).unwrap();
    sum(v.as_ptr(), wlen);
    let p = time(|| touch_write(v.as_ptr(), wlen, 7));
    let a = Plain::anon(wlen);
    let b = time(|| touch_write(a.ptr, wlen, 7));
    drop(a);
    rows.push(Row::rate(
        "first write to clean data, 256 MiB (one store per page: COW)",
        wlen,
        p,
        b,
        "anonymous first-touch write",
    ));

    // 3. Discard of 256 MiB written vs raw MADV_DONTNEED of a private mapping as written.
    let p = time(|| f.discard().unwrap());
    assert!(f.dirty().unwrap().is_empty());
    let m = Plain::new(fd, wlen, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE);
    touch_write(m.ptr, wlen, 7);
    // SAFETY: advice on the mapping just created.
    let b = time(|| assert_eq!(unsafe { libc::madvise(m.ptr.cast(), wlen, libc::MADV_DONTNEED) }, 0));
    drop(m);
    rows.push(Row::time(
        "discard of 256 MiB written (65,536 pages)",
        1,
        p,
        b,
        "MADV_DONTNEED of the written private mapping",
    ));

    // 4. dirty() with 2048 written pages spread over the file vs nothing written.
    sum(v.as_ptr(), bytes);
    let clean = median((0..5).map(|_| time(|| f.dirty().unwrap())).collect());
    let stride = bytes / 2048;
    for i in 0..2048 {
        // SAFETY: inside the live view.
        unsafe { std::ptr::write_volatile(v.as_ptr().add(i * stride + 8).cast::<u64>(), 1) };
    }
    let mut n = 0;
    let p = median(
        (0..5)
            .map(|_| {
                time(|| {
                    n = f.dirty().unwrap().iter().map(|d| d.pages.len()).sum::<usize>();
                })
            })
            .collect(),
    );
    assert_eq!(n, 2048);
    rows.push(Row::time(
        "dirty() over 1 GiB read, 2048 pages written, median of 5",
        2,
        p,
        clean,
        "dirty() of the same view, read, nothing written",
    ));
    let p = time(|| f.mark_clean(&(0..nblk).collect::<Vec<_>>()).unwrap());
    let m = Plain::new(fd, bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE);
    sum(m.ptr, bytes);
    for i in 0..2048 {
        // SAFETY: inside the live mapping.
        unsafe { std::ptr::write_volatile(m.ptr.add(i * stride + 8).cast::<u64>(), 1) };
    }
    let flags = libc::MAP_PRIVATE | libc::MAP_FIXED;
    // SAFETY: replaces the mapping this value owns by the same file range.
    let b = time(|| unsafe { libc::mmap(m.ptr.cast(), bytes, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0) });
    drop(m);
    rows.push(Row::time(
        "mark_clean of every block (remap, 2048 pages written)",
        2,
        p,
        b,
        "one mmap(MAP_FIXED) over a private mapping as written",
    ));
    drop((v, f));

    println!("\nPage-cache engine, {mib} MiB data file in file order (2 MiB blocks)\n");
    println!("| measurement | pager | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {:.2}x |", r.what, r.pager, r.baseline, r.ratio);
    }
    let st = pager.stats();
    eprintln!(
        "stats: {} extent mmaps, {} blocks remapped, {} pages discarded",
        st.extent_mmaps, st.blocks_remapped, st.pages_discarded
    );
}
