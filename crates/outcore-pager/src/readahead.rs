//! Sequential-access detection per view.

/// Readahead state of one view.
#[derive(Debug, Default)]
pub(crate) struct Readahead {
    last: Option<u64>,
    run: u32,
    /// Highest block already requested by readahead (exclusive).
    requested_to: u64,
}

impl Readahead {
    /// Records a fault on block `blk`; returns the blocks to load in the background
    /// (`blk+1 ..= blk+window`, minus those already requested), limited to `< limit`.
    pub fn on_fault(&mut self, blk: u64, window: u64, limit: u64) -> std::ops::Range<u64> {
        match self.last {
            Some(l) if l == blk => return 0..0,
            Some(l) if l + 1 == blk => self.run += 1,
            _ => {
                self.run = 0;
                self.requested_to = 0;
            }
        }
        self.last = Some(blk);
        if self.run == 0 || window == 0 {
            return 0..0;
        }
        let start = (blk + 1).max(self.requested_to);
        let end = (blk + 1 + window).min(limit);
        if start >= end {
            return 0..0;
        }
        self.requested_to = end;
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_triggers_random_does_not() {
        let mut r = Readahead::default();
        assert_eq!(r.on_fault(0, 4, 100), 0..0);
        assert_eq!(r.on_fault(1, 4, 100), 2..6);
        assert_eq!(r.on_fault(2, 4, 100), 6..7);
        let mut r = Readahead::default();
        for b in [5, 50, 17, 90, 3] {
            assert_eq!(r.on_fault(b, 4, 100), 0..0);
        }
    }
}
