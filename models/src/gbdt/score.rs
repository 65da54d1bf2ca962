//! Batch scoring of a [`Booster`]: its trees flattened into one array of compact nodes, and
//! rows scored a block at a time, tree after tree, so each tree stays in cache while a block
//! of rows (held row-major, every value an `f64`) goes through it.

use super::bins::BinnedData;
use super::tree::{Test, in_set};
use super::{Booster, Input};

/// Rows scored together: their values (24 features × 8 bytes × 256 rows = 48 KiB at most for
/// typical models) stay in L1/L2 while every tree runs over them.
const BLOCK: usize = 256;

#[derive(Debug, Clone, Copy)]
struct FlatNode {
    /// The numeric threshold, or the categorical set's index.
    threshold: f64,
    /// The numeric threshold's bin (for rows given as bins), or the set's index.
    bin: f64,
    feature: u32,
    /// Child indices into the flat array; a negative child is leaf `!child` of `leaves`.
    left: i32,
    right: i32,
    categorical: bool,
    missing_left: bool,
}

/// The trees of a booster, flattened for scoring.
#[derive(Debug, Clone)]
pub struct FlatForest {
    nodes: Vec<FlatNode>,
    /// Each tree's root: a node index, or a leaf (negative) for a tree without splits.
    roots: Vec<i32>,
    leaves: Vec<f64>,
    sets: Vec<[u64; 4]>,
    base_score: f64,
    features: usize,
}

impl FlatForest {
    pub fn new(booster: &Booster) -> FlatForest {
        let mut forest = FlatForest {
            nodes: Vec::new(),
            roots: Vec::new(),
            leaves: Vec::new(),
            sets: Vec::new(),
            base_score: booster.base_score,
            features: booster.features.len(),
        };
        for tree in &booster.trees {
            let (node_base, leaf_base) = (forest.nodes.len() as i32, forest.leaves.len() as i32);
            let relocate = |child: i32| {
                if child >= 0 {
                    child + node_base
                } else {
                    !(!child + leaf_base)
                }
            };
            forest.roots.push(if tree.nodes.is_empty() {
                !leaf_base
            } else {
                node_base
            });
            for node in &tree.nodes {
                let (threshold, bin, categorical) = match &node.test {
                    Test::Numeric { threshold, bin } => (*threshold, f64::from(*bin), false),
                    Test::Categorical { left } => {
                        forest.sets.push(*left);
                        let set = (forest.sets.len() - 1) as f64;
                        (set, set, true)
                    }
                };
                forest.nodes.push(FlatNode {
                    threshold,
                    bin,
                    feature: node.feature,
                    left: relocate(node.left),
                    right: relocate(node.right),
                    categorical,
                    missing_left: node.missing_left,
                });
            }
            forest.leaves.extend_from_slice(&tree.leaves);
        }
        forest
    }

    /// Log-odds for `rows` rows of `inputs` (the booster's features in order).
    pub(super) fn margins(&self, inputs: &[Input<'_>], rows: usize) -> Vec<f64> {
        self.run::<false>(
            |c, start, n, out: &mut dyn FnMut(usize, f64)| match &inputs[c] {
                Input::Number(values) => {
                    for r in 0..n {
                        out(r, values[start + r]);
                    }
                }
                Input::Bins(bins, missing) => fill_bins(&bins[start..start + n], *missing, out),
            },
            rows,
        )
    }

    /// Log-odds for rows given as bins of the booster's features.
    pub(crate) fn margins_binned(&self, data: &BinnedData) -> Vec<f64> {
        self.run::<true>(
            |c, start, n, out: &mut dyn FnMut(usize, f64)| {
                let missing = data.features[c].missing();
                fill_bins(&data.bins[c][start..start + n], missing, out);
            },
            data.rows(),
        )
    }

    /// Scores `rows` rows block by block; `fill(feature, start, n, out)` gives each of the
    /// block's rows its value (`out(row in block, value)`), NaN for missing. With `BINNED`
    /// numeric values are bins and compared with the splits' bins.
    fn run<const BINNED: bool>(
        &self,
        fill: impl Fn(usize, usize, usize, &mut dyn FnMut(usize, f64)),
        rows: usize,
    ) -> Vec<f64> {
        let mut out = vec![self.base_score; rows];
        let f = self.features;
        let mut block = vec![0.0f64; BLOCK * f];
        for start in (0..rows).step_by(BLOCK) {
            let n = BLOCK.min(rows - start);
            // Row-major values: each row's features together.
            for c in 0..f {
                fill(c, start, n, &mut |r, v| block[r * f + c] = v);
            }
            let sums = &mut out[start..start + n];
            for &root in &self.roots {
                for (r, sum) in sums.iter_mut().enumerate() {
                    let row = &block[r * f..(r + 1) * f];
                    let mut node = root;
                    while node >= 0 {
                        let flat = &self.nodes[node as usize];
                        let v = row[flat.feature as usize];
                        let left = if v.is_nan() {
                            flat.missing_left
                        } else if flat.categorical {
                            in_set(&self.sets[flat.threshold as usize], v as u8)
                        } else if BINNED {
                            v <= flat.bin
                        } else {
                            v <= flat.threshold
                        };
                        node = if left { flat.left } else { flat.right };
                    }
                    *sum += self.leaves[!node as usize];
                }
            }
        }
        out
    }
}

/// Bins as values: the bin number, NaN for the missing bin.
fn fill_bins(bins: &[u8], missing: u8, out: &mut dyn FnMut(usize, f64)) {
    for (r, &b) in bins.iter().enumerate() {
        out(r, if b == missing { f64::NAN } else { f64::from(b) });
    }
}
