//! outcore-store (being built)
