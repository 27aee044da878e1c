//! The process-wide least-recently-used order of clean resident blocks.

use std::collections::{BTreeMap, HashMap};

/// A block of some file: (file id, block index).
pub(crate) type Key = (u64, u64);

/// LRU order: touch moves a key to the most recent end; pop takes the least recent.
#[derive(Debug, Default)]
pub(crate) struct Lru {
    seq: u64,
    order: BTreeMap<u64, Key>,
    pos: HashMap<Key, u64>,
}

impl Lru {
    /// Marks `key` as just used (inserting it if absent).
    pub fn touch(&mut self, key: Key) {
        if let Some(old) = self.pos.remove(&key) {
            self.order.remove(&old);
        }
        self.seq += 1;
        self.order.insert(self.seq, key);
        self.pos.insert(key, self.seq);
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: Key) {
        if let Some(old) = self.pos.remove(&key) {
            self.order.remove(&old);
        }
    }

    /// Removes and returns the least recently used key.
    pub fn pop(&mut self) -> Option<Key> {
        let (_, key) = self.order.pop_first()?;
        self.pos.remove(&key);
        Some(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.pos.len()
    }

    /// Forgets every key of a file.
    pub fn remove_file(&mut self, file: u64) {
        let keys: Vec<Key> = self.pos.keys().filter(|k| k.0 == file).copied().collect();
        for k in keys {
            self.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_order() {
        let mut l = Lru::default();
        l.touch((1, 1));
        l.touch((1, 2));
        l.touch((1, 1));
        assert_eq!(l.pop(), Some((1, 2)));
        assert_eq!(l.pop(), Some((1, 1)));
        assert_eq!(l.pop(), None);
    }
}
