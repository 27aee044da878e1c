//! Dirty tracking, mark-clean, discard and invalidate; run with asynchronous tracking
//! (`WP_ASYNC` + `PAGEMAP_SCAN`) and with the synchronous write-fault fallback.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use outcore_pager::{FileHandle, Pager, PagerConfig};

fn pagers() -> Vec<(&'static str, Arc<Pager>)> {
    vec![
        ("async", pager(1 << 30)),
        ("sync", pager_with(PagerConfig { force_sync_dirty_tracking: true, ..PagerConfig::default() })),
    ]
}

/// Runs `body(mode, pager, source, file)` with asynchronous and with synchronous dirty
/// tracking, each time on a file of `nblk` blocks of a new source.
fn each_mode(nblk: u64, body: impl Fn(&str, &Arc<Pager>, &Arc<MemSource>, &FileHandle)) {
    for (mode, p) in pagers() {
        let (src, f) = open(&p, nblk);
        body(mode, &p, &src, &f);
    }
}

/// A read-only scan dirties nothing; a one-byte write dirties exactly that block and page.
#[test]
fn exact_dirty_pages() {
    each_mode(8, |mode, p, src, f| {
        assert_eq!(p.capabilities().async_dirty_tracking, mode == "async");
        let v = f.map(0..8).unwrap();
        for off in (0..8 * BS).step_by(4096) {
            assert_eq!(rd(&v, off), src.expected((off / BS) as u64, off % BS));
        }
        assert_eq!(dirty_list(f), vec![], "{mode}: a read scan dirtied pages");
        wr(&v, 3 * BS + 5 * 4096 + 17, 9);
        assert_eq!(dirty_list(f), vec![(3, vec![5])], "{mode}");
        assert_eq!(p.stats().bytes_dirty, BS as u64);
        // Reported again (dirty stays dirty until mark_clean) and a second write adds its page.
        wr(&v, 6 * BS + 511 * 4096, 1);
        wr(&v, 3 * BS + 5 * 4096 + 18, 9);
        assert_eq!(dirty_list(f), vec![(3, vec![5]), (6, vec![511])], "{mode}");
    });
}

/// A write through a view that never touched the block is tracked, in every view.
#[test]
fn write_through_untouched_view_is_tracked() {
    each_mode(8, |mode, _, src, f| {
        let a = f.map(0..8).unwrap();
        let b = f.map(2..6).unwrap();
        assert_eq!(rd(&a, 3 * BS), src.expected(3, 0)); // loaded through a
        wr(&b, BS + 4096 * 7, 5); // block 3 through b, which never touched it
        assert_eq!(dirty_list(f), vec![(3, vec![7])], "{mode}");
        assert_eq!(rd(&a, 3 * BS + 4096 * 7), 5);
        // A block never loaded anywhere, written through b.
        wr(&b, 2 * BS + 4096 * 2, 6);
        assert_eq!(dirty_list(f), vec![(3, vec![7]), (4, vec![2])], "{mode}");
        assert_eq!(rd(&a, 4 * BS + 4096 * 2), 6);
        f.mark_clean(&[3, 4]).unwrap();
        assert_eq!(dirty_list(f), vec![], "{mode}");
        // After mark-clean a new write is tracked again, in each view.
        wr(&a, 4 * BS + 4096 * 9, 1);
        assert_eq!(dirty_list(f), vec![(4, vec![9])], "{mode}");
        wr(&b, BS + 4096 * 3, 1);
        assert_eq!(dirty_list(f), vec![(3, vec![3]), (4, vec![9])], "{mode}");
        f.mark_clean(&[3, 4]).unwrap();
        wr(&b, BS + 4096 * 3, 2); // same page again, through the same view
        assert_eq!(dirty_list(f), vec![(3, vec![3])], "{mode}");
        wr(&a, 3 * BS + 4096 * 3, 2); // and through the other
        assert_eq!(dirty_list(f), vec![(3, vec![3])], "{mode}");
    });
}

/// After mark-clean, eviction and reload, writes are tracked again.
#[test]
fn tracked_after_eviction_and_reload() {
    each_mode(16, |mode, p, src, f| {
        let (a, b) = (f.map(0..16).unwrap(), f.map(0..16).unwrap());
        wr(&a, 4096 * 3, 1);
        assert_eq!(dirty_list(f), vec![(0, vec![3])]);
        f.mark_clean(&[0]).unwrap();
        assert_eq!(rd(&b, 100), src.expected(0, 100));
        // Squeeze the budget: block 0 is clean, so it goes.
        p.set_cache_budget(0);
        assert_eq!(p.stats().bytes_resident, 0, "{mode}");
        assert!(p.stats().evictions >= 1);
        src.generation.fetch_add(1, Ordering::SeqCst); // the committed content differs now
        p.set_cache_budget(1 << 30);
        assert_eq!(rd(&b, 100), src.expected(0, 100), "{mode}: reloaded");
        assert_eq!(src.count(0), 2);
        assert_eq!(dirty_list(f), vec![], "{mode}");
        wr(&b, 4096 * 8, 1);
        assert_eq!(dirty_list(f), vec![(0, vec![8])], "{mode}");
        wr(&a, 4096 * 9, 1);
        assert_eq!(dirty_list(f), vec![(0, vec![8, 9])], "{mode}");
    });
}

/// Dirty blocks are never evicted; their content survives a zero budget.
#[test]
fn dirty_blocks_are_not_evicted() {
    each_mode(8, |mode, p, src, f| {
        let v = f.map(0..8).unwrap();
        for b in 0..8 {
            rd(&v, b * BS);
        }
        wr(&v, 2 * BS + 1, 0x77); // written silently (no dirty() call before eviction)
        p.set_cache_budget(0);
        assert_eq!(p.stats().bytes_resident, BS as u64, "{mode}: only the dirty block stays");
        assert_eq!(rd(&v, 2 * BS + 1), 0x77);
        assert_eq!(src.count(2), 1);
        assert_eq!(dirty_list(f), vec![(2, vec![0])]);
        p.set_cache_budget(1 << 30);
    });
}

/// Discard reverts every dirty block to the source's content, in every view.
#[test]
fn discard_reverts_in_every_view() {
    each_mode(8, |mode, _, src, f| {
        let a = f.map(0..8).unwrap();
        let b = f.map(0..8).unwrap();
        let c = f.map(1..2).unwrap();
        wr(&a, BS + 10, 0);
        wr(&b, 5 * BS + 10, 0);
        assert_eq!(rd(&c, 10), 0);
        rd(&a, 7 * BS); // clean block stays cached
        f.discard().unwrap();
        assert_eq!(dirty_list(f), vec![], "{mode}");
        for v in [&a, &b] {
            assert_eq!(rd(v, BS + 10), src.expected(1, 10), "{mode}");
            assert_eq!(rd(v, 5 * BS + 10), src.expected(5, 10), "{mode}");
        }
        assert_eq!(rd(&c, 10), src.expected(1, 10));
        assert_eq!(src.count(7), 1, "clean blocks are not dropped by discard");
        // Tracking works after discard.
        wr(&c, 4096, 3);
        assert_eq!(dirty_list(f), vec![(1, vec![1])], "{mode}");
    });
}

/// Invalidate makes the next touch reload from the source, which may return new content.
#[test]
fn invalidate_reloads_new_content() {
    each_mode(8, |mode, _, src, f| {
        let a = f.map(0..8).unwrap();
        let b = f.map(2..4).unwrap();
        assert_eq!(rd(&a, 2 * BS), src.expected(2, 0));
        assert_eq!(rd(&b, BS), src.expected(3, 0));
        wr(&a, 3 * BS + 1, 0);
        src.overrides.lock().insert(2, 0xAB);
        src.overrides.lock().insert(3, 0xCD);
        f.invalidate(&[2, 3]).unwrap();
        assert_eq!(rd(&a, 2 * BS + 5), 0xAB, "{mode}");
        assert_eq!(rd(&b, 5), 0xAB);
        assert_eq!(rd(&b, BS + 1), 0xCD);
        assert_eq!(rd(&a, 3 * BS + 1), 0xCD);
        assert_eq!(dirty_list(f), vec![], "{mode}: invalidated dirty pages are forgotten");
        assert_eq!(src.count(2), 2);
        assert_eq!(src.count(1), 0);
    });
}

/// Invalidate during a load: the stale content is never installed.
#[test]
fn invalidate_during_load() {
    let p = pager(1 << 30);
    let (src, f) = open(&p, 4);
    src.gated.lock().insert(1);
    let v = Arc::new(f.map(0..4).unwrap());
    let v2 = v.clone();
    let h = std::thread::spawn(move || rd(&v2, BS + 3));
    assert!(eventually(|| src.count(1) == 1));
    src.overrides.lock().insert(1, 0x5A); // the source changes while the old load is in flight
    f.invalidate(&[1]).unwrap();
    src.open_gate();
    assert_eq!(h.join().unwrap(), 0x5A);
    assert_eq!(src.count(1), 2);
}

/// Pages written through a view that was dropped stay dirty.
#[test]
fn dropped_view_keeps_dirty_pages() {
    each_mode(4, |mode, _, _, f| {
        {
            let v = f.map(1..3).unwrap();
            wr(&v, BS + 4096 * 4, 1);
        }
        assert_eq!(dirty_list(f), vec![(2, vec![4])], "{mode}");
        let v = f.map(0..4).unwrap();
        assert_eq!(rd(&v, 2 * BS + 4096 * 4), 1);
    });
}

/// `write_at` writes without faults as a view would: its pages are dirty, every view sees the
/// bytes at once (also one that mapped the block before), a block the source holds is loaded
/// first (its other bytes kept), an unstored block is never asked of the source (its other
/// bytes read zeros), and discard reverts all of it.
#[test]
fn write_at_dirties_its_pages_and_loads_only_stored_blocks() {
    each_mode(8, |mode, p, src, f| {
        let v = f.map(0..8).unwrap();
        assert_eq!(rd(&v, 10), src.expected(0, 10)); // block 0 cached, mapped in `v`
        let data = vec![0x77u8; 8200];
        // Cached block: the view sees the bytes without a reload.
        f.write_at(4096 + 10, &data, 5).unwrap();
        assert_eq!(rd(&v, 4096 + 10), 0x77, "{mode}");
        assert_eq!(rd(&v, 4096 + 9), src.expected(0, 4096 + 9), "{mode}");
        // Stored block not cached: loaded once, then written over.
        f.write_at(2 * BS as u64 + 100, &data, 5).unwrap();
        assert_eq!(src.count(2), 1, "{mode}");
        // Unstored block (from block 5 on), across its end into block 6.
        f.write_at(6 * BS as u64 - 4000, &data, 5).unwrap();
        assert_eq!(src.count(5) + src.count(6), 0, "{mode}: an unstored block was loaded");
        let w = f.map(4..8).unwrap(); // a view made after the write sees it too
        for (view, base) in [(&v, 0), (&w, 4 * BS)] {
            assert_eq!(rd(view, 6 * BS - 4000 - base), 0x77, "{mode}");
            assert_eq!(rd(view, 6 * BS + 4199 - base), 0x77, "{mode}");
            assert_eq!(rd(view, 6 * BS - 4001 - base), 0, "{mode}: an unstored block's other bytes");
            assert_eq!(rd(view, 6 * BS + 4200 - base), 0, "{mode}");
        }
        assert_eq!(rd(&v, 2 * BS + 99), src.expected(2, 99), "{mode}");
        assert_eq!(rd(&v, 2 * BS + 8299), 0x77, "{mode}");
        assert_eq!(
            dirty_list(f),
            vec![(0, vec![1, 2, 3]), (2, vec![0, 1, 2]), (5, vec![511]), (6, vec![0, 1])],
            "{mode}"
        );
        assert_eq!(p.stats().bytes_dirty, 4 * BS as u64, "{mode}");
        // Written bytes beyond the size are refused.
        assert!(f.write_at(8 * BS as u64 - 1, &[1, 2], 0).is_err(), "{mode}");
        f.discard().unwrap();
        assert_eq!(dirty_list(f), vec![], "{mode}");
        assert_eq!(rd(&v, 4096 + 10), src.expected(0, 4096 + 10), "{mode}");
        assert_eq!(rd(&v, 2 * BS + 100), src.expected(2, 100), "{mode}");
        assert_eq!(rd(&w, 6 * BS - 4000 - 4 * BS), src.expected(5, BS - 4000), "{mode}");
        // Written again and committed: clean, then written through the view and tracked.
        f.write_at(7 * BS as u64, &data, 7).unwrap();
        f.mark_clean(&[7]).unwrap();
        assert_eq!(dirty_list(f), vec![], "{mode}");
        assert_eq!(rd(&v, 7 * BS + 1), 0x77, "{mode}");
        wr(&v, 7 * BS + 3 * 4096, 1);
        assert_eq!(dirty_list(f), vec![(7, vec![3])], "{mode}");
    });
}

/// An unstored block written in part by `write_at` reads the file's fill pattern around the
/// written bytes, as the block would if loaded.
#[test]
fn write_at_an_unstored_block_keeps_the_fill_around_the_bytes() {
    let p = pager(1 << 30);
    let src = MemSource::new();
    let fill = outcore_pager::FillPattern::new(&[1, 2, 3]).unwrap();
    let pat = |off: usize| [1u8, 2, 3][off % 3];
    let f = p.open_file_filled(src.clone(), BS, 2 * BS as u64, Some(fill)).unwrap();
    f.set_size(4 * BS as u64).unwrap();
    f.write_at(2 * BS as u64 + 5000, &[0xEE; 100], 2).unwrap();
    let v = f.map(0..4).unwrap();
    assert_eq!(rd(&v, 2 * BS + 5000), 0xEE);
    assert_eq!(rd(&v, 2 * BS + 5099), 0xEE);
    for off in [2 * BS, 2 * BS + 4999, 2 * BS + 5100, 3 * BS - 1] {
        assert_eq!(rd(&v, off), pat(off), "offset {off}");
    }
    assert_eq!(src.log(), Vec::<u64>::new());
    assert_eq!(dirty_list(&f), vec![(2, vec![1])]);
}
