//! outcore: out-of-core, persistent, transactional N-dimensional arrays.
//!
//! Ties [`outcore_store`] (durable versioned blocks) and [`outcore_pager`] (lazy, write-tracked
//! memory) into databases, connections and arrays. (Being built: see issue 4.)

pub use outcore_pager as pager;
pub use outcore_store as store;
