//! Feature binning for the boosted trees: every training value becomes a one-byte bin, so that
//! split finding works on per-bin gradient histograms instead of sorted values.
//!
//! A numeric feature gets up to `max_bins` bins with boundaries halfway between distinct
//! training values (quantiles where there are more distinct values than bins). A categorical
//! feature gets one bin per frequent label, one `other` bin for rare and unseen labels, and
//! both kinds get a bin of their own for missing values, so missingness is learned like any
//! other value rather than imputed.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::preprocess::{FeatureColumn, FeatureKind, FeatureValues};

/// Bins of values per feature at most; with the missing bin, the bin index is a byte.
pub const MAX_BINS: usize = 255;
/// Labels of a categorical feature kept as bins of their own (the rest share `other`).
const MAX_LABELS: usize = 254;
/// Numeric values sampled to place the bin boundaries, as LightGBM does.
const BOUNDARY_SAMPLE: usize = 200_000;

/// How one feature's values map to bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureBins {
    /// Bin `i` holds the values in `(upper[i - 1], upper[i]]`, bin `upper.len()` those above
    /// the last boundary, and missing values (NULL, NaN) fall in bin `upper.len() + 1`.
    Numeric {
        #[serde(with = "super::tree::exact::list")]
        upper: Vec<f64>,
    },
    /// Bin `i` holds `labels[i]`; bin `labels.len()` every other label (rare at training or
    /// unseen), bin `labels.len() + 1` missing values.
    Categorical { labels: Vec<String> },
}

impl FeatureBins {
    /// Bins including the missing (and, for categories, the `other`) bin.
    pub fn count(&self) -> usize {
        match self {
            FeatureBins::Numeric { upper } => upper.len() + 2,
            FeatureBins::Categorical { labels } => labels.len() + 2,
        }
    }

    /// The bin of missing values.
    pub fn missing(&self) -> u8 {
        (self.count() - 1) as u8
    }

    pub fn kind(&self) -> FeatureKind {
        match self {
            FeatureBins::Numeric { .. } => FeatureKind::Numeric,
            FeatureBins::Categorical { .. } => FeatureKind::Categorical,
        }
    }

    /// Fits the bins of one feature on the rows `rows` of `column`.
    pub fn fit(
        name: &str,
        column: &FeatureColumn,
        rows: &[usize],
        max_bins: usize,
    ) -> Result<Self> {
        match column {
            FeatureColumn::Numeric(values) => {
                let step = rows.len().div_ceil(BOUNDARY_SAMPLE).max(1);
                let mut sample: Vec<f64> = rows
                    .iter()
                    .step_by(step)
                    .map(|&r| values[r])
                    .filter(|v| !v.is_nan())
                    .collect();
                sample.sort_by(f64::total_cmp);
                Ok(FeatureBins::Numeric {
                    upper: numeric_boundaries(&sample, max_bins.clamp(2, MAX_BINS)),
                })
            }
            FeatureColumn::Categorical(values) => {
                let mut counts: HashMap<&str, usize> = HashMap::new();
                for &r in rows {
                    if let Some(label) = values[r].as_deref() {
                        *counts.entry(label).or_default() += 1;
                    }
                }
                let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
                // Most frequent first; ties by label, so the bins do not depend on hashing.
                by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                let keep = max_bins.clamp(1, MAX_LABELS);
                Ok(FeatureBins::Categorical {
                    labels: by_count
                        .into_iter()
                        .take(keep)
                        .map(|(label, _)| label.to_string())
                        .collect(),
                })
            }
            FeatureColumn::TextList(_) | FeatureColumn::NumberList(_) => Err(Error::data(format!(
                "column {name} is a list; boosted trees take scalar features"
            ))),
        }
    }
}

/// Upper bin boundaries for sorted non-missing values: halfway between neighbouring distinct
/// values, each of the `max_bins` bins at most holding about `values / max_bins` values.
fn numeric_boundaries(sorted: &[f64], max_bins: usize) -> Vec<f64> {
    let mut distinct: Vec<(f64, usize)> = Vec::new();
    for &v in sorted {
        match distinct.last_mut() {
            Some((last, count)) if *last == v => *count += 1,
            _ => distinct.push((v, 1)),
        }
    }
    let mut upper = Vec::new();
    if distinct.len() <= max_bins {
        for pair in distinct.windows(2) {
            upper.push(midpoint(pair[0].0, pair[1].0));
        }
    } else {
        // Greedy equal-count bins over the distinct values: close a bin once it holds its
        // share of the values that remain, so one very common value cannot starve the rest.
        let mut remaining = sorted.len();
        let mut in_bin = 0;
        for (i, &(value, count)) in distinct.iter().enumerate() {
            in_bin += count;
            let bins_left = max_bins - upper.len();
            let share = remaining as f64 / bins_left as f64;
            if i + 1 < distinct.len() && bins_left > 1 && in_bin as f64 >= share {
                upper.push(midpoint(value, distinct[i + 1].0));
                remaining -= in_bin;
                in_bin = 0;
            }
        }
    }
    upper
}

/// A finite boundary between `a < b` (infinities in the data keep boundaries finite, so the
/// trees serialise to JSON).
fn midpoint(a: f64, b: f64) -> f64 {
    let middle = a + (b - a) / 2.0;
    if middle.is_finite() {
        middle
    } else if a.is_finite() {
        a
    } else {
        f64::MIN
    }
}

/// Training rows as bins, feature-major: `bins[feature][row]`.
pub struct BinnedData {
    pub bins: Vec<Vec<u8>>,
    pub features: Vec<FeatureBins>,
}

impl BinnedData {
    /// Bins the rows `rows` of each column with the fitted `features`, a feature per task.
    pub fn new(columns: &[&FeatureColumn], features: &[FeatureBins], rows: &[usize]) -> Self {
        let bins = columns
            .par_iter()
            .zip(features)
            .map(|(column, feature)| {
                let lookup = BinLookup::new(feature);
                match column {
                    FeatureColumn::Numeric(values) => {
                        rows.iter().map(|&r| lookup.number(values[r])).collect()
                    }
                    FeatureColumn::Categorical(labels) => rows
                        .iter()
                        .map(|&r| lookup.label(labels[r].as_deref()))
                        .collect(),
                    // Lists are refused when the bins are fitted.
                    FeatureColumn::TextList(_) | FeatureColumn::NumberList(_) => {
                        vec![feature.missing(); rows.len()]
                    }
                }
            })
            .collect();
        BinnedData {
            bins,
            features: features.to_vec(),
        }
    }

    pub fn rows(&self) -> usize {
        self.bins.first().map_or(0, Vec::len)
    }
}

/// Maps raw values of one feature to its bins.
pub struct BinLookup<'a> {
    feature: &'a FeatureBins,
    labels: HashMap<&'a str, u8>,
}

impl<'a> BinLookup<'a> {
    pub fn new(feature: &'a FeatureBins) -> Self {
        let labels = match feature {
            FeatureBins::Categorical { labels } => labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.as_str(), i as u8))
                .collect(),
            FeatureBins::Numeric { .. } => HashMap::new(),
        };
        BinLookup { feature, labels }
    }

    /// The bin of every value of `values`; values of the wrong kind count as missing (callers
    /// check kinds first).
    pub fn bin_column(&self, values: &FeatureValues<'_>) -> Vec<u8> {
        match values {
            FeatureValues::Numeric(values) => values.iter().map(|&v| self.number(v)).collect(),
            FeatureValues::Categorical(values) => values.iter().map(|&v| self.label(v)).collect(),
            _ => vec![self.feature.missing(); values.len()],
        }
    }

    /// The bin of a number (missing for NaN, or for a categorical feature).
    #[inline]
    pub fn number(&self, value: f64) -> u8 {
        match self.feature {
            FeatureBins::Numeric { upper } if !value.is_nan() => {
                upper.partition_point(|&u| u < value) as u8
            }
            _ => self.feature.missing(),
        }
    }

    /// The bin of a label: its own, `other` for labels without one, missing for NULL (and
    /// for a numeric feature).
    #[inline]
    pub fn label(&self, label: Option<&str>) -> u8 {
        match (self.feature, label) {
            (FeatureBins::Categorical { labels }, Some(label)) => self
                .labels
                .get(label)
                .copied()
                .unwrap_or(labels.len() as u8),
            _ => self.feature.missing(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_a_bin_each() {
        let upper = numeric_boundaries(&[1.0, 1.0, 2.0, 3.0, 3.0], 255);
        assert_eq!(upper, vec![1.5, 2.5]);
    }

    #[test]
    fn many_distinct_values_share_bins_evenly() {
        let values: Vec<f64> = (0..10_000).map(f64::from).collect();
        let upper = numeric_boundaries(&values, 10);
        assert_eq!(upper.len(), 9);
        let feature = FeatureBins::Numeric { upper };
        let bins = BinLookup::new(&feature).bin_column(&FeatureValues::Numeric(&values));
        let mut counts = [0usize; 10];
        for b in bins {
            counts[b as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..=1100).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn boundaries_stay_finite_with_infinite_values() {
        let upper = numeric_boundaries(&[f64::NEG_INFINITY, 0.0, f64::INFINITY], 255);
        assert!(upper.iter().all(|u| u.is_finite()));
        let feature = FeatureBins::Numeric { upper };
        let values = [f64::NEG_INFINITY, 0.0, f64::INFINITY, f64::NAN];
        let bins = BinLookup::new(&feature).bin_column(&FeatureValues::Numeric(&values));
        assert_eq!(bins, vec![0, 1, 2, 3]);
    }

    #[test]
    fn rare_and_unseen_labels_share_the_other_bin() {
        let column = FeatureColumn::Categorical(
            ["a", "a", "b", "b", "c"]
                .iter()
                .map(|s| Some(s.to_string()))
                .chain([None])
                .collect(),
        );
        let feature = FeatureBins::fit("f", &column, &[0, 1, 2, 3, 4, 5], 2).unwrap();
        assert_eq!(
            feature,
            FeatureBins::Categorical {
                labels: vec!["a".into(), "b".into()]
            }
        );
        let values = [Some("b"), Some("c"), Some("zzz"), None];
        let bins = BinLookup::new(&feature).bin_column(&FeatureValues::Categorical(&values));
        assert_eq!(bins, vec![1, 2, 2, 3]);
    }
}
