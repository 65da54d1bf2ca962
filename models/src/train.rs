//! What the kinds trained by mini-batch gradient descent (the classifiers, anomaly, sequence)
//! share: their common OPTIONS, AdamW's settings, early stopping on the validation loss, the
//! report of each epoch, and the binary cross-entropy losses.

use candle_core::Tensor;
use candle_nn::ParamsAdamW;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::options::Options;

/// Progress of one epoch, reported while training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub epochs: usize,
    pub train_loss: f64,
    pub validation_loss: f64,
    /// None for models without a label (anomaly).
    #[serde(default)]
    pub validation_auc: Option<f64>,
    pub seconds: f64,
}

/// The OPTIONS every kind trained by gradient descent takes; each kind has its own defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Epochs without improvement of the validation loss before training stops.
    pub patience: usize,
    pub validation_fraction: f64,
}

impl TrainingOptions {
    /// Reads the options, each defaulting to its value in `defaults`; a batch holds at most
    /// `max_batch_size` rows.
    pub fn from_options(
        options: &mut Options,
        defaults: &TrainingOptions,
        max_batch_size: usize,
    ) -> Result<TrainingOptions> {
        Ok(TrainingOptions {
            epochs: options.number("epochs", defaults.epochs, 1..=10_000)?,
            batch_size: options.number("batch_size", defaults.batch_size, 1..=max_batch_size)?,
            learning_rate: options.number("learning_rate", defaults.learning_rate, 1e-7..=10.0)?,
            weight_decay: options.number("weight_decay", defaults.weight_decay, 0.0..=10.0)?,
            patience: options.number("patience", defaults.patience, 1..=10_000)?,
            validation_fraction: options.number(
                "validation_fraction",
                defaults.validation_fraction,
                0.01..=0.9,
            )?,
        })
    }

    /// AdamW with these options' learning rate and weight decay, candle's defaults otherwise.
    pub fn adamw(&self) -> ParamsAdamW {
        ParamsAdamW {
            lr: self.learning_rate,
            weight_decay: self.weight_decay,
            ..ParamsAdamW::default()
        }
    }
}

/// Early stopping on the validation loss: keeps the epoch with the lowest loss and the state
/// (weights) it ended with, and says when `patience` epochs have passed without a lower one.
pub(crate) struct EarlyStopping<T> {
    patience: usize,
    /// (validation loss, epoch, state) of the best epoch so far.
    best: Option<(f64, usize, T)>,
}

impl<T> EarlyStopping<T> {
    pub(crate) fn new(patience: usize) -> Self {
        EarlyStopping {
            patience,
            best: None,
        }
    }

    /// Records `epoch`'s validation `loss`, calling `state` for the state to keep only when the
    /// loss is the lowest yet (the first epoch's always is). True when training should stop.
    pub(crate) fn record(
        &mut self,
        epoch: usize,
        loss: f64,
        state: impl FnOnce() -> Result<T>,
    ) -> Result<bool> {
        if self.best.as_ref().is_none_or(|(best, _, _)| loss < *best) {
            self.best = Some((loss, epoch, state()?));
            return Ok(false);
        }
        let (_, best_epoch, _) = self.best.as_ref().expect("set by the first epoch");
        Ok(epoch - best_epoch >= self.patience)
    }

    /// The best epoch and its state.
    pub(crate) fn best(self) -> (usize, T) {
        let (_, epoch, state) = self.best.expect("at least one epoch ran");
        (epoch, state)
    }
}

/// Σ wᵢ · BCE(σ(zᵢ), yᵢ), computed stably from logits as softplus(z) − y·z.
pub(crate) fn weighted_bce_with_logits(logits: &Tensor, y: &Tensor, w: &Tensor) -> Result<Tensor> {
    let softplus = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    let per_row = (softplus - (y * logits)?)?;
    Ok((per_row * w)?.sum_all()?)
}

/// Binary cross-entropy of probabilities, with positives weighted by `positive_weight`,
/// averaged over the total weight.
pub(crate) fn weighted_log_loss(scores: &[f64], labels: &[bool], positive_weight: f64) -> f64 {
    let (mut loss, mut weight) = (0.0, 0.0);
    for (&p, &y) in scores.iter().zip(labels) {
        let p = p.clamp(1e-15, 1.0 - 1e-15);
        let w = if y { positive_weight } else { 1.0 };
        loss -= w * if y { p.ln() } else { (1.0 - p).ln() };
        weight += w;
    }
    loss / weight
}
