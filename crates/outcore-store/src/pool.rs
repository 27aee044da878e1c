//! A tiny pool of database connections, so loads can run in parallel from many threads.

use parking_lot::Mutex;
use std::ops::{Deref, DerefMut};

/// Idle connections, created on demand by the owner and returned on guard drop.
pub(crate) struct Pool<C> {
    idle: Mutex<Vec<C>>,
    max_idle: usize,
}

impl<C> Pool<C> {
    pub fn new(max_idle: usize) -> Self {
        Pool { idle: Mutex::new(Vec::new()), max_idle }
    }

    /// Take an idle connection or make a new one with `make`.
    pub fn get<E>(&self, make: impl FnOnce() -> Result<C, E>) -> Result<Pooled<'_, C>, E> {
        let idle = self.idle.lock().pop();
        let conn = match idle {
            Some(c) => c,
            None => make()?,
        };
        Ok(Pooled { pool: self, conn: Some(conn) })
    }
}

/// A connection borrowed from a [`Pool`]; returned on drop (dropped if the pool is full or the
/// connection was marked broken).
pub(crate) struct Pooled<'a, C> {
    pool: &'a Pool<C>,
    conn: Option<C>,
}

impl<C> Pooled<'_, C> {
    /// Do not return this connection to the pool (after an error that may have broken it).
    pub fn discard(mut self) {
        self.conn = None;
    }
}

impl<C> Deref for Pooled<'_, C> {
    type Target = C;
    fn deref(&self) -> &C {
        // The connection is only taken out in `discard` and `drop`, which consume the guard.
        match &self.conn {
            Some(c) => c,
            None => unreachable!("pooled connection used after discard"),
        }
    }
}

impl<C> DerefMut for Pooled<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        match &mut self.conn {
            Some(c) => c,
            None => unreachable!("pooled connection used after discard"),
        }
    }
}

impl<C> Drop for Pooled<'_, C> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let mut idle = self.pool.idle.lock();
            if idle.len() < self.pool.max_idle {
                idle.push(c);
            }
        }
    }
}
