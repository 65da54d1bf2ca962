//! Gradient-boosted decision trees for binary targets (`model = 'gbdt'`).
//!
//! Histogram-based and leaf-wise like LightGBM: features are binned once ([`bins`]), each
//! round fits one tree ([`grow`]) to the gradient and hessian of the log loss, missing values
//! learn their own direction at every split and categorical features split natively (sets of
//! labels, not one-hot columns). Boosting stops early when the validation loss has not
//! improved for `patience` rounds, and keeps the best round's trees. Nothing is random, so
//! the same data and options give the same model.
//!
//! Explanations are exact: [`Booster::shap`] runs TreeSHAP ([`tree`]) and its values add up
//! to each row's log-odds.

pub mod bins;
mod grow;
mod score;
pub mod tree;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::TrainingData;
use crate::error::{Error, Result};
use crate::metrics::roc_auc;
use crate::options::Options;
use crate::preprocess::{FeatureColumn, FeatureValues};
use crate::train::EpochReport;

use bins::{BinLookup, BinnedData, FeatureBins};
pub use grow::GrowOptions;
pub use score::FlatForest;
use tree::{Tree, Value};

/// Boosting hyper-parameters, from OPTIONS.
#[derive(Debug, Clone, PartialEq)]
pub struct GbdtOptions {
    pub grow: GrowOptions,
    /// Boosting rounds at most.
    pub trees: usize,
    /// Rounds without a lower validation loss before boosting stops.
    pub patience: usize,
    pub max_bins: usize,
    /// Labels of a categorical feature with bins of their own; the rest share one.
    pub max_categories: usize,
}

/// The option names only boosted trees take (so `model = 'auto'` can tell them apart).
pub const OPTION_NAMES: &[&str] = &[
    "trees",
    "num_leaves",
    "max_depth",
    "min_rows_in_leaf",
    "l2",
    "max_bins",
];

impl GbdtOptions {
    /// LightGBM's defaults, with early stopping.
    pub fn defaults() -> GbdtOptions {
        GbdtOptions {
            grow: GrowOptions {
                num_leaves: 31,
                max_depth: 0,
                min_rows_in_leaf: 20,
                min_hessian_in_leaf: 1e-3,
                l2: 0.0,
                categorical_l2: 10.0,
                max_categories_per_split: 32,
                learning_rate: 0.1,
            },
            trees: 500,
            patience: 20,
            max_bins: 255,
            max_categories: 100,
        }
    }

    /// Reads the boosting options; `learning_rate`, `patience` and `max_categories` are shared
    /// with the networks and passed in.
    pub fn from_options(
        options: &mut Options,
        learning_rate: Option<f64>,
        patience: Option<usize>,
        max_categories: usize,
    ) -> Result<GbdtOptions> {
        let d = GbdtOptions::defaults();
        Ok(GbdtOptions {
            grow: GrowOptions {
                num_leaves: options.number("num_leaves", d.grow.num_leaves, 2..=4096)?,
                max_depth: options.number("max_depth", d.grow.max_depth, 0..=64)?,
                min_rows_in_leaf: options.number(
                    "min_rows_in_leaf",
                    d.grow.min_rows_in_leaf,
                    1..=1_000_000,
                )?,
                l2: options.number("l2", d.grow.l2, 0.0..=1e6)?,
                learning_rate: learning_rate.unwrap_or(d.grow.learning_rate),
                ..d.grow
            },
            trees: options.number("trees", d.trees, 1..=100_000)?,
            patience: patience.unwrap_or(d.patience),
            max_bins: options.number("max_bins", d.max_bins, 2..=bins::MAX_BINS)?,
            max_categories,
        })
    }
}

/// A trained ensemble: the bins its splits refer to and its trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Booster {
    pub features: Vec<FeatureBins>,
    /// Log-odds every row starts from: the training positive rate's.
    #[serde(with = "tree::exact")]
    pub base_score: f64,
    pub trees: Vec<Tree>,
}

/// What boosting observed.
pub struct BoostReport {
    pub best_round: usize,
    pub history: Vec<EpochReport>,
}

impl Booster {
    /// Boosts on the `train` rows, stopping early on the `validation` rows. Positives weigh
    /// `positive_weight` in the loss.
    pub fn train(
        data: &TrainingData,
        train: &[usize],
        validation: &[usize],
        positive_weight: f64,
        options: &GbdtOptions,
        on_round: &mut dyn FnMut(&EpochReport),
        cancel: &AtomicBool,
    ) -> Result<(Booster, BoostReport)> {
        let columns: Vec<&FeatureColumn> = data.features.iter().map(|(_, c)| c).collect();
        let features = data
            .features
            .par_iter()
            .map(|(name, column)| {
                let limit = match column {
                    FeatureColumn::Categorical(_) => options.max_categories,
                    _ => options.max_bins,
                };
                FeatureBins::fit(name, column, train, limit)
            })
            .collect::<Vec<_>>()
            // In column order, so the error names the first bad column whatever the threads.
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let train_bins = BinnedData::new(&columns, &features, train);
        let validation_bins = BinnedData::new(&columns, &features, validation);
        let train_y: Vec<bool> = train.iter().map(|&r| data.target[r]).collect();
        let validation_y: Vec<bool> = validation.iter().map(|&r| data.target[r]).collect();
        let weight = |y: bool| row_weight(y, positive_weight);

        let (positives, total) = train_y.iter().fold((0.0, 0.0), |(p, t), &y| {
            (p + if y { weight(y) } else { 0.0 }, t + weight(y))
        });
        let rate = (positives / total).clamp(1e-6, 1.0 - 1e-6);
        let base_score = (rate / (1.0 - rate)).ln();

        let mut grower = grow::Grower::new(&train_bins, &options.grow);
        let mut scores = vec![base_score; train_y.len()];
        let mut validation_scores = vec![base_score; validation_y.len()];
        let mut gradients = vec![0.0; train_y.len()];
        let mut hessians = vec![0.0; train_y.len()];
        log_loss_and_gradients(
            &scores,
            &train_y,
            positive_weight,
            &mut gradients,
            &mut hessians,
        );
        let mut trees: Vec<Tree> = Vec::new();
        let mut history = Vec::new();
        let (mut best_loss, mut best_round) = (f64::INFINITY, 0);
        for round in 1..=options.trees {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let started = Instant::now();
            let tree = grower.grow(&gradients, &hessians, &mut scores);
            validation_scores
                .par_iter_mut()
                .enumerate()
                .for_each(|(i, score)| {
                    *score += tree.predict(|f| bin_value(&validation_bins, f, i));
                });
            trees.push(tree);
            // The next round's gradients come with this round's loss, in one pass.
            let train_loss = log_loss_and_gradients(
                &scores,
                &train_y,
                positive_weight,
                &mut gradients,
                &mut hessians,
            );
            // Without validation rows (a refit on every row) the training loss is watched; it
            // keeps falling, so every round runs.
            let validation_loss = if validation_y.is_empty() {
                train_loss
            } else {
                log_loss(&validation_scores, &validation_y, positive_weight)
            };
            // AUC sorts the validation rows: every tenth round and the last is enough for
            // the progress report.
            let validation_auc = (!validation_y.is_empty()
                && (round % 10 == 0 || round == options.trees))
                .then(|| {
                    let p: Vec<f64> = validation_scores.iter().map(|&s| sigmoid(s)).collect();
                    roc_auc(&p, &validation_y)
                });
            let report = EpochReport {
                epoch: round,
                epochs: options.trees,
                train_loss,
                validation_loss,
                validation_auc,
                seconds: started.elapsed().as_secs_f64(),
            };
            on_round(&report);
            history.push(report);
            if validation_loss < best_loss - 1e-12 {
                best_loss = validation_loss;
                best_round = round;
            } else if round - best_round >= options.patience {
                break;
            }
            // A round whose tree could not split changes nothing from here on.
            if trees.last().is_some_and(|t| t.nodes.is_empty()) {
                break;
            }
        }
        trees.truncate(best_round.max(1));
        Ok((
            Booster {
                features,
                base_score,
                trees,
            },
            BoostReport {
                best_round: best_round.max(1),
                history,
            },
        ))
    }

    /// Log-odds for one batch of feature columns.
    pub fn margins(&self, columns: &[FeatureValues<'_>]) -> Result<Vec<f64>> {
        self.margins_with(&FlatForest::new(self), columns)
    }

    /// [`Booster::margins`] with the trees already flattened (scorers keep one).
    pub fn margins_with(
        &self,
        forest: &FlatForest,
        columns: &[FeatureValues<'_>],
    ) -> Result<Vec<f64>> {
        let inputs = self.inputs(columns)?;
        let rows = columns.first().map_or(0, FeatureValues::len);
        Ok(forest.margins(&inputs, rows))
    }

    /// The mean log-odds over the training rows (the SHAP baseline) and each row's exact SHAP
    /// values, one per feature; baseline plus values is the row's log-odds.
    pub fn shap(&self, columns: &[FeatureValues<'_>]) -> Result<(f64, Vec<Vec<f64>>)> {
        let inputs = self.inputs(columns)?;
        let rows = columns.first().map_or(0, FeatureValues::len);
        let values = self.shap_rows(rows, |r, f| inputs[f].value(r));
        Ok((self.expected_value(), values))
    }

    /// SHAP values of the first `rows` rows given as bins.
    pub(crate) fn shap_binned(&self, data: &BinnedData, rows: usize) -> Vec<Vec<f64>> {
        self.shap_rows(rows.min(data.rows()), |r, f| bin_value(data, f, r))
    }

    /// SHAP values of rows `0..rows`, `value(row, feature)` giving the inputs.
    fn shap_rows(
        &self,
        rows: usize,
        value: impl Fn(usize, usize) -> Value + Sync,
    ) -> Vec<Vec<f64>> {
        (0..rows)
            .into_par_iter()
            .map_init(
                || tree::ShapWorkspace::for_trees(&self.trees),
                |workspace, r| {
                    let row_value = |f: usize| value(r, f);
                    let mut phi = vec![0.0; self.features.len()];
                    for tree in &self.trees {
                        tree.add_shap(&row_value, &mut phi, workspace);
                    }
                    phi
                },
            )
            .collect()
    }

    pub fn expected_value(&self) -> f64 {
        self.base_score + self.trees.iter().map(Tree::expected_value).sum::<f64>()
    }

    /// The columns in the form routing reads: raw numbers, or categories as bins.
    fn inputs<'a>(&self, columns: &[FeatureValues<'a>]) -> Result<Vec<Input<'a>>> {
        if columns.len() != self.features.len() {
            return Err(Error::input(format!(
                "the model has {} features, got {} columns",
                self.features.len(),
                columns.len()
            )));
        }
        columns
            .iter()
            .zip(&self.features)
            .enumerate()
            .map(|(i, (column, feature))| match (column, feature) {
                (FeatureValues::Numeric(values), FeatureBins::Numeric { .. }) => {
                    Ok(Input::Number(values))
                }
                (FeatureValues::Categorical(_), FeatureBins::Categorical { .. }) => {
                    Ok(Input::Bins(
                        BinLookup::new(feature).bin_column(column),
                        feature.missing(),
                    ))
                }
                _ => Err(Error::input(format!(
                    "feature {} was {} at training, got {}",
                    i + 1,
                    feature.kind(),
                    column.kind()
                ))),
            })
            .collect()
    }
}

/// One feature column ready for routing.
enum Input<'a> {
    Number(&'a [f64]),
    /// Bins and the missing bin.
    Bins(Vec<u8>, u8),
}

impl Input<'_> {
    #[inline]
    fn value(&self, row: usize) -> Value {
        match self {
            Input::Number(values) => {
                let v = values[row];
                if v.is_nan() {
                    Value::Missing
                } else {
                    Value::Number(v)
                }
            }
            Input::Bins(bins, missing) => {
                let b = bins[row];
                if b == *missing {
                    Value::Missing
                } else {
                    Value::Bin(b)
                }
            }
        }
    }
}

#[inline]
fn bin_value(data: &BinnedData, feature: usize, row: usize) -> Value {
    let b = data.bins[feature][row];
    if b == data.features[feature].missing() {
        Value::Missing
    } else {
        Value::Bin(b)
    }
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Rows summed together in the loss, so that the sum does not depend on how threads split
/// the work.
const LOSS_CHUNK: usize = 1 << 16;

/// Weighted mean log loss of log-odds `scores`. Summed in fixed chunks (in parallel) and
/// then in order, so the result does not depend on how threads split the work.
fn log_loss(scores: &[f64], y: &[bool], positive_weight: f64) -> f64 {
    let parts: Vec<(f64, f64)> = scores
        .par_chunks(LOSS_CHUNK)
        .zip(y.par_chunks(LOSS_CHUNK))
        .map(|(scores, y)| {
            let (mut loss, mut total) = (0.0, 0.0);
            for (&s, &y) in scores.iter().zip(y) {
                let w = row_weight(y, positive_weight);
                loss += w * row_log_loss(s, y);
                total += w;
            }
            (loss, total)
        })
        .collect();
    mean_of_parts(&parts)
}

/// [`log_loss`], and the loss's gradient and hessian at every score (for the next tree)
/// from the same pass over the rows.
fn log_loss_and_gradients(
    scores: &[f64],
    y: &[bool],
    positive_weight: f64,
    gradients: &mut [f64],
    hessians: &mut [f64],
) -> f64 {
    let parts: Vec<(f64, f64)> = scores
        .par_chunks(LOSS_CHUNK)
        .zip(y.par_chunks(LOSS_CHUNK))
        .zip(gradients.par_chunks_mut(LOSS_CHUNK))
        .zip(hessians.par_chunks_mut(LOSS_CHUNK))
        .map(|(((scores, y), gradients), hessians)| {
            let (mut loss, mut total) = (0.0, 0.0);
            for (((&s, &y), g), h) in scores.iter().zip(y).zip(gradients).zip(hessians) {
                let w = row_weight(y, positive_weight);
                let p = sigmoid(s);
                *g = w * (p - f64::from(u8::from(y)));
                *h = w * (p * (1.0 - p)).max(1e-16);
                loss += w * row_log_loss(s, y);
                total += w;
            }
            (loss, total)
        })
        .collect();
    mean_of_parts(&parts)
}

/// What a row weighs in the loss: positives `positive_weight`, negatives 1.
#[inline]
fn row_weight(y: bool, positive_weight: f64) -> f64 {
    if y { positive_weight } else { 1.0 }
}

/// log(1 + e^-s) for a positive, log(1 + e^s) for a negative, without overflow.
#[inline]
fn row_log_loss(score: f64, y: bool) -> f64 {
    let z = if y { -score } else { score };
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

fn mean_of_parts(parts: &[(f64, f64)]) -> f64 {
    let (loss, total) = parts
        .iter()
        .fold((0.0, 0.0), |(l, t), (pl, pt)| (l + pl, t + pt));
    loss / total.max(f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests;
