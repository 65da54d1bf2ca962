//! One regression tree of a boosted ensemble: routing a row to its leaf and exact TreeSHAP.
//!
//! Splits are kept on bins (as trained) and, for numeric features, also as the raw
//! threshold the bin boundary stands for, so scoring compares raw values without binning
//! them first. A missing value goes the way the split learned for it.

use serde::{Deserialize, Serialize};

/// A split's test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    /// Left when the value is at most `threshold` (its bin at most `bin`).
    Numeric {
        #[serde(with = "exact")]
        threshold: f64,
        bin: u8,
    },
    /// Left when the value's bin is in `left` (a 256-bit set); other labels, unseen ones
    /// included, go right unless the `other` bin is in the set.
    Categorical { left: [u64; 4] },
}

/// An internal node. A child index `>= 0` is another node, `< 0` is leaf `!child`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: u32,
    pub test: Test,
    pub missing_left: bool,
    pub left: i32,
    pub right: i32,
    /// Training rows through the node (TreeSHAP's cover).
    pub rows: f64,
    #[serde(with = "exact")]
    pub gain: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Internal nodes; the root is node 0 (none for a single-leaf tree).
    pub nodes: Vec<Node>,
    /// Leaf outputs, learning rate included.
    #[serde(with = "exact::list")]
    pub leaves: Vec<f64>,
    /// Training rows per leaf.
    pub leaf_rows: Vec<f64>,
}

/// Numbers that must come back from the card bit for bit (serde_json's default parsing may
/// be one unit in the last place off): written as Rust's shortest round-trip decimal text.
pub(crate) mod exact {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }

    pub mod list {
        use serde::ser::SerializeSeq;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(values: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
            let mut seq = serializer.serialize_seq(Some(values.len()))?;
            for v in values {
                seq.serialize_element(&v.to_string())?;
            }
            seq.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Vec<f64>, D::Error> {
            Vec::<String>::deserialize(deserializer)?
                .iter()
                .map(|t| t.parse().map_err(serde::de::Error::custom))
                .collect()
        }
    }
}

/// One row's value of a feature, as routing sees it.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Number(f64),
    Bin(u8),
    Missing,
}

pub fn in_set(set: &[u64; 4], bin: u8) -> bool {
    set[(bin >> 6) as usize] & (1 << (bin & 63)) != 0
}

impl Node {
    /// Whether a row with `value` (a number for numeric splits, a bin for categorical ones)
    /// goes left.
    #[inline]
    pub fn goes_left(&self, value: Value) -> bool {
        match (value, &self.test) {
            (Value::Missing, _) => self.missing_left,
            (Value::Number(v), Test::Numeric { threshold, .. }) => v <= *threshold,
            (Value::Bin(b), Test::Numeric { bin, .. }) => b <= *bin,
            (Value::Bin(b), Test::Categorical { left }) => in_set(left, b),
            (Value::Number(_), Test::Categorical { .. }) => false,
        }
    }

    fn child(&self, value: Value) -> i32 {
        if self.goes_left(value) {
            self.left
        } else {
            self.right
        }
    }
}

impl Tree {
    /// The leaf a row reaches; `value(feature)` gives the row's value of a feature.
    #[inline]
    pub fn leaf(&self, value: impl Fn(usize) -> Value) -> usize {
        if self.nodes.is_empty() {
            return 0;
        }
        let mut node = 0i32;
        while node >= 0 {
            let n = &self.nodes[node as usize];
            node = n.child(value(n.feature as usize));
        }
        !node as usize
    }

    /// The output for a row.
    #[inline]
    pub fn predict(&self, value: impl Fn(usize) -> Value) -> f64 {
        self.leaves[self.leaf(value)]
    }

    /// The tree's mean output over its training rows: its part of the SHAP baseline.
    pub fn expected_value(&self) -> f64 {
        let total: f64 = self.leaf_rows.iter().sum();
        if total == 0.0 {
            return 0.0;
        }
        self.leaves
            .iter()
            .zip(&self.leaf_rows)
            .map(|(v, n)| v * n)
            .sum::<f64>()
            / total
    }

    /// Adds the row's exact SHAP values (path-dependent TreeSHAP, Lundberg et al. 2018,
    /// algorithm 2) to `phi`, one per feature.
    pub fn add_shap(
        &self,
        value: &dyn Fn(usize) -> Value,
        phi: &mut [f64],
        workspace: &mut ShapWorkspace,
    ) {
        if self.nodes.is_empty() {
            return;
        }
        workspace.fit(self.depth());
        self.shap_recurse(0, value, phi, &mut workspace.steps, 0, 0, (1.0, 1.0, None));
    }

    /// Internal nodes on the longest path from the root.
    pub(crate) fn depth(&self) -> usize {
        fn below(tree: &Tree, node: i32) -> usize {
            if node < 0 {
                return 0;
            }
            let n = &tree.nodes[node as usize];
            1 + below(tree, n.left).max(below(tree, n.right))
        }
        below(self, 0)
    }

    fn cover(&self, child: i32) -> f64 {
        if child >= 0 {
            self.nodes[child as usize].rows
        } else {
            self.leaf_rows[!child as usize]
        }
    }

    /// Visits `child` with the parent's path in `workspace[start - parent_len..start]`;
    /// `step` is (zero fraction, one fraction, feature) of the edge into `child`.
    #[allow(clippy::too_many_arguments)]
    fn shap_recurse(
        &self,
        child: i32,
        value: &dyn Fn(usize) -> Value,
        phi: &mut [f64],
        workspace: &mut [PathStep],
        start: usize,
        parent_len: usize,
        step: (f64, f64, Option<usize>),
    ) {
        let (before, path) = workspace.split_at_mut(start);
        path[..parent_len].copy_from_slice(&before[start - parent_len..]);
        let mut len = parent_len;
        extend(path, &mut len, step.0, step.1, step.2);
        if child < 0 {
            let leaf = self.leaves[!child as usize];
            for i in 1..len {
                let step = path[i];
                let weight = unwound_sum(&path[..len], i);
                if let Some(f) = step.feature {
                    phi[f] += weight * (step.one - step.zero) * leaf;
                }
            }
            return;
        }
        let node = &self.nodes[child as usize];
        let split_feature = node.feature as usize;
        let (hot, cold) = if node.goes_left(value(split_feature)) {
            (node.left, node.right)
        } else {
            (node.right, node.left)
        };
        let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);
        if let Some(k) = path[..len]
            .iter()
            .position(|s| s.feature == Some(split_feature))
        {
            incoming_zero = path[k].zero;
            incoming_one = path[k].one;
            unwind(path, &mut len, k);
        }
        let rows = node.rows;
        let hot_zero = self.cover(hot) / rows;
        let cold_zero = self.cover(cold) / rows;
        let next = start + len;
        let feature = Some(split_feature);
        let hot_step = (hot_zero * incoming_zero, incoming_one, feature);
        self.shap_recurse(hot, value, phi, workspace, next, len, hot_step);
        let cold_step = (cold_zero * incoming_zero, 0.0, feature);
        self.shap_recurse(cold, value, phi, workspace, next, len, cold_step);
    }
}

/// Room for TreeSHAP's paths: each level of the recursion copies its parent's path into the
/// space after it, as the paper's algorithm does, so one buffer serves every row and tree.
pub struct ShapWorkspace {
    steps: Vec<PathStep>,
}

impl ShapWorkspace {
    pub fn for_trees(trees: &[Tree]) -> ShapWorkspace {
        let mut workspace = ShapWorkspace { steps: Vec::new() };
        for tree in trees {
            workspace.fit(tree.depth());
        }
        workspace
    }

    /// Grows the buffer for a tree `depth` splits deep: paths of 1, 2, ... depth + 1 steps.
    fn fit(&mut self, depth: usize) {
        let levels = depth + 2;
        let needed = levels * (levels + 1) / 2;
        if self.steps.len() < needed {
            self.steps.resize(needed, PathStep::default());
        }
    }
}

/// One feature on the path from the root, with the fractions of zero (feature unknown) and
/// one (feature known) paths through it, and the permutation weight.
#[derive(Debug, Clone, Copy, Default)]
struct PathStep {
    feature: Option<usize>,
    zero: f64,
    one: f64,
    weight: f64,
}

/// Appends a step to the path `path[..len]`.
fn extend(path: &mut [PathStep], len: &mut usize, zero: f64, one: f64, feature: Option<usize>) {
    let depth = *len;
    path[depth] = PathStep {
        feature,
        zero,
        one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    *len += 1;
    let d = depth as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one * path[i].weight * (i as f64 + 1.0) / (d + 1.0);
        path[i].weight = zero * path[i].weight * (d - i as f64) / (d + 1.0);
    }
}

/// Undoes [`extend`] for the step at `index` of `path[..len]` and removes it.
fn unwind(path: &mut [PathStep], len: &mut usize, index: usize) {
    let depth = *len - 1;
    let d = depth as f64;
    let (one, zero) = (path[index].one, path[index].zero);
    let mut next_one = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let kept = path[i].weight;
            path[i].weight = next_one * (d + 1.0) / ((i as f64 + 1.0) * one);
            next_one = kept - path[i].weight * zero * (d - i as f64) / (d + 1.0);
        } else {
            path[i].weight = path[i].weight * (d + 1.0) / (zero * (d - i as f64));
        }
    }
    // Shift the later steps down; the weights stay where they were recomputed.
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
    *len -= 1;
}

/// The total permutation weight the path would have with the step at `index` unwound.
fn unwound_sum(path: &[PathStep], index: usize) -> f64 {
    let depth = path.len() - 1;
    let d = depth as f64;
    let (one, zero) = (path[index].one, path[index].zero);
    let mut next_one = path[depth].weight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let part = next_one * (d + 1.0) / ((i as f64 + 1.0) * one);
            total += part;
            next_one = path[i].weight - part * zero * (d - i as f64) / (d + 1.0);
        } else if zero != 0.0 {
            total += path[i].weight / zero / ((d - i as f64) / (d + 1.0));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(feature: u32, threshold: f64, left: i32, right: i32, rows: f64) -> Node {
        Node {
            feature,
            test: Test::Numeric { threshold, bin: 0 },
            missing_left: true,
            left,
            right,
            rows,
            gain: 1.0,
        }
    }

    /// A depth-3 tree over 3 features that uses feature 0 twice on one path.
    fn sample_tree() -> Tree {
        Tree {
            nodes: vec![
                numeric(0, 0.5, 1, 2, 100.0),
                numeric(1, 0.5, -1, 3, 60.0),   // leaf 0 | node 3
                numeric(2, 0.5, !1, !2, 40.0),  // leaf 1 | leaf 2
                numeric(0, 0.25, !3, !4, 35.0), // leaf 3 | leaf 4
            ],
            leaves: vec![1.0, -2.0, 0.5, 3.0, -1.0],
            leaf_rows: vec![25.0, 10.0, 30.0, 20.0, 15.0],
        }
    }

    /// The path-dependent expectation of the tree given only the features in `known`.
    fn conditional(tree: &Tree, x: &[f64], known: &[bool], child: i32) -> f64 {
        if child < 0 {
            return tree.leaves[!child as usize];
        }
        let node = &tree.nodes[child as usize];
        let f = node.feature as usize;
        if known[f] {
            let next = node.child(Value::Number(x[f]));
            conditional(tree, x, known, next)
        } else {
            let (l, r) = (tree.cover(node.left), tree.cover(node.right));
            (l * conditional(tree, x, known, node.left)
                + r * conditional(tree, x, known, node.right))
                / (l + r)
        }
    }

    /// Shapley values by enumerating every coalition.
    fn brute_force_shap(tree: &Tree, x: &[f64]) -> Vec<f64> {
        let n = x.len();
        let factorial = |k: usize| (1..=k).map(|i| i as f64).product::<f64>();
        let mut phi = vec![0.0; n];
        for (i, phi_i) in phi.iter_mut().enumerate() {
            for mask in 0u32..(1 << n) {
                if mask & (1 << i) != 0 {
                    continue;
                }
                let size = mask.count_ones() as usize;
                let weight = factorial(size) * factorial(n - size - 1) / factorial(n);
                let mut known: Vec<bool> = (0..n).map(|j| mask & (1 << j) != 0).collect();
                let without = conditional(tree, x, &known, 0);
                known[i] = true;
                let with = conditional(tree, x, &known, 0);
                *phi_i += weight * (with - without);
            }
        }
        phi
    }

    #[test]
    fn the_leaf_bits_of_the_sample_tree_are_consistent() {
        // The sample tree's covers add up (the parent covers its children).
        let tree = sample_tree();
        for node in &tree.nodes {
            assert_eq!(node.rows, tree.cover(node.left) + tree.cover(node.right));
        }
    }

    #[test]
    fn tree_shap_matches_brute_force_shapley_values() {
        let tree = sample_tree();
        for x in [
            [0.1, 0.9, 0.2],
            [0.4, 0.1, 0.9],
            [0.9, 0.9, 0.9],
            [0.9, 0.0, 0.0],
            [0.3, 0.7, 0.6],
        ] {
            let mut phi = vec![0.0; 3];
            let mut workspace = ShapWorkspace::for_trees(std::slice::from_ref(&tree));
            tree.add_shap(&|f| Value::Number(x[f]), &mut phi, &mut workspace);
            let expected = brute_force_shap(&tree, &x);
            for (a, b) in phi.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-12, "{x:?}: {phi:?} against {expected:?}");
            }
            // Local accuracy: the values add up to the prediction minus the mean.
            let total: f64 = phi.iter().sum::<f64>() + tree.expected_value();
            let prediction = tree.predict(|f| Value::Number(x[f]));
            assert!((total - prediction).abs() < 1e-12);
        }
    }

    #[test]
    fn missing_values_take_the_learned_side() {
        let tree = sample_tree();
        // Every split sends missing values left: node 0 → node 1 → leaf 0.
        assert_eq!(tree.leaf(|_| Value::Missing), 0);
        let set = {
            let mut s = [0u64; 4];
            s[3] |= 1 << 2; // bin 194
            s
        };
        assert!(in_set(&set, 194));
        assert!(!in_set(&set, 2));
    }
}
