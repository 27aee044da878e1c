//! outcore-pager: memory that looks like a plain array to any code but is filled block by block
//! from a `BlockSource` on first touch, records exactly which pages were written, and stays within
//! a memory budget. It knows nothing of SQL or arrays.
//!
//! (Being built: see issue 3.)
