//! Loading behaviour: laziness, aliasing, system calls, concurrency, size changes, readahead,
//! prefetch.

#![allow(unsafe_code)]

mod common;

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use common::*;
use outcore_pager::{PagerConfig, PagerError, View};

/// Mapping a 1 TiB view is instant and loads nothing; touching one byte loads exactly its block,
/// once.
#[test]
fn lazy_one_tib_view() {
    let p = pager(1 << 30);
    let src = MemSource::new();
    let tib: u64 = 1 << 40;
    let f = p.open_file(src.clone(), BS, tib).unwrap();
    let t = Instant::now();
    let v = f.map(0..tib / BS as u64).unwrap();
    let map_time = t.elapsed();
    assert_eq!(v.len() as u64, tib);
    assert!(src.log().is_empty(), "mapping loaded {:?}", src.log());
    assert_eq!(p.stats().loads, 0);
    let blk = 300_000u64;
    let off = blk as usize * BS + 12345;
    assert_eq!(rd(&v, off), src.expected(blk, 12345));
    assert_eq!(rd(&v, off + 1), src.expected(blk, 12346));
    assert_eq!(rd(&v, blk as usize * BS + BS - 1), src.expected(blk, BS - 1));
    assert_eq!(src.log(), vec![blk]);
    assert_eq!(p.stats().loads, 1);
    assert!(p.stats().bytes_resident == BS as u64);
    eprintln!("1 TiB map took {map_time:?}");
}

/// Two views of the same range alias: a write through one is read through the other at once.
#[test]
fn views_alias() {
    let p = pager(1 << 30);
    let (src, f) = open(&p, 16);
    let a = f.map(0..16).unwrap();
    let b = f.map(0..16).unwrap();
    let c = f.map(4..8).unwrap();
    assert_ne!(a.as_ptr(), b.as_ptr());
    wr(&a, 5 * BS + 7, 0xEE);
    assert_eq!(rd(&b, 5 * BS + 7), 0xEE);
    assert_eq!(rd(&c, BS + 7), 0xEE);
    wr(&c, BS + 8, 0xDD);
    assert_eq!(rd(&a, 5 * BS + 8), 0xDD);
    assert_eq!(rd(&b, 5 * BS + 9), src.expected(5, 9));
    assert_eq!(src.count(5), 1, "one load shared by the views");
}

/// `write(2)` from an unloaded view region and `read(2)` into one both work.
#[test]
fn kernel_mode_access() {
    let p = pager(1 << 30);
    assert!(p.capabilities().kernel_mode_faults);
    let (src, f) = open(&p, 8);
    let v = f.map(0..8).unwrap();
    // write(2) from block 2 (not loaded) into a pipe-backed temp file.
    let path = std::env::temp_dir().join(format!("outcore-pager-km-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    // SAFETY: the source range is inside the live view.
    let n = unsafe { libc::write(file.as_raw_fd(), v.as_ptr().add(2 * BS).cast(), BS) };
    assert_eq!(n, BS as isize);
    let data = std::fs::read(&path).unwrap();
    assert!(data.iter().enumerate().all(|(i, b)| *b == src.expected(2, i)));
    // read(2) into block 5 (not loaded).
    let content: Vec<u8> = (0..BS).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: the destination range is inside the live view.
    let n = unsafe { libc::read(file.as_raw_fd(), v.as_ptr().add(5 * BS).cast(), BS) };
    assert_eq!(n, BS as isize);
    for i in (0..BS).step_by(997) {
        assert_eq!(rd(&v, 5 * BS + i), content[i]);
    }
    assert_eq!(src.count(2), 1);
    assert_eq!(src.count(5), 1);
    let d = dirty_list(&f);
    assert_eq!(d.len(), 1, "read(2) dirtied block 5 only: {d:?}");
    assert_eq!(d[0].0, 5);
    assert_eq!(d[0].1.len(), BS / 4096);
    // A second view: block 2 is cached but not mapped there (a MINOR fault from kernel mode).
    let w = f.map(0..8).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: the destination range (one page) is inside the live view.
    let n = unsafe { libc::read(file.as_raw_fd(), w.as_ptr().add(2 * BS + 3 * 4096).cast(), 4096) };
    assert_eq!(n, 4096);
    assert_eq!(rd(&v, 2 * BS + 3 * 4096 + 1), content[1]);
    assert_eq!(rd(&v, 2 * BS + 4 * 4096), src.expected(2, 4 * 4096));
    assert_eq!(src.count(2), 1);
    let d = dirty_list(&f);
    assert_eq!(d[0], (2, vec![3]), "{d:?}");
    std::fs::remove_file(&path).unwrap();
}

/// N threads faulting the same block cause one load.
#[test]
fn same_block_one_load() {
    let p = pager(1 << 30);
    let (src, f) = open(&p, 4);
    *src.delay.lock() = Some(std::time::Duration::from_millis(100));
    let v = Arc::new(f.map(0..4).unwrap());
    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let v = v.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                rd(&v, BS + i * 4096 * 17 + i)
            })
        })
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), pattern(1, i * 4096 * 17 + i, 0));
    }
    assert_eq!(src.log(), vec![1]);
}

/// Faults on different blocks load in parallel: each load waits until 3 loads are in flight.
#[test]
fn different_blocks_load_in_parallel() {
    let p = pager(1 << 30);
    let (src, f) = open(&p, 8);
    *src.rendezvous.lock() = Some(3);
    let v = Arc::new(f.map(0..8).unwrap());
    let hs: Vec<_> = [1usize, 4, 6]
        .into_iter()
        .map(|b| {
            let v = v.clone();
            std::thread::spawn(move || rd(&v, b * BS + 3))
        })
        .collect();
    for (h, b) in hs.into_iter().zip([1u64, 4, 6]) {
        assert_eq!(h.join().unwrap(), pattern(b, 3, 0));
    }
    assert_eq!(src.max_in_flight.load(Ordering::SeqCst), 3, "the three loads overlapped");
}

/// Growing and shrinking: beyond the size reads zeros and never reaches the source.
#[test]
fn grow_and_shrink() {
    let p = pager(1 << 30);
    let src = MemSource::new();
    let size = 2 * BS as u64 + 10_000;
    let f = p.open_file(src.clone(), BS, size).unwrap();
    let v = f.map(0..8).unwrap();
    assert_eq!(f.size(), size);
    // Boundary block: source content up to the size, zeros after.
    assert_eq!(rd(&v, 2 * BS + 9_999), src.expected(2, 9_999));
    assert_eq!(rd(&v, 2 * BS + 10_000), 0);
    assert_eq!(rd(&v, 3 * BS - 1), 0);
    // Wholly beyond: zeros, no source call.
    assert_eq!(rd(&v, 5 * BS + 77), 0);
    assert_eq!(src.log(), vec![2]);
    // Shrink into block 1: block 2 dropped, the tail of block 1 zeroed.
    assert_eq!(rd(&v, BS + 200), src.expected(1, 200));
    f.set_size(BS as u64 + 100).unwrap();
    assert_eq!(rd(&v, BS + 99), src.expected(1, 99));
    assert_eq!(rd(&v, BS + 100), 0);
    assert_eq!(rd(&v, BS + 200), 0);
    assert_eq!(rd(&v, 2 * BS + 5), 0);
    assert_eq!(src.count(2), 1, "block 2 is beyond the size now: no source call");
    // Grow back: the newly exposed area comes from the source again.
    f.set_size(4 * BS as u64).unwrap();
    assert_eq!(f.size(), 4 * BS as u64);
    assert_eq!(rd(&v, BS + 200), src.expected(1, 200));
    assert_eq!(rd(&v, 2 * BS + 5), src.expected(2, 5));
    assert_eq!(rd(&v, 3 * BS + 5), src.expected(3, 5));
    assert_eq!(rd(&v, 5 * BS + 5), 0);
    assert!(!src.log().contains(&5));
    assert!(!src.log().contains(&4));
}

/// Sequential faults request the next blocks before the scan reaches them; random ones don't.
#[test]
fn readahead_sequential_only() {
    let p = pager_with(PagerConfig { readahead_blocks: 4, ..PagerConfig::default() });
    let (src, f) = open(&p, 64);
    let v = f.map(0..64).unwrap();
    rd(&v, 0);
    rd(&v, BS);
    // Still on block 1: the next blocks were requested in the background.
    assert!(
        eventually(|| {
            let l = src.log();
            (2..=5).all(|b| l.contains(&b))
        }),
        "log {:?}",
        src.log()
    );
    for k in 2..40u64 {
        assert_eq!(rd(&v, k as usize * BS + 1), src.expected(k, 1));
        // While on block k, at least the next two blocks have been requested.
        assert!(
            eventually(|| {
                let l = src.log();
                (k + 1..=k + 2).all(|b| l.contains(&b))
            }),
            "k={k} log {:?}",
            src.log()
        );
    }
    // Every page reads right (blocks mapped ahead included), each block loaded once.
    for off in (0..44 * BS).step_by(4096 * 13) {
        assert_eq!(rd(&v, off), src.expected((off / BS) as u64, off % BS));
    }
    assert!(p.stats().readahead_loads >= 38);
    for b in 0..=41u64 {
        assert_eq!(src.count(b), 1, "block {b} loaded once");
    }
    assert_eq!(dirty_list(&f), vec![], "mapping ahead dirties nothing");

    // Mapping ahead: on a fresh view, after faults on blocks 0 and 1, blocks 2, 3 and 5 get
    // mapped before they are touched; block 4 (half a window ahead) stays unmapped as the marker
    // whose fault requests the next blocks.
    // Faults on blocks 0 and 1 of view `w`: then page `page` of blocks 2, 3 and 5 is mapped,
    // block 4 is not.
    let maps_ahead = |w: &View, page: usize| {
        rd(w, 0);
        rd(w, BS);
        let base = w.as_ptr() as usize;
        assert!(eventually(|| [2, 3, 5].iter().all(|b| page_present(base + b * BS + 4096 * page))));
        assert!(!page_present(base + 4 * BS));
    };
    let (src3, f3) = open(&p, 64);
    let w3 = f3.map(0..64).unwrap();
    maps_ahead(&w3, 7);
    assert_eq!(src3.count(6), 0);
    rd(&w3, 4 * BS);
    assert!(eventually(|| src3.count(6) == 1 && src3.count(7) == 1));
    // A second view over the cached blocks: blocks ahead are mapped without loads.
    let w4 = f3.map(0..64).unwrap();
    maps_ahead(&w4, 9);
    assert_eq!(src3.count(2), 1);

    // Random access on a fresh file: only the touched blocks are ever loaded.
    let (src2, f2) = open(&p, 64);
    let v2 = f2.map(0..64).unwrap();
    let order = [40u64, 7, 23, 58, 3, 31, 12, 50, 19, 61];
    for b in order {
        assert_eq!(rd(&v2, b as usize * BS), src2.expected(b, 0));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut log = src2.log();
    log.sort_unstable();
    let mut want = order.to_vec();
    want.sort_unstable();
    assert_eq!(log, want);
}

/// Whether the page at `addr` is mapped (present bit of /proc/self/pagemap).
fn page_present(addr: usize) -> bool {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open("/proc/self/pagemap").unwrap();
    let mut e = [0u8; 8];
    f.read_exact_at(&mut e, (addr / 4096 * 8) as u64).unwrap();
    u64::from_le_bytes(e) & (1 << 63) != 0
}

/// Prefetch loads synchronously, reports errors, and makes system calls work under
/// `USER_MODE_ONLY` (where they get EFAULT on unloaded memory).
#[test]
fn prefetch_and_user_mode_only() {
    let p = pager_with(PagerConfig { force_user_mode_only: true, ..PagerConfig::default() });
    assert!(!p.capabilities().kernel_mode_faults);
    let (src, f) = open(&p, 8);
    src.permanent.lock().insert(7);
    let v = f.map(0..8).unwrap();
    let (n, errno, _) = write_from_view(&v, BS, 4096);
    assert_eq!(n, -1);
    assert_eq!(errno, Some(libc::EFAULT));
    f.prefetch(1..3).unwrap();
    let mut log = src.log();
    log.sort_unstable();
    assert_eq!(log, vec![1, 2]);
    let (n, _, data) = write_from_view(&v, BS, 2 * BS);
    assert_eq!(n, 2 * BS as isize);
    assert!(data[..BS].iter().enumerate().all(|(i, b)| *b == src.expected(1, i)));
    assert!(data[BS..].iter().enumerate().all(|(i, b)| *b == src.expected(2, i)));
    // User-mode access still loads on demand.
    assert_eq!(rd(&v, 4 * BS + 1), src.expected(4, 1));
    // A failing block: prefetch returns the error.
    match f.prefetch(6..8) {
        Err(PagerError::Load { blk: 7, error }) => assert!(error.to_string().contains("checksum"), "{error}"),
        other => panic!("expected a load error, got {other:?}"),
    }
}

/// `read_block` returns the cached content (including unsaved writes) without faults.
#[test]
fn read_block_returns_cached_content() {
    let p = pager(1 << 30);
    let (src, f) = open(&p, 4);
    let v = f.map(0..4).unwrap();
    wr(&v, BS + 10, 0x42);
    let faults = p.stats().faults;
    let mut buf = vec![0u8; BS];
    f.read_block(1, &mut buf).unwrap();
    assert_eq!(buf[10], 0x42);
    assert_eq!(buf[11], src.expected(1, 11));
    assert_eq!(p.stats().faults, faults);
    // A block never touched is loaded from the source.
    f.read_block(3, &mut buf).unwrap();
    assert!(buf.iter().enumerate().all(|(i, b)| *b == src.expected(3, i)));
    assert!(matches!(f.read_block(3, &mut buf[..10]), Err(PagerError::InvalidArgument(_))));
}

/// `read_pages` copies only the asked pages of the cached content, leaving the rest of the
/// buffer alone; bad pages or buffers are refused.
#[test]
fn read_pages_copies_only_those_pages() {
    let p = pager(1 << 30);
    let (src, f) = open(&p, 4);
    let v = f.map(0..4).unwrap();
    wr(&v, BS + 2 * 4096 + 5, 0x42);
    let mut buf = vec![0xEEu8; BS];
    f.read_pages(1, &[0, 2], &mut buf).unwrap();
    for (i, b) in buf.iter().enumerate() {
        let want = if i == 2 * 4096 + 5 {
            0x42
        } else if matches!(i / 4096, 0 | 2) {
            src.expected(1, i)
        } else {
            0xEE
        };
        assert_eq!(*b, want, "byte {i}");
    }
    let last = (BS / 4096) as u32;
    assert!(matches!(f.read_pages(1, &[last], &mut buf), Err(PagerError::InvalidArgument(_))));
    assert!(matches!(f.read_pages(1, &[0], &mut buf[..4096]), Err(PagerError::InvalidArgument(_))));
}

/// The global pager exists and capabilities describe themselves.
#[test]
fn global_pager_and_capabilities() {
    let g = outcore_pager::Pager::global().unwrap();
    let g2 = outcore_pager::Pager::global().unwrap();
    assert!(Arc::ptr_eq(&g, &g2));
    let caps = outcore_pager::Pager::probe().unwrap();
    assert!(caps.async_dirty_tracking);
    assert!(caps.poison);
    assert!(!caps.describe().is_empty());
}

/// `FillMode::Copy` (UFFDIO_COPY into the faulting view) keeps the guarantees: aliasing, one
/// load, exact dirty pages, discard.
#[test]
fn copy_fill_mode() {
    let p = pager_with(PagerConfig { fill_mode: outcore_pager::FillMode::Copy, ..PagerConfig::default() });
    let (src, f) = open(&p, 8);
    let a = f.map(0..8).unwrap();
    let b = f.map(0..8).unwrap();
    assert_eq!(rd(&a, 3 * BS + 5), src.expected(3, 5));
    assert_eq!(rd(&b, 3 * BS + 6), src.expected(3, 6));
    assert_eq!(dirty_list(&f), vec![]);
    wr(&b, 3 * BS + 4096 * 2, 0);
    wr(&a, 6 * BS, 0);
    assert_eq!(rd(&a, 3 * BS + 4096 * 2), 0);
    assert_eq!(dirty_list(&f), vec![(3, vec![2]), (6, vec![0])]);
    let mut buf = vec![0u8; BS];
    f.read_block(3, &mut buf).unwrap();
    assert_eq!(buf[4096 * 2], 0);
    assert_eq!(buf[5], src.expected(3, 5));
    f.discard().unwrap();
    assert_eq!(rd(&b, 3 * BS + 4096 * 2), src.expected(3, 4096 * 2));
    assert_eq!(rd(&a, 6 * BS), src.expected(6, 0));
    assert_eq!(src.count(3), 2);
}

/// A budget smaller than one block still makes progress (the block just loaded is spared from
/// the eviction pass that follows its load).
#[test]
fn budget_below_one_block() {
    let p = pager(0);
    let (src, f) = open(&p, 16);
    let v = f.map(0..16).unwrap();
    for pass in 0..2 {
        for b in 0..16usize {
            for page in (0..BS).step_by(64 * 1024) {
                assert_eq!(rd(&v, b * BS + page), src.expected(b as u64, page), "pass {pass}");
            }
        }
    }
    // Every load but the last few was evicted again (eviction runs beside the loads, so the
    // last blocks may still be resident when the pass ends; on a busy machine it may need a
    // moment more to get down to a few).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut st = p.stats();
    while st.bytes_resident / BS as u64 > 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        st = p.stats();
    }
    let resident = st.bytes_resident / BS as u64;
    assert_eq!(st.evictions + resident, st.loads, "{st:?}");
    assert!(st.loads >= 32 && resident <= 4, "{st:?}");
    p.set_cache_budget(0);
    assert_eq!(p.stats().bytes_resident, 0, "{:?}", p.stats());
}

/// A file opened with a fill pattern reads it wherever it would read zeros without asking the
/// source: beyond the size (also in the boundary block, with the pattern's phase kept), and in
/// the cached tail of a written boundary block after a shrink, which a growth then exposes.
#[test]
fn fill_pattern_beyond_the_size() {
    let p = pager(1 << 30);
    let src = MemSource::new();
    let fill = outcore_pager::FillPattern::new(&[1, 2, 3]).unwrap();
    let pat = |off: usize| [1u8, 2, 3][off % 3];
    let size = 2 * BS as u64 + 10_000;
    let f = p.open_file_filled(src.clone(), BS, size, Some(fill)).unwrap();
    let v = f.map(0..8).unwrap();
    assert_eq!(rd(&v, 2 * BS + 9_999), src.expected(2, 9_999));
    for off in [2 * BS + 10_000, 2 * BS + 10_001, 3 * BS - 1, 5 * BS + 77] {
        assert_eq!(rd(&v, off), pat(off), "offset {off}");
    }
    assert_eq!(src.log(), vec![2]);
    // A written boundary block keeps its writes below the cut, reads the pattern beyond it,
    // also once the file grows again (its tail is not reloaded).
    wr(&v, BS + 50, 0xEE);
    wr(&v, BS + 200, 0xDD);
    f.set_size(BS as u64 + 100).unwrap();
    assert_eq!(rd(&v, BS + 50), 0xEE);
    assert_eq!(rd(&v, BS + 200), pat(BS + 200));
    f.set_size(4 * BS as u64).unwrap();
    assert_eq!(rd(&v, BS + 50), 0xEE);
    assert_eq!(rd(&v, BS + 99), src.expected(1, 99));
    assert_eq!(rd(&v, BS + 200), pat(BS + 200));
    assert_eq!(rd(&v, 3 * BS + 5), src.expected(3, 5));
    assert_eq!(rd(&v, 5 * BS + 5), pat(5 * BS + 5));
}
