//! Open modes, read-only databases, close, attributes, fill values and groups on every backend.

mod common;

use common::{options, Fixture};
use outcore::{ArraySpec, Db, Error, OpenMode};

fn attrs(json: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    json.as_object().cloned().unwrap_or_default()
}

fn read_only_databases_follow_commits_and_refuse_changes(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    let a = conn.create("a", ArraySpec::of::<f64>([4])).expect("create");
    a.as_array_view_mut::<f64>().expect("view").view_mut().fill(1.0);
    conn.commit().expect("commit");

    let ro = Db::open(&f.url, options().mode(OpenMode::Read)).expect("open r");
    assert!(ro.is_read_only());
    let rc = ro.connect().expect("connect");
    assert!(rc.is_read_only() && !rc.is_historical());
    let ra = rc.open("a").expect("open");
    assert_eq!(ra.as_array_view::<f64>().expect("view").view()[[3]], 1.0);
    for r in [
        ra.as_array_view_mut::<f64>().map(|_| ()),
        ra.resize(&[5]),
        ra.set_attrs(attrs(serde_json::json!({"x": 1}))),
        rc.create("b", ArraySpec::of::<u8>([1])).map(|_| ()),
        rc.delete("a"),
        rc.commit().map(|_| ()),
    ] {
        match r {
            Err(e @ Error::ReadOnly { historical: false, .. }) => assert!(e.to_string().contains("mode 'r'"), "{e}"),
            other => panic!("expected a read-only error, got {other:?}"),
        }
    }
    // Others' commits show at the next boundary.
    a.as_array_view_mut::<f64>().expect("view").view_mut().fill(2.0);
    conn.commit().expect("commit");
    assert_eq!(ra.as_array_view::<f64>().expect("view").view()[[0]], 1.0);
    rc.sync().expect("sync");
    assert_eq!(ra.as_array_view::<f64>().expect("view").view()[[0]], 2.0);
}

fn modes_for_existing_and_missing_databases(f: &Fixture) {
    // The fixture's database exists but has no commit yet.
    if f.backend == "postgresql" {
        assert!(matches!(Db::open(&f.url, options().mode(OpenMode::Read)), Err(Error::NotFound(_))));
    }
    let conn = f.db.connect().expect("connect");
    conn.create("a", ArraySpec::of::<u8>([1])).expect("create");
    conn.create("g/b", ArraySpec::of::<u8>([1])).expect("create");
    conn.commit().expect("commit");
    assert!(matches!(Db::open(&f.url, options().mode(OpenMode::Create)), Err(Error::StoreExists(_))));
    Db::open(&f.url, options().mode(OpenMode::ReadWrite)).expect("r+");
    let w = Db::open(&f.url, options().mode(OpenMode::Truncate)).expect("w");
    assert!(w.connect().expect("connect").list().expect("list").is_empty());
    assert!(f.reopen().connect().expect("connect").list().expect("list").is_empty());
    for (s, m) in [("r", OpenMode::Read), ("r+", OpenMode::ReadWrite), ("a", OpenMode::Append)] {
        assert_eq!(OpenMode::parse(s).expect("mode"), m);
    }
    assert_eq!(OpenMode::parse("x").expect("x"), OpenMode::Create);
    assert!(OpenMode::parse("rw").is_err());
}

fn close_discards_and_keeps_views_readable(f: &Fixture) {
    let db = f.reopen();
    let conn = db.connect().expect("connect");
    let a = conn.create("a", ArraySpec::of::<i64>([8])).expect("create");
    a.as_array_view_mut::<i64>().expect("view").view_mut().fill(3);
    conn.commit().expect("commit");
    let view = a.as_array_view::<i64>().expect("view");
    a.as_array_view_mut::<i64>().expect("view").view_mut()[[0]] = 9;
    let other = db.connect().expect("connect");
    db.close();
    assert!(db.is_closed() && conn.is_closed() && other.is_closed());
    assert!(matches!(db.connect(), Err(Error::Closed)));
    assert!(matches!(a.shape(), Err(Error::Closed)));
    assert!(matches!(conn.commit(), Err(Error::Closed)));
    conn.abort().expect("abort of a closed connection does nothing");
    // The uncommitted write was discarded; the committed bytes stay readable.
    assert_eq!(view.view().iter().copied().collect::<Vec<i64>>(), vec![3i64; 8]);
    drop(view);
    assert!(!a.has_written().expect("written"));
    let again = f.reopen().connect().expect("connect");
    assert_eq!(again.open("a").expect("a").as_array_view::<i64>().expect("view").view()[[0]], 3);
}

fn attributes_are_transactional_and_versioned(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    let spec = ArraySpec::of::<f32>([2, 3]).attrs(attrs(serde_json::json!({"units": "K"})));
    let a = conn.create("t", spec).expect("create");
    let t1 = conn.commit().expect("commit");
    a.set_attrs(attrs(serde_json::json!({"units": "C", "_ARRAY_DIMENSIONS": ["y", "x"]}))).expect("set");
    let other = f.reopen().connect().expect("connect");
    assert_eq!(other.open("t").expect("t").attrs().expect("attrs")["units"], "K");
    conn.abort().expect("abort");
    assert_eq!(a.attrs().expect("attrs")["units"], "K");
    a.set_attrs(attrs(serde_json::json!({"units": "C"}))).expect("set");
    assert!(conn.has_changes().expect("changes"));
    conn.commit().expect("commit");
    other.sync().expect("sync");
    assert_eq!(other.open("t").expect("t").attrs().expect("attrs")["units"], "C");
    let old = f.db.connect_at(t1).expect("at");
    assert_eq!(old.open("t").expect("t").attrs().expect("attrs")["units"], "K");
    assert_eq!(a.chunks().expect("chunks"), vec![2, 3]);
    assert_eq!(a.fill().expect("fill"), None);
}

/// Fill values are metadata (more in `fill.rs`): zeros are recorded as no fill value.
fn fill_values_are_metadata(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    let a = conn.create("z", ArraySpec::of::<f64>([4]).fill(vec![0; 8])).expect("zero fill");
    assert_eq!(a.fill().expect("fill"), None);
    let nan = f64::NAN.to_le_bytes().to_vec();
    let n = conn.create("n", ArraySpec::of::<f64>([4]).fill(nan.clone())).expect("nan fill");
    assert!(n.as_array_view::<f64>().expect("view").view().iter().all(|v| v.is_nan()));
    conn.commit().expect("commit");
    assert_eq!(f.reopen().connect().expect("connect").open("n").expect("open").fill().expect("fill"), Some(nan));
    assert!(matches!(conn.create("w", ArraySpec::of::<f64>([4]).fill(vec![0; 3])), Err(Error::InvalidArgument(_))));
}

fn groups_are_name_paths(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    let u8s = || ArraySpec::of::<u8>([1]);
    conn.create("a/b/x", u8s()).expect("create");
    conn.create("a/y", u8s()).expect("create");
    conn.create("top", u8s()).expect("create");
    conn.commit().expect("commit");
    conn.create("a/c/z", u8s()).expect("create");
    assert_eq!(conn.members("").expect("root"), (vec!["top".to_string()], vec!["a".to_string()]));
    assert_eq!(conn.members("a").expect("a"), (vec!["y".to_string()], vec!["b".to_string(), "c".to_string()]));
    assert_eq!(conn.members("a/b/").expect("a/b"), (vec!["x".to_string()], vec![]));
    assert!(matches!(conn.members("nope"), Err(Error::NoSuchArray(_))));
    // A name is an array or a group, never both.
    assert!(matches!(conn.create("a", u8s()), Err(Error::AlreadyExists(_))));
    assert!(matches!(conn.create("top/x", u8s()), Err(Error::AlreadyExists(_))));
    assert!(matches!(conn.rename("top", "a/b"), Err(Error::AlreadyExists(_))));
    for bad in ["/x", "x/", "a//b", "a/./b", "a/../b", ""] {
        assert!(matches!(conn.create(bad, u8s()), Err(Error::InvalidArgument(_))), "{bad}");
    }
}

backends!(
    read_only_databases_follow_commits_and_refuse_changes,
    modes_for_existing_and_missing_databases,
    close_discards_and_keeps_views_readable,
    attributes_are_transactional_and_versioned,
    fill_values_are_metadata,
    groups_are_name_paths,
);

#[test]
fn local_modes_name_missing_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.outcore");
    let url = path.to_str().expect("utf8");
    match Db::open(url, options().mode(OpenMode::Read)) {
        Err(Error::NotFound(m)) => assert!(m.contains(url), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(!path.exists());
    let deep = dir.path().join("no/such/x.outcore");
    match Db::open(deep.to_str().expect("utf8"), options()) {
        Err(Error::NotFound(m)) => assert!(m.contains("no/such does not exist"), "{m}"),
        other => panic!("{other:?}"),
    }
    Db::open(url, options().mode(OpenMode::Create)).expect("w- creates");
    assert!(matches!(Db::open(url, options().mode(OpenMode::Create)), Err(Error::StoreExists(_))));
}
