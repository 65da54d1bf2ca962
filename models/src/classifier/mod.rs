//! Binary classifiers on tabular features: KIND churn_classifier, risk_classifier and the
//! outcome models of KIND uplift.
//!
//! Three families (`model = ...`): gradient-boosted trees ([`crate::gbdt`], trained in
//! [`boosted`]), and an MLP (`hidden = '64,32'`, ReLU, optional dropout) or, with
//! `hidden = ''`, logistic regression, over [`Preprocessor`] output. `model = 'auto'`, the
//! default, cross-validates them and keeps the best ([`select`]).
//!
//! The networks are Trained with AdamW on shuffled mini-batches to
//! minimise (optionally class-weighted) binary cross-entropy, with early stopping on a
//! validation split and the best epoch's weights kept. Weights are initialised and dropout
//! masks drawn from one seeded generator, so a seed gives the same model every time.
//!
//! Scoring runs the network transposed, `W · Xᵀ`, because the preprocessor's feature-major
//! matrix *is* `Xᵀ` stored contiguously: no transpose or per-row copy between Arrow and the
//! matmul.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::data::{TrainingData, encode, fit_and_encode, stratified_split};
use crate::error::{Error, Result};
use crate::gbdt::{Booster, FlatForest};
use crate::kernels::dense::DenseNetwork;
use crate::kernels::dense_training::CpuTrainer;
use crate::metrics::{BinaryMetrics, CalibrationBin, calibration_table, roc_auc};
use crate::preprocess::{FeatureValues, Matrix, Preprocessor};
use crate::train::{EarlyStopping, EpochReport, weighted_bce_with_logits, weighted_log_loss};

mod boosted;
mod logistic;
mod options;
mod select;

pub use options::{ClassifierOptions, Family};
pub use select::CandidateScore;

/// What training observed, saved in the card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingReport {
    pub rows: u64,
    pub train_rows: u64,
    pub validation_rows: u64,
    pub best_epoch: usize,
    pub history: Vec<EpochReport>,
    pub validation: BinaryMetrics,
    pub calibration: Vec<CalibrationBin>,
    /// Permutation importance per feature: drop in validation ROC AUC when it is shuffled.
    pub importance: Vec<(String, f64)>,
    /// Mean |SHAP value| per feature over validation rows, in log-odds (boosted trees).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shap_importance: Vec<(String, f64)>,
    pub seconds: f64,
}

/// The parts of a classifier saved in its card (the weights go to safetensors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierSpec {
    pub preprocessor: Preprocessor,
    pub hidden: Vec<usize>,
    pub threshold: f64,
    pub training: TrainingReport,
    /// The trees of a boosted classifier; the network's weights are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booster: Option<Booster>,
    /// What `model = 'auto'` cross-validated, in the order tried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selection: Vec<CandidateScore>,
    /// The classifiers of a blend, whose log-odds it averages (their weights are stored
    /// under `members.N.`); empty for a single model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<ClassifierSpec>,
}

impl ClassifierSpec {
    /// The family trained: 'gbdt', 'logistic' or 'mlp'.
    pub fn family(&self) -> Family {
        if !self.members.is_empty() {
            Family::Blend
        } else if self.booster.is_some() {
            Family::Gbdt
        } else if self.hidden.is_empty() {
            Family::Logistic
        } else {
            Family::Mlp
        }
    }
}

/// A trained classifier, ready to score.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub spec: ClassifierSpec,
    /// (weight `[out, in]`, bias `[out]`) per layer.
    layers: Vec<(Tensor, Tensor)>,
    device: Device,
    /// The same weights for the fused CPU scoring path; None on other devices.
    dense: Option<DenseNetwork>,
    /// A blend's classifiers (`spec.members` built).
    pub(crate) members: Vec<Classifier>,
    /// Boosted trees flattened for scoring.
    forest: Option<FlatForest>,
}

impl Classifier {
    /// Trains on `data`. `on_epoch` sees each epoch's losses; setting `cancel` stops training
    /// at the next mini-batch with [`Error::Cancelled`].
    pub fn train(
        data: &TrainingData,
        options: &ClassifierOptions,
        on_epoch: &mut dyn FnMut(&EpochReport),
        cancel: &AtomicBool,
    ) -> Result<Classifier> {
        Classifier::train_with(data, options, None, on_epoch, cancel)
    }

    /// [`Classifier::train`] with the preprocessing given (fitted elsewhere, shared by the
    /// classifiers of one model) instead of fitted on the training rows.
    pub(crate) fn train_with(
        data: &TrainingData,
        options: &ClassifierOptions,
        preprocessor: Option<&Preprocessor>,
        on_epoch: &mut dyn FnMut(&EpochReport),
        cancel: &AtomicBool,
    ) -> Result<Classifier> {
        match options.family {
            Family::Gbdt if preprocessor.is_none() => {
                return boosted::train(data, options, on_epoch, cancel);
            }
            Family::Auto if preprocessor.is_none() => {
                return select::train(data, options, on_epoch, cancel);
            }
            Family::Blend => {
                return Err(Error::option(
                    "a blend is what model = 'auto' may choose; it is not trained directly",
                ));
            }
            Family::Gbdt | Family::Auto => {
                return Err(Error::option(
                    "models that share their preprocessing are networks: use model = 'mlp' \
                     or 'logistic'",
                ));
            }
            Family::Logistic | Family::Mlp => {}
        }
        let started = Instant::now();
        let device = crate::compute::device(&options.device)?;
        let rows = data.target.len();
        validate(data, options)?;

        let (train_idx, validation_idx) = split(data, options);
        let (preprocessor, matrix) = match preprocessor {
            Some(given) => (given.clone(), encode(given, data)?),
            None => fit_and_encode(data, &train_idx, options.max_categories)?,
        };
        let train_x = matrix.select_rows(&train_idx);
        let validation_x = matrix.select_rows(&validation_idx);
        let train_y: Vec<bool> = train_idx.iter().map(|&i| data.target[i]).collect();
        let validation_y: Vec<bool> = validation_idx.iter().map(|&i| data.target[i]).collect();

        let positives = train_y.iter().filter(|&&y| y).count() as f64;
        let positive_weight = if options.balanced {
            (train_y.len() as f64 - positives) / positives
        } else {
            1.0
        };

        let (best_epoch, layers, history) = if options.family == Family::Logistic {
            logistic::fit(
                &train_x,
                &train_y,
                positive_weight,
                &device,
                on_epoch,
                cancel,
            )?
        } else {
            descend(
                Split {
                    train_x: &train_x,
                    train_y: &train_y,
                    validation_x: &validation_x,
                    validation_y: &validation_y,
                    positive_weight,
                },
                preprocessor.width(),
                options,
                &device,
                on_epoch,
                cancel,
            )?
        };

        let scores = score(&layers, &validation_x, &device)?;
        let validation = BinaryMetrics::compute(&scores, &validation_y, options.threshold);
        let calibration = calibration_table(&scores, &validation_y);
        let importance = permutation_importance(
            &layers,
            &preprocessor,
            &validation_x,
            &validation_y,
            validation.roc_auc,
            options.seed,
            &device,
        )?;
        let spec = ClassifierSpec {
            preprocessor,
            hidden: options.hidden.clone(),
            threshold: options.threshold,
            training: TrainingReport {
                rows: rows as u64,
                train_rows: train_y.len() as u64,
                validation_rows: validation_y.len() as u64,
                best_epoch,
                history,
                validation,
                calibration,
                importance,
                shap_importance: Vec::new(),
                seconds: started.elapsed().as_secs_f64(),
            },
            booster: None,
            selection: Vec::new(),
            members: Vec::new(),
        };
        Classifier::new(spec, layers, device)
    }

    fn new(spec: ClassifierSpec, layers: Vec<(Tensor, Tensor)>, device: Device) -> Result<Self> {
        let dense = match device {
            Device::Cpu if spec.family() != Family::Gbdt && spec.family() != Family::Blend => {
                Some(DenseNetwork::from_tensors(&layers)?)
            }
            _ => None,
        };
        let forest = spec.booster.as_ref().map(FlatForest::new);
        Ok(Classifier {
            spec,
            layers,
            device,
            dense,
            members: Vec::new(),
            forest,
        })
    }

    /// A blend of `members`, scoring the mean of their log-odds; its spec's training report
    /// is `training` (the caller's, e.g. cross-validation's).
    pub(crate) fn blend(members: Vec<Classifier>, training: TrainingReport) -> Classifier {
        let first = &members[0].spec;
        let spec = ClassifierSpec {
            preprocessor: first.preprocessor.clone(),
            hidden: Vec::new(),
            threshold: first.threshold,
            training,
            booster: None,
            selection: Vec::new(),
            members: members.iter().map(|m| m.spec.clone()).collect(),
        };
        Classifier {
            spec,
            layers: Vec::new(),
            device: members[0].device.clone(),
            dense: None,
            members,
            forest: None,
        }
    }

    /// Probabilities of the positive class for one batch of feature columns.
    pub fn predict(&self, columns: &[FeatureValues<'_>]) -> Result<Vec<f64>> {
        if !self.members.is_empty() {
            let mut total = vec![0.0; columns.first().map_or(0, FeatureValues::len)];
            for member in &self.members {
                for (t, p) in total.iter_mut().zip(member.predict(columns)?) {
                    *t += logit(p);
                }
            }
            let n = self.members.len() as f64;
            return Ok(total
                .into_iter()
                .map(|t| crate::gbdt::sigmoid(t / n))
                .collect());
        }
        if let (Some(booster), Some(forest)) = (&self.spec.booster, &self.forest) {
            let margins = booster.margins_with(forest, columns)?;
            return Ok(margins.into_iter().map(crate::gbdt::sigmoid).collect());
        }
        match &self.dense {
            Some(dense) => dense.predict_columns(&self.spec.preprocessor.encoder(columns)?),
            None => self.predict_encoded(&self.spec.preprocessor.transform(columns)?),
        }
    }

    /// The fused CPU network, where the classifier scores on the CPU.
    pub(crate) fn dense(&self) -> Option<&DenseNetwork> {
        self.dense.as_ref()
    }

    /// Probabilities for an already encoded (feature-major) matrix: the forward pass alone.
    pub fn predict_encoded(&self, matrix: &Matrix) -> Result<Vec<f64>> {
        if matches!(self.spec.family(), Family::Gbdt | Family::Blend) {
            return Err(Error::input(
                "boosted trees and blends score raw feature columns, not an encoded matrix",
            ));
        }
        match &self.dense {
            Some(dense) => Ok(dense.predict(matrix)),
            None => predict_matrix(&self.layers, matrix, &self.device),
        }
    }

    /// Per-feature contributions to the log-odds of each row's prediction, plus the baseline
    /// log-odds they add to. Exact for logistic regression (weight times standardised value);
    /// integrated gradients from the all-means input for an MLP; exact TreeSHAP values from
    /// the mean training prediction for boosted trees.
    pub fn explain(&self, columns: &[FeatureValues<'_>]) -> Result<Explanation> {
        if !self.members.is_empty() {
            // The blend's log-odds is the members' mean, so are its baseline and contributions.
            let n = self.members.len() as f64;
            let mut blended: Option<Explanation> = None;
            for member in &self.members {
                let e = member.explain(columns)?;
                match &mut blended {
                    None => blended = Some(e),
                    Some(b) => {
                        b.baseline += e.baseline;
                        for (row, add) in b.contributions.iter_mut().zip(&e.contributions) {
                            for (v, a) in row.iter_mut().zip(add) {
                                *v += a;
                            }
                        }
                    }
                }
            }
            let mut blended = blended.expect("a blend has members");
            blended.baseline /= n;
            for row in &mut blended.contributions {
                for v in row.iter_mut() {
                    *v /= n;
                }
            }
            return Ok(blended);
        }
        if let Some(booster) = &self.spec.booster {
            let (baseline, contributions) = booster.shap(columns)?;
            return Ok(Explanation {
                baseline,
                contributions,
            });
        }
        let matrix = self.spec.preprocessor.transform(columns)?;
        let ranges = self.spec.preprocessor.column_ranges();
        let baseline_logit = {
            let zero = Matrix {
                rows: 1,
                cols: matrix.cols,
                data: vec![0.0; matrix.cols],
            };
            logit(self.predict_encoded(&zero)?[0])
        };
        let mut contributions = Vec::with_capacity(matrix.rows);
        const STEPS: usize = 32;
        // Logistic regression: the weights give exact contributions; read them once.
        let linear_weights = match self.layers.as_slice() {
            [(w, _)] => Some(w.flatten_all()?.to_vec1::<f32>()?),
            _ => None,
        };
        for row in 0..matrix.rows {
            let x: Vec<f32> = (0..matrix.cols).map(|c| matrix.column(c)[row]).collect();
            let attribution: Vec<f64> = if let Some(w) = &linear_weights {
                x.iter()
                    .zip(w)
                    .map(|(x, w)| (*x as f64) * (*w as f64))
                    .collect()
            } else {
                // Riemann midpoints of the path from the baseline (0) to x.
                let mut path = Vec::with_capacity(STEPS * x.len());
                for step in 0..STEPS {
                    let alpha = (step as f32 + 0.5) / STEPS as f32;
                    path.extend(x.iter().map(|v| v * alpha));
                }
                let input =
                    Var::from_tensor(&Tensor::from_vec(path, (STEPS, x.len()), &self.device)?)?;
                let layers: Vec<(&Tensor, &Tensor)> =
                    self.layers.iter().map(|(w, b)| (w, b)).collect();
                let logits = forward_rows(&layers, input.as_tensor())?;
                let grads = logits.sum_all()?.backward()?;
                let gradient = grads
                    .get(input.as_tensor())
                    .ok_or_else(|| Error::input("no gradient for the explained input"))?
                    .mean(0)?
                    .to_vec1::<f32>()?;
                x.iter()
                    .zip(&gradient)
                    .map(|(x, g)| (*x as f64) * (*g as f64))
                    .collect()
            };
            contributions.push(
                ranges
                    .iter()
                    .map(|range| attribution[range.clone()].iter().sum())
                    .collect(),
            );
        }
        Ok(Explanation {
            baseline: baseline_logit,
            contributions,
        })
    }

    /// The weights as named tensors, for safetensors.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut tensors = crate::weights::layer_tensors(&self.layers);
        for (i, member) in self.members.iter().enumerate() {
            for (name, tensor) in member.tensors() {
                tensors.push((format!("members.{i}.{name}"), tensor));
            }
        }
        tensors
    }

    /// Rebuilds a classifier from its card's spec and its named tensors, checking shapes.
    pub fn from_parts(
        spec: ClassifierSpec,
        mut tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Classifier> {
        if !spec.members.is_empty() {
            let members = spec
                .members
                .iter()
                .enumerate()
                .map(|(i, member)| {
                    let prefix = format!("members.{i}.");
                    let own: HashMap<String, Tensor> = tensors
                        .iter()
                        .filter_map(|(name, t)| {
                            name.strip_prefix(&prefix)
                                .map(|n| (n.to_string(), t.clone()))
                        })
                        .collect();
                    Classifier::from_parts(member.clone(), own, device)
                })
                .collect::<Result<Vec<_>>>()?;
            // The stored spec (selection, threshold, ...) as it was saved.
            let mut blend = Classifier::blend(members, spec.training.clone());
            blend.spec = spec;
            return Ok(blend);
        }
        if spec.booster.is_some() {
            return Classifier::new(spec, Vec::new(), Device::Cpu);
        }
        let sizes: Vec<usize> = std::iter::once(spec.preprocessor.width())
            .chain(spec.hidden.iter().copied())
            .chain(std::iter::once(1))
            .collect();
        let layers = crate::weights::take_layers(&mut tensors, &sizes, device)?;
        Classifier::new(spec, layers, device.clone())
    }
}

/// Contributions of each feature to each explained row, in log-odds.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Log-odds the contributions add to: the all-means input's for networks, the mean
    /// training log-odds for trees.
    pub baseline: f64,
    /// One vector per row, one value per feature.
    pub contributions: Vec<Vec<f64>>,
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln()
}

/// What fitting a network gives: the best epoch, its (weight, bias) layers and every epoch's
/// report.
type Fitted = (usize, Vec<(Tensor, Tensor)>, Vec<EpochReport>);

/// The rows a network trains and stops on.
struct Split<'a> {
    train_x: &'a Matrix,
    train_y: &'a [bool],
    validation_x: &'a Matrix,
    validation_y: &'a [bool],
    positive_weight: f64,
}

/// Mini-batch AdamW with early stopping on the validation loss: the best epoch, its weights
/// and every epoch's report.
fn descend(
    split: Split<'_>,
    inputs: usize,
    options: &ClassifierOptions,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochReport),
    cancel: &AtomicBool,
) -> Result<Fitted> {
    let Split {
        train_x,
        train_y,
        validation_x,
        validation_y,
        positive_weight,
    } = split;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let sizes: Vec<usize> = std::iter::once(inputs)
        .chain(options.hidden.iter().copied())
        .chain(std::iter::once(1))
        .collect();
    let initial = init_layers(&sizes, &mut rng, device)?;
    let params = options.training.adamw();
    let mut trainer = match device {
        Device::Cpu => Trainer::Cpu(CpuTrainer::new(unfold_layers(&initial)?, params)),
        _ => Trainer::Candle {
            optimizer: AdamW::new(initial.clone(), params)?,
            vars: initial,
        },
    };

    let mut order: Vec<usize> = (0..train_y.len()).collect();
    let mut history = Vec::new();
    let mut stopping = EarlyStopping::new(options.training.patience);
    for epoch in 1..=options.training.epochs {
        let epoch_started = Instant::now();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut weight_sum) = (0.0, 0.0);
        for batch in order.chunks(options.training.batch_size) {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let y: Vec<f32> = batch
                .iter()
                .map(|&i| f32::from(u8::from(train_y[i])))
                .collect();
            let w: Vec<f32> = batch
                .iter()
                .map(|&i| {
                    if train_y[i] {
                        positive_weight as f32
                    } else {
                        1.0
                    }
                })
                .collect();
            let total_weight: f32 = w.iter().sum();
            let loss = match &mut trainer {
                Trainer::Cpu(trainer) => {
                    trainer.step(train_x, batch, &y, &w, options.dropout, &mut rng)
                }
                Trainer::Candle { vars, optimizer } => {
                    let x = Tensor::from_vec(
                        train_x.gather_rows(batch),
                        (batch.len(), train_x.cols),
                        device,
                    )?;
                    let y = Tensor::from_vec(y, batch.len(), device)?;
                    let w = Tensor::from_vec(w, batch.len(), device)?;
                    let weights: Vec<&Tensor> = vars.iter().map(Var::as_tensor).collect();
                    let logits = forward_folded(&weights, &x, options.dropout, &mut rng)?;
                    let loss = (weighted_bce_with_logits(&logits, &y, &w)? / total_weight as f64)?;
                    optimizer.backward_step(&loss)?;
                    loss.to_scalar::<f32>()? as f64
                }
            };
            loss_sum += loss * total_weight as f64;
            weight_sum += total_weight as f64;
        }
        let layers = trainer.layers()?;
        let train_loss = loss_sum / weight_sum;
        // A refit has no held-out rows: the training loss stands in (and always falls, so
        // every epoch runs).
        let (validation_loss, validation_auc) = if validation_y.is_empty() {
            (train_loss, None)
        } else {
            let scores = score(&layers, validation_x, device)?;
            (
                weighted_log_loss(&scores, validation_y, positive_weight),
                Some(roc_auc(&scores, validation_y)),
            )
        };
        let report = EpochReport {
            epoch,
            epochs: options.training.epochs,
            train_loss,
            validation_loss,
            validation_auc,
            seconds: epoch_started.elapsed().as_secs_f64(),
        };
        on_epoch(&report);
        history.push(report);
        if stopping.record(epoch, validation_loss, || Ok(layers))? {
            break;
        }
    }
    let (best_epoch, layers) = stopping.best();
    Ok((best_epoch, layers, history))
}

/// Training and validation rows: a stratified split, or every row and none for a refit.
pub(crate) fn split(data: &TrainingData, options: &ClassifierOptions) -> (Vec<usize>, Vec<usize>) {
    if options.refit {
        return ((0..data.target.len()).collect(), Vec::new());
    }
    stratified_split(
        &data.target,
        options.training.validation_fraction,
        options.seed,
    )
}

pub(crate) fn validate(data: &TrainingData, options: &ClassifierOptions) -> Result<()> {
    let rows = data.target.len();
    if rows == 0 {
        return Err(Error::data("the training query returned no rows"));
    }
    if data.features.is_empty() {
        return Err(Error::data(
            "the training query has no feature columns besides the target",
        ));
    }
    for (name, column) in &data.features {
        if column.len() != rows {
            return Err(Error::data(format!(
                "feature {name} has {} rows, the target {rows}",
                column.len()
            )));
        }
    }
    let positives = data.target.iter().filter(|&&y| y).count();
    if positives == 0 || positives == rows {
        return Err(Error::data(format!(
            "the target has a single class ({} of {rows} rows are {}); a classifier needs both",
            rows,
            positives == rows
        )));
    }
    // The split puts rows of each class on both sides, so each class needs two.
    let rarest = positives.min(rows - positives);
    if rarest < 2 {
        return Err(Error::data(format!(
            "the target is {} in only one of {rows} rows; a classifier needs at least two rows \
             of each class",
            positives == rarest
        )));
    }
    let validation = (rows as f64 * options.training.validation_fraction).round() as usize;
    if !options.refit && (validation < 2 || rows - validation < 2) {
        return Err(Error::data(format!(
            "{rows} rows are too few to split into training and validation \
             (validation_fraction = {})",
            options.training.validation_fraction
        )));
    }
    Ok(())
}

/// Layers initialised as PyTorch's `nn.Linear` does (uniform in ±1/sqrt(fan_in)), from `rng`,
/// each as one `[out, in + 1]` variable whose last column is the bias (see [`forward_folded`]).
fn init_layers(sizes: &[usize], rng: &mut StdRng, device: &Device) -> Result<Vec<Var>> {
    sizes
        .windows(2)
        .map(|pair| {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let bound = 1.0 / (fan_in as f32).sqrt();
            let mut uniform = |n: usize| -> Vec<f32> {
                (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
            };
            let w = uniform(fan_in * fan_out);
            let b = uniform(fan_out);
            let folded: Vec<f32> = w
                .chunks_exact(fan_in)
                .zip(&b)
                .flat_map(|(row, bias)| row.iter().copied().chain(std::iter::once(*bias)))
                .collect();
            Ok(Var::from_vec(folded, (fan_out, fan_in + 1), device)?)
        })
        .collect()
}

/// The (weight `[out, in]` row-major, bias `[out]`) values of folded training variables.
fn unfold_layers(vars: &[Var]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    vars.iter()
        .map(|var| {
            let rows = var.as_tensor().to_vec2::<f32>()?;
            let (outputs, inputs) = (rows.len(), rows[0].len() - 1);
            let mut w = Vec::with_capacity(outputs * inputs);
            let mut b = Vec::with_capacity(outputs);
            for row in rows {
                w.extend_from_slice(&row[..inputs]);
                b.push(row[inputs]);
            }
            Ok((w, b))
        })
        .collect()
}

/// Independent (weight `[out, in]`, bias `[out]`) copies of folded training variables.
fn split_layers(vars: &[Var]) -> Result<Vec<(Tensor, Tensor)>> {
    unfold_layers(vars)?
        .into_iter()
        .zip(vars)
        .map(|((w, b), var)| {
            let (outputs, inputs) = (b.len(), w.len() / b.len());
            Ok((
                Tensor::from_vec(w, (outputs, inputs), var.device())?,
                Tensor::from_vec(b, outputs, var.device())?,
            ))
        })
        .collect()
}

/// What runs the optimisation: the hand-written CPU trainer, or candle's autograd and AdamW
/// on other devices.
enum Trainer {
    Cpu(CpuTrainer),
    Candle { vars: Vec<Var>, optimizer: AdamW },
}

impl Trainer {
    /// Independent copies of the current weights.
    fn layers(&self) -> Result<Vec<(Tensor, Tensor)>> {
        match self {
            Trainer::Cpu(trainer) => trainer.layers(),
            Trainer::Candle { vars, .. } => split_layers(vars),
        }
    }
}

/// Training logits `[rows]` for row-major `x` `[rows, in]`, with each layer's bias folded into
/// its weights as a last column and a ones column appended to the layer's input: one matmul a
/// layer and no broadcast add, whose backward (a reduction over rows) is slow in candle; about
/// 30% less time a mini-batch. Dropout after each hidden layer when > 0.
fn forward_folded(
    weights: &[&Tensor],
    x: &Tensor,
    dropout: f64,
    rng: &mut StdRng,
) -> Result<Tensor> {
    let ones = Tensor::ones((x.dim(0)?, 1), DType::F32, x.device())?;
    let mut h = x.clone();
    for (i, w) in weights.iter().enumerate() {
        h = Tensor::cat(&[&h, &ones], 1)?.matmul(&w.t()?)?;
        if i + 1 < weights.len() {
            h = h.relu()?;
            if dropout > 0.0 {
                let keep = 1.0 - dropout as f32;
                let mask: Vec<f32> = (0..h.elem_count())
                    .map(|_| {
                        if rng.random::<f32>() < keep {
                            1.0 / keep
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let mask = Tensor::from_vec(mask, h.shape(), h.device())?;
                h = (h * mask)?;
            }
        }
    }
    Ok(h.squeeze(D::Minus1)?)
}

/// Logits `[rows]` for row-major `x` `[rows, in]` from (weight, bias) pairs, differentiable
/// with respect to `x` (for integrated gradients).
fn forward_rows(layers: &[(&Tensor, &Tensor)], x: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    for (i, (w, b)) in layers.iter().enumerate() {
        h = h.matmul(&w.t()?)?.broadcast_add(b)?;
        if i + 1 < layers.len() {
            h = h.relu()?;
        }
    }
    Ok(h.squeeze(D::Minus1)?)
}

/// Probabilities for a feature-major matrix: the network applied to `Xᵀ` as `W · Xᵀ + b`,
/// with candle's tensors on `device` (the CPU uses [`DenseNetwork`], which gives the same
/// answers faster).
fn predict_matrix(layers: &[(Tensor, Tensor)], x: &Matrix, device: &Device) -> Result<Vec<f64>> {
    if x.rows == 0 {
        return Ok(Vec::new());
    }
    let mut h = Tensor::from_slice(&x.data, (x.cols, x.rows), device)?;
    for (i, (w, b)) in layers.iter().enumerate() {
        h = w.matmul(&h)?.broadcast_add(&b.unsqueeze(1)?)?;
        if i + 1 < layers.len() {
            h = h.relu()?;
        }
    }
    let p = candle_nn::ops::sigmoid(&h.squeeze(0)?)?;
    Ok(p.to_vec1::<f32>()?.into_iter().map(f64::from).collect())
}

/// Scores with the path [`Classifier::predict_encoded`] uses on `device`.
fn score(layers: &[(Tensor, Tensor)], x: &Matrix, device: &Device) -> Result<Vec<f64>> {
    match device {
        Device::Cpu => Ok(DenseNetwork::from_tensors(layers)?.predict(x)),
        _ => predict_matrix(layers, x, device),
    }
}

fn permutation_importance(
    layers: &[(Tensor, Tensor)],
    preprocessor: &Preprocessor,
    x: &Matrix,
    y: &[bool],
    base_auc: f64,
    seed: u64,
    device: &Device,
) -> Result<Vec<(String, f64)>> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1a9_0a7a);
    let mut permutation: Vec<usize> = (0..x.rows).collect();
    let mut importance = Vec::new();
    for (feature, range) in preprocessor
        .features
        .iter()
        .zip(preprocessor.column_ranges())
    {
        permutation.shuffle(&mut rng);
        let mut shuffled = x.clone();
        for c in range {
            let column = x.column(c);
            let out = &mut shuffled.data[c * x.rows..(c + 1) * x.rows];
            for (o, &i) in out.iter_mut().zip(&permutation) {
                *o = column[i];
            }
        }
        let scores = score(layers, &shuffled, device)?;
        importance.push((feature.name.clone(), base_auc - roc_auc(&scores, y)));
    }
    Ok(importance)
}

#[cfg(test)]
mod tests;
