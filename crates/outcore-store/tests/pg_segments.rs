//! How PostgreSQL stores raw block content (`outcore_segment`): a whole write stores one row per
//! 16 KiB window; a small write moves only the 4 KiB pages it changed (the first one into a
//! window splits its row); a whole write over split windows mends them. Checked on the rows the
//! server holds and on every version read back, against a model.

mod common;

use outcore_store::{ArrayId, ArrayMeta, Commit, Order, Store, Tid};

const PAGE: usize = 4096;
const BS: usize = 64 << 10;

/// The block's segment rows: (first page, bytes, written by the newest transaction).
fn rows(url: &str, id: ArrayId) -> Vec<(i32, i32, bool)> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let newest: i64 = c.query_one("SELECT max(xmin::text::bigint) FROM outcore_segment", &[]).unwrap().get(0);
    c.query(
        "SELECT seg, length(data), xmin::text::bigint FROM outcore_segment WHERE array_id = $1 AND blk = 0 ORDER BY seg",
        &[&(id.0 as i64)],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) == newest))
    .collect()
}

/// Block 0 at `at`, read into a buffer full of other bytes: every byte the store holds no row
/// for must be cleared.
fn load(s: &dyn Store, id: ArrayId, at: Tid) -> Vec<u8> {
    let mut buf = vec![0xAB; BS];
    s.load(id, 0, at, &mut buf).unwrap();
    buf
}

/// Commit `content`'s pages `pages` into block 0.
fn write_pages(s: &dyn Store, at: Tid, id: ArrayId, pages: &[u32], content: &[u8]) -> Tid {
    let content = content.to_vec();
    let mut c = Commit::new();
    c.write_pages_from(id, 0, pages.iter().copied(), move |pages: &[u32], buf: &mut [u8]| {
        for p in pages {
            let r = *p as usize * PAGE..(*p as usize + 1) * PAGE;
            buf[r.clone()].copy_from_slice(&content[r]);
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    });
    s.commit(at, c).unwrap()
}

#[test]
fn small_writes_move_only_their_pages_and_whole_writes_mend_split_windows() {
    let Some(f) = common::postgres() else { return };
    let s = &*f.store;
    let id = ArrayId::random();
    let mut c = Commit::new();
    c.put_array(id, "a", ArrayMeta::new("u1", vec![BS as u64], Order::C, BS as u64));
    let mut model = vec![(0u64, vec![0u8; BS])];
    let mut at = s.commit(0, c).unwrap();
    model.push((at, vec![0u8; BS]));

    // A whole write: one row per window, all new.
    let v: Vec<u8> = (0..BS).map(|i| (i % 251) as u8 + 1).collect();
    let mut c = Commit::new();
    c.write_block(id, 0, v.clone());
    at = s.commit(at, c).unwrap();
    model.push((at, v.clone()));
    let w = 4 * PAGE as i32;
    assert_eq!(rows(&f.url, id), vec![(0, w, true), (4, w, true), (8, w, true), (12, w, true)]);

    // Page 5 changes: window 1 splits into its page 4 as it was, page 5, pages 6-7 as they were;
    // the other windows are not written.
    let mut v2 = v.clone();
    v2[5 * PAGE + 17] = 0;
    at = write_pages(s, at, id, &[5], &v2);
    model.push((at, v2.clone()));
    let p = PAGE as i32;
    assert_eq!(
        rows(&f.url, id),
        vec![(0, w, false), (4, p, true), (5, p, true), (6, 2 * p, true), (8, w, false), (12, w, false)]
    );

    // Page 5 again: only its row is written (4 KiB moved, not 16).
    let mut v3 = v2.clone();
    v3[5 * PAGE + 18] = 0;
    at = write_pages(s, at, id, &[5], &v3);
    model.push((at, v3.clone()));
    assert_eq!(
        rows(&f.url, id),
        vec![(0, w, false), (4, p, false), (5, p, true), (6, 2 * p, false), (8, w, false), (12, w, false)]
    );

    // Pages 7 and 13: the run 6-7 splits, window 3 splits around page 13.
    let mut v4 = v3.clone();
    v4[7 * PAGE] = 0;
    v4[13 * PAGE + 4095] = 0;
    at = write_pages(s, at, id, &[7, 13], &v4);
    model.push((at, v4.clone()));
    assert_eq!(
        rows(&f.url, id),
        vec![
            (0, w, false),
            (4, p, false),
            (5, p, false),
            (6, p, true),
            (7, p, true),
            (8, w, false),
            (12, p, true),
            (13, p, true),
            (14, 2 * p, true)
        ]
    );

    // A whole write changing a page of window 1 and all of window 3: each back to one row.
    let mut v5 = v4.clone();
    v5[4 * PAGE] = 9;
    v5[12 * PAGE..].fill(3);
    let mut c = Commit::new();
    c.write_block(id, 0, v5.clone());
    at = s.commit(at, c).unwrap();
    model.push((at, v5.clone()));
    assert_eq!(rows(&f.url, id), vec![(0, w, false), (4, w, true), (8, w, false), (12, w, true)]);

    // Every version reads back as written, from a new connection.
    let fresh = f.reopen();
    for (tid, want) in &model {
        assert!(load(&*fresh, id, *tid) == *want, "version at tid {tid}");
    }
}

#[test]
fn random_small_and_whole_writes_read_back_at_every_tid() {
    let Some(f) = common::postgres() else { return };
    let s = &*f.store;
    let id = ArrayId::random();
    let mut c = Commit::new();
    c.put_array(id, "r", ArrayMeta::new("u1", vec![BS as u64], Order::C, BS as u64));
    let mut at = s.commit(0, c).unwrap();
    let mut cur = vec![0u8; BS];
    let mut model = vec![(at, cur.clone())];
    // A small deterministic generator (xorshift): the same run every time.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for round in 0..60 {
        if round % 15 == 7 {
            // Now and then a whole write (some windows zero: not stored at all).
            for (i, b) in cur.iter_mut().enumerate() {
                *b = if (i / (16 << 10)) as u64 == next(4) { 0 } else { (i % 7) as u8 + round as u8 };
            }
            let mut c = Commit::new();
            c.write_block(id, 0, cur.clone());
            at = s.commit(at, c).unwrap();
        } else {
            let mut pages: Vec<u32> = (0..1 + next(3)).map(|_| next(16) as u32).collect();
            pages.sort_unstable();
            pages.dedup();
            for p in &pages {
                // One byte per page, sometimes a whole page of zeros.
                let r = *p as usize * PAGE..(*p as usize + 1) * PAGE;
                if next(5) == 0 {
                    cur[r].fill(0);
                } else {
                    cur[r.start + next(PAGE as u64) as usize] = 1 + next(255) as u8;
                }
            }
            at = write_pages(s, at, id, &pages, &cur);
        }
        model.push((at, cur.clone()));
    }
    let fresh = f.reopen();
    for (tid, want) in &model {
        assert!(load(&*fresh, id, *tid) == *want, "version at tid {tid}");
    }
}
