//! Binary-classification metrics over predicted probabilities and 0/1 labels.
//!
//! ROC AUC uses average ranks for ties (the Mann-Whitney statistic), so it matches
//! scikit-learn's `roc_auc_score`; PR AUC is average precision as scikit-learn defines it.

use serde::{Deserialize, Serialize};

/// The metrics tenure reports for a binary classifier, in the order they are shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub log_loss: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub brier: f64,
    /// Share of positive labels.
    pub positive_rate: f64,
    pub rows: u64,
}

impl BinaryMetrics {
    /// Computes every metric; `threshold` decides the class for accuracy, precision, recall
    /// and F1. Panics if the slices differ in length (a caller bug).
    pub fn compute(scores: &[f64], labels: &[bool], threshold: f64) -> BinaryMetrics {
        assert_eq!(
            scores.len(),
            labels.len(),
            "scores and labels differ in length"
        );
        let n = scores.len();
        let (mut tp, mut fp, mut tn, mut fn_) = (0u64, 0u64, 0u64, 0u64);
        let mut log_loss = 0.0;
        let mut brier = 0.0;
        for (&p, &y) in scores.iter().zip(labels) {
            match (p >= threshold, y) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, false) => tn += 1,
                (false, true) => fn_ += 1,
            }
            let clipped = p.clamp(1e-15, 1.0 - 1e-15);
            log_loss -= if y {
                clipped.ln()
            } else {
                (1.0 - clipped).ln()
            };
            let t = if y { 1.0 } else { 0.0 };
            brier += (p - t) * (p - t);
        }
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let precision = ratio(tp, tp + fp);
        let recall = ratio(tp, tp + fn_);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        let n_f = n.max(1) as f64;
        BinaryMetrics {
            roc_auc: roc_auc(scores, labels),
            pr_auc: average_precision(scores, labels),
            log_loss: log_loss / n_f,
            accuracy: ratio(tp + tn, n as u64),
            precision,
            recall,
            f1,
            brier: brier / n_f,
            positive_rate: ratio(tp + fn_, n as u64),
            rows: n as u64,
        }
    }

    /// (name, value) pairs in display order.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("roc_auc", self.roc_auc),
            ("pr_auc", self.pr_auc),
            ("log_loss", self.log_loss),
            ("accuracy", self.accuracy),
            ("precision", self.precision),
            ("recall", self.recall),
            ("f1", self.f1),
            ("brier", self.brier),
            ("positive_rate", self.positive_rate),
            ("rows", self.rows as f64),
        ]
    }
}

/// Indices of `scores` sorted by descending score (NaN last).
fn descending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// Area under the ROC curve; NaN when only one class is present.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let positives = labels.iter().filter(|&&y| y).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    // Sum of the ranks of the positives, ties sharing their average rank (ascending ranks).
    let mut order = descending(scores);
    order.reverse();
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        let tied_positives = order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        rank_sum += average_rank * tied_positives;
        i = j + 1;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Average precision: the sum over thresholds of precision times the gain in recall.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> f64 {
    let positives = labels.iter().filter(|&&y| y).count() as f64;
    if positives == 0.0 {
        return f64::NAN;
    }
    let order = descending(scores);
    let (mut tp, mut seen, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        // All tied scores form one threshold.
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            if labels[order[j]] {
                tp += 1.0;
            }
            seen += 1.0;
            j += 1;
        }
        let recall = tp / positives;
        ap += (recall - last_recall) * (tp / seen);
        last_recall = recall;
        i = j;
    }
    ap
}

/// One bin of a calibration table: predictions in [lower, upper).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub rows: u64,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// Ten equal-width bins over [0, 1]; empty bins are left out.
pub fn calibration_table(scores: &[f64], labels: &[bool]) -> Vec<CalibrationBin> {
    const BINS: usize = 10;
    let mut rows = [0u64; BINS];
    let mut predicted = [0.0f64; BINS];
    let mut observed = [0.0f64; BINS];
    for (&p, &y) in scores.iter().zip(labels) {
        let bin = ((p * BINS as f64) as usize).min(BINS - 1);
        rows[bin] += 1;
        predicted[bin] += p;
        observed[bin] += if y { 1.0 } else { 0.0 };
    }
    (0..BINS)
        .filter(|&b| rows[b] > 0)
        .map(|b| CalibrationBin {
            lower: b as f64 / BINS as f64,
            upper: (b + 1) as f64 / BINS as f64,
            rows: rows[b],
            mean_predicted: predicted[b] / rows[b] as f64,
            observed_rate: observed[b] / rows[b] as f64,
        })
        .collect()
}

/// How well scores rank units by the effect of a treatment, measured on randomised data:
/// units sorted by score, highest first, and the treated and control units among the top k.
///
/// - The Qini curve at k: Q(k) = Y_t(k) - Y_c(k) N_t(k) / N_c(k), the extra positive outcomes
///   among the top k had all of them been treated (Y: positives, N: units; Y_t(k) alone
///   while no control unit is among them). `qini` is the mean over k of Q(k) minus the
///   random line Q(N) k / N, divided by N: the area between the curve and random targeting,
///   both axes as shares of the N units. Positive is better than random; comparable between
///   scorings of the same units (the demo's true effect gives its ceiling).
/// - `auuc`: the area under the uplift curve U(k) = (Y_t(k) / N_t(k) - Y_c(k) / N_c(k)) k / N
///   (0 while one group is empty), k as a share of N.
/// - `uplift_at_10/20/30`: the rate among treated minus the rate among control units in the
///   top 10, 20, 30 % (NaN if one group is empty there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpliftMetrics {
    #[serde(with = "nan_as_null")]
    pub qini: f64,
    #[serde(with = "nan_as_null")]
    pub auuc: f64,
    #[serde(with = "nan_as_null")]
    pub uplift_at_10: f64,
    #[serde(with = "nan_as_null")]
    pub uplift_at_20: f64,
    #[serde(with = "nan_as_null")]
    pub uplift_at_30: f64,
    pub rows: u64,
}

/// serde for a figure that may be NaN (not measurable on these rows): JSON has no NaN, so it
/// is written as null and read back as NaN, and a card holding one still loads.
pub mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
    }
}

impl UpliftMetrics {
    /// Panics if the slices differ in length (a caller bug). NaN scores rank last.
    pub fn compute(scores: &[f64], treated: &[bool], outcomes: &[bool]) -> UpliftMetrics {
        assert!(scores.len() == treated.len() && treated.len() == outcomes.len());
        let n = scores.len();
        let mut order: Vec<usize> = (0..n).collect();
        let key = |i: usize| {
            if scores[i].is_nan() {
                f64::NEG_INFINITY
            } else {
                scores[i]
            }
        };
        order.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
        let (mut n_t, mut n_c, mut y_t, mut y_c) = (0.0, 0.0, 0.0, 0.0);
        let mut qini_curve = Vec::with_capacity(n);
        let mut uplift_area = 0.0;
        let mut at = [f64::NAN; 3];
        let cut: Vec<usize> = [0.1, 0.2, 0.3]
            .iter()
            .map(|share| ((n as f64 * share).ceil() as usize).max(1))
            .collect();
        for (position, &i) in order.iter().enumerate() {
            let positive = if outcomes[i] { 1.0 } else { 0.0 };
            if treated[i] {
                n_t += 1.0;
                y_t += positive;
            } else {
                n_c += 1.0;
                y_c += positive;
            }
            qini_curve.push(if n_c > 0.0 {
                y_t - y_c * n_t / n_c
            } else {
                y_t
            });
            let rates = (n_t > 0.0 && n_c > 0.0).then(|| y_t / n_t - y_c / n_c);
            uplift_area += rates.map_or(0.0, |u| u * (position + 1) as f64 / n as f64);
            for (slot, &k) in cut.iter().enumerate() {
                if position + 1 == k {
                    at[slot] = rates.unwrap_or(f64::NAN);
                }
            }
        }
        let total = qini_curve.last().copied().unwrap_or(0.0);
        let nf = n as f64;
        let qini = qini_curve
            .iter()
            .enumerate()
            .map(|(k, q)| q - total * (k + 1) as f64 / nf)
            .sum::<f64>()
            / nf
            / nf;
        UpliftMetrics {
            qini: if n == 0 { f64::NAN } else { qini },
            auuc: if n == 0 { f64::NAN } else { uplift_area / nf },
            uplift_at_10: at[0],
            uplift_at_20: at[1],
            uplift_at_30: at[2],
            rows: n as u64,
        }
    }

    /// (name, value) in display order.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("qini", self.qini),
            ("auuc", self.auuc),
            ("uplift_at_10", self.uplift_at_10),
            ("uplift_at_20", self.uplift_at_20),
            ("uplift_at_30", self.uplift_at_30),
            ("rows", self.rows as f64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_computed_values() {
        // Perfect ranking, reversed ranking, and scikit-learn's documented example (0.75).
        assert_eq!(
            roc_auc(&[0.9, 0.8, 0.2, 0.1], &[true, true, false, false]),
            1.0
        );
        assert_eq!(
            roc_auc(&[0.1, 0.2, 0.8, 0.9], &[true, true, false, false]),
            0.0
        );
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            0.75
        );
        // All scores tied: a coin flip.
        assert_eq!(roc_auc(&[0.5; 4], &[true, false, true, false]), 0.5);
        assert!(roc_auc(&[0.5, 0.6], &[true, true]).is_nan());
    }

    #[test]
    fn average_precision_matches_scikit_learn() {
        // sklearn.metrics.average_precision_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.8333...
        let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert!((ap - 0.833_333_333).abs() < 1e-6, "{ap}");
    }

    #[test]
    fn threshold_metrics_and_losses() {
        let m = BinaryMetrics::compute(&[0.9, 0.6, 0.4, 0.1], &[true, false, true, false], 0.5);
        assert_eq!(
            (m.accuracy, m.precision, m.recall, m.f1),
            (0.5, 0.5, 0.5, 0.5)
        );
        let brier = (0.01 + 0.36 + 0.36 + 0.01) / 4.0;
        assert!((m.brier - brier).abs() < 1e-12);
        let log_loss = -(0.9f64.ln() + 0.4f64.ln() + 0.4f64.ln() + 0.9f64.ln()) / 4.0;
        assert!((m.log_loss - log_loss).abs() < 1e-12);
        assert_eq!(m.positive_rate, 0.5);
    }

    #[test]
    fn calibration_bins_count_every_row() {
        let bins = calibration_table(&[0.05, 0.07, 0.95, 1.0], &[false, true, true, true]);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[0].rows, 2);
        assert_eq!(bins[0].observed_rate, 0.5);
        assert_eq!(bins[1].rows, 2);
    }

    #[test]
    fn uplift_metrics_reward_ranking_by_the_effect() {
        // Units 0..4 respond to treatment (positive only if treated), units 4..8 do not
        // (positive either way); treated and control alternate.
        let treated: Vec<bool> = (0..8).map(|i| i % 2 == 0).collect();
        let outcomes: Vec<bool> = (0..8).map(|i| i >= 4 || i % 2 == 0).collect();
        let good: Vec<f64> = (0..8).map(|i| if i < 4 { 1.0 } else { 0.0 }).collect();
        let bad: Vec<f64> = good.iter().map(|s| -s).collect();
        let (g, b) = (
            UpliftMetrics::compute(&good, &treated, &outcomes),
            UpliftMetrics::compute(&bad, &treated, &outcomes),
        );
        assert!(g.qini > 0.0 && b.qini < 0.0, "{g:?} {b:?}");
        assert!(g.auuc > b.auuc);
        // Top 30 % of 8 is 3 units: 0 (treated, positive), 1 (control, negative), 2 (treated,
        // positive): uplift 1 - 0.
        assert_eq!(g.uplift_at_30, 1.0);
        // Top 10 % is one treated unit: no control, no uplift.
        assert!(g.uplift_at_10.is_nan());
        // Such a figure survives the card's JSON.
        let json = serde_json::to_string(&g).unwrap();
        let back: UpliftMetrics = serde_json::from_str(&json).unwrap();
        assert!(back.uplift_at_10.is_nan(), "{json}");
        assert!((back.qini - g.qini).abs() < 1e-15, "{json}");
    }
}
