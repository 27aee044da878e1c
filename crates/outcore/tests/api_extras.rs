//! Connection API beyond the basics, on every backend: `has_changes`, `open_by_id`.

mod common;

use common::Fixture;
use outcore::{ArrayId, ArraySpec, Connection, Error};

fn history_len(f: &Fixture) -> usize {
    let head = f.db.head().expect("head");
    f.db.store().history(0, head).expect("history").len()
}

/// Writes `v` at element `i` of the f64 array `a`.
fn set(a: &outcore::Array, i: usize, v: f64) {
    a.as_array_view_mut::<f64>().expect("view").view_mut()[[i]] = v;
}

fn clean(conn: &Connection) -> bool {
    !conn.has_changes().expect("has_changes")
}

fn has_changes_follows_the_transaction(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    assert!(clean(&conn), "{}: a new connection", f.backend);
    let a = conn.create("a", ArraySpec::of::<f64>([5000])).expect("create");
    assert!(!clean(&conn), "create");
    conn.commit().expect("commit");
    assert!(clean(&conn), "after commit");
    let commits = history_len(f);

    // Reading (loading blocks) changes nothing; a commit then records no transaction.
    let sum: f64 = a.as_array_view::<f64>().expect("view").view().sum();
    assert_eq!(sum, 0.0);
    assert!(clean(&conn), "after reading");
    conn.commit().expect("empty commit");
    assert_eq!(history_len(f), commits, "an empty commit records nothing");

    // Data written through a view.
    set(&a, 4000, 1.5);
    assert!(!clean(&conn), "after a write");
    assert!(matches!(conn.sync(), Err(Error::Uncommitted { .. })));
    conn.commit().expect("commit");
    assert!(clean(&conn));
    assert_eq!(history_len(f), commits + 1);
    set(&a, 0, 2.5);
    conn.abort().expect("abort");
    assert!(clean(&conn), "after abort");

    // Metadata: resize, append, rename, delete; a creation deleted again is no change.
    a.resize(&[6000]).expect("resize");
    assert!(!clean(&conn), "resize");
    conn.abort().expect("abort");
    a.append(&[1.0f64]).expect("append");
    assert!(!clean(&conn), "append");
    conn.abort().expect("abort");
    conn.rename("a", "b").expect("rename");
    assert!(!clean(&conn), "rename");
    conn.abort().expect("abort");
    conn.delete("a").expect("delete");
    assert!(!clean(&conn), "delete");
    conn.abort().expect("abort");
    conn.create("tmp", ArraySpec::of::<u8>([10])).expect("create tmp");
    conn.delete("tmp").expect("delete tmp");
    assert!(clean(&conn), "created and deleted again");

    // Savepoints: rolling back to a clean state leaves nothing to commit.
    let sp = conn.savepoint().expect("savepoint");
    set(&a, 1, 1.0);
    a.resize(&[10]).expect("shrink");
    assert!(!clean(&conn));
    sp.rollback().expect("rollback");
    assert!(clean(&conn), "rolled back to a clean savepoint");

    // After a lost conflict the changes are still there until abort.
    let rival = f.db.connect().expect("connect rival");
    set(&rival.open("a").expect("open"), 0, 7.0);
    set(&a, 1, 8.0);
    rival.commit().expect("rival commit");
    assert!(conn.commit().expect_err("conflict").is_conflict());
    assert!(!clean(&conn), "after a lost conflict");
    conn.abort().expect("abort");
    assert!(clean(&conn));

    // A historical connection never has changes.
    let old = f.db.connect_at(f.db.head().expect("head") - 1).expect("connect_at");
    let _ = old.open("a").expect("open").as_array_view::<f64>().expect("view").view().sum();
    assert!(clean(&old));
}

fn get(a: &outcore::Array, i: usize) -> f64 {
    let v = a.as_array_view::<f64>().expect("view").view()[[i]];
    v
}

fn no_such(conn: &Connection, id: ArrayId) -> bool {
    matches!(conn.open_by_id(id), Err(Error::NoSuchArray(s)) if s == id.to_string())
}

fn open_by_id_survives_renames(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    let a = conn.create("a", ArraySpec::of::<f64>([3000])).expect("create");
    let id = a.id();
    set(&a, 2999, 4.5);
    // Its own connection finds a new array; others do not, until it is committed.
    assert_eq!(get(&conn.open_by_id(id).expect("open new"), 2999), 4.5, "{}", f.backend);
    let other = f.db.connect().expect("connect");
    assert!(no_such(&other, id));
    let before = conn.commit().expect("commit");
    other.sync().expect("sync");
    let b = other.open_by_id(id).expect("open committed");
    assert_eq!((b.name().expect("name"), get(&b, 2999)), ("a".to_string(), 4.5));

    // Renamed in the transaction, then committed: found by id all along, under the new name.
    conn.rename("a", "renamed").expect("rename");
    let r = conn.open_by_id(id).expect("open renamed");
    assert_eq!(r.name().expect("name"), "renamed");
    set(&r, 0, 1.0);
    assert_eq!(get(&a, 0), 1.0, "handles by id and by name share memory");
    conn.commit().expect("commit");
    other.sync().expect("sync");
    assert_eq!(b.name().expect("name"), "renamed");
    let fresh = f.db.connect().expect("connect");
    let c = fresh.open_by_id(id).expect("open after rename");
    assert_eq!((c.name().expect("name"), get(&c, 0), get(&c, 2999)), ("renamed".to_string(), 1.0, 4.5));
    // A historical connection sees the name of its time.
    let old = f.db.connect_at(before).expect("connect_at");
    assert_eq!(old.open_by_id(id).expect("open old").name().expect("name"), "a");

    // Deleted (in the transaction, then committed), or never there: no such array.
    conn.delete("renamed").expect("delete");
    assert!(no_such(&conn, id));
    conn.abort().expect("abort");
    assert!(conn.open_by_id(id).is_ok());
    conn.delete("renamed").expect("delete");
    conn.commit().expect("commit");
    let after = f.db.connect().expect("connect");
    assert!(no_such(&after, id));
    assert!(no_such(&after, ArrayId(id.0 ^ 1)));
}

backends!(has_changes_follows_the_transaction, open_by_id_survives_renames);
