//! Two processes on one database: data written by one is read back by a fresh process, and
//! conflicts and disjoint writes between processes behave as between connections.
//!
//! The child process is this test binary re-executed on the ignored `child_entry` test, with
//! its task in environment variables.

mod common;

use common::Fixture;
use outcore::{ArraySpec, Connection, Db};

const URL: &str = "OUTCORE_CHILD_URL";
const TASK: &str = "OUTCORE_CHILD_TASK";

fn value(i: usize, j: usize) -> f64 {
    (i * 1000 + j) as f64
}

/// Runs `task` in a child process on the database of `f`; panics if it fails.
fn child(f: &Fixture, task: &str) {
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args(["--ignored", "--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(URL, &f.url)
        .env(TASK, task)
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child task {task} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "child process entry point of the multi-process tests"]
fn child_entry() {
    let (Ok(url), Ok(task)) = (std::env::var(URL), std::env::var(TASK)) else { return };
    let db = Db::open(&url, common::options()).expect("open");
    let conn = db.connect().expect("connect");
    let a = conn.open("a").expect("open a");
    match task.as_str() {
        "verify" => {
            assert_eq!(a.shape().expect("shape"), vec![100, 50]);
            let g = a.as_array_view::<f64>().expect("view");
            assert!(g.view().indexed_iter().all(|(ix, v)| *v == value(ix[0], ix[1])));
        }
        "row0" => {
            a.slice_view_mut::<f64>(&[0..1, 0..50]).expect("view").view_mut().fill(42.0);
            conn.commit().expect("commit");
        }
        "row99" => {
            a.slice_view_mut::<f64>(&[99..100, 0..50]).expect("view").view_mut().fill(99.0);
            conn.commit().expect("commit");
        }
        other => panic!("unknown task {other}"),
    }
}

fn fill(conn: &Connection) {
    let a = conn.create("a", ArraySpec::of::<f64>([100, 50])).expect("create");
    let mut g = a.as_array_view_mut::<f64>().expect("view");
    g.view_mut().indexed_iter_mut().for_each(|(ix, v)| *v = value(ix[0], ix[1]));
    conn.commit().expect("commit");
}

fn row(conn: &Connection, i: u64) -> Vec<f64> {
    let g = conn.open("a").expect("open").slice_view::<f64>(&[i..i + 1, 0..50]).expect("view");
    g.view().iter().copied().collect()
}

fn written_data_reads_back_in_a_new_process(f: &Fixture) {
    fill(&f.db.connect().expect("connect"));
    child(f, "verify");
}

fn conflict_and_disjoint_writes_between_processes(f: &Fixture) {
    let conn = f.db.connect().expect("connect");
    fill(&conn);
    // Same block: the child commits first, this process loses.
    conn.open("a").expect("open").slice_view_mut::<f64>(&[1..2, 0..50]).expect("view").view_mut().fill(1.0);
    child(f, "row0");
    let e = conn.commit().expect_err("conflict");
    assert!(e.is_conflict(), "{e}");
    conn.abort().expect("abort");
    assert_eq!(row(&conn, 0), vec![42.0; 50]);
    assert_eq!(row(&conn, 1)[3], value(1, 3));
    // Different blocks: both commit.
    conn.open("a").expect("open").slice_view_mut::<f64>(&[1..2, 0..50]).expect("view").view_mut().fill(1.0);
    child(f, "row99");
    conn.commit().expect("commit");
    assert_eq!(row(&conn, 99), vec![99.0; 50]);
    assert_eq!(row(&conn, 1), vec![1.0; 50]);
    assert_eq!(row(&conn, 0), vec![42.0; 50]);
}

backends!(written_data_reads_back_in_a_new_process, conflict_and_disjoint_writes_between_processes);
