//! The local store's files beside its SQLite metadata: the data file of block extents and the
//! reader registry.

pub(crate) mod datafile;
pub(crate) mod registry;
pub(crate) mod staged;

use std::path::{Path, PathBuf};

/// `<store>.blocks`: the data file.
pub(crate) fn data_path(store: &Path) -> PathBuf {
    sibling(store, ".blocks")
}

/// `<store>.readers`: the reader registry.
pub(crate) fn readers_path(store: &Path) -> PathBuf {
    sibling(store, ".readers")
}

fn sibling(store: &Path, suffix: &str) -> PathBuf {
    let mut s = store.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}
