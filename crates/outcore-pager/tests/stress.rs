//! Concurrency stress: readers, a writer and a dirty scanner race with evictions under a tiny
//! budget. No write may be lost (dirty blocks are never evicted, even when written while being
//! evicted), every read sees the source's content, and the dirty set is exactly the written
//! pages.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use outcore_pager::PagerConfig;

fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn readers_writer_and_evictions() {
    for sync in [false, true] {
        let p = pager_with(PagerConfig {
            cache_budget: 6 * BS as u64,
            force_sync_dirty_tracking: sync,
            ..PagerConfig::default()
        });
        let src = MemSource::new();
        let nblk = 48u64;
        let f = p.open_file(src.clone(), BS, nblk * BS as u64).unwrap();
        let views: Vec<Arc<outcore_pager::View>> = (0..3).map(|_| Arc::new(f.map(0..nblk).unwrap())).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for t in 0..3u64 {
            let v = views[t as usize].clone();
            let stop = stop.clone();
            readers.push(std::thread::spawn(move || {
                let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let blk = 8 + rng(&mut s) % (nblk - 8);
                    let off = (rng(&mut s) as usize) % BS;
                    assert_eq!(rd(&v, blk as usize * BS + off), pattern(blk, off, 0), "block {blk} offset {off}");
                    n += 1;
                }
                n
            }));
        }
        // A thread scanning for dirty pages all along (re-protecting what it finds) while
        // evictions run.
        let scanner = {
            let f = f.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut scans = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    f.dirty().unwrap();
                    scans += 1;
                    std::thread::sleep(Duration::from_millis(3));
                }
                scans
            })
        };
        // The writer writes blocks 0..8 (which the readers also make cold by evicting around them).
        let mut written: BTreeMap<(u64, u32), u8> = BTreeMap::new();
        let mut s = 12345u64;
        let deadline = Instant::now() + Duration::from_millis(1500);
        let mut i = 0u32;
        while Instant::now() < deadline {
            let blk = rng(&mut s) % 8;
            let page = (rng(&mut s) % 512) as u32;
            let val = (i % 200) as u8 + 1;
            let v = &views[(i % 3) as usize];
            wr(v, blk as usize * BS + page as usize * 4096 + 11, val);
            written.insert((blk, page), val);
            i += 1;
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        stop.store(true, Ordering::Relaxed);
        let reads: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
        let scans = scanner.join().unwrap();
        assert!(p.stats().evictions > 0, "no eviction happened");
        for (&(blk, page), &val) in &written {
            for v in &views {
                assert_eq!(
                    rd(v, blk as usize * BS + page as usize * 4096 + 11),
                    val,
                    "lost write to block {blk} page {page}"
                );
            }
        }
        let mut want: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for &(blk, page) in written.keys() {
            want.entry(blk).or_default().push(page);
        }
        let want: Vec<(u64, Vec<u32>)> = want.into_iter().collect();
        assert_eq!(dirty_list(&f), want);
        eprintln!("sync={sync}: {i} writes, {reads} reads, {scans} dirty scans, stats {:?}", p.stats());
    }
}
