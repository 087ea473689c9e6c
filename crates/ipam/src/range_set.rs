//! A set of integers stored as disjoint inclusive ranges, with O(log n) lookup of the
//! lowest value and removal of one value (splitting a range) or of a range.

use std::collections::BTreeMap;

/// Disjoint, non-adjacent-merging inclusive ranges `start..=end` keyed by `start`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    ranges: BTreeMap<u128, u128>,
    /// Number of values held; saturates at `u128::MAX` (only reachable for a full /0 IPv6 space).
    len: u128,
}

impl RangeSet {
    /// The set `start..=end` (empty when `start > end`).
    pub(crate) fn from_range(start: u128, end: u128) -> Self {
        let mut set = Self::default();
        if start <= end {
            set.ranges.insert(start, end);
            set.len = (end - start).saturating_add(1);
        }
        set
    }

    /// Number of values in the set.
    pub(crate) fn len(&self) -> u128 {
        self.len
    }

    /// The values in increasing order.
    pub(crate) fn values(&self) -> impl Iterator<Item = u128> + '_ {
        self.ranges.iter().flat_map(|(&start, &end)| start..=end)
    }

    /// The lowest value.
    pub(crate) fn first(&self) -> Option<u128> {
        self.ranges.keys().next().copied()
    }

    /// Removes `value`; returns whether it was present.
    pub(crate) fn remove(&mut self, value: u128) -> bool {
        let Some((&start, &end)) = self.ranges.range(..=value).next_back() else {
            return false;
        };
        if end < value {
            return false;
        }
        self.ranges.remove(&start);
        if start < value {
            self.ranges.insert(start, value - 1);
        }
        if value < end {
            self.ranges.insert(value + 1, end);
        }
        self.len -= 1;
        true
    }

    /// Removes every value in `start..=end`.
    pub(crate) fn remove_range(&mut self, start: u128, end: u128) {
        if start > end {
            return;
        }
        // Ranges that may intersect: the one starting before `start`, and all starting in `start..=end`.
        let mut touched: Vec<(u128, u128)> = self
            .ranges
            .range(..start)
            .next_back()
            .map(|(&s, &e)| (s, e))
            .filter(|&(_, e)| e >= start)
            .into_iter()
            .collect();
        touched.extend(self.ranges.range(start..=end).map(|(&s, &e)| (s, e)));
        for (s, e) in touched {
            self.ranges.remove(&s);
            self.len -= e - s + 1;
            if s < start {
                self.insert_disjoint(s, start - 1);
            }
            if e > end {
                self.insert_disjoint(end + 1, e);
            }
        }
    }

    fn insert_disjoint(&mut self, start: u128, end: u128) {
        self.ranges.insert(start, end);
        self.len += end - start + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(set: &RangeSet, value: u128) -> bool {
        set.ranges
            .range(..=value)
            .next_back()
            .is_some_and(|(_, &end)| end >= value)
    }

    fn pop_lowest(set: &mut RangeSet) -> Option<u128> {
        let first = set.first()?;
        assert!(set.remove(first));
        Some(first)
    }

    #[test]
    fn split_and_pop() {
        let mut set = RangeSet::from_range(10, 20);
        assert_eq!(set.len(), 11);
        assert!(set.remove(15));
        assert!(!set.remove(15));
        assert!(!contains(&set, 15));
        assert!(contains(&set, 14) && contains(&set, 16));
        assert_eq!(set.len(), 10);
        assert_eq!(pop_lowest(&mut set), Some(10));
        set.remove_range(12, 17);
        assert_eq!(set.len(), 4);
        let mut rest = vec![];
        while let Some(v) = pop_lowest(&mut set) {
            rest.push(v);
        }
        assert_eq!(rest, vec![11, 18, 19, 20]);
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn remove_range_spanning_several_ranges() {
        let mut set = RangeSet::from_range(0, 100);
        set.remove(10);
        set.remove(20);
        set.remove_range(5, 25);
        assert_eq!(set.len(), 101 - 21);
        assert!(
            contains(&set, 4) && contains(&set, 26) && !contains(&set, 5) && !contains(&set, 25)
        );
        set.remove_range(200, 300);
        assert_eq!(set.len(), 80);
        set.remove_range(26, 26);
        assert!(!contains(&set, 26) && contains(&set, 27));
        assert_eq!(set.len(), 79);
    }

    #[test]
    fn empty_range() {
        let mut set = RangeSet::from_range(5, 4);
        assert_eq!(set.len(), 0);
        assert_eq!(pop_lowest(&mut set), None);
    }
}
