//! Growing one tree on gradient histograms, leaf by leaf (best gain first), as LightGBM does.
//!
//! Each leaf owns a range of a row-index array that splits partition in place. A leaf's
//! histogram (sums of gradient, hessian and rows per bin and feature) is built from its rows
//! for the smaller child only; the larger child's is the parent's minus the smaller's.

use rayon::prelude::*;

use super::bins::{BinnedData, FeatureBins};
use super::tree::{Node, Test, Tree, in_set};

/// Tree-shape hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct GrowOptions {
    pub num_leaves: usize,
    /// 0 for no limit.
    pub max_depth: usize,
    pub min_rows_in_leaf: usize,
    pub min_hessian_in_leaf: f64,
    /// L2 penalty on leaf outputs.
    pub l2: f64,
    /// Extra L2 penalty on categorical splits, and the smoothing of the category ordering.
    pub categorical_l2: f64,
    /// Categories on the smaller side of a categorical split at most.
    pub max_categories_per_split: usize,
    pub learning_rate: f64,
}

/// Depth of a tree without `max_depth`: `num_leaves` (up to 4,096) could otherwise make a
/// chain thousands of splits deep, and TreeSHAP recurses once per level with a workspace that
/// grows with the square of the depth.
const MAX_TREE_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, Default)]
struct BinStats {
    gradient: f64,
    hessian: f64,
    rows: u32,
}

/// A leaf's histogram: bins of all features, feature after feature.
type Histogram = Vec<BinStats>;

#[derive(Debug, Clone)]
struct Candidate {
    feature: usize,
    test: Test,
    missing_left: bool,
    gain: f64,
    /// What the split sends left, from the histogram.
    left: BinStats,
}

struct Leaf {
    start: usize,
    end: usize,
    depth: usize,
    gradient: f64,
    hessian: f64,
    histogram: Histogram,
    best: Option<Candidate>,
    /// Where the parent points at this leaf: (node, is left child).
    parent: Option<(usize, bool)>,
}

/// What growing a tree needs that stays the same across the trees of one model.
pub struct Grower<'a> {
    data: &'a BinnedData,
    options: &'a GrowOptions,
    /// Start of each feature's bins in a histogram.
    offsets: Vec<usize>,
    total_bins: usize,
    /// Buffers kept from tree to tree: the row order the leaves partition, the gradients in
    /// that order, the rows a partition moves right.
    order: Vec<u32>,
    ordered: Vec<(f64, f64)>,
    spill: Vec<u32>,
    /// Histograms of finished trees, reused: at 24 features a histogram is about 150 KB,
    /// and fresh ones cost page faults and zeroing by the kernel.
    free: Vec<Histogram>,
}

impl<'a> Grower<'a> {
    pub fn new(data: &'a BinnedData, options: &'a GrowOptions) -> Self {
        let mut offsets = Vec::with_capacity(data.features.len());
        let mut total_bins = 0;
        for feature in &data.features {
            offsets.push(total_bins);
            total_bins += feature.count();
        }
        Grower {
            data,
            options,
            offsets,
            total_bins,
            order: Vec::new(),
            ordered: Vec::new(),
            spill: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Grows one tree on the rows' gradients and hessians; adds its outputs to `scores`.
    pub fn grow(&mut self, gradients: &[f64], hessians: &[f64], scores: &mut [f64]) -> Tree {
        let rows = self.data.rows();
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend(0..rows as u32);
        let mut ordered = std::mem::take(&mut self.ordered);
        let mut spill = std::mem::take(&mut self.spill);
        let mut nodes: Vec<Node> = Vec::new();
        let mut root_histogram = self.free.pop().unwrap_or_default();
        self.root_histogram(gradients, hessians, &mut root_histogram);
        let (gradient, hessian) = (gradients.iter().sum(), hessians.iter().sum());
        let mut leaves = vec![self.with_best_split(Leaf {
            start: 0,
            end: rows,
            depth: 0,
            gradient,
            hessian,
            histogram: root_histogram,
            best: None,
            parent: None,
        })];

        while leaves.len() < self.options.num_leaves {
            let Some((index, _)) = leaves
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.best.as_ref().map(|b| (i, b.gain)))
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            else {
                break;
            };
            let leaf = leaves.swap_remove(index);
            let best = leaf.best.clone().expect("chosen for its split");
            let bins = &self.data.bins[best.feature];
            let node = Node {
                feature: best.feature as u32,
                test: best.test.clone(),
                missing_left: best.missing_left,
                left: 0,
                right: 0,
                rows: (leaf.end - leaf.start) as f64,
                gain: best.gain,
            };
            // Which way each bin goes, looked up per row.
            let missing = self.data.features[best.feature].missing();
            let mut left_bins = [0u8; 256];
            for (bin, left) in left_bins.iter_mut().enumerate() {
                let bin = bin as u8;
                *left = u8::from(if bin == missing {
                    node.missing_left
                } else {
                    node.goes_left(super::tree::Value::Bin(bin))
                });
            }
            let middle = partition(
                &mut order[leaf.start..leaf.end],
                bins,
                &left_bins,
                &mut spill,
            ) + leaf.start;
            let node_index = nodes.len();
            if let Some((parent, is_left)) = leaf.parent {
                let child = &mut nodes[parent];
                if is_left {
                    child.left = node_index as i32;
                } else {
                    child.right = node_index as i32;
                }
            }
            nodes.push(node);

            // The left side's sums from the split's histogram: the same rows, summed per bin
            // (so equal to a sum over the rows up to rounding).
            debug_assert_eq!(best.left.rows as usize, middle - leaf.start);
            let (left_g, left_h) = (best.left.gradient, best.left.hessian);
            let (right_g, right_h) = (leaf.gradient - left_g, leaf.hessian - left_h);
            let left_smaller = middle - leaf.start <= leaf.end - middle;
            let small_range = if left_smaller {
                leaf.start..middle
            } else {
                middle..leaf.end
            };
            let mut small = self.free.pop().unwrap_or_default();
            self.histogram(
                &order[small_range],
                gradients,
                hessians,
                &mut ordered,
                &mut small,
            );
            // The parent's histogram becomes the larger child's.
            let mut large = leaf.histogram;
            for (p, s) in large.iter_mut().zip(&small) {
                p.gradient -= s.gradient;
                p.hessian -= s.hessian;
                p.rows -= s.rows;
            }
            let (left_histogram, right_histogram) = if left_smaller {
                (small, large)
            } else {
                (large, small)
            };
            let depth = leaf.depth + 1;
            leaves.push(self.with_best_split(Leaf {
                start: leaf.start,
                end: middle,
                depth,
                gradient: left_g,
                hessian: left_h,
                histogram: left_histogram,
                best: None,
                parent: Some((node_index, true)),
            }));
            leaves.push(self.with_best_split(Leaf {
                start: middle,
                end: leaf.end,
                depth,
                gradient: right_g,
                hessian: right_h,
                histogram: right_histogram,
                best: None,
                parent: Some((node_index, false)),
            }));
        }

        // Number the leaves, point their parents at them and add their outputs.
        let mut outputs = Vec::with_capacity(leaves.len());
        let mut leaf_rows = Vec::with_capacity(leaves.len());
        leaves.sort_by_key(|l| l.start);
        for (i, leaf) in leaves.into_iter().enumerate() {
            let output =
                -leaf.gradient / (leaf.hessian + self.options.l2) * self.options.learning_rate;
            let output = if output.is_finite() { output } else { 0.0 };
            for &r in &order[leaf.start..leaf.end] {
                scores[r as usize] += output;
            }
            outputs.push(output);
            leaf_rows.push((leaf.end - leaf.start) as f64);
            self.free.push(leaf.histogram);
            if let Some((parent, is_left)) = leaf.parent {
                let leaf_id = !(i as i32);
                if is_left {
                    nodes[parent].left = leaf_id;
                } else {
                    nodes[parent].right = leaf_id;
                }
            }
        }
        self.order = order;
        self.ordered = ordered;
        self.spill = spill;
        Tree {
            nodes,
            leaves: outputs,
            leaf_rows,
        }
    }

    /// `leaf` with its best split found, where it may split (depth, rows).
    fn with_best_split(&self, mut leaf: Leaf) -> Leaf {
        let rows = leaf.end - leaf.start;
        let max_depth = match self.options.max_depth {
            0 => MAX_TREE_DEPTH,
            depth => depth,
        };
        let splittable = leaf.depth < max_depth && rows >= 2 * self.options.min_rows_in_leaf;
        if splittable {
            leaf.best = self.best_split(&leaf.histogram, leaf.gradient, leaf.hessian, rows as u32);
        }
        leaf
    }

    /// `histogram` cleared to the size of every feature's bins, and split into each
    /// feature's part.
    fn feature_parts<'h>(&self, histogram: &'h mut Histogram) -> Vec<&'h mut [BinStats]> {
        histogram.clear();
        histogram.resize(self.total_bins, BinStats::default());
        let mut parts: Vec<&mut [BinStats]> = Vec::with_capacity(self.data.features.len());
        let mut rest = &mut histogram[..];
        for feature in &self.data.features {
            let (part, after) = rest.split_at_mut(feature.count());
            parts.push(part);
            rest = after;
        }
        parts
    }

    /// Per-bin sums over every row (the root), one feature per task: rows in their own
    /// order, so each feature's pass reads its bins and the gradients sequentially.
    fn root_histogram(&self, gradients: &[f64], hessians: &[f64], histogram: &mut Histogram) {
        self.feature_parts(histogram)
            .into_par_iter()
            .zip(&self.data.bins)
            .for_each(|(part, bins)| {
                for ((&bin, &g), &h) in bins.iter().zip(gradients).zip(hessians) {
                    let stats = &mut part[bin as usize];
                    stats.gradient += g;
                    stats.hessian += h;
                    stats.rows += 1;
                }
            });
    }

    /// Per-bin sums over `rows` into `histogram`, one feature per task. (Row-major bins,
    /// all features or groups of 8 per task, measured slower: the histogram leaves L1.)
    fn histogram(
        &self,
        rows: &[u32],
        gradients: &[f64],
        hessians: &[f64],
        ordered: &mut Vec<(f64, f64)>,
        histogram: &mut Histogram,
    ) {
        // Gradients in row order once, so each feature's pass reads them sequentially.
        ordered.clear();
        ordered.extend(
            rows.iter()
                .map(|&r| (gradients[r as usize], hessians[r as usize])),
        );
        let ordered = &ordered[..];
        self.feature_parts(histogram)
            .into_par_iter()
            .zip(&self.data.bins)
            .for_each(|(part, bins)| {
                for (&r, &(g, h)) in rows.iter().zip(ordered) {
                    let stats = &mut part[bins[r as usize] as usize];
                    stats.gradient += g;
                    stats.hessian += h;
                    stats.rows += 1;
                }
            });
    }

    fn best_split(
        &self,
        histogram: &[BinStats],
        gradient: f64,
        hessian: f64,
        rows: u32,
    ) -> Option<Candidate> {
        let parent_score = gradient * gradient / (hessian + self.options.l2);
        let total = BinStats {
            gradient,
            hessian,
            rows,
        };
        let mut best: Option<Candidate> = None;
        for (feature, bins) in self.data.features.iter().enumerate() {
            let start = self.offsets[feature];
            let stats = &histogram[start..start + bins.count()];
            let candidate = match bins {
                FeatureBins::Numeric { upper } => {
                    self.numeric_split(feature, upper, stats, total, parent_score)
                }
                FeatureBins::Categorical { .. } => self.categorical_split(feature, stats, total),
            };
            if let Some(c) = candidate
                && best.as_ref().is_none_or(|b| c.gain > b.gain)
            {
                best = Some(c);
            }
        }
        best
    }

    /// The gain of sending `left` one way and the rest the other, if both sides are big
    /// enough.
    fn gain(&self, left: BinStats, total: BinStats, parent_score: f64, l2: f64) -> Option<f64> {
        let right = BinStats {
            gradient: total.gradient - left.gradient,
            hessian: total.hessian - left.hessian,
            rows: total.rows - left.rows,
        };
        let o = self.options;
        let small = |s: &BinStats| {
            (s.rows as usize) < o.min_rows_in_leaf || s.hessian < o.min_hessian_in_leaf
        };
        if small(&left) || small(&right) {
            return None;
        }
        let gain = left.gradient * left.gradient / (left.hessian + l2)
            + right.gradient * right.gradient / (right.hessian + l2)
            - parent_score;
        (gain > 1e-12).then_some(gain)
    }

    fn numeric_split(
        &self,
        feature: usize,
        upper: &[f64],
        stats: &[BinStats],
        total: BinStats,
        parent_score: f64,
    ) -> Option<Candidate> {
        let missing = stats[stats.len() - 1];
        let mut best: Option<Candidate> = None;
        let mut left = BinStats::default();
        // Bins 0..=bin go left; missing values go left or right, whichever gains more. With
        // no missing values at training they follow the larger side.
        for (bin, s) in stats[..stats.len() - 1]
            .iter()
            .enumerate()
            .take(upper.len())
        {
            left.gradient += s.gradient;
            left.hessian += s.hessian;
            left.rows += s.rows;
            let with_missing = BinStats {
                gradient: left.gradient + missing.gradient,
                hessian: left.hessian + missing.hessian,
                rows: left.rows + missing.rows,
            };
            let options: &[(BinStats, bool)] = if missing.rows > 0 {
                &[(left, false), (with_missing, true)]
            } else {
                &[(left, false)]
            };
            for &(side, missing_left) in options {
                if let Some(gain) = self.gain(side, total, parent_score, self.options.l2)
                    && best.as_ref().is_none_or(|b| gain > b.gain)
                {
                    let missing_left = if missing.rows > 0 {
                        missing_left
                    } else {
                        2 * left.rows >= total.rows
                    };
                    best = Some(Candidate {
                        feature,
                        test: Test::Numeric {
                            threshold: upper[bin],
                            bin: bin as u8,
                        },
                        missing_left,
                        gain,
                        left: side,
                    });
                }
            }
        }
        // Every value left, missing values right: what tells missingness itself apart.
        let values = BinStats {
            gradient: total.gradient - missing.gradient,
            hessian: total.hessian - missing.hessian,
            rows: total.rows - missing.rows,
        };
        if missing.rows > 0
            && let Some(gain) = self.gain(values, total, parent_score, self.options.l2)
            && best.as_ref().is_none_or(|b| gain > b.gain)
        {
            best = Some(Candidate {
                feature,
                test: Test::Numeric {
                    threshold: f64::INFINITY,
                    bin: upper.len() as u8,
                },
                missing_left: false,
                gain,
                left: values,
            });
        }
        best
    }

    /// LightGBM's categorical split: one category against the rest when there are few,
    /// otherwise the categories sorted by smoothed mean gradient and the best prefix (from
    /// either end, at most `max_categories_per_split` long) sent left.
    fn categorical_split(
        &self,
        feature: usize,
        stats: &[BinStats],
        total: BinStats,
    ) -> Option<Candidate> {
        let o = self.options;
        let l2 = o.l2 + o.categorical_l2;
        let parent_score = total.gradient * total.gradient / (total.hessian + l2);
        let present: Vec<usize> = (0..stats.len()).filter(|&b| stats[b].rows > 0).collect();
        let mut best: Option<Candidate> = None;
        let consider = |set: &[usize], best: &mut Option<Candidate>| {
            let mut left = BinStats::default();
            for &b in set {
                left.gradient += stats[b].gradient;
                left.hessian += stats[b].hessian;
                left.rows += stats[b].rows;
            }
            if let Some(gain) = self.gain(left, total, parent_score, l2)
                && best.as_ref().is_none_or(|c| gain > c.gain)
            {
                let mut bits = [0u64; 4];
                for &b in set {
                    bits[b >> 6] |= 1 << (b & 63);
                }
                let missing = stats.len() - 1;
                *best = Some(Candidate {
                    feature,
                    missing_left: in_set(&bits, missing as u8),
                    test: Test::Categorical { left: bits },
                    gain,
                    left,
                });
            }
        };
        if present.len() <= 4 {
            for &b in &present {
                consider(&[b], &mut best);
            }
            return best;
        }
        // Categories too rare to order reliably stay on the right.
        let min_rows = (o.min_rows_in_leaf / 2).max(1) as u32;
        let mut ordered: Vec<usize> = present
            .into_iter()
            .filter(|&b| stats[b].rows >= min_rows)
            .collect();
        let ratio = |b: usize| stats[b].gradient / (stats[b].hessian + o.categorical_l2);
        ordered.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)).then(a.cmp(&b)));
        let longest = o
            .max_categories_per_split
            .min(ordered.len().saturating_sub(1));
        for take in 1..=longest {
            consider(&ordered[..take], &mut best);
            consider(&ordered[ordered.len() - take..], &mut best);
        }
        best
    }
}

/// Rows a leaf needs before its partition is split across threads.
const PARALLEL_PARTITION: usize = 1 << 16;

/// Moves the rows whose bin `left_bins` marks (1) to the front, keeping the order on both
/// sides; returns how many there are.
fn partition(rows: &mut [u32], bins: &[u8], left_bins: &[u8; 256], spill: &mut Vec<u32>) -> usize {
    if rows.len() >= PARALLEL_PARTITION {
        // Each chunk split on its own, then the chunks' left rows and right rows in order.
        let parts: Vec<(Vec<u32>, Vec<u32>)> = rows
            .par_chunks(PARALLEL_PARTITION / 4)
            .map(|chunk| {
                let mut right = Vec::new();
                let mut left = chunk.to_vec();
                let middle = split_rows(&mut left, bins, left_bins, &mut right);
                left.truncate(middle);
                (left, right)
            })
            .collect();
        let mut write = 0;
        for side in [0, 1] {
            for part in &parts {
                let rows_of_side = if side == 0 { &part.0 } else { &part.1 };
                rows[write..write + rows_of_side.len()].copy_from_slice(rows_of_side);
                write += rows_of_side.len();
            }
        }
        return parts.iter().map(|p| p.0.len()).sum();
    }
    split_rows(rows, bins, left_bins, spill)
}

/// [`partition`] on one thread, without a branch per row (which way a row goes is a coin
/// flip to the branch predictor): every row is written to both sides and only the side it
/// belongs to advances. `right` ends holding the right side's rows.
fn split_rows(rows: &mut [u32], bins: &[u8], left_bins: &[u8; 256], right: &mut Vec<u32>) -> usize {
    right.clear();
    right.resize(rows.len(), 0);
    let (mut write, mut spilled) = (0, 0);
    for read in 0..rows.len() {
        let row = rows[read];
        let left = usize::from(left_bins[usize::from(bins[row as usize])]);
        // `write <= read`, so this overwrites only rows already read.
        rows[write] = row;
        right[spilled] = row;
        write += left;
        spilled += 1 - left;
    }
    right.truncate(spilled);
    rows[write..].copy_from_slice(right);
    write
}
