//! Batch scoring of a [`Booster`]: its trees flattened into arrays of compact nodes, and rows
//! scored a block at a time, tree after tree, so each tree stays in cache while a block of
//! rows (held row-major, every value an `f64`) goes through it.
//!
//! Numeric splits are walked without data-dependent branches (categorical ones branch on
//! the node's kind). A node's two children sit side by side, so the next node is
//! `first_child + goes_right`; a leaf is a node that routes every value, NaN included, to
//! itself, so every row takes the tree's depth in steps and rows that reach a leaf early
//! stay there. [`LANES`] rows walk a tree together: their steps are independent, so the CPU
//! overlaps their loads instead of waiting on one row's chain of node and value loads, and a
//! mispredicted branch per level (what made pointer-chasing traversal slow) is gone.

use rayon::prelude::*;

use super::bins::BinnedData;
use super::tree::{Test, Tree, in_set};
use super::{Booster, Input};

/// Rows scored together: their values (24 features × 8 bytes × 256 rows = 48 KiB for
/// typical models) stay in L1/L2 while every tree runs over them.
const BLOCK: usize = 256;
/// Rows that walk one tree side by side.
const LANES: usize = 16;

#[derive(Debug, Clone, Copy)]
struct FlatNode {
    /// Left when the value is at most this; a categorical split's set index; `+inf` for a
    /// leaf, so that every value goes left, back to the leaf itself.
    threshold: f64,
    feature: u32,
    /// The left child; the right one follows it. A leaf's own index.
    first_child: u32,
    missing_left: bool,
    categorical: bool,
}

/// The trees of a booster, flattened for scoring.
#[derive(Debug, Clone)]
pub struct FlatForest {
    /// Nodes comparing raw values; `binned` is the same with numeric thresholds as bins.
    nodes: Vec<FlatNode>,
    binned: Vec<FlatNode>,
    /// A leaf's output, by node index (0 for internal nodes).
    outputs: Vec<f64>,
    /// Each tree's root node and depth (the steps a row takes to its leaf at most).
    trees: Vec<(u32, u32)>,
    sets: Vec<[u64; 4]>,
    base_score: f64,
    features: usize,
    any_categorical: bool,
}

impl FlatForest {
    pub fn new(booster: &Booster) -> FlatForest {
        let mut forest = FlatForest {
            nodes: Vec::new(),
            binned: Vec::new(),
            outputs: Vec::new(),
            trees: Vec::new(),
            sets: Vec::new(),
            base_score: booster.base_score,
            features: booster.features.len(),
            any_categorical: false,
        };
        for tree in &booster.trees {
            forest.add(tree);
        }
        forest
    }

    /// Appends `tree` breadth first, each node's children in consecutive slots.
    fn add(&mut self, tree: &Tree) {
        let root = self.nodes.len() as u32;
        let leaf = FlatNode {
            threshold: f64::INFINITY,
            feature: 0,
            first_child: 0,
            missing_left: true,
            categorical: false,
        };
        // (slot, the tree's child reference: a node `>= 0` or leaf `!i`, depth).
        let mut queue = std::collections::VecDeque::from([(root, 0i32, 0u32)]);
        let mut depth = 0;
        self.push_slots(1, leaf);
        if tree.nodes.is_empty() {
            self.outputs[root as usize] = tree.leaves.first().copied().unwrap_or(0.0);
            self.nodes[root as usize].first_child = root;
            self.binned[root as usize].first_child = root;
            self.trees.push((root, 0));
            return;
        }
        while let Some((slot, child, level)) = queue.pop_front() {
            let slot_index = slot as usize;
            if child < 0 {
                self.outputs[slot_index] = tree.leaves[!child as usize];
                self.nodes[slot_index].first_child = slot;
                self.binned[slot_index].first_child = slot;
                continue;
            }
            depth = depth.max(level + 1);
            let node = &tree.nodes[child as usize];
            let first_child = self.nodes.len() as u32;
            self.push_slots(2, leaf);
            let (threshold, bin, categorical) = match &node.test {
                Test::Numeric { threshold, bin } => (*threshold, f64::from(*bin), false),
                Test::Categorical { left } => {
                    self.sets.push(*left);
                    let set = (self.sets.len() - 1) as f64;
                    (set, set, true)
                }
            };
            self.any_categorical |= categorical;
            let flat = FlatNode {
                threshold,
                feature: node.feature,
                first_child,
                missing_left: node.missing_left,
                categorical,
            };
            self.nodes[slot_index] = flat;
            self.binned[slot_index] = FlatNode {
                threshold: bin,
                ..flat
            };
            queue.push_back((first_child, node.left, level + 1));
            queue.push_back((first_child + 1, node.right, level + 1));
        }
        self.trees.push((root, depth));
    }

    fn push_slots(&mut self, count: usize, node: FlatNode) {
        for _ in 0..count {
            self.nodes.push(node);
            self.binned.push(node);
            self.outputs.push(0.0);
        }
    }

    /// Log-odds for `rows` rows of `inputs` (the booster's features in order), on the
    /// calling thread (SQL scoring runs a batch per partition already).
    pub(super) fn margins(&self, inputs: &[Input<'_>], rows: usize) -> Vec<f64> {
        let mut out = vec![self.base_score; rows];
        self.score_rows(
            &self.nodes,
            |c, rows, column: &mut Column<'_>| match &inputs[c] {
                Input::Number(values) => column.set_numbers(&values[rows]),
                Input::Bins(bins, missing) => column.set_bins(&bins[rows], *missing),
            },
            0,
            &mut out,
        );
        out
    }

    /// Log-odds for rows given as bins of the booster's features, in parallel (training's
    /// metrics and importance).
    pub(crate) fn margins_binned(&self, data: &BinnedData) -> Vec<f64> {
        const ROWS_PER_TASK: usize = 8 * BLOCK;
        let mut out = vec![self.base_score; data.rows()];
        out.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, out)| {
                self.score_rows(
                    &self.binned,
                    |c, rows, column: &mut Column<'_>| {
                        column.set_bins(&data.bins[c][rows], data.features[c].missing());
                    },
                    task * ROWS_PER_TASK,
                    out,
                );
            });
        out
    }

    /// Adds the trees' outputs (through `nodes`) for rows `first..first + out.len()` to
    /// `out`, block by block; `fill(feature, rows, column)` writes the feature's values of
    /// the block's `rows` into `column`.
    fn score_rows(
        &self,
        nodes: &[FlatNode],
        fill: impl Fn(usize, std::ops::Range<usize>, &mut Column<'_>),
        first: usize,
        out: &mut [f64],
    ) {
        let f = self.features.max(1);
        // Rows past the end of the last block keep an earlier block's values: they walk the
        // trees like the others (within the tree, as every row does) and their sums are
        // dropped.
        let mut block = vec![0.0f64; BLOCK * f];
        let mut sums = [0.0f64; BLOCK];
        for (index, out) in out.chunks_mut(BLOCK).enumerate() {
            let (start, n) = (first + index * BLOCK, out.len());
            for c in 0..self.features {
                let mut column = Column {
                    block: &mut block,
                    stride: f,
                    feature: c,
                };
                fill(c, start..start + n, &mut column);
            }
            // Trees added one after another to the base score, in the order training adds
            // them, so that the margins agree to the last bit.
            sums[..n].copy_from_slice(out);
            let groups = n.div_ceil(LANES);
            for &(root, depth) in &self.trees {
                for group in 0..groups {
                    let rows = &block[group * LANES * f..(group + 1) * LANES * f];
                    let leaves = if self.any_categorical {
                        self.walk::<true>(nodes, rows, root, depth)
                    } else {
                        self.walk::<false>(nodes, rows, root, depth)
                    };
                    for (sum, leaf) in sums[group * LANES..].iter_mut().zip(leaves) {
                        *sum += self.outputs[leaf as usize];
                    }
                }
            }
            out.copy_from_slice(&sums[..n]);
        }
    }

    /// The leaves that `LANES` rows (row-major in `rows`) reach in the tree at `root`.
    #[inline(always)]
    fn walk<const CATEGORICAL: bool>(
        &self,
        nodes: &[FlatNode],
        rows: &[f64],
        root: u32,
        depth: u32,
    ) -> [u32; LANES] {
        let f = self.features.max(1);
        let mut at = [root; LANES];
        for _ in 0..depth {
            for (lane, node_index) in at.iter_mut().enumerate() {
                let node = &nodes[*node_index as usize];
                let v = rows[lane * f + node.feature as usize];
                let missing = v.is_nan();
                let left = if CATEGORICAL && node.categorical {
                    if missing {
                        node.missing_left
                    } else {
                        in_set(&self.sets[node.threshold as usize], v as u8)
                    }
                } else {
                    (v <= node.threshold) | (missing & node.missing_left)
                };
                *node_index = node.first_child + u32::from(!left);
            }
        }
        at
    }
}

/// One feature's place in a row-major block.
struct Column<'a> {
    block: &'a mut [f64],
    stride: usize,
    feature: usize,
}

impl Column<'_> {
    fn set_numbers(&mut self, values: &[f64]) {
        for (r, &v) in values.iter().enumerate() {
            self.block[r * self.stride + self.feature] = v;
        }
    }

    /// Bins as values: the bin number, NaN for the missing bin.
    fn set_bins(&mut self, bins: &[u8], missing: u8) {
        for (r, &b) in bins.iter().enumerate() {
            self.block[r * self.stride + self.feature] =
                if b == missing { f64::NAN } else { f64::from(b) };
        }
    }
}
