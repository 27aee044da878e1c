//! Store failures around transaction boundaries, injected by a wrapping store: a commit that
//! is durable but whose move to the new snapshot fails must not be reported as failed, must
//! leave the connection refusing work (never reading a mix of snapshots), and `abort` must
//! recover it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use outcore::store::{ArrayId, ArrayInfo, Changes, Commit, GcStats, Store, StoreStats, Subscription, Tid, TxnInfo};
use outcore::{ArraySpec, Db, Error};

/// Forwards to a real store; `changes` fails while `fail_changes` is set.
#[derive(Debug)]
struct Flaky {
    inner: Arc<dyn Store>,
    fail_changes: AtomicBool,
}

type R<T> = outcore::store::Result<T>;

fn injected() -> outcore::store::Error {
    outcore::store::Error::Invalid("injected failure".into())
}

impl Store for Flaky {
    fn location(&self) -> &str {
        self.inner.location()
    }
    fn format_version(&self) -> u32 {
        self.inner.format_version()
    }
    fn head(&self) -> R<Tid> {
        self.inner.head()
    }
    fn gc_horizon(&self) -> R<Tid> {
        self.inner.gc_horizon()
    }
    fn arrays(&self, at: Tid) -> R<Vec<ArrayInfo>> {
        self.inner.arrays(at)
    }
    fn array(&self, name: &str, at: Tid) -> R<Option<ArrayInfo>> {
        self.inner.array(name, at)
    }
    fn array_by_id(&self, id: ArrayId, at: Tid) -> R<Option<ArrayInfo>> {
        self.inner.array_by_id(id, at)
    }
    fn load(&self, array: ArrayId, blk: u64, at: Tid, buf: &mut [u8]) -> R<()> {
        self.inner.load(array, blk, at, buf)
    }
    fn commit(&self, base: Tid, commit: Commit) -> R<Tid> {
        self.inner.commit(base, commit)
    }
    fn changes(&self, after: Tid, upto: Tid) -> R<Changes> {
        if self.fail_changes.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.changes(after, upto)
    }
    fn history(&self, after: Tid, upto: Tid) -> R<Vec<TxnInfo>> {
        self.inner.history(after, upto)
    }
    fn tid_at(&self, time: SystemTime) -> R<Tid> {
        self.inner.tid_at(time)
    }
    fn gc(&self, keep_after: Tid) -> R<GcStats> {
        self.inner.gc(keep_after)
    }
    fn stats(&self) -> R<StoreStats> {
        self.inner.stats()
    }
    fn subscribe(&self) -> R<Box<dyn Subscription>> {
        self.inner.subscribe()
    }
}

#[test]
fn failed_move_after_a_durable_commit() {
    let f = common::sqlite();
    let flaky = Arc::new(Flaky { inner: f.db.store().clone(), fail_changes: AtomicBool::new(false) });
    let db = Db::with_store(flaky.clone(), common::options()).expect("db");
    let conn = db.connect().expect("connect");
    let a = conn.create("a", ArraySpec::of::<u32>([10_000])).expect("create");
    a.as_array_view_mut::<u32>().expect("view").view_mut().fill(7);
    conn.commit().expect("commit");

    // Another connection commits, then this one commits while `changes` fails.
    let other = f.db.connect().expect("connect");
    other
        .open("a")
        .expect("open")
        .slice_view_mut::<u32>(std::slice::from_ref(&(9000..10_000)))
        .expect("view")
        .view_mut()
        .fill(9);
    other.commit().expect("commit other");
    a.slice_view_mut::<u32>(std::slice::from_ref(&(0..10))).expect("view").view_mut().fill(1);
    flaky.fail_changes.store(true, Ordering::SeqCst);
    let tid = conn.commit().expect("the commit itself succeeds");
    assert_eq!(f.db.head().expect("head"), tid);
    let e = a.shape().expect_err("stale");
    assert!(matches!(e, Error::Stale(_)) && e.to_string().contains("injected failure"), "{e}");
    assert!(conn.abort().is_err(), "still failing");
    flaky.fail_changes.store(false, Ordering::SeqCst);
    conn.abort().expect("abort recovers");
    assert_eq!(conn.tid(), tid);
    let g = a.as_array_view::<u32>().expect("view");
    let v = g.view();
    assert_eq!((v[[0]], v[[10]], v[[9999]]), (1, 7, 9));
}
