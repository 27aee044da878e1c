//! Dirty pages of a block: a bitmap of 4 KiB pages.

use std::collections::BTreeMap;

/// A set of 4 KiB page indices within one block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageSet {
    words: Vec<u64>,
}

impl PageSet {
    /// Adds page `i`.
    pub fn insert(&mut self, i: u32) {
        let w = (i / 64) as usize;
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % 64);
    }

    /// Adds pages `[a, b)`.
    pub fn insert_range(&mut self, a: u32, b: u32) {
        if a >= b {
            return;
        }
        let last_word = ((b - 1) / 64) as usize;
        if self.words.len() <= last_word {
            self.words.resize(last_word + 1, 0);
        }
        let mut i = a;
        while i < b {
            let w = (i / 64) as usize;
            let lo = i % 64;
            let hi = (b - (w as u32) * 64).min(64);
            let mask = if hi - lo == 64 { u64::MAX } else { ((1u64 << (hi - lo)) - 1) << lo };
            self.words[w] |= mask;
            i = (w as u32 + 1) * 64;
        }
    }

    /// Whether page `i` is in the set.
    pub fn contains(&self, i: u32) -> bool {
        self.words.get((i / 64) as usize).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds every page of `other`.
    pub fn union(&mut self, other: &PageSet) {
        if self.words.len() < other.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= *b;
        }
    }

    /// Whether no page is in the set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Number of pages in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The page indices, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words
            .iter()
            .enumerate()
            .flat_map(|(wi, w)| (0..64u32).filter(move |b| w & (1u64 << b) != 0).map(move |b| wi as u32 * 64 + b))
    }
}

/// A dirty block and its dirty 4 KiB pages (indices within the block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBlock {
    /// Block index in the file.
    pub blk: u64,
    /// The written pages.
    pub pages: PageSet,
}

/// Adds pages `[start, end)` (byte addresses) of a view, whose block `first_blk` begins at
/// `view_start`, to a per-block dirty map.
pub(crate) fn add_range(
    map: &mut BTreeMap<u64, PageSet>,
    view_start: u64,
    first_blk: u64,
    blksize: u64,
    start: u64,
    end: u64,
) {
    let page = crate::PAGE as u64;
    let mut a = start;
    while a < end {
        let off = a - view_start;
        let blk = first_blk + off / blksize;
        let block_end = view_start + (off / blksize + 1) * blksize;
        let e = end.min(block_end);
        let p0 = ((off % blksize) / page) as u32;
        let p1 = p0 + (e - a).div_ceil(page) as u32;
        map.entry(blk).or_default().insert_range(p0, p1);
        a = e;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_set() {
        let mut s = PageSet::default();
        assert!(s.is_empty());
        s.insert(511);
        s.insert(3);
        s.insert(64);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 64, 511]);
        assert_eq!(s.len(), 3);
        assert!(s.contains(64) && !s.contains(65));
        let mut t = PageSet::default();
        t.insert(0);
        t.union(&s);
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![0, 3, 64, 511]);
        for (a, b) in [(0, 512), (5, 6), (60, 130), (64, 128), (127, 129), (0, 0)] {
            let mut r = PageSet::default();
            r.insert_range(a, b);
            assert_eq!(r.iter().collect::<Vec<_>>(), (a..b).collect::<Vec<_>>(), "{a}..{b}");
        }
    }

    #[test]
    fn add_range_splits_blocks() {
        let mut m = BTreeMap::new();
        let bs = 2 << 20;
        add_range(&mut m, 0x1000_0000, 10, bs, 0x1000_0000 + bs - 4096, 0x1000_0000 + bs + 8192);
        let got: Vec<(u64, Vec<u32>)> = m.into_iter().map(|(b, p)| (b, p.iter().collect())).collect();
        assert_eq!(got, vec![(10, vec![511]), (11, vec![0, 1])]);
    }
}
