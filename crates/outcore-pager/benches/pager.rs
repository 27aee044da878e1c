//! Pager benchmarks: each pager number is printed next to the kernel/plain-memory number it is
//! compared with, measured in the same run, as a ratio (>1 means the pager is faster).
//!
//! Run with `cargo bench -p outcore-pager`. `OUTCORE_BENCH_GIB` sets the data size (default 4).

#![allow(unsafe_code)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outcore_pager::{BlockSource, FileHandle, FillMode, Pager, PagerConfig, SourceError, View};

const BS: usize = 2 << 20;
const PAGE: usize = 4096;

/// A source that copies blocks from memory (a 64 MiB pattern, reused cyclically).
struct MemCopy {
    data: Vec<u8>,
}

impl BlockSource for MemCopy {
    fn load(&self, blk: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let n = self.data.len() / BS;
        let i = (blk as usize) % n;
        buf.copy_from_slice(&self.data[i * BS..(i + 1) * BS]);
        Ok(())
    }
}

/// Plain memory for baselines: a mapping unmapped on drop.
struct Region {
    ptr: *mut u8,
    len: usize,
    fd: Option<i32>,
}

impl Region {
    fn anon(len: usize) -> Self {
        // SAFETY: a fresh private anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Self { ptr: p.cast(), len, fd: None }
    }

    fn memfd(len: usize) -> Self {
        // SAFETY: a NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"bench".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: ftruncate of the fresh fd.
        assert_eq!(unsafe { libc::ftruncate(fd, len as i64) }, 0);
        let mut r = Self::map_fd(fd, len);
        r.fd = Some(fd);
        r
    }

    fn map_fd(fd: i32, len: usize) -> Self {
        // SAFETY: a fresh shared mapping of a memfd at least `len` long.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        assert_ne!(p, libc::MAP_FAILED);
        Self { ptr: p.cast(), len, fd: None }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this value owns; closing the fd it owns.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
            if let Some(fd) = self.fd {
                libc::close(fd);
            }
        }
    }
}

/// Sums every u64 of `[ptr, ptr+len)`.
fn read_all(ptr: *const u8, len: usize) -> u64 {
    // SAFETY: callers pass a live mapping of `len` bytes, 8-byte aligned.
    let s = unsafe { std::slice::from_raw_parts(ptr.cast::<u64>(), len / 8) };
    let mut acc = [0u64; 4];
    for c in s.chunks_exact(4) {
        acc[0] = acc[0].wrapping_add(c[0]);
        acc[1] = acc[1].wrapping_add(c[1]);
        acc[2] = acc[2].wrapping_add(c[2]);
        acc[3] = acc[3].wrapping_add(c[3]);
    }
    acc.iter().fold(0, |a, b| a.wrapping_add(*b))
}

/// Writes every u64 of `[ptr, ptr+len)`.
fn write_all(ptr: *mut u8, len: usize, v: u64) {
    // SAFETY: callers pass a live writable mapping of `len` bytes, 8-byte aligned.
    let s = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u64>(), len / 8) };
    for x in s.iter_mut() {
        *x = v;
    }
    black_box(s.as_ptr());
}

/// Touches one byte per 4 KiB page.
fn touch_pages(ptr: *const u8, len: usize) -> u64 {
    let mut acc = 0u64;
    for off in (0..len).step_by(PAGE) {
        // SAFETY: inside a live mapping.
        acc = acc.wrapping_add(u64::from(unsafe { std::ptr::read_volatile(ptr.add(off)) }));
    }
    acc
}

fn time<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    black_box(f());
    t.elapsed()
}

/// Process CPU time (user + system, all threads).
fn cpu_now() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Wall and CPU time of `f`.
fn time_cpu<T>(f: impl FnOnce() -> T) -> (Duration, Duration) {
    let c = cpu_now();
    let w = time(f);
    (w, cpu_now() - c)
}

struct Row {
    what: String,
    pager: String,
    baseline: String,
    ratio: f64,
    goal: &'static str,
}

fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

/// Baselines of the throughput rows.
const ZERO_FILL: &str = "memfd zero-fill first touch";
const PLAIN: &str = "plain memory, PTEs present";
const ANON_WRITE: &str = "anonymous first-touch write";

/// A throughput over `bytes`: the pager took `pager`, the baseline `baseline`.
struct Rate {
    bytes: usize,
    pager: Duration,
    baseline: Duration,
}

fn rate(bytes: usize, pager: Duration, baseline: Duration) -> Rate {
    Rate { bytes, pager, baseline }
}

impl Rate {
    /// The table row `what`, the baseline described as `bname`.
    fn row(&self, what: &str, bname: &str, goal: &'static str) -> Row {
        let (pg, bg) = (gbps(self.bytes, self.pager), gbps(self.bytes, self.baseline));
        Row {
            what: what.into(),
            pager: format!("{pg:.2} GB/s"),
            baseline: format!("{bg:.2} GB/s ({bname})"),
            ratio: pg / bg,
            goal,
        }
    }
}

fn pager_file(p: &Arc<Pager>, src: &Arc<MemCopy>, bytes: usize) -> (FileHandle, View) {
    let f = p.open_file(src.clone(), BS, bytes as u64).expect("open");
    let v = f.map(0..(bytes / BS) as u64).expect("map");
    (f, v)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// First-touch read throughput for readahead/loader-thread combinations, each next to a plain
/// memfd first touch measured just before it.
fn sweep(src: &Arc<MemCopy>, bytes: usize) {
    println!("| fill | readahead | loaders | pager GB/s | memfd first touch GB/s | ratio |");
    println!("|---|---|---|---|---|---|");
    let combos: Vec<(u32, usize)> = match std::env::var("OUTCORE_BENCH_COMBOS") {
        // e.g. "0:4,4:4" (readahead:loaders)
        Ok(s) => s
            .split(',')
            .filter_map(|c| {
                let (a, b) = c.split_once(':')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect(),
        Err(_) => vec![(0, 1), (0, 4), (2, 2), (4, 2), (4, 4), (8, 4)],
    };
    for (fill, (ra, loaders)) in combos.iter().flat_map(|c| [(FillMode::Pwrite, *c), (FillMode::Copy, *c)]) {
        for _ in 0..2 {
            let plain = Region::memfd(bytes);
            let tb = time(|| read_all(plain.ptr, bytes));
            drop(plain);
            let pager = Pager::new(PagerConfig {
                cache_budget: bytes as u64 * 2,
                readahead_blocks: ra,
                loader_threads: loaders,
                fill_mode: fill,
                ..PagerConfig::default()
            })
            .expect("pager");
            let (_f, v) = pager_file(&pager, src, bytes);
            let tp = time(|| read_all(v.as_ptr(), bytes));
            let st = pager.stats();
            eprintln!("  faults {} loads {} readahead {}", st.faults, st.loads, st.readahead_loads);
            println!(
                "| {fill:?} | {ra} | {loaders} | {:.2} | {:.2} | {:.2}x |",
                gbps(bytes, tp),
                gbps(bytes, tb),
                tb.as_secs_f64() / tp.as_secs_f64()
            );
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let gib: usize = std::env::var("OUTCORE_BENCH_GIB").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let bytes = gib << 30;
    let nblk = bytes / BS;
    let mut pattern = vec![0u8; 64 << 20];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let src = Arc::new(MemCopy { data: pattern });
    if std::env::var("OUTCORE_BENCH_SWEEP").is_ok() {
        sweep(&src, bytes);
        return;
    }
    let mut rows = Vec::new();
    println!(
        "outcore-pager benchmarks: {gib} GiB, blocks of 2 MiB, capabilities: {}",
        Pager::probe().map(|c| c.describe()).unwrap_or_default()
    );

    // 1. First-touch sequential read through a view vs first touch of a plain memfd mapping
    // (the kernel's zero-fill fault path): 3 alternating pairs, medians (the machine is shared).
    let pager = Pager::new(PagerConfig { cache_budget: bytes as u64 * 2, ..PagerConfig::default() }).expect("pager");
    let (mut tb, mut cb, mut tp, mut cp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut kept = None;
    for _ in 0..3 {
        drop(kept.take()); // free the previous pair first
        let plain = Region::memfd(bytes);
        let (t, c) = time_cpu(|| read_all(plain.ptr, bytes));
        tb.push(t);
        cb.push(c);
        let (f, v) = pager_file(&pager, &src, bytes);
        let (t, c) = time_cpu(|| read_all(v.as_ptr(), bytes));
        tp.push(t);
        cp.push(c);
        kept = Some((plain, f, v));
    }
    let Some((plain, f, v)) = kept else { return };
    let (t_memfd_first, c_memfd_first, t_first, c_first) = (median(tb), median(cb), median(tp), median(cp));
    rows.push(rate(bytes, t_first, t_memfd_first).row(
        "first-touch sequential read (readahead 4), median of 3",
        ZERO_FILL,
        ">= 1.5x",
    ));
    let per_gib = |d: Duration| d.as_secs_f64() * 1e3 / gib as f64;
    rows.push(Row {
        what: "first-touch sequential read: CPU time, all threads".into(),
        pager: format!("{:.0} ms/GiB", per_gib(c_first)),
        baseline: format!("{:.0} ms/GiB (memfd zero-fill first touch)", per_gib(c_memfd_first)),
        ratio: c_memfd_first.as_secs_f64() / c_first.as_secs_f64(),
        goal: "(info: >1 = pager cheaper)",
    });
    // 2. Re-read, interleaved with plain re-reads (the machine is shared: medians of 5 pairs).
    let (mut tp, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        tb.push(time(|| read_all(plain.ptr, bytes)));
        tp.push(time(|| read_all(v.as_ptr(), bytes)));
    }
    let t_plain_reread = median(tb);
    rows.push(rate(bytes, median(tp), t_plain_reread).row("re-read of loaded data", PLAIN, ">= 0.95x"));
    // 3. Second view over loaded blocks vs a fresh mapping of the cached plain memfd.
    let (mut tp, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let fresh = Region::map_fd(plain.fd.unwrap_or(-1), bytes);
        tb.push(time(|| read_all(fresh.ptr, bytes)));
        drop(fresh);
        let v2 = f.map(0..nblk as u64).expect("map");
        tp.push(time(|| read_all(v2.as_ptr(), bytes)));
    }
    let t_second = median(tp);
    rows.push(rate(bytes, t_second, median(tb)).row(
        "second view, first pass",
        "cached memfd, fresh mapping",
        ">= 0.5x",
    ));
    rows.push(rate(bytes, t_second, t_plain_reread).row("second view, first pass", PLAIN, "(info)"));
    drop(plain);
    // 4. Writes: first write to clean loaded data, then re-writes of dirty data.
    let t_first_write = time(|| write_all(v.as_ptr(), bytes, 7));
    let anon = Region::anon(bytes);
    let t_anon_first = time(|| write_all(anon.ptr, bytes, 7));
    let (mut tp, mut tb) = (Vec::new(), Vec::new());
    for i in 0..5 {
        tb.push(time(|| write_all(anon.ptr, bytes, 9 + i)));
        tp.push(time(|| write_all(v.as_ptr(), bytes, 9 + i)));
    }
    let (t_rewrite, t_anon_rewrite) = (median(tp), median(tb));
    drop(anon);
    rows.push(rate(bytes, t_rewrite, t_anon_rewrite).row("re-write of dirty data", "plain memory", ">= 0.95x"));
    rows.push(rate(bytes, t_first_write, t_anon_first).row("first write to clean loaded data", ANON_WRITE, "(report)"));
    // 6. Commit-time dirty scan.
    let t_dirty_all = time(|| f.dirty().expect("dirty"));
    let all: Vec<u64> = (0..nblk as u64).collect();
    let t_clean = time(|| f.mark_clean(&all).expect("clean"));
    for i in 0..64usize {
        let off = (i * 7919 % nblk) * BS + (i % 512) * PAGE;
        // SAFETY: inside the live view.
        unsafe { std::ptr::write_volatile(v.as_ptr().add(off), 1) };
    }
    let mut found = 0;
    let t_scan = median((0..5).map(|_| time(|| found = f.dirty().expect("dirty").len())).collect());
    rows.push(Row {
        what: format!("dirty scan of {gib} GiB, {found} blocks/64 pages written"),
        pager: format!("{:.2} ms", t_scan.as_secs_f64() * 1e3),
        baseline: format!(
            "all dirty: {:.1} ms, mark_clean all: {:.1} ms",
            t_dirty_all.as_secs_f64() * 1e3,
            t_clean.as_secs_f64() * 1e3
        ),
        ratio: f64::NAN,
        goal: "milliseconds",
    });
    f.discard().expect("discard");
    drop(v);
    drop(f);
    drop(pager);

    // 5. Cost of one 2 MiB fault (no readahead) vs the kernel zero-filling 2 MiB of shmem.
    let n = nblk.min(1024);
    let pager =
        Pager::new(PagerConfig { cache_budget: bytes as u64 * 2, readahead_blocks: 0, ..PagerConfig::default() })
            .expect("pager");
    let (f, v) = pager_file(&pager, &src, n * BS);
    let t_faults = time(|| touch_pages(v.as_ptr(), n * BS));
    let t_noahead = {
        drop(v);
        drop(f);
        let (_f, v) = pager_file(&pager, &src, n * BS);
        time(|| read_all(v.as_ptr(), n * BS))
    };
    let plain = Region::memfd(n * BS);
    let t_zero = time(|| touch_pages(plain.ptr, n * BS));
    drop(plain);
    let plain = Region::memfd(n * BS);
    let t_zero_read = time(|| read_all(plain.ptr, n * BS));
    drop(plain);
    let per_fault = t_faults / n as u32;
    let per_zero = t_zero / n as u32;
    rows.push(Row {
        what: "one 2 MiB fault (memcpy source, no readahead)".into(),
        pager: format!("{:.0} us", per_fault.as_secs_f64() * 1e6),
        baseline: format!("{:.0} us (kernel zero-fills 2 MiB shmem)", per_zero.as_secs_f64() * 1e6),
        ratio: per_fault.as_secs_f64() / per_zero.as_secs_f64(),
        goal: "<= 1.0x (time ratio)",
    });
    rows.push(rate(n * BS, t_noahead, t_zero_read).row(
        "first-touch sequential read, no readahead",
        ZERO_FILL,
        "(info)",
    ));
    drop(pager);

    // 7. Variants: UFFDIO_COPY fill; synchronous write-protect faults for dirty tracking.
    let m = n * BS;
    let plain = Region::memfd(m);
    let tb = time(|| read_all(plain.ptr, m));
    drop(plain);
    let pager =
        Pager::new(PagerConfig { cache_budget: bytes as u64 * 2, fill_mode: FillMode::Copy, ..PagerConfig::default() })
            .expect("pager");
    let (f, v) = pager_file(&pager, &src, m);
    let tp = time(|| read_all(v.as_ptr(), m));
    rows.push(rate(m, tp, tb).row("first-touch read, FillMode::Copy (readahead 4)", ZERO_FILL, "(variant)"));
    drop(v);
    drop(f);
    drop(pager);
    let pager = Pager::new(PagerConfig {
        cache_budget: bytes as u64 * 2,
        force_sync_dirty_tracking: true,
        ..PagerConfig::default()
    })
    .expect("pager");
    let (f, v) = pager_file(&pager, &src, m);
    black_box(read_all(v.as_ptr(), m));
    let tp = time(|| write_all(v.as_ptr(), m, 3));
    let anon = Region::anon(m);
    let tb = time(|| write_all(anon.ptr, m, 3));
    drop(anon);
    rows.push(rate(m, tp, tb).row("first write to clean loaded data, sync WP faults", ANON_WRITE, "(variant)"));
    drop(v);
    drop(f);
    drop(pager);

    println!("| measurement | pager | baseline (same run) | ratio | goal |");
    println!("|---|---|---|---|---|");
    for r in rows {
        let ratio = if r.ratio.is_nan() { "-".to_string() } else { format!("{:.2}x", r.ratio) };
        println!("| {} | {} | {} | {} | {} |", r.what, r.pager, r.baseline, ratio, r.goal);
    }
}
