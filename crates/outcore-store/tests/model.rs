//! Model-based test of block versions: random interleavings of page-sized and whole-block writes,
//! codec changes, zero writes, shrinks and regrowths, rejected (conflicting) commits, gc and reopen,
//! checked against a plain in-memory model of every snapshot, on every backend.

mod common;

use common::Fixture;
use outcore_store::{ArrayId, ArrayMeta, Codec, Commit, Error, Order, Store};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;

// Two 64 KiB SQLite pages per block: scattered page writes can take pending patches.
const BS: usize = 128 << 10;
const PAGE: usize = 4096;
const NBLK: usize = 6;

fn meta(nbytes: u64, codec: Codec) -> ArrayMeta {
    ArrayMeta {
        dtype: "<u1".into(),
        shape: vec![nbytes],
        order: Order::C,
        blksize: BS as u64,
        codec,
        nbytes,
        attrs: Default::default(),
        fill: None,
    }
}

/// The model: the array's bytes at every committed tid.
struct Model {
    snapshots: BTreeMap<u64, Vec<u8>>,
}

fn check_snapshot(s: &dyn Store, id: ArrayId, tid: u64, want: &[u8], seed: u64) {
    let mut buf = vec![0u8; BS];
    for b in 0..NBLK {
        s.load(id, b as u64, tid, &mut buf).unwrap_or_else(|e| panic!("seed {seed}: load blk {b} at {tid}: {e}"));
        let exp = &want[b * BS..(b + 1) * BS];
        if buf != exp {
            let first = buf.iter().zip(exp).position(|(a, b)| a != b).unwrap_or(0);
            panic!("seed {seed}: block {b} at tid {tid} differs from the model at byte {first}");
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn run(f: &Fixture, seed: u64, ops: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let codecs = [Codec::None, Codec::Lz4, Codec::Zstd { level: 1 }];
    let mut codec = codecs[seed as usize % 3];
    let mut store: Arc<dyn Store> = f.reopen();
    let id = ArrayId::random();
    let full = (NBLK * BS) as u64;
    let mut size = full;
    let mut c = Commit::new();
    let name = format!("m{seed}");
    c.put_array(id, name.clone(), meta(size, codec));
    let t0 = store.commit(store.head().unwrap(), c).unwrap();
    let mut cur = vec![0u8; NBLK * BS];
    let mut model = Model { snapshots: BTreeMap::from([(t0, cur.clone())]) };
    let mut horizon = 0;
    for _ in 0..ops {
        let head = store.head().unwrap();
        match rng.random_range(0..100) {
            // A few pages of one block (the common small write), some of them zeroed.
            0..=54 => {
                let b = rng.random_range(0..NBLK);
                if (b * BS) as u64 >= size {
                    continue;
                }
                let mut written: Vec<u32> = Vec::new();
                for _ in 0..rng.random_range(1..4) {
                    let p = rng.random_range(0..BS / PAGE);
                    let at = b * BS + p * PAGE;
                    if at as u64 >= size {
                        continue;
                    }
                    written.push(p as u32);
                    let end = (at + PAGE).min(size as usize);
                    if rng.random_range(0..5) == 0 {
                        cur[at..end].fill(0);
                    } else {
                        let v: u8 = rng.random_range(1..=255);
                        let n = rng.random_range(1..=end - at);
                        cur[at..at + n].fill(v);
                    }
                }
                let mut c = Commit::new();
                if rng.random_range(0..2) == 0 {
                    c.write_block(id, b as u64, cur[b * BS..(b + 1) * BS].to_vec());
                } else {
                    // Only the written pages (and an unwritten one), as the pager reports them.
                    written.push(rng.random_range(0..BS / PAGE) as u32);
                    let content = cur[b * BS..(b + 1) * BS].to_vec();
                    c.write_pages_from(
                        id,
                        b as u64,
                        written,
                        move |pages: &[u32], buf: &mut [u8]| -> Result<(), BoxError> {
                            for p in pages {
                                let r = *p as usize * PAGE..(*p as usize + 1) * PAGE;
                                buf[r.clone()].copy_from_slice(&content[r]);
                            }
                            Ok(())
                        },
                    );
                }
                let t = store.commit(head, c).unwrap();
                model.snapshots.insert(t, cur.clone());
            }
            // A whole block rewritten.
            55..=64 => {
                let b = rng.random_range(0..NBLK);
                if (b * BS) as u64 >= size {
                    continue;
                }
                let v: u8 = rng.random_range(0..=255);
                let end = ((b + 1) * BS).min(size as usize);
                cur[b * BS..end].fill(v);
                let mut c = Commit::new();
                c.write_block(id, b as u64, cur[b * BS..(b + 1) * BS].to_vec());
                let t = store.commit(head, c).unwrap();
                model.snapshots.insert(t, cur.clone());
            }
            // Shrink or grow (growth re-exposes zeros), sometimes with another codec: stored
            // versions switch between raw (rewritten in place) and compressed.
            65..=74 => {
                if rng.random_range(0..2) == 0 {
                    codec = codecs[rng.random_range(0..codecs.len())];
                }
                let new = rng.random_range(0..=full);
                if new < size {
                    cur[new as usize..].fill(0);
                }
                size = new;
                let mut c = Commit::new();
                c.put_array(id, name.clone(), meta(size, codec));
                let t = store.commit(head, c).unwrap();
                model.snapshots.insert(t, cur.clone());
            }
            // A commit from an old snapshot touching a block changed since: rejected, no trace.
            75..=82 => {
                let changed = store.changes(horizon.max(t0), head).unwrap();
                if let Some(&(_, b)) = changed.blocks.first() {
                    let base = model.snapshots.range(horizon.max(t0)..).next().map(|(t, _)| *t).unwrap();
                    let ch = store.changes(base, head).unwrap();
                    if ch.blocks.iter().any(|(_, x)| *x == b) && base < head {
                        let mut c = Commit::new();
                        c.write_block(id, b, vec![0xEE; BS]);
                        let r = store.commit(base, c);
                        assert!(matches!(r, Err(Error::Conflict(_)) | Err(Error::Invalid(_))), "seed {seed}: {r:?}");
                        assert_eq!(store.head().unwrap(), head);
                    }
                }
            }
            // Garbage collection somewhere in the kept history.
            83..=88 => {
                let tids: Vec<u64> = model.snapshots.keys().copied().filter(|t| *t >= horizon).collect();
                let keep = tids[rng.random_range(0..tids.len())];
                store.gc(keep).unwrap();
                horizon = keep;
                model.snapshots = model.snapshots.split_off(&keep);
            }
            // Reopen, as another process would.
            89..=93 => store = f.reopen(),
            // Check a few random kept snapshots.
            _ => {
                let tids: Vec<u64> = model.snapshots.keys().copied().collect();
                for _ in 0..3 {
                    let t = tids[rng.random_range(0..tids.len())];
                    check_snapshot(&*store, id, t, &model.snapshots[&t], seed);
                }
            }
        }
    }
    // Every kept snapshot reads exactly as the model says; older ones are gone, not wrong.
    let store = f.reopen();
    for (t, want) in &model.snapshots {
        check_snapshot(&*store, id, *t, want, seed);
    }
    if horizon > t0 {
        let mut buf = vec![0u8; BS];
        assert!(matches!(store.load(id, 0, horizon - 1, &mut buf), Err(Error::SnapshotGone { .. })));
    }
    let st = store.stats().unwrap();
    assert!(st.block_versions > 0);
    f.assert_no_leaked_payloads();
}

fn random_histories_match_the_model(f: &Fixture) {
    for seed in 0..4 {
        run(f, seed, 150);
    }
}

/// A new uncompressed array of `nbytes` named `name`, with `block0` written: (id, tid).
fn array_with_block0(s: &dyn Store, name: &str, nbytes: u64, block0: &[u8]) -> (ArrayId, u64) {
    let id = ArrayId::random();
    let mut c = Commit::new();
    c.put_array(id, name, meta(nbytes, Codec::None));
    c.write_block(id, 0, block0.to_vec());
    (id, s.commit(s.head().unwrap(), c).unwrap())
}

fn small_writes_store_only_changed_pages(f: &Fixture) {
    let s = &*f.store;
    let mut content = vec![3u8; BS];
    let (id, mut t) = array_with_block0(s, "d", (NBLK * BS) as u64, &content);
    let before = s.stats().unwrap().stored_bytes;
    // 20 one-page writes: each stores about one page of history, not a block (plus, on SQLite,
    // pending patches: at most a quarter of the block until a commit merges them).
    for i in 0..20u32 {
        content[(i as usize % 16) * PAGE] = i as u8;
        let mut c = Commit::new();
        c.write_block(id, 0, content.clone());
        t = s.commit(t, c).unwrap();
    }
    let grown = s.stats().unwrap().stored_bytes - before;
    assert!(grown < 20 * (PAGE as u64 + 64) + BS as u64 / 4, "20 page writes stored {grown} bytes");
    let mut buf = vec![0u8; BS];
    f.reopen().load(id, 0, t, &mut buf).unwrap();
    assert_eq!(buf, content);
    // Appending to a partly filled block writes only the new pages, in place; history keeps
    // only the old part of the page where the content ended. The block's stored room grows by
    // doubling (to at most the block), so the current content costs at most twice its size (or
    // one block) however small the appends.
    let mut c = Commit::new();
    let mut part = vec![0u8; BS];
    part[..3 * PAGE].fill(1);
    c.write_block(id, 1, part.clone());
    t = s.commit(t, c).unwrap();
    let before = s.stats().unwrap().stored_bytes - 3 * PAGE as u64;
    let mut len = 3 * PAGE;
    for i in 0..40u8 {
        part[len..len + 700].fill(i + 2);
        len += 700;
        let mut c = Commit::new();
        c.write_block(id, 1, part.clone());
        t = s.commit(t, c).unwrap();
        f.reopen().load(id, 1, t, &mut buf).unwrap();
        assert_eq!(buf, part, "append {i}");
    }
    let grown = s.stats().unwrap().stored_bytes - before;
    let history: u64 = (0..40).map(|i| ((3 * PAGE + 700 * i) % PAGE) as u64 + 16).sum();
    assert!(grown <= (2 * len as u64).max(BS as u64) + history, "{len} bytes of content stored in {grown}");
}

fn history_costs_the_changed_pages(f: &Fixture) {
    let s = &*f.store;
    let mut content = vec![1u8; BS];
    let (id, mut t) = array_with_block0(s, "d", BS as u64, &content);
    let first = t;
    // Many single-page writes: the block is stored once, plus one page of history per write.
    for i in 0..100u32 {
        content[(i as usize % 16) * PAGE + 1] = (i + 100) as u8;
        let mut c = Commit::new();
        c.write_block(id, 0, content.clone());
        t = s.commit(t, c).unwrap();
    }
    let st = s.stats().unwrap();
    assert_eq!(st.block_versions, 101);
    let (b, p) = (BS as u64, PAGE as u64);
    assert!(st.stored_bytes >= b + 100 * p && st.stored_bytes <= b + 100 * (p + 16), "{st:?}");
    let mut buf = vec![0u8; BS];
    s.load(id, 0, t, &mut buf).unwrap();
    assert_eq!(buf, content);
    s.load(id, 0, first, &mut buf).unwrap();
    assert_eq!(buf, vec![1u8; BS], "the oldest snapshot undoes all 100 writes");
    // gc keeps the history kept snapshots need, and drops the rest.
    let gc = s.gc(t - 10).unwrap();
    assert_eq!(gc.block_versions, 91);
    s.load(id, 0, t - 10, &mut buf).unwrap();
    assert_eq!(buf[9 * PAGE + 1], 189, "page 9 was last written by write 89");
    assert_eq!(buf[10 * PAGE + 1], 174, "page 10 was last written by write 74");
    assert!(s.stats().unwrap().stored_bytes <= b + 10 * (p + 16));
}

fn history_reads_are_bounded_by_full_records(f: &Fixture) {
    let s = &*f.store;
    let mut content = vec![1u8; BS];
    let (id, mut t) = array_with_block0(s, "b", BS as u64, &content);
    let mut snaps = vec![(t, content.clone())];
    // One-page writes: history keeps one page each, plus the whole block after every 256 of
    // them (4 x 256 KiB of page records for this 64 KiB block), so reading any old snapshot
    // fetches at most about 1 MiB of history.
    for i in 0..600u32 {
        let at = (i as usize * 7 % 16) * PAGE + (i as usize % 100);
        content[at] = content[at].wrapping_add(1) | 2;
        let mut c = Commit::new();
        c.write_block(id, 0, content.clone());
        t = s.commit(t, c).unwrap();
        snaps.push((t, content.clone()));
    }
    let st = s.stats().unwrap();
    let (b, p) = (BS as u64, PAGE as u64);
    assert!(st.stored_bytes >= b + 598 * p + 2 * b && st.stored_bytes <= b + 600 * (p + 16) + 2 * b, "{st:?}");
    let r = f.reopen();
    let mut buf = vec![0u8; BS];
    for (t, want) in snaps.iter().step_by(7).chain(snaps.last()) {
        r.load(id, 0, *t, &mut buf).unwrap();
        assert!(buf == *want, "snapshot {t}");
    }
}

fn damaged_history_is_detected(f: &Fixture) {
    let s = &*f.store;
    let id = ArrayId::random();
    let mut c = Commit::new();
    c.put_array(id, "h", meta(BS as u64, Codec::None));
    let t0 = s.commit(0, c).unwrap();
    let mut tids = vec![];
    let mut t = t0;
    for i in 1..=3u8 {
        let mut c = Commit::new();
        c.write_block(id, 0, vec![i; BS / 2]);
        t = s.commit(t, c).unwrap();
        tids.push(t);
    }
    let sql = |stmt: &str| {
        if f.backend == "sqlite" {
            rusqlite::Connection::open(&f.url).unwrap().execute(stmt, []).unwrap()
        } else {
            let mut c = ::postgres::Client::connect(&f.url, ::postgres::NoTls).unwrap();
            c.execute(stmt, &[]).unwrap() as usize
        }
    };
    let mut buf = vec![0u8; BS];
    // A flipped byte in an undo record: reads that need it fail, naming the commit.
    let n = sql(&format!("UPDATE outcore_undo SET len = len - 1 WHERE tid = {}", tids[2]));
    assert_eq!(n, 1);
    let r = f.reopen();
    r.load(id, 0, tids[2], &mut buf).unwrap();
    assert_eq!(buf[0], 3, "the head does not need history");
    match r.load(id, 0, tids[1], &mut buf) {
        Err(e @ Error::Corrupt { .. }) => assert!(e.to_string().contains(&format!("tid {}", tids[2])), "{e}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A missing record: an error, not an older or newer version.
    sql(&format!("UPDATE outcore_undo SET len = len + 1 WHERE tid = {}", tids[2]));
    r.load(id, 0, tids[0], &mut buf).unwrap();
    assert_eq!(buf[..BS / 2], vec![1u8; BS / 2][..]);
    assert_eq!(sql(&format!("DELETE FROM outcore_undo WHERE tid = {}", tids[1])), 1);
    assert!(matches!(r.load(id, 0, tids[0], &mut buf), Err(Error::Corrupt { .. })));
    r.load(id, 0, tids[1], &mut buf).unwrap();
    assert_eq!(buf[0], 2);
}

backends!(
    random_histories_match_the_model,
    small_writes_store_only_changed_pages,
    history_costs_the_changed_pages,
    history_reads_are_bounded_by_full_records,
    damaged_history_is_detected
);
