//! KIND sequence: models over a customer's ordered event history, a Transformer encoder or an
//! LSTM baseline.
//!
//! # Input
//!
//! One row per customer: a list of event tokens, oldest first (`array_agg(event_type ORDER BY
//! event_time)`), and optionally a list of the same length with each event's age, in days
//! before the reference time (the scoring date, or the feature cutoff when training). Tokens are
//! any text; a vocabulary of the most frequent training tokens is saved with the model and
//! anything else (and a NULL element) reads as the unknown token. Only the last `max_len`
//! events are kept.
//!
//! Each event becomes the sum of four embeddings: its token, its position counted from the end
//! (the latest event is 1), the bucket of its age and the bucket of the gap since the event
//! before it. Buckets are half-octaves of minutes, `floor(2 log2(1 + minutes))`, so a gap of
//! two minutes inside a session and one of two months between visits land far apart; a missing
//! or negative time has its own bucket. A summary token closes every sequence at the reference
//! time; its gap bucket is the time since the last event (the recency) and its final state is
//! what the churn and next-event heads read.
//!
//! # Architectures
//!
//! - `transformer`: pre-LN encoder blocks (multi-head self-attention with a padding mask, a
//!   ReLU feed-forward of width 4 d_model (as PyTorch's TransformerEncoderLayer), residuals, dropout), a final layer norm.
//! - `lstm`: stacked LSTM layers over the same event embeddings (no position embedding; the
//!   recurrence knows the order), reading the state after the summary token. Padded steps leave
//!   the state unchanged, so padding is exact. The seed approach of the field; the baseline.
//!
//! # Tasks
//!
//! - `churn`: a binary target; the summary state goes through a linear head to a logit.
//! - `next_item`: predicts the next token. The Transformer learns SASRec's way, with causal
//!   attention and every position predicting the token after it, the output layer sharing the
//!   token embeddings (`next_item.rs`); the LSTM from one random cut per history and epoch.
//!   Ages count back from the predicted event. Validation holds out the last token of the
//!   validation customers, whose earlier events still train (HR@10 and NDCG@10 against the
//!   most frequent tokens, both leaving out tokens the history has under `exclude_seen`).
//! - `embedding`: masked-event pre-training (15% of events replaced by a mask token and
//!   predicted from both sides); `embed()` then returns the mean of the final event states.
//!
//! On the CPU attention is one fused operation per (sequence, head), forward and backward
//! (`kernels/attention.rs`); other devices use candle's matrix products.
//!
//! Sequences are left-padded to the longest in the batch, and batches are formed from rows of
//! similar length (training and scoring alike), so short histories do not pay for long ones.
//! Weights are initialised and dropout masks drawn from one seeded generator: a seed gives the
//! same model every time on the CPU.
//!
//! # Files
//!
//! Each file uses only those listed before it:
//!
//! - `spec.rs`: the card's part ([`SequenceSpec`], [`Task`], [`Architecture`]), the token ids
//!   and time buckets with a fixed meaning.
//! - `options.rs`: [`SequenceOptions`], from OPTIONS.
//! - `batch.rs`: histories as ids and time buckets, left-padded into batches.
//! - `network.rs`: the forward pass of both architectures over named weights.
//! - `next_item.rs`: task next_item's training windows, sampled softmax outputs, validation
//!   cases and the popularity blend.
//! - `mod.rs` (here): [`SequenceModel`] and scoring: churn probabilities, next events,
//!   embeddings.
//! - `training.rs`: [`SequenceModel::train`], its mini-batches per task and validation.

mod batch;
mod network;
mod next_item;
mod options;
mod spec;
#[cfg(test)]
mod tests;
mod training;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use self::batch::{Batch, History, Sample, row_ages};
use self::network::{Network, cpu_lstm};
use self::spec::{SPECIAL_TOKENS, UNKNOWN, top_tokens};
use crate::error::{Error, Result};
use crate::kernels::lstm_cpu::CpuLstm;
use crate::preprocess::FeatureValues;

pub use self::options::{SequenceOptions, needs_target};
pub use self::spec::{Architecture, SequenceReport, SequenceSpec, Task};

/// Attention scores one scoring chunk may hold (batch x heads x length²), to bound memory.
const ATTENTION_BUDGET: usize = 16 << 20;

/// A trained sequence model, ready to score.
#[derive(Debug, Clone)]
pub struct SequenceModel {
    pub spec: SequenceSpec,
    weights: HashMap<String, Tensor>,
    index: HashMap<String, u32>,
    device: Device,
    /// The LSTM's weights for the CPU scoring path ([`CpuLstm`]).
    cpu_lstm: Option<CpuLstm>,
}

/// Next tokens with their probabilities, best first.
pub type RankedTokens<'a> = Vec<(&'a str, f32)>;

/// Inputs of one scoring call, by row: None for a NULL event list.
pub struct SequenceInput {
    histories: Vec<Option<History>>,
}

impl SequenceModel {
    fn network(&self) -> Network<'_> {
        Network {
            spec: &self.spec,
            weights: &self.weights,
            cpu_lstm: self.cpu_lstm.as_ref(),
            fused: true,
        }
    }

    /// Reads the event list (and age list, for a timed model) of one scoring batch.
    pub fn input(&self, columns: &[FeatureValues<'_>]) -> Result<SequenceInput> {
        let expected = 1 + usize::from(self.spec.timed);
        if columns.len() != expected {
            return Err(Error::input(format!(
                "the model takes {expected} list argument{} (events{}), got {}",
                if expected == 1 { "" } else { "s" },
                if self.spec.timed {
                    ", ages in days"
                } else {
                    ""
                },
                columns.len()
            )));
        }
        let FeatureValues::TextList(events) = columns[0] else {
            return Err(Error::input("the events must be a list of text"));
        };
        let ages = match columns.get(1) {
            Some(FeatureValues::NumberList(ages)) => Some(*ages),
            Some(_) => return Err(Error::input("the ages must be a list of numbers")),
            None => None,
        };
        let histories = events
            .iter()
            .enumerate()
            .map(|(row, events)| {
                let Some(events) = events else {
                    return Ok(None);
                };
                let tokens: Vec<u32> = events
                    .iter()
                    .map(|t| {
                        t.and_then(|t| self.index.get(t).copied())
                            .unwrap_or(UNKNOWN)
                    })
                    .collect();
                let ages = row_ages(ages.map(|a| a[row].as_deref()), tokens.len(), row)?;
                Ok(Some(History { tokens, ages }))
            })
            .collect::<Result<_>>()?;
        Ok(SequenceInput { histories })
    }

    /// Runs `f` over the non-NULL rows in chunks of similar length (with the chunk's row
    /// numbers) and returns its per-row outputs in input order (None for NULL rows).
    fn chunked<T: Clone>(
        &self,
        input: &SequenceInput,
        mut f: impl FnMut(&Batch, &[usize]) -> Result<Vec<T>>,
    ) -> Result<Vec<Option<T>>> {
        let mut order: Vec<usize> = (0..input.histories.len())
            .filter(|&i| input.histories[i].is_some())
            .collect();
        let length = |i: usize| input.histories[i].as_ref().map_or(0, History::len);
        order.sort_by_key(|&i| length(i));
        let mut out = vec![None; input.histories.len()];
        let mut start = 0;
        while start < order.len() {
            // The longest row of a chunk is its last; size a Transformer's chunk to the
            // attention budget. An LSTM holds no attention scores: its chunks stay at 1,024
            // rows, since each chunk costs ~15 operations per step whatever its size (on a
            // GPU, 64-row chunks of 200 events made scoring 15 times slower).
            let mut end = (start + 1024).min(order.len());
            loop {
                let l = length(order[end - 1]).min(self.spec.max_len) + 1;
                let fits = self.spec.architecture == Architecture::Lstm
                    || (end - start) * self.spec.heads * l * l <= ATTENTION_BUDGET;
                if fits || end - start <= 16 {
                    break;
                }
                end = start + (end - start) / 2;
            }
            let samples: Vec<Sample<'_>> = order[start..end]
                .iter()
                .map(|&i| {
                    let h = input.histories[i]
                        .as_ref()
                        .expect("filtered to non-NULL rows");
                    Sample {
                        tokens: &h.tokens,
                        ages: h.ages.as_deref(),
                        reference: 0.0,
                    }
                })
                .collect();
            let batch = Batch::new(&samples, self.spec.max_len, &self.device)?;
            for (&i, value) in order[start..end].iter().zip(f(&batch, &order[start..end])?) {
                out[i] = Some(value);
            }
            start = end;
        }
        Ok(out)
    }

    /// Churn probabilities (NaN for a NULL event list); an error for other tasks.
    pub fn predict(&self, columns: &[FeatureValues<'_>]) -> Result<Vec<f64>> {
        if self.spec.task != Task::Churn {
            return Err(Error::input(format!(
                "a sequence model of task {} has no score; use {}",
                self.spec.task.name(),
                match self.spec.task {
                    Task::NextItem => "recommend(model, events, k) or embed(model, events)",
                    _ => "embed(model, events)",
                }
            )));
        }
        let input = self.input(columns)?;
        let network = self.network();
        let scores = self.chunked(&input, |batch, _| {
            let logits = network.head(&network.summary(batch, &mut None)?, &mut None)?;
            let p = candle_nn::ops::sigmoid(&logits.flatten_all()?)?;
            Ok(p.to_vec1::<f32>()?.into_iter().map(f64::from).collect())
        })?;
        Ok(scores.into_iter().map(|s| s.unwrap_or(f64::NAN)).collect())
    }

    /// A d_model-long vector per row (None for a NULL event list).
    pub fn embed(&self, columns: &[FeatureValues<'_>]) -> Result<Vec<Option<Vec<f32>>>> {
        let input = self.input(columns)?;
        let network = self.network();
        self.chunked(&input, |batch, _| {
            Ok(network.embedding(batch)?.to_vec2::<f32>()?)
        })
    }

    /// The `k` most likely next tokens per row, best first, with their probabilities; an error
    /// unless the task is next_item. `k` is capped at the vocabulary.
    pub fn next_tokens(
        &self,
        columns: &[FeatureValues<'_>],
        k: usize,
    ) -> Result<Vec<Option<RankedTokens<'_>>>> {
        if self.spec.task != Task::NextItem {
            return Err(Error::input(format!(
                "recommend needs a sequence model of task next_item; this one is {}",
                self.spec.task.name()
            )));
        }
        let input = self.input(columns)?;
        let network = self.network();
        let ranked = self.chunked(&input, |batch, rows| {
            let logits = network.head(&network.summary(batch, &mut None)?, &mut None)?;
            let mut probabilities = candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?;
            Ok(probabilities
                .iter_mut()
                .zip(rows)
                .map(|(p, &row)| {
                    let history = input.histories[row].as_ref().expect("non-NULL rows");
                    self.spec
                        .next_token_scores(p, &history.tokens, self.spec.popularity_blend);
                    // Tokens the history has score -1 under exclude_seen.
                    let mut top = top_tokens(p, k);
                    top.retain(|&(_, score)| score >= 0.0);
                    top
                })
                .collect::<Vec<_>>())
        })?;
        Ok(ranked
            .into_iter()
            .map(|row| {
                row.map(|tokens| {
                    tokens
                        .into_iter()
                        .map(|(id, p)| (self.spec.vocabulary[id - SPECIAL_TOKENS].as_str(), p))
                        .collect()
                })
            })
            .collect())
    }

    /// The output width of `embed`.
    pub fn embedding_width(&self) -> usize {
        self.spec.d_model
    }

    /// The weights as named tensors, for safetensors.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<(String, Tensor)> = self
            .weights
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// Rebuilds a model from its card's spec and named tensors, checking every shape.
    pub fn from_parts(
        spec: SequenceSpec,
        mut tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<SequenceModel> {
        let mut weights = HashMap::new();
        for (name, shape) in spec.shapes() {
            let tensor = tensors
                .remove(&name)
                .ok_or_else(|| Error::CorruptArtifact(format!("weights lack {name}")))?;
            if tensor.dims() != shape.as_slice() {
                return Err(Error::CorruptArtifact(format!(
                    "{name} has shape {:?}, the card says {shape:?}",
                    tensor.dims()
                )));
            }
            weights.insert(name, tensor.to_dtype(DType::F32)?.to_device(device)?);
        }
        SequenceModel::new(spec, weights, device.clone())
    }

    fn new(spec: SequenceSpec, weights: HashMap<String, Tensor>, device: Device) -> Result<Self> {
        let index = spec
            .vocabulary
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), (i + SPECIAL_TOKENS) as u32))
            .collect();
        let cpu_lstm = match (&device, spec.architecture) {
            (Device::Cpu, Architecture::Lstm) => Some(cpu_lstm(&spec, &weights)?),
            _ => None,
        };
        Ok(SequenceModel {
            spec,
            weights,
            index,
            device,
            cpu_lstm,
        })
    }

    pub fn metrics(&self) -> Vec<(String, f64)> {
        self.spec.training.metrics.clone()
    }
}
