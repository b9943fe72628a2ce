//! Where each row group's leaves lie in the tree of a trace.

use super::{RowGroup, row_blocks};

/// The leaf layout of a trace of `layers` layers over `positions`
/// positions: `2 * layers` row groups, layer-major, all output groups
/// first (group `l < L` holds layer `l`'s output rows in blocks of
/// [`super::OUTPUT_BLOCK`] positions), then the key/value groups (group
/// `L + l` holds layer `l`'s `[k | v]` rows in blocks of
/// [`super::KV_BLOCK`]). Each group's leaves are contiguous, in position
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TreeLayout {
    layers: u64,
    output_leaves: u64,
    kv_leaves: u64,
}

impl TreeLayout {
    pub(crate) fn new(layers: usize, positions: usize) -> Self {
        Self {
            layers: layers as u64,
            output_leaves: row_blocks(RowGroup::Output, positions) as u64,
            kv_leaves: row_blocks(RowGroup::KeyValue, positions) as u64,
        }
    }

    /// Leaves in the whole tree.
    pub(crate) fn n_leaves(&self) -> u64 {
        self.layers * (self.output_leaves + self.kv_leaves)
    }

    /// Row group `group`'s kind and layer; `None` past the last group.
    pub(crate) fn group(&self, group: u64) -> Option<(RowGroup, u64)> {
        match group.checked_sub(self.layers) {
            None => Some((RowGroup::Output, group)),
            Some(l) if l < self.layers => Some((RowGroup::KeyValue, l)),
            Some(_) => None,
        }
    }

    /// Leaves in each group of `kind`.
    pub(crate) fn leaves_per_group(&self, kind: RowGroup) -> u64 {
        match kind {
            RowGroup::Output => self.output_leaves,
            RowGroup::KeyValue => self.kv_leaves,
        }
    }

    /// Index of row group `group`'s leaf `block` (`group` a valid group).
    pub(crate) fn leaf(&self, group: u64, block: u64) -> u64 {
        match group.checked_sub(self.layers) {
            None => group * self.output_leaves + block,
            Some(l) => self.layers * self.output_leaves + l * self.kv_leaves + block,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_has_one_place() {
        // 3 layers over 70 positions: 5 output leaves and 2 key/value
        // leaves per layer.
        let t = TreeLayout::new(3, 70);
        assert_eq!(t.n_leaves(), 3 * (5 + 2));
        let mut seen = Vec::new();
        for g in 0..6 {
            let (kind, layer) = t.group(g).unwrap();
            assert_eq!(layer, g % 3);
            assert_eq!(kind == RowGroup::Output, g < 3);
            seen.extend((0..t.leaves_per_group(kind)).map(|b| t.leaf(g, b)));
        }
        assert_eq!(seen, (0..t.n_leaves()).collect::<Vec<_>>());
        assert_eq!(t.group(6), None);
    }
}
