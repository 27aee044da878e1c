//! Pager benchmarks (placeholder).

fn main() {}
