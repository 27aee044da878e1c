//! A tour of the core API: create an array, write through an `ndarray` view, commit, append,
//! read it back in a second connection, abort a change, and read an old snapshot.
//!
//! Run with `cargo run -p outcore --example basic [PATH-OR-URL]` (default: a temporary SQLite
//! file).

use outcore::{ArraySpec, CommitInfo, Db, DbOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let default = dir.path().join("basic.outcore");
    let url = std::env::args().nth(1).unwrap_or_else(|| default.to_string_lossy().into_owned());
    let db = Db::open(&url, DbOptions::default().cache_budget(64 << 20))?;
    let conn = db.connect()?;
    let name = format!("temperature-{}", std::process::id());

    // 1000 x 24 hourly values, C order, in 64 KiB blocks.
    let a = conn.create(&name, ArraySpec::of::<f64>([1000, 24]).blksize(64 << 10))?;
    {
        let mut g = a.as_array_view_mut::<f64>()?;
        let mut v = g.view_mut();
        for ((day, hour), x) in v.indexed_iter_mut().map(|(ix, x)| ((ix[0], ix[1]), x)) {
            *x = 15.0 + (day % 365) as f64 / 36.5 + hour as f64 / 4.0;
        }
    }
    let t1 = conn.commit_with(CommitInfo::new("first 1000 days").user("example"))?;
    println!("committed tid {t1}: {} bytes in {:?}", a.nbytes()?, a.shape()?);

    // Append one more day (O(delta): only the last block is touched).
    a.append(&[20.0f64; 24])?;
    conn.commit()?;

    // A second connection sees the committed state.
    let other = db.connect()?;
    let b = other.open(&name)?;
    let g = b.as_array_view::<f64>()?;
    let mean = g.view().mean().unwrap_or(f64::NAN);
    println!("second connection: shape {:?}, mean {mean:.3}", b.shape()?);

    // Abort reverts data and shape in every view.
    a.resize(&[10, 24])?;
    conn.abort()?;
    println!("after abort: shape {:?}", a.shape()?);

    // Time travel: the snapshot before the append.
    let old = db.connect_at(t1)?;
    println!("at tid {t1}: shape {:?} (read-only: {})", old.open(&name)?.shape()?, old.is_read_only());

    // Clean up (the example may run on a shared database).
    conn.delete(&name)?;
    conn.commit()?;
    Ok(())
}
