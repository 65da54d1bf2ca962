//! KIND anomaly: an autoencoder over the preprocessed features whose reconstruction error,
//! calibrated on held-out rows, is the anomaly score.
//!
//! Rows are preprocessed as for the classifiers (standardised numbers with missing-value
//! indicators, one-hot categories), encoded through `hidden` (default '16,4') and decoded by
//! the mirror image; training minimises the mean squared reconstruction error with AdamW and
//! early stopping on a validation split. A row's score is the share of validation rows that
//! reconstruct better than it does: 0.99 means more unusual than 99% of normal traffic, so
//! the score reads the same whatever the features' scale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{D, Device, Module, Tensor, Var};
use candle_nn::{AdamW, Linear, Optimizer};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::data::{TrainingData, fit_and_encode, random_split};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::preprocess::{FeatureValues, Matrix, Preprocessor};
use crate::train::{EarlyStopping, EpochReport, TrainingOptions};

/// The training options' defaults for an anomaly model.
const DEFAULTS: TrainingOptions = TrainingOptions {
    epochs: 30,
    batch_size: 256,
    learning_rate: 0.003,
    weight_decay: 1e-4,
    patience: 5,
    validation_fraction: 0.2,
};

/// OPTIONS of KIND anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyOptions {
    /// Encoder widths; the decoder mirrors them.
    pub hidden: Vec<usize>,
    /// Epochs, batch size, AdamW, early stopping and the validation split.
    pub training: TrainingOptions,
    pub seed: u64,
    pub max_categories: usize,
    pub device: String,
}

impl AnomalyOptions {
    pub fn from_options(options: &mut Options, kind: &str) -> Result<AnomalyOptions> {
        let hidden: Vec<usize> = match options.get("hidden").map(str::trim) {
            None => vec![16, 4],
            Some(text) => text
                .split(',')
                .map(|w| match w.trim().parse::<usize>() {
                    Ok(w) if (1..=65_536).contains(&w) => Ok(w),
                    _ => Err(Error::option(format!(
                        "option hidden must be comma-separated layer widths such as '16,4', got '{text}'"
                    ))),
                })
                .collect::<Result<_>>()?,
        };
        let parsed = AnomalyOptions {
            hidden,
            training: TrainingOptions::from_options(options, &DEFAULTS, 1 << 20)?,
            seed: options.number("seed", 42, 0..=u64::MAX)?,
            max_categories: options.number("max_categories", 100, 1..=100_000)?,
            device: options.get("device").unwrap_or("cpu").to_string(),
        };
        options.finish(kind)?;
        Ok(parsed)
    }
}

/// The card part of an anomaly model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalySpec {
    pub preprocessor: Preprocessor,
    pub hidden: Vec<usize>,
    /// Sorted reconstruction errors of the validation rows: the calibration.
    pub validation_errors: Vec<f32>,
    pub rows: u64,
    pub train_rows: u64,
    pub best_epoch: usize,
    pub history: Vec<EpochReport>,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct Anomaly {
    pub spec: AnomalySpec,
    /// (weight [out, in], bias [out]) per layer, encoder then decoder.
    layers: Vec<(Tensor, Tensor)>,
    device: Device,
}

/// (weight, bias) per layer.
type Layers = Vec<(Tensor, Tensor)>;

/// Layer widths: input, encoder, mirrored decoder, output = input.
fn widths(input: usize, hidden: &[usize]) -> Vec<usize> {
    let mut sizes = vec![input];
    sizes.extend(hidden);
    sizes.extend(hidden.iter().rev().skip(1));
    sizes.push(input);
    sizes
}

fn forward(layers: &[Linear], x: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    for (i, layer) in layers.iter().enumerate() {
        h = layer.forward(&h)?;
        if i + 1 < layers.len() {
            h = h.relu()?;
        }
    }
    Ok(h)
}

/// Per-row mean squared reconstruction error of `x` (row-major, batched).
fn reconstruction_errors(layers: &[Linear], x: &Matrix, device: &Device) -> Result<Vec<f32>> {
    let mut errors = Vec::with_capacity(x.rows);
    let all: Vec<usize> = (0..x.rows).collect();
    for chunk in all.chunks(8192) {
        let input = Tensor::from_vec(x.gather_rows(chunk), (chunk.len(), x.cols), device)?;
        let output = forward(layers, &input)?;
        let error = (output - &input)?.sqr()?.mean(D::Minus1)?;
        errors.extend(error.to_vec1::<f32>()?);
    }
    Ok(errors)
}

impl Anomaly {
    pub fn train(
        data: &TrainingData,
        options: &AnomalyOptions,
        on_epoch: &mut dyn FnMut(&EpochReport),
        cancel: &AtomicBool,
    ) -> Result<Anomaly> {
        let started = Instant::now();
        let device = crate::compute::device(&options.device)?;
        let rows = data.rows();
        if rows < 10 {
            return Err(Error::data(format!(
                "anomaly: the training query returned {rows} rows; at least 10 are needed"
            )));
        }
        // The split draws from the generator that then initialises the weights.
        let mut rng = StdRng::seed_from_u64(options.seed);
        let (train_idx, validation_idx) =
            random_split(rows, options.training.validation_fraction, 5, &mut rng);

        let (preprocessor, matrix) = fit_and_encode(data, &train_idx, options.max_categories)?;
        let train_x = matrix.select_rows(&train_idx);
        let validation_x = matrix.select_rows(&validation_idx);

        let sizes = widths(preprocessor.width(), &options.hidden);
        let vars: Vec<(Var, Var)> = sizes
            .windows(2)
            .map(|pair| {
                let bound = 1.0 / (pair[0] as f32).sqrt();
                let mut uniform = |n: usize| -> Vec<f32> {
                    (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
                };
                let w = Var::from_vec(uniform(pair[0] * pair[1]), (pair[1], pair[0]), &device)?;
                let b = Var::from_vec(uniform(pair[1]), pair[1], &device)?;
                Ok((w, b))
            })
            .collect::<Result<_>>()?;
        let mut optimizer = AdamW::new(
            vars.iter()
                .flat_map(|(w, b)| [w.clone(), b.clone()])
                .collect(),
            options.training.adamw(),
        )?;
        let linears = |vars: &[(Var, Var)]| -> Vec<Linear> {
            vars.iter()
                .map(|(w, b)| Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone())))
                .collect()
        };

        let mut order: Vec<usize> = (0..train_x.rows).collect();
        let mut history = Vec::new();
        let mut stopping: EarlyStopping<Layers> = EarlyStopping::new(options.training.patience);
        for epoch in 1..=options.training.epochs {
            let epoch_started = Instant::now();
            order.shuffle(&mut rng);
            let (mut loss_sum, mut count) = (0.0, 0usize);
            for batch in order.chunks(options.training.batch_size) {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                let x = Tensor::from_vec(
                    train_x.gather_rows(batch),
                    (batch.len(), train_x.cols),
                    &device,
                )?;
                let output = forward(&linears(&vars), &x)?;
                let loss = (output - &x)?.sqr()?.mean_all()?;
                optimizer.backward_step(&loss)?;
                loss_sum += f64::from(loss.to_scalar::<f32>()?) * batch.len() as f64;
                count += batch.len();
            }
            let errors = reconstruction_errors(&linears(&vars), &validation_x, &device)?;
            let validation_loss =
                errors.iter().map(|&e| f64::from(e)).sum::<f64>() / errors.len() as f64;
            let report = EpochReport {
                epoch,
                epochs: options.training.epochs,
                train_loss: loss_sum / count as f64,
                validation_loss,
                validation_auc: None,
                seconds: epoch_started.elapsed().as_secs_f64(),
            };
            on_epoch(&report);
            history.push(report);
            let snapshot = || {
                vars.iter()
                    .map(|(w, b)| Ok((w.as_tensor().copy()?, b.as_tensor().copy()?)))
                    .collect()
            };
            if stopping.record(epoch, validation_loss, snapshot)? {
                break;
            }
        }
        let (best_epoch, layers) = stopping.best();
        let model = Anomaly {
            spec: AnomalySpec {
                preprocessor,
                hidden: options.hidden.clone(),
                validation_errors: Vec::new(),
                rows: rows as u64,
                train_rows: train_idx.len() as u64,
                best_epoch,
                history,
                seconds: 0.0,
            },
            layers,
            device,
        };
        let mut errors = reconstruction_errors(&model.linears(), &validation_x, &model.device)?;
        errors.sort_by(f32::total_cmp);
        let mut model = model;
        model.spec.validation_errors = errors;
        model.spec.seconds = started.elapsed().as_secs_f64();
        Ok(model)
    }

    fn linears(&self) -> Vec<Linear> {
        self.layers
            .iter()
            .map(|(w, b)| Linear::new(w.clone(), Some(b.clone())))
            .collect()
    }

    /// The calibrated anomaly score in [0, 1] of each row: the share of validation rows whose
    /// reconstruction error is below the row's (ties count half).
    pub fn predict(&self, columns: &[FeatureValues<'_>]) -> Result<Vec<f64>> {
        let matrix = self.spec.preprocessor.transform(columns)?;
        let errors = reconstruction_errors(&self.linears(), &matrix, &self.device)?;
        let calibration = &self.spec.validation_errors;
        let n = calibration.len() as f64;
        Ok(errors
            .iter()
            .map(|e| {
                let below = calibration.partition_point(|v| v < e);
                let not_above = calibration.partition_point(|v| v <= e);
                (below as f64 + (not_above - below) as f64 / 2.0) / n
            })
            .collect())
    }

    /// The raw reconstruction errors (for tests and diagnostics).
    pub fn reconstruction_errors(&self, columns: &[FeatureValues<'_>]) -> Result<Vec<f32>> {
        let matrix = self.spec.preprocessor.transform(columns)?;
        reconstruction_errors(&self.linears(), &matrix, &self.device)
    }

    pub fn metrics(&self) -> Vec<(String, f64)> {
        let errors = &self.spec.validation_errors;
        let quantile = |q: f64| {
            let i = ((errors.len() - 1) as f64 * q).round() as usize;
            f64::from(errors[i])
        };
        vec![
            (
                "reconstruction_error".into(),
                errors.iter().map(|&e| f64::from(e)).sum::<f64>() / errors.len() as f64,
            ),
            ("reconstruction_error_p50".into(), quantile(0.5)),
            ("reconstruction_error_p99".into(), quantile(0.99)),
            ("validation_rows".into(), errors.len() as f64),
            ("best_epoch".into(), self.spec.best_epoch as f64),
        ]
    }

    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        crate::weights::layer_tensors(&self.layers)
    }

    pub fn from_parts(
        spec: AnomalySpec,
        mut tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Anomaly> {
        let sizes = widths(spec.preprocessor.width(), &spec.hidden);
        let layers = crate::weights::take_layers(&mut tensors, &sizes, device)?;
        Ok(Anomaly {
            spec,
            layers,
            device: device.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::FeatureColumn;

    /// Normal rows on a line (y = 2x + noise) whose kind is 'a' for x > 0 and 'b' otherwise.
    fn data(rows: usize, seed: u64) -> TrainingData {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut x, mut y, mut kind) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rows {
            let v: f64 = rng.random_range(-2.0..2.0);
            x.push(v);
            y.push(2.0 * v + rng.random_range(-0.1..0.1));
            kind.push(Some(if v > 0.0 { "a" } else { "b" }.to_string()));
        }
        TrainingData {
            features: vec![
                ("x".into(), FeatureColumn::Numeric(x)),
                ("y".into(), FeatureColumn::Numeric(y)),
                ("kind".into(), FeatureColumn::Categorical(kind)),
            ],
            target: Vec::new(),
        }
    }

    #[test]
    fn off_pattern_rows_score_high_and_save_load_is_exact() {
        let options = AnomalyOptions::from_options(
            &mut Options::new([("epochs", "60"), ("hidden", "8,1")]),
            "anomaly",
        )
        .unwrap();
        let model = Anomaly::train(
            &data(3000, 1),
            &options,
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        let x = [1.0, 1.0, -1.5, 1.0];
        let y = [2.0, -2.0, -3.0, 2.0];
        let kind = [Some("a"), Some("a"), Some("b"), Some("b")];
        let columns = [
            FeatureValues::Numeric(&x),
            FeatureValues::Numeric(&y),
            FeatureValues::Categorical(&kind),
        ];
        let scores = model.predict(&columns).unwrap();
        // On the line with the right kind: ordinary; off the line, or the wrong kind: more
        // unusual than almost every validation row.
        assert!(scores[0] < 0.9 && scores[2] < 0.9, "{scores:?}");
        assert!(scores[1] > 0.99 && scores[3] > 0.99, "{scores:?}");
        let tensors: HashMap<String, Tensor> = model.tensors().into_iter().collect();
        let back = Anomaly::from_parts(model.spec.clone(), tensors, &Device::Cpu).unwrap();
        assert_eq!(back.predict(&columns).unwrap(), scores);
    }
}
