//! Sequential-access detection per view.
//!
//! Two consecutive block faults in a view start background loads of the next `window` blocks.
//! The loaded blocks are also mapped into that view ahead of the scan, except one "marker" block
//! half a window ahead: the scan's fault on it (a fault within the requested window counts as
//! sequential) requests the next blocks. A scan thus faults about once per half window and always
//! has at least half a window requested ahead of it; random access requests nothing.

use std::ops::Range;

/// Readahead state of one view.
#[derive(Debug, Default)]
pub(crate) struct Readahead {
    last: Option<u64>,
    run: u32,
    /// End (exclusive) of the blocks already requested.
    requested_to: u64,
}

/// Blocks to load in the background, and the one of them to leave unmapped as a marker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub blocks: Range<u64>,
    pub marker: Option<u64>,
}

impl Plan {
    fn none() -> Self {
        Self { blocks: 0..0, marker: None }
    }
}

impl Readahead {
    /// Records a fault on block `blk`; returns what to load ahead (blocks `< limit` only).
    pub fn on_fault(&mut self, blk: u64, window: u64, limit: u64) -> Plan {
        let sequential = match self.last {
            Some(l) if l == blk => return Plan::none(),
            Some(l) => blk == l + 1 || (blk > l && blk < self.requested_to),
            None => false,
        };
        if sequential {
            self.run += 1;
        } else {
            self.run = 0;
            self.requested_to = 0;
        }
        self.last = Some(blk);
        if self.run == 0 || window == 0 {
            return Plan::none();
        }
        let start = (blk + 1).max(self.requested_to);
        let end = (blk + 1 + window).min(limit);
        if start >= end {
            return Plan::none();
        }
        self.requested_to = end;
        let marker = (blk + 1 + window / 2).clamp(start, end - 1);
        Plan { blocks: start..end, marker: Some(marker) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_triggers_random_does_not() {
        let mut r = Readahead::default();
        assert_eq!(r.on_fault(0, 4, 100), Plan::none());
        assert_eq!(r.on_fault(1, 4, 100), Plan { blocks: 2..6, marker: Some(4) });
        // The scan faults next on the marker (2 and 3 were mapped ahead).
        assert_eq!(r.on_fault(4, 4, 100), Plan { blocks: 6..9, marker: Some(7) });
        assert_eq!(r.on_fault(7, 4, 100), Plan { blocks: 9..12, marker: Some(10) });
        // Near the end.
        assert_eq!(r.on_fault(10, 4, 12), Plan::none());
        let mut r = Readahead::default();
        for b in [5, 50, 17, 90, 3] {
            assert_eq!(r.on_fault(b, 4, 100), Plan::none());
        }
    }
}
