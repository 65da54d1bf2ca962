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
//! - `next_item`: predicts the next token. Each epoch every training history is cut at a random
//!   point and the model predicts the token after the cut, with ages measured from that next
//!   event; validation holds out the last token of unseen customers (HR@10 and NDCG@10 against
//!   the most frequent tokens).
//! - `embedding`: masked-event pre-training (15% of events replaced by a mask token and
//!   predicted from both sides); `embed()` then returns the mean of the final event states.
//!
//! On the CPU attention is one fused operation per (sequence, head), forward and backward
//! (attention.rs); other devices use candle's matrix products.
//!
//! Sequences are left-padded to the longest in the batch, and batches are formed from rows of
//! similar length (training and scoring alike), so short histories do not pay for long ones.
//! Weights are initialised and dropout masks drawn from one seeded generator: a seed gives the
//! same model every time on the CPU.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{D, DType, Device, IndexOp, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::attention::PaddedAttention;
use crate::classifier::{EpochReport, TrainingData};
use crate::error::{Error, Result};
use crate::lstm_cpu::{CpuLstm, Steps};
use crate::metrics::BinaryMetrics;
use crate::options::Options;
use crate::preprocess::{FeatureColumn, FeatureValues};

/// Token ids with a fixed meaning; the vocabulary starts after them.
const PAD: u32 = 0;
const UNKNOWN: u32 = 1;
const SUMMARY: u32 = 2;
const MASK: u32 = 3;
const SPECIAL_TOKENS: usize = 4;

/// Time buckets: half-octaves of minutes up to about two years, then "no previous event" and
/// "time unknown".
const TIME_BUCKETS: usize = 42;
const NO_PREVIOUS: u32 = TIME_BUCKETS as u32;
const TIME_UNKNOWN: u32 = TIME_BUCKETS as u32 + 1;
const TIME_EMBEDDINGS: usize = TIME_BUCKETS + 2;

/// How many top tokens HR and NDCG look at.
const TOP_K: usize = 10;

/// Attention scores one scoring chunk may hold (batch x heads x length²), to bound memory.
const ATTENTION_BUDGET: usize = 16 << 20;

/// What the model learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Churn,
    NextItem,
    Embedding,
}

impl Task {
    fn parse(text: &str) -> Result<Task> {
        match text.trim().to_ascii_lowercase().as_str() {
            "churn" => Ok(Task::Churn),
            "next_item" => Ok(Task::NextItem),
            "embedding" => Ok(Task::Embedding),
            other => Err(Error::option(format!(
                "option task must be 'churn', 'next_item' or 'embedding', got '{other}'"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Task::Churn => "churn",
            Task::NextItem => "next_item",
            Task::Embedding => "embedding",
        }
    }
}

/// The network over the event embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Transformer,
    Lstm,
}

/// Whether CREATE MODEL KIND sequence with these OPTIONS needs a TARGET (task churn, the
/// default) or takes none.
pub fn needs_target(options: &[(String, String)]) -> bool {
    options
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("task"))
        // An unknown task needs one too: the option check then names the mistake.
        .is_none_or(|(_, v)| !matches!(Task::parse(v), Ok(Task::NextItem | Task::Embedding)))
}

/// Hyper-parameters, from OPTIONS.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceOptions {
    pub task: Task,
    pub architecture: Architecture,
    pub d_model: usize,
    pub layers: usize,
    pub heads: usize,
    pub dropout: f64,
    pub max_len: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub patience: usize,
    pub validation_fraction: f64,
    pub max_vocabulary: usize,
    pub seed: u64,
    pub device: String,
}

impl SequenceOptions {
    pub fn from_options(options: &mut Options, kind: &str) -> Result<Self> {
        let task = Task::parse(options.get("task").unwrap_or("churn"))?;
        let architecture = match options
            .get("architecture")
            .unwrap_or("transformer")
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "transformer" => Architecture::Transformer,
            "lstm" => Architecture::Lstm,
            other => {
                return Err(Error::option(format!(
                    "option architecture must be 'transformer' or 'lstm', got '{other}'"
                )));
            }
        };
        let parsed = SequenceOptions {
            task,
            architecture,
            d_model: options.number("d_model", 64, 4..=4096)?,
            layers: options.number("layers", 2, 1..=48)?,
            heads: options.number("heads", 4, 1..=64)?,
            dropout: options.number("dropout", 0.1, 0.0..=0.9)?,
            max_len: options.number("max_len", 50, 1..=4096)?,
            epochs: options.number("epochs", 20, 1..=10_000)?,
            batch_size: options.number("batch_size", 128, 1..=1 << 16)?,
            learning_rate: options.number("learning_rate", 0.001, 1e-7..=10.0)?,
            weight_decay: options.number("weight_decay", 0.01, 0.0..=10.0)?,
            patience: options.number("patience", 3, 1..=10_000)?,
            validation_fraction: options.number("validation_fraction", 0.2, 0.01..=0.9)?,
            max_vocabulary: options.number("max_vocabulary", 20_000, 1..=1_000_000)?,
            seed: options.number("seed", 42, 0..=u64::MAX)?,
            device: options.get("device").unwrap_or("cpu").to_string(),
        };
        options.finish(kind)?;
        if parsed.architecture == Architecture::Transformer
            && !parsed.d_model.is_multiple_of(parsed.heads)
        {
            return Err(Error::option(format!(
                "option d_model ({}) must be a multiple of heads ({})",
                parsed.d_model, parsed.heads
            )));
        }
        if parsed.architecture == Architecture::Lstm && parsed.task == Task::Embedding {
            return Err(Error::option(
                "task 'embedding' (masked-event pre-training) needs architecture 'transformer': \
                 an LSTM reads one direction only",
            ));
        }
        Ok(parsed)
    }
}

/// What training observed, saved in the card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceReport {
    pub rows: u64,
    pub train_rows: u64,
    pub validation_rows: u64,
    /// Rows left out because their event list was NULL.
    pub null_rows: u64,
    pub best_epoch: usize,
    pub history: Vec<EpochReport>,
    pub metrics: Vec<(String, f64)>,
    /// Event tokens (plus summary tokens) per second of training, forward and backward.
    pub tokens_per_second: f64,
    pub seconds: f64,
}

/// The parts of a sequence model saved in its card (the weights go to safetensors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceSpec {
    pub task: Task,
    pub architecture: Architecture,
    pub d_model: usize,
    pub layers: usize,
    pub heads: usize,
    pub max_len: usize,
    /// Whether the model was trained with event ages (a second list input).
    pub timed: bool,
    /// Tokens by id after the special tokens, most frequent first.
    pub vocabulary: Vec<String>,
    pub training: SequenceReport,
}

impl SequenceSpec {
    fn vocabulary_size(&self) -> usize {
        SPECIAL_TOKENS + self.vocabulary.len()
    }

    fn outputs(&self) -> usize {
        match self.task {
            Task::Churn => 1,
            Task::NextItem | Task::Embedding => self.vocabulary_size(),
        }
    }

    /// Every weight tensor's name and shape, which both initialisation and loading follow.
    fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        let d = self.d_model;
        let mut shapes = vec![
            ("token".to_string(), vec![self.vocabulary_size(), d]),
            ("age".to_string(), vec![TIME_EMBEDDINGS, d]),
            ("gap".to_string(), vec![TIME_EMBEDDINGS, d]),
        ];
        match self.architecture {
            Architecture::Transformer => {
                shapes.push(("position".to_string(), vec![self.max_len + 1, d]));
                for i in 0..self.layers {
                    let p = format!("blocks.{i}");
                    for (name, shape) in [
                        ("ln1.weight", vec![d]),
                        ("ln1.bias", vec![d]),
                        ("qkv.weight", vec![3 * d, d]),
                        ("qkv.bias", vec![3 * d]),
                        ("out.weight", vec![d, d]),
                        ("out.bias", vec![d]),
                        ("ln2.weight", vec![d]),
                        ("ln2.bias", vec![d]),
                        ("ff1.weight", vec![4 * d, d]),
                        ("ff1.bias", vec![4 * d]),
                        ("ff2.weight", vec![d, 4 * d]),
                        ("ff2.bias", vec![d]),
                    ] {
                        shapes.push((format!("{p}.{name}"), shape));
                    }
                }
                shapes.push(("final_ln.weight".to_string(), vec![d]));
                shapes.push(("final_ln.bias".to_string(), vec![d]));
            }
            Architecture::Lstm => {
                for i in 0..self.layers {
                    shapes.push((format!("lstm.{i}.w_ih"), vec![4 * d, d]));
                    shapes.push((format!("lstm.{i}.w_hh"), vec![4 * d, d]));
                    shapes.push((format!("lstm.{i}.bias"), vec![4 * d]));
                }
            }
        }
        shapes.push(("head.weight".to_string(), vec![self.outputs(), d]));
        shapes.push(("head.bias".to_string(), vec![self.outputs()]));
        shapes
    }
}

/// One customer's history as ids, oldest first, with ages in days (NaN where unknown).
#[derive(Debug, Clone, Default)]
struct History {
    tokens: Vec<u32>,
    ages: Option<Vec<f32>>,
}

impl History {
    fn len(&self) -> usize {
        self.tokens.len()
    }
}

/// One row of a batch: a history (already cut), ages measured from `reference` days.
struct Sample<'a> {
    tokens: &'a [u32],
    ages: Option<&'a [f32]>,
    reference: f32,
}

/// A batch as tensors: left-padded ids and buckets, the attention mask, which steps are real.
struct Batch {
    rows: usize,
    length: usize,
    tokens: Tensor,
    positions: Tensor,
    ages: Tensor,
    gaps: Tensor,
    /// [rows, length]: 0 for real keys, a large negative number for padding; added to every
    /// attention score.
    key_bias: Vec<f32>,
    /// [rows, length]: 1 for real steps (events and the summary), 0 for padding.
    real: Vec<f32>,
    /// Tokens in the batch, summary tokens included (for throughput).
    token_count: usize,
}

fn time_bucket(days: f32) -> u32 {
    if !days.is_finite() || days < 0.0 {
        return TIME_UNKNOWN;
    }
    let minutes = days * 1440.0;
    ((2.0 * (1.0 + minutes).log2()).floor() as u32).min(TIME_BUCKETS as u32 - 1)
}

impl Batch {
    fn new(samples: &[Sample<'_>], max_len: usize, device: &Device) -> Result<Batch> {
        let rows = samples.len();
        let length = samples
            .iter()
            .map(|s| s.tokens.len().min(max_len))
            .max()
            .unwrap_or(0)
            + 1;
        let cells = rows * length;
        let mut tokens = vec![PAD; cells];
        let mut positions = vec![0u32; cells];
        let mut ages = vec![TIME_UNKNOWN; cells];
        let mut gaps = vec![TIME_UNKNOWN; cells];
        let mut bias = vec![-1e9f32; cells];
        let mut real = vec![0f32; cells];
        let mut token_count = 0;
        for (r, sample) in samples.iter().enumerate() {
            let n = sample.tokens.len().min(max_len);
            let skip = sample.tokens.len() - n;
            let row = r * length;
            let start = row + length - 1 - n;
            let mut previous_age: Option<f32> = None;
            for k in 0..=n {
                let cell = start + k;
                let (token, age) = if k < n {
                    let age = sample
                        .ages
                        .map_or(f32::NAN, |a| a[skip + k] - sample.reference);
                    (sample.tokens[skip + k], age)
                } else {
                    let age = if sample.ages.is_some() { 0.0 } else { f32::NAN };
                    (SUMMARY, age)
                };
                tokens[cell] = token;
                positions[cell] = (n - k) as u32;
                ages[cell] = time_bucket(age);
                gaps[cell] = match previous_age {
                    _ if sample.ages.is_none() => TIME_UNKNOWN,
                    None => NO_PREVIOUS,
                    Some(before) => time_bucket(before - age),
                };
                previous_age = Some(age);
                bias[cell] = 0.0;
                real[cell] = 1.0;
            }
            token_count += n + 1;
        }
        let ids = |v: Vec<u32>| Tensor::from_vec(v, (rows, length), device);
        Ok(Batch {
            rows,
            length,
            tokens: ids(tokens)?,
            positions: ids(positions)?,
            ages: ids(ages)?,
            gaps: ids(gaps)?,
            key_bias: bias,
            real,
            token_count,
        })
    }
}

/// Dropout with masks from the model's seeded generator; None when scoring.
struct Noise<'a> {
    rng: &'a mut StdRng,
    rate: f32,
}

impl Noise<'_> {
    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        if self.rate <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.rate;
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                if self.rng.random::<f32>() < keep {
                    1.0 / keep
                } else {
                    0.0
                }
            })
            .collect();
        Ok((x * Tensor::from_vec(mask, x.shape(), x.device())?)?)
    }
}

fn dropout(x: &Tensor, noise: &mut Option<Noise<'_>>) -> Result<Tensor> {
    match noise {
        Some(noise) => noise.apply(x),
        None => Ok(x.clone()),
    }
}

/// The network's forward pass over named weights (training variables or loaded tensors).
struct Network<'a> {
    spec: &'a SequenceSpec,
    weights: &'a HashMap<String, Tensor>,
    /// Set when scoring an LSTM on the CPU.
    cpu_lstm: Option<&'a CpuLstm>,
    /// Whether linear layers, layer norms and attention run as the fused CPU ops of
    /// [`crate::fused`] and [`crate::attention`] where those apply (training and scoring);
    /// false only to check them against candle.
    fused: bool,
}

impl Network<'_> {
    fn w(&self, name: &str) -> Result<&Tensor> {
        self.weights
            .get(name)
            .ok_or_else(|| Error::CorruptArtifact(format!("weights lack {name}")))
    }

    /// `x [n, in] · Wᵀ + b`.
    fn linear(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        self.dense(x, name, false)
    }

    /// `max(0, x [n, in] · Wᵀ + b)`.
    fn linear_relu(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        self.dense(x, name, true)
    }

    fn dense(&self, x: &Tensor, name: &str, relu: bool) -> Result<Tensor> {
        let w = self.w(&format!("{name}.weight"))?;
        let b = self.w(&format!("{name}.bias"))?;
        if self.fused
            && let Some(y) = crate::fused::linear(x, w, b, relu)?
        {
            return Ok(y);
        }
        let y = x.matmul(&w.t()?)?.broadcast_add(b)?;
        Ok(if relu { y.relu()? } else { y })
    }

    /// Layer norm over the last dimension.
    fn layer_norm(&self, x: &Tensor, name: &str, training: bool) -> Result<Tensor> {
        let w = self.w(&format!("{name}.weight"))?;
        let b = self.w(&format!("{name}.bias"))?;
        if self.fused
            && let Some(y) = crate::fused::layer_norm(x, w, b, 1e-5)?
        {
            return Ok(y);
        }
        // candle's fused layer norm has no backward pass.
        if !training {
            return Ok(candle_nn::ops::layer_norm(&x.contiguous()?, w, b, 1e-5)?);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(variance + 1e-5)?.sqrt()?)?;
        Ok(normed.broadcast_mul(w)?.broadcast_add(b)?)
    }

    /// Sum of the token, age and gap embeddings (and position, for the Transformer): [B, L, D].
    fn embed_events(&self, batch: &Batch) -> Result<Tensor> {
        let (b, l, d) = (batch.rows, batch.length, self.spec.d_model);
        let lookup = |table: &str, ids: &Tensor| -> Result<Tensor> {
            Ok(self.w(table)?.index_select(&ids.flatten_all()?, 0)?)
        };
        let mut x = (lookup("token", &batch.tokens)? + lookup("age", &batch.ages)?)?;
        x = (x + lookup("gap", &batch.gaps)?)?;
        if self.spec.architecture == Architecture::Transformer {
            x = (x + lookup("position", &batch.positions)?)?;
        }
        Ok(x.reshape((b, l, d))?)
    }

    /// The final state of every step, [B, L, D] (Transformer only); with `summary_only`, of
    /// the summary token alone, [B, 1, D]: the last block then attends from that one query
    /// and runs its feed-forward on that one row, which is all a churn or next-event head
    /// reads (a third less work, training and scoring alike).
    fn encode(
        &self,
        batch: &Batch,
        noise: &mut Option<Noise<'_>>,
        summary_only: bool,
    ) -> Result<Tensor> {
        let training = noise.is_some();
        let (b, l, d) = (batch.rows, batch.length, self.spec.d_model);
        let heads = self.spec.heads;
        let head_dim = d / heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut x = dropout(&self.embed_events(batch)?, noise)?.reshape((b * l, d))?;
        let mut queries = l;
        for i in 0..self.spec.layers {
            let p = format!("blocks.{i}");
            if summary_only && i + 1 == self.spec.layers {
                queries = 1;
            }
            let h = self.layer_norm(&x, &format!("{p}.ln1"), training)?;
            let qkv = self.linear(&h, &format!("{p}.qkv"))?;
            let mixed = if self.fused && qkv.device().is_cpu() {
                PaddedAttention {
                    bias: batch.key_bias.clone(),
                    scale: scale as f32,
                    heads,
                    keys: l,
                    queries,
                }
                .apply(&qkv.contiguous()?)?
            } else {
                let qkv = qkv
                    .reshape((b, l, 3, heads, head_dim))?
                    .permute((2, 0, 3, 1, 4))?;
                let q = qkv.i(0)?.narrow(2, l - queries, queries)?.contiguous()?;
                let k = qkv.i(1)?.contiguous()?;
                let v = qkv.i(2)?.contiguous()?;
                let bias = Tensor::from_vec(batch.key_bias.clone(), (b, 1, 1, l), q.device())?;
                let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
                let attention = if training {
                    candle_nn::ops::softmax(&scores, D::Minus1)?
                } else {
                    candle_nn::ops::softmax_last_dim(&scores)?
                };
                attention
                    .matmul(&v)?
                    .transpose(1, 2)?
                    .contiguous()?
                    .reshape((b * queries, d))?
            };
            let projected = self.linear(&mixed, &format!("{p}.out"))?;
            if queries < l {
                // Only the last `queries` positions go on.
                x = x
                    .reshape((b, l, d))?
                    .narrow(1, l - queries, queries)?
                    .contiguous()?
                    .reshape((b * queries, d))?;
            }
            x = (x + dropout(&projected, noise)?)?;
            let h = self.layer_norm(&x, &format!("{p}.ln2"), training)?;
            let h = self.linear_relu(&h, &format!("{p}.ff1"))?;
            let h = self.linear(&h, &format!("{p}.ff2"))?;
            x = (x + dropout(&h, noise)?)?;
        }
        let x = self.layer_norm(&x, "final_ln", training)?;
        Ok(x.reshape((b, queries, d))?)
    }

    /// The LSTM's state after the summary token, [B, D]; padded steps keep the state.
    fn recur(&self, batch: &Batch, noise: &mut Option<Noise<'_>>) -> Result<Tensor> {
        let (b, l, d) = (batch.rows, batch.length, self.spec.d_model);
        let device = batch.tokens.device();
        // Time-major copies, so that each step reads contiguous rows.
        let real = Tensor::from_vec(batch.real.clone(), (b, l), device)?
            .t()?
            .contiguous()?
            .reshape((l, b, 1))?;
        let mut inputs = dropout(&self.embed_events(batch)?, noise)?;
        let mut last = None;
        for layer in 0..self.spec.layers {
            let p = format!("lstm.{layer}");
            let w_hh = self.w(&format!("{p}.w_hh"))?.t()?;
            // Input projections for every step in one product.
            let projected = inputs
                .reshape((b * l, d))?
                .matmul(&self.w(&format!("{p}.w_ih"))?.t()?)?
                .broadcast_add(self.w(&format!("{p}.bias"))?)?
                .reshape((b, l, 4 * d))?
                .transpose(0, 1)?
                .contiguous()?;
            let mut h = Tensor::zeros((b, d), DType::F32, device)?;
            let mut c = Tensor::zeros((b, d), DType::F32, device)?;
            let mut outputs = Vec::with_capacity(l);
            for t in 0..l {
                // [b, 4d] -> [4, b, d]: each gate contiguous.
                let gates = (projected.i(t)? + h.matmul(&w_hh)?)?
                    .reshape((b, 4, d))?
                    .transpose(0, 1)?
                    .contiguous()?;
                let input = candle_nn::ops::sigmoid(&gates.i(0)?)?;
                let forget = candle_nn::ops::sigmoid(&gates.i(1)?)?;
                let cell = gates.i(2)?.tanh()?;
                let output = candle_nn::ops::sigmoid(&gates.i(3)?)?;
                let c_new = ((forget * &c)? + (input * cell)?)?;
                let h_new = (output * c_new.tanh()?)?;
                let step = real.i(t)?;
                c = (&c + (c_new - &c)?.broadcast_mul(&step)?)?;
                h = (&h + (h_new - &h)?.broadcast_mul(&step)?)?;
                outputs.push(h.clone());
            }
            last = Some(h);
            if layer + 1 < self.spec.layers {
                inputs = dropout(&Tensor::stack(&outputs, 1)?, noise)?;
            }
        }
        last.ok_or_else(|| Error::input("an LSTM needs at least one layer"))
    }

    /// The state the heads read: the summary token's, [B, D].
    fn summary(&self, batch: &Batch, noise: &mut Option<Noise<'_>>) -> Result<Tensor> {
        match self.spec.architecture {
            Architecture::Transformer => Ok(self.encode(batch, noise, true)?.squeeze(1)?),
            Architecture::Lstm => match self.cpu_lstm {
                Some(lstm) if noise.is_none() => recur_cpu(lstm, batch),
                _ => self.recur(batch, noise),
            },
        }
    }

    /// Head outputs for the summary state: [B, 1] churn logits or [B, V] token logits.
    fn head(&self, state: &Tensor, noise: &mut Option<Noise<'_>>) -> Result<Tensor> {
        self.linear(&dropout(state, noise)?, "head")
    }

    /// A fixed-length vector per row: the mean final state of the events (the summary state
    /// for an empty history) for the embedding task, the summary state otherwise.
    fn embedding(&self, batch: &Batch) -> Result<Tensor> {
        if self.spec.task != Task::Embedding || self.spec.architecture != Architecture::Transformer
        {
            return self.summary(batch, &mut None);
        }
        let states = self.encode(batch, &mut None, false)?;
        let (b, l) = (batch.rows, batch.length);
        // Events only: the summary step counts only when there is nothing else.
        let mut weights = batch.real.clone();
        for r in 0..b {
            let events = weights[r * l..(r + 1) * l - 1].iter().sum::<f32>();
            if events > 0.0 {
                weights[r * l + l - 1] = 0.0;
                for w in &mut weights[r * l..(r + 1) * l - 1] {
                    *w /= events;
                }
            }
        }
        let weights = Tensor::from_vec(weights, (b, 1, l), states.device())?;
        Ok(weights.matmul(&states)?.squeeze(1)?)
    }
}

/// The LSTM's weights as [`CpuLstm`] wants them.
fn cpu_lstm(spec: &SequenceSpec, weights: &HashMap<String, Tensor>) -> Result<CpuLstm> {
    let values = |name: &str| -> Result<Vec<f32>> {
        let tensor = weights
            .get(name)
            .ok_or_else(|| Error::CorruptArtifact(format!("weights lack {name}")))?;
        Ok(tensor.flatten_all()?.to_vec1::<f32>()?)
    };
    let layers = (0..spec.layers)
        .map(|i| {
            Ok((
                values(&format!("lstm.{i}.w_ih"))?,
                values(&format!("lstm.{i}.w_hh"))?,
                values(&format!("lstm.{i}.bias"))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let tables = [values("token")?, values("age")?, values("gap")?];
    Ok(CpuLstm::new(spec.d_model, tables, layers))
}

/// [`Network::recur`] through [`CpuLstm`]: the state after the summary token, [B, D].
fn recur_cpu(lstm: &CpuLstm, batch: &Batch) -> Result<Tensor> {
    let ids = |t: &Tensor| -> Result<Vec<u32>> { Ok(t.flatten_all()?.to_vec1::<u32>()?) };
    let (tokens, ages, gaps) = (ids(&batch.tokens)?, ids(&batch.ages)?, ids(&batch.gaps)?);
    let states = lstm.final_states(&Steps {
        rows: batch.rows,
        length: batch.length,
        ids: [&tokens, &ages, &gaps],
        real: &batch.real,
    });
    Ok(Tensor::from_vec(
        states,
        (batch.rows, lstm.width()),
        batch.tokens.device(),
    )?)
}

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

/// A batch with masked events: the batch, the flat positions of the masks, the masked tokens.
type MaskedBatch = (Batch, Vec<u32>, Vec<u32>);

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

    /// Runs `f` over the non-NULL rows in chunks of similar length and returns its per-row
    /// outputs in input order (None for NULL rows).
    fn chunked<T: Clone>(
        &self,
        input: &SequenceInput,
        mut f: impl FnMut(&Batch) -> Result<Vec<T>>,
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
            for (&i, value) in order[start..end].iter().zip(f(&batch)?) {
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
        let scores = self.chunked(&input, |batch| {
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
        self.chunked(&input, |batch| {
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
        let ranked = self.chunked(&input, |batch| {
            let logits = network.head(&network.summary(batch, &mut None)?, &mut None)?;
            let probabilities = candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?;
            Ok(probabilities
                .iter()
                .map(|p| top_tokens(p, k))
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

    /// Trains on `data`: an event list column, optionally an age list column, and for task
    /// churn the target. `on_epoch` sees each epoch; `cancel` stops at the next mini-batch.
    pub fn train(
        data: &TrainingData,
        options: &SequenceOptions,
        on_epoch: &mut dyn FnMut(&EpochReport),
        cancel: &AtomicBool,
    ) -> Result<SequenceModel> {
        let started = Instant::now();
        let device = crate::device(&options.device)?;
        let (events, ages) = training_columns(data)?;
        if options.task == Task::Churn && data.target.len() != events.len() {
            return Err(Error::data(
                "task churn needs TARGET: a boolean or 0/1 column, churned or not",
            ));
        }
        // Rows with a NULL event list carry no history to learn from.
        let rows: Vec<usize> = (0..events.len()).filter(|&i| events[i].is_some()).collect();
        let null_rows = (events.len() - rows.len()) as u64;
        if rows.is_empty() {
            return Err(Error::data(if events.is_empty() {
                "the training query returned no rows"
            } else {
                "every event list is NULL"
            }));
        }
        let labels: Vec<bool> = match options.task {
            Task::Churn => rows.iter().map(|&i| data.target[i]).collect(),
            _ => Vec::new(),
        };
        let (train, validation) = split_rows(rows.len(), &labels, options)?;

        // The vocabulary comes from the training rows only, most frequent first.
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for &r in &train {
            for token in events[rows[r]]
                .as_ref()
                .expect("non-NULL rows")
                .iter()
                .flatten()
            {
                *counts.entry(token.as_str()).or_default() += 1;
            }
        }
        let mut vocabulary: Vec<(&str, u64)> = counts.into_iter().collect();
        vocabulary.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        vocabulary.truncate(options.max_vocabulary);
        let vocabulary: Vec<String> = vocabulary.into_iter().map(|(t, _)| t.to_string()).collect();
        if vocabulary.is_empty() {
            return Err(Error::data(
                "the training event lists hold no tokens (all empty or NULL)",
            ));
        }
        let index: HashMap<&str, u32> = vocabulary
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), (i + SPECIAL_TOKENS) as u32))
            .collect();
        let histories: Vec<History> = rows
            .iter()
            .map(|&row| {
                let list = events[row].as_ref().expect("non-NULL rows");
                let tokens: Vec<u32> = list
                    .iter()
                    .map(|t| {
                        t.as_deref()
                            .and_then(|t| index.get(t).copied())
                            .unwrap_or(UNKNOWN)
                    })
                    .collect();
                let ages = row_ages(ages.map(|a| a[row].as_deref()), tokens.len(), row)?;
                Ok(History { tokens, ages })
            })
            .collect::<Result<_>>()?;

        let mut spec = SequenceSpec {
            task: options.task,
            architecture: options.architecture,
            d_model: options.d_model,
            layers: options.layers,
            heads: options.heads,
            max_len: options.max_len,
            timed: ages.is_some(),
            vocabulary,
            training: SequenceReport {
                rows: rows.len() as u64,
                train_rows: train.len() as u64,
                validation_rows: validation.len() as u64,
                null_rows,
                best_epoch: 0,
                history: Vec::new(),
                metrics: Vec::new(),
                tokens_per_second: 0.0,
                seconds: 0.0,
            },
        };
        let mut trainer = Trainer::new(&spec, options, &device, &histories, &labels)?;
        let mut best: Option<(f64, usize, HashMap<String, Tensor>)> = None;
        let (mut tokens_seen, mut train_seconds) = (0usize, 0.0);
        for epoch in 1..=options.epochs {
            let epoch_started = Instant::now();
            let (train_loss, tokens) = trainer.epoch(&spec, &train, cancel)?;
            tokens_seen += tokens;
            train_seconds += epoch_started.elapsed().as_secs_f64();
            let snapshot = trainer.snapshot()?;
            let model = SequenceModel::new(spec.clone(), snapshot, device.clone())?;
            let evaluation = model.evaluate(&histories, &validation, &labels, options.seed)?;
            let report = EpochReport {
                epoch,
                epochs: options.epochs,
                train_loss,
                validation_loss: evaluation.loss,
                validation_auc: evaluation.auc,
                seconds: epoch_started.elapsed().as_secs_f64(),
            };
            on_epoch(&report);
            spec.training.history.push(report);
            let improved = best
                .as_ref()
                .is_none_or(|(loss, _, _)| evaluation.loss < *loss);
            if improved {
                best = Some((evaluation.loss, epoch, model.weights));
            } else if best
                .as_ref()
                .is_some_and(|(_, best_epoch, _)| epoch - best_epoch >= options.patience)
            {
                break;
            }
        }
        let (_, best_epoch, weights) = best.expect("at least one epoch ran");
        let mut model = SequenceModel::new(spec, weights, device)?;
        let evaluation = model.evaluate(&histories, &validation, &labels, options.seed)?;
        let report = &mut model.spec.training;
        report.best_epoch = best_epoch;
        report.metrics = evaluation.metrics;
        report.tokens_per_second = tokens_seen as f64 / train_seconds.max(1e-9);
        report.seconds = started.elapsed().as_secs_f64();
        Ok(model)
    }

    /// Validation loss and metrics on the rows `validation` of `histories`.
    fn evaluate(
        &self,
        histories: &[History],
        validation: &[usize],
        labels: &[bool],
        seed: u64,
    ) -> Result<Evaluation> {
        let network = self.network();
        match self.spec.task {
            Task::Churn => {
                let input = SequenceInput {
                    histories: validation
                        .iter()
                        .map(|&i| Some(histories[i].clone()))
                        .collect(),
                };
                let scores: Vec<f64> = self
                    .chunked(&input, |batch| {
                        let logits =
                            network.head(&network.summary(batch, &mut None)?, &mut None)?;
                        let p = candle_nn::ops::sigmoid(&logits.flatten_all()?)?;
                        Ok(p.to_vec1::<f32>()?.into_iter().map(f64::from).collect())
                    })?
                    .into_iter()
                    .map(|s| s.expect("no NULL rows"))
                    .collect();
                let y: Vec<bool> = validation.iter().map(|&i| labels[i]).collect();
                let metrics = BinaryMetrics::compute(&scores, &y, 0.5);
                Ok(Evaluation {
                    loss: metrics.log_loss,
                    auc: Some(metrics.roc_auc),
                    metrics: named(metrics.named()),
                })
            }
            Task::NextItem => {
                // The last token of each held-out history, from everything before it.
                let cases: Vec<(History, u32)> = validation
                    .iter()
                    .filter_map(|&i| held_out_last(&histories[i]))
                    .collect();
                if cases.is_empty() {
                    return Err(Error::data(
                        "no validation history has two or more known events to hold one out",
                    ));
                }
                let input = SequenceInput {
                    histories: cases.iter().map(|(h, _)| Some(h.clone())).collect(),
                };
                let probabilities = self.chunked(&input, |batch| {
                    let logits = network.head(&network.summary(batch, &mut None)?, &mut None)?;
                    Ok(candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?)
                })?;
                // Popularity as the training rows show it.
                let held_out: std::collections::HashSet<usize> =
                    validation.iter().copied().collect();
                let mut popularity = vec![0u64; self.spec.vocabulary_size()];
                for (i, h) in histories.iter().enumerate() {
                    if held_out.contains(&i) {
                        continue;
                    }
                    for &t in &h.tokens {
                        popularity[t as usize] += 1;
                    }
                }
                let popular: Vec<f32> = popularity.iter().map(|&c| c as f32).collect();
                let popular_top: Vec<usize> = top_tokens(&popular, TOP_K)
                    .into_iter()
                    .map(|(i, _)| i)
                    .collect();
                let (mut loss, mut hits, mut ndcg, mut pop_hits, mut pop_ndcg) =
                    (0.0, 0.0, 0.0, 0.0, 0.0);
                for ((_, target), p) in cases.iter().zip(&probabilities) {
                    let p = p.as_ref().expect("no NULL rows");
                    loss -= f64::from(p[*target as usize].max(1e-12)).ln();
                    let top: Vec<usize> =
                        top_tokens(p, TOP_K).into_iter().map(|(i, _)| i).collect();
                    for (ranking, hit, gain) in [
                        (&top, &mut hits, &mut ndcg),
                        (&popular_top, &mut pop_hits, &mut pop_ndcg),
                    ] {
                        if let Some(rank) = ranking.iter().position(|&i| i == *target as usize) {
                            *hit += 1.0;
                            *gain += 1.0 / (rank as f64 + 2.0).log2();
                        }
                    }
                }
                let n = cases.len() as f64;
                Ok(Evaluation {
                    loss: loss / n,
                    auc: None,
                    metrics: vec![
                        ("hr_at_10".into(), hits / n),
                        ("ndcg_at_10".into(), ndcg / n),
                        ("popularity_hr_at_10".into(), pop_hits / n),
                        ("popularity_ndcg_at_10".into(), pop_ndcg / n),
                        ("log_loss".into(), loss / n),
                        ("rows".into(), n),
                    ],
                })
            }
            Task::Embedding => {
                // The same masks every epoch, so validation losses compare.
                let mut rng = StdRng::seed_from_u64(seed ^ 0x6d61_736b);
                let (mut loss, mut correct, mut masked) = (0.0, 0.0, 0.0);
                let mut rows: Vec<usize> = validation.to_vec();
                rows.sort_by_key(|&i| histories[i].len());
                for chunk in rows.chunks(256) {
                    let Some((batch, positions, targets)) =
                        masked_batch(&self.spec, histories, chunk, &mut rng, &self.device)?
                    else {
                        continue;
                    };
                    let logits = masked_logits(&network, &batch, &positions, &mut None)?;
                    let log_p =
                        candle_nn::ops::log_softmax(&logits, D::Minus1)?.to_vec2::<f32>()?;
                    for (row, &target) in log_p.iter().zip(&targets) {
                        loss -= f64::from(row[target as usize]);
                        let best = top_tokens(row, 1)[0].0;
                        correct += f64::from(u8::from(best == target as usize));
                        masked += 1.0;
                    }
                }
                if masked == 0.0 {
                    return Err(Error::data(
                        "the validation histories hold no events to mask",
                    ));
                }
                Ok(Evaluation {
                    loss: loss / masked,
                    auc: None,
                    metrics: vec![
                        ("masked_accuracy".into(), correct / masked),
                        ("masked_log_loss".into(), loss / masked),
                        ("rows".into(), validation.len() as f64),
                    ],
                })
            }
        }
    }
}

struct Evaluation {
    loss: f64,
    auc: Option<f64>,
    metrics: Vec<(String, f64)>,
}

fn named(pairs: Vec<(&'static str, f64)>) -> Vec<(String, f64)> {
    pairs.into_iter().map(|(n, v)| (n.to_string(), v)).collect()
}

/// The history without its last known token, and that token; None when fewer than two events
/// or the last is unknown.
fn held_out_last(history: &History) -> Option<(History, u32)> {
    let n = history.len();
    let target = *history.tokens.last()?;
    if n < 2 || target == UNKNOWN {
        return None;
    }
    let ages = history.ages.as_ref();
    let reference = ages.map_or(0.0, |a| a[n - 1]);
    Some((
        History {
            tokens: history.tokens[..n - 1].to_vec(),
            ages: ages.map(|a| a[..n - 1].iter().map(|x| x - reference).collect()),
        },
        target,
    ))
}

/// Vocabulary ids (special tokens excluded) of the `k` largest values, best first.
fn top_tokens(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut candidates: Vec<(usize, f32)> = values
        .iter()
        .copied()
        .enumerate()
        .skip(SPECIAL_TOKENS)
        .collect();
    let k = k.min(candidates.len());
    if k == 0 {
        return Vec::new();
    }
    candidates.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    candidates.truncate(k);
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    candidates
}

/// A row's ages as f32 days, NaN for NULL or unknown; an error when its length differs from the
/// event list's.
fn row_ages<A: AsRef<[f64]>>(
    ages: Option<Option<A>>,
    events: usize,
    row: usize,
) -> Result<Option<Vec<f32>>> {
    let Some(ages) = ages else {
        return Ok(None);
    };
    match ages {
        None => Ok(Some(vec![f32::NAN; events])),
        Some(ages) => {
            let ages = ages.as_ref();
            if ages.len() != events {
                return Err(Error::input(format!(
                    "row {}: the age list has {} elements and the event list {}; they must \
                     pair up, one age per event",
                    row + 1,
                    ages.len(),
                    events
                )));
            }
            Ok(Some(ages.iter().map(|&a| a as f32).collect()))
        }
    }
}

type TextLists<'a> = &'a [Option<Vec<Option<String>>>];
type NumberLists<'a> = &'a [Option<Vec<f64>>];

/// The event list column and the optional age list column of the training data.
fn training_columns(data: &TrainingData) -> Result<(TextLists<'_>, Option<NumberLists<'_>>)> {
    let usage = "KIND sequence trains on a list of event tokens (e.g. array_agg(event_type \
                 ORDER BY event_time)), optionally followed by a list of each event's age in \
                 days, and for task churn the TARGET";
    let names: Vec<&str> = data.features.iter().map(|(n, _)| n.as_str()).collect();
    match data.features.as_slice() {
        [(_, FeatureColumn::TextList(events))] => Ok((events, None)),
        [
            (_, FeatureColumn::TextList(events)),
            (_, FeatureColumn::NumberList(ages)),
        ] => Ok((events, Some(ages))),
        _ => Err(Error::data(format!(
            "{usage}; the query returned {} column{} ({})",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ))),
    }
}

/// Train and validation row numbers: stratified by label for churn, random otherwise.
fn split_rows(
    rows: usize,
    labels: &[bool],
    options: &SequenceOptions,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if rows < 2 {
        return Err(Error::data(format!(
            "{rows} usable row; training needs at least 2 (one to validate on)"
        )));
    }
    if options.task == Task::Churn {
        let positives = labels.iter().filter(|&&y| y).count();
        if positives == 0 || positives == labels.len() {
            return Err(Error::data(format!(
                "the target has a single class ({} in all {} rows); churn needs both",
                positives > 0,
                labels.len()
            )));
        }
        if positives < 2 || labels.len() - positives < 2 {
            return Err(Error::data(
                "each class needs at least 2 rows to split into training and validation",
            ));
        }
        return Ok(crate::classifier::split(
            labels,
            options.validation_fraction,
            options.seed,
        ));
    }
    let mut order: Vec<usize> = (0..rows).collect();
    order.shuffle(&mut StdRng::seed_from_u64(
        options.seed ^ 0x5eed_5911_7000_0001,
    ));
    let take = ((rows as f64 * options.validation_fraction).round() as usize).clamp(1, rows - 1);
    let mut validation = order[..take].to_vec();
    let mut train = order[take..].to_vec();
    validation.sort_unstable();
    train.sort_unstable();
    Ok((train, validation))
}

/// A batch of histories with about 15% of events (at least one per non-empty row) replaced by
/// the mask token; returns the flat positions ([row * length + step]) and the original tokens.
/// None when no row has an event.
fn masked_batch(
    spec: &SequenceSpec,
    histories: &[History],
    rows: &[usize],
    rng: &mut StdRng,
    device: &Device,
) -> Result<Option<MaskedBatch>> {
    let mut masked: Vec<Vec<u32>> = Vec::with_capacity(rows.len());
    let mut picks: Vec<Vec<usize>> = Vec::with_capacity(rows.len());
    for &i in rows {
        let h = &histories[i];
        let n = h.len().min(spec.max_len);
        let skip = h.len() - n;
        let mut tokens = h.tokens[skip..].to_vec();
        let mut chosen: Vec<usize> = (0..n).filter(|_| rng.random::<f32>() < 0.15).collect();
        if chosen.is_empty() && n > 0 {
            chosen.push(rng.random_range(0..n));
        }
        for &k in &chosen {
            tokens[k] = MASK;
        }
        masked.push(tokens);
        picks.push(chosen);
    }
    if picks.iter().all(Vec::is_empty) {
        return Ok(None);
    }
    let samples: Vec<Sample<'_>> = rows
        .iter()
        .zip(&masked)
        .map(|(&i, tokens)| {
            let h = &histories[i];
            let skip = h.len() - tokens.len();
            Sample {
                tokens,
                ages: h.ages.as_deref().map(|a| &a[skip..]),
                reference: 0.0,
            }
        })
        .collect();
    let batch = Batch::new(&samples, spec.max_len, device)?;
    let (mut positions, mut targets) = (Vec::new(), Vec::new());
    for (r, (&i, chosen)) in rows.iter().zip(&picks).enumerate() {
        let h = &histories[i];
        let n = masked[r].len();
        let skip = h.len() - n;
        let start = r * batch.length + batch.length - 1 - n;
        for &k in chosen {
            positions.push((start + k) as u32);
            targets.push(h.tokens[skip + k]);
        }
    }
    Ok(Some((batch, positions, targets)))
}

/// Token logits at the masked positions, [masked, V].
fn masked_logits(
    network: &Network<'_>,
    batch: &Batch,
    positions: &[u32],
    noise: &mut Option<Noise<'_>>,
) -> Result<Tensor> {
    let states = network.encode(batch, noise, false)?;
    let flat = states.reshape((batch.rows * batch.length, network.spec.d_model))?;
    let index = Tensor::from_vec(positions.to_vec(), positions.len(), flat.device())?;
    network.head(&flat.index_select(&index, 0)?, noise)
}

/// The training state: variables, optimiser, generator.
struct Trainer<'a> {
    vars: Vec<(String, Var)>,
    weights: HashMap<String, Tensor>,
    optimizer: AdamW,
    rng: StdRng,
    options: &'a SequenceOptions,
    device: &'a Device,
    histories: &'a [History],
    labels: &'a [bool],
}

impl<'a> Trainer<'a> {
    fn new(
        spec: &SequenceSpec,
        options: &'a SequenceOptions,
        device: &'a Device,
        histories: &'a [History],
        labels: &'a [bool],
    ) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let mut vars = Vec::new();
        for (name, shape) in spec.shapes() {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with(".bias") {
                vec![0.0; n]
            } else if name.ends_with("ln.weight")
                || name.contains(".ln") && name.ends_with(".weight")
            {
                vec![1.0; n]
            } else if shape.len() == 2 && !name.contains('.') {
                // Embedding tables.
                (0..n).map(|_| rng.random_range(-0.1f32..=0.1)).collect()
            } else {
                let bound = 1.0 / (shape[shape.len() - 1] as f32).sqrt();
                (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
            };
            vars.push((name, Var::from_vec(values, shape.as_slice(), device)?));
        }
        let optimizer = AdamW::new(
            vars.iter().map(|(_, v)| v.clone()).collect(),
            ParamsAdamW {
                lr: options.learning_rate,
                weight_decay: options.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        let weights = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        Ok(Trainer {
            vars,
            weights,
            optimizer,
            rng,
            options,
            device,
            histories,
            labels,
        })
    }

    /// Independent copies of the current weights.
    fn snapshot(&self) -> Result<HashMap<String, Tensor>> {
        self.vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect()
    }

    /// Mini-batches of rows of similar length, in random order: rows are shuffled, sorted by
    /// length within windows of 32 batches, cut into batches, and the batches shuffled.
    fn batches(&mut self, rows: &[usize]) -> Vec<Vec<usize>> {
        let size = self.options.batch_size;
        let mut order = rows.to_vec();
        order.shuffle(&mut self.rng);
        let mut batches = Vec::new();
        for window in order.chunks_mut(size * 32) {
            window.sort_by_key(|&i| self.histories[i].len().min(self.options.max_len));
            batches.extend(window.chunks(size).map(<[usize]>::to_vec));
        }
        batches.shuffle(&mut self.rng);
        batches
    }

    /// One pass over `train`; returns the mean training loss and the tokens processed.
    fn epoch(
        &mut self,
        spec: &SequenceSpec,
        train: &[usize],
        cancel: &AtomicBool,
    ) -> Result<(f64, usize)> {
        let (mut loss_sum, mut count, mut tokens) = (0.0, 0.0, 0usize);
        for rows in self.batches(train) {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let network = Network {
                spec,
                weights: &self.weights,
                cpu_lstm: None,
                fused: true,
            };
            let rate = self.options.dropout as f32;
            let (loss, n, batch_tokens) = match spec.task {
                Task::Churn => {
                    let samples: Vec<Sample<'_>> = rows
                        .iter()
                        .map(|&i| Sample {
                            tokens: &self.histories[i].tokens,
                            ages: self.histories[i].ages.as_deref(),
                            reference: 0.0,
                        })
                        .collect();
                    let batch = Batch::new(&samples, spec.max_len, self.device)?;
                    let mut noise = Some(Noise {
                        rng: &mut self.rng,
                        rate,
                    });
                    let logits = network
                        .head(&network.summary(&batch, &mut noise)?, &mut noise)?
                        .flatten_all()?;
                    let y: Vec<f32> = rows
                        .iter()
                        .map(|&i| f32::from(u8::from(self.labels[i])))
                        .collect();
                    let y = Tensor::from_vec(y, rows.len(), self.device)?;
                    let w = Tensor::ones(rows.len(), DType::F32, self.device)?;
                    let loss = (crate::classifier::weighted_bce_with_logits(&logits, &y, &w)?
                        / rows.len() as f64)?;
                    (loss, rows.len(), batch.token_count)
                }
                Task::NextItem => {
                    // Cut each history at a random point with a known next token.
                    let mut cuts = Vec::new();
                    for &i in &rows {
                        let h = &self.histories[i];
                        let known: Vec<usize> =
                            (1..h.len()).filter(|&k| h.tokens[k] != UNKNOWN).collect();
                        if let Some(&k) = known.choose(&mut self.rng) {
                            cuts.push((i, k));
                        }
                    }
                    if cuts.is_empty() {
                        continue;
                    }
                    let samples: Vec<Sample<'_>> = cuts
                        .iter()
                        .map(|&(i, k)| {
                            let h = &self.histories[i];
                            Sample {
                                tokens: &h.tokens[..k],
                                ages: h.ages.as_deref().map(|a| &a[..k]),
                                reference: h.ages.as_ref().map_or(0.0, |a| a[k]),
                            }
                        })
                        .collect();
                    let batch = Batch::new(&samples, spec.max_len, self.device)?;
                    let targets: Vec<u32> = cuts
                        .iter()
                        .map(|&(i, k)| self.histories[i].tokens[k])
                        .collect();
                    let targets = Tensor::from_vec(targets, cuts.len(), self.device)?;
                    let mut noise = Some(Noise {
                        rng: &mut self.rng,
                        rate,
                    });
                    let logits = network.head(&network.summary(&batch, &mut noise)?, &mut noise)?;
                    let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
                    (loss, cuts.len(), batch.token_count)
                }
                Task::Embedding => {
                    let Some((batch, positions, targets)) =
                        masked_batch(spec, self.histories, &rows, &mut self.rng, self.device)?
                    else {
                        continue;
                    };
                    let mut noise = Some(Noise {
                        rng: &mut self.rng,
                        rate,
                    });
                    let logits = masked_logits(&network, &batch, &positions, &mut noise)?;
                    let n = targets.len();
                    let targets = Tensor::from_vec(targets, n, self.device)?;
                    let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
                    (loss, n, batch.token_count)
                }
            };
            self.optimizer.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * n as f64;
            count += n as f64;
            tokens += batch_tokens;
        }
        Ok((loss_sum / count.max(1.0), tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Histories over tokens a..e where churners end with "cart search" before the summary
    /// (order matters: the same tokens in the other order mean nothing).
    fn planted(rows: usize, seed: u64) -> TrainingData {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut events = Vec::new();
        let mut ages = Vec::new();
        let mut target = Vec::new();
        for _ in 0..rows {
            let n = rng.random_range(3..12);
            let mut list: Vec<Option<String>> = (0..n)
                .map(|_| {
                    Some(["view", "search", "cart", "buy"][rng.random_range(0..4)].to_string())
                })
                .collect();
            let churned = rng.random::<bool>();
            let tail = if churned {
                ["cart", "search"]
            } else {
                ["search", "cart"]
            };
            list.extend(tail.iter().map(|t| Some(t.to_string())));
            let n = list.len();
            ages.push(Some((0..n).map(|k| (n - k) as f64).collect()));
            events.push(Some(list));
            target.push(churned);
        }
        TrainingData {
            features: vec![
                ("events".into(), FeatureColumn::TextList(events)),
                ("ages".into(), FeatureColumn::NumberList(ages)),
            ],
            target,
        }
    }

    fn options(pairs: &[(&str, &str)]) -> SequenceOptions {
        let mut options = Options::new(pairs.iter().copied());
        SequenceOptions::from_options(&mut options, "sequence").unwrap()
    }

    fn score(model: &SequenceModel, data: &TrainingData) -> Vec<f64> {
        let FeatureColumn::TextList(events) = &data.features[0].1 else {
            panic!()
        };
        let FeatureColumn::NumberList(ages) = &data.features[1].1 else {
            panic!()
        };
        let events: Vec<Option<Vec<Option<&str>>>> = events
            .iter()
            .map(|l| l.as_ref().map(|l| l.iter().map(|t| t.as_deref()).collect()))
            .collect();
        model
            .predict(&[
                FeatureValues::TextList(&events),
                FeatureValues::NumberList(ages),
            ])
            .unwrap()
    }

    #[test]
    fn both_architectures_learn_an_order_only_pattern() {
        let data = planted(600, 1);
        let test = planted(300, 2);
        for architecture in ["transformer", "lstm"] {
            let opts = options(&[
                ("architecture", architecture),
                ("d_model", "16"),
                ("heads", "2"),
                ("layers", "1"),
                ("epochs", "15"),
                ("learning_rate", "0.01"),
                ("dropout", "0"),
            ]);
            let model =
                SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false)).unwrap();
            let auc = crate::metrics::roc_auc(&score(&model, &test), &test.target);
            assert!(auc > 0.95, "{architecture}: held-out AUC {auc}");
        }
    }

    #[test]
    fn same_seed_same_model_and_save_load_is_exact() {
        let data = planted(200, 3);
        let opts = options(&[("d_model", "8"), ("heads", "2"), ("epochs", "2")]);
        let train = || SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false));
        let (a, b) = (train().unwrap(), train().unwrap());
        assert_eq!(score(&a, &data), score(&b, &data));
        let bytes = crate::artifact::serialize_weights(&a.tensors()).unwrap();
        let sum = crate::artifact::fnv1a_hex(&bytes);
        let tensors = crate::artifact::deserialize_weights(&bytes, &sum, &Device::Cpu).unwrap();
        let loaded = SequenceModel::from_parts(a.spec.clone(), tensors, &Device::Cpu).unwrap();
        assert_eq!(score(&a, &data), score(&loaded, &data));
    }

    #[test]
    fn empty_null_unknown_and_long_histories_score() {
        let data = planted(100, 4);
        let opts = options(&[
            ("d_model", "8"),
            ("heads", "2"),
            ("epochs", "1"),
            ("max_len", "5"),
        ]);
        let model =
            SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false)).unwrap();
        let long: Vec<Option<&str>> = vec![Some("view"); 40];
        let events = vec![
            Some(vec![]),
            None,
            Some(vec![None, Some("never seen")]),
            Some(long),
        ];
        let ages = vec![Some(vec![]), None, Some(vec![2.0, f64::NAN]), None];
        let scores = model
            .predict(&[
                FeatureValues::TextList(&events),
                FeatureValues::NumberList(&ages),
            ])
            .unwrap();
        assert!(scores[0].is_finite() && scores[2].is_finite() && scores[3].is_finite());
        assert!(scores[1].is_nan(), "a NULL event list scores NULL");
        let mismatched = vec![Some(vec![1.0])];
        let err = model
            .predict(&[
                FeatureValues::TextList(&events[2..3]),
                FeatureValues::NumberList(&mismatched),
            ])
            .unwrap_err();
        assert!(err.to_string().contains("age list has 1 elements"), "{err}");
    }

    #[test]
    fn the_summary_only_pass_equals_the_full_pass() {
        let data = planted(64, 6);
        let opts = options(&[
            ("d_model", "16"),
            ("heads", "4"),
            ("layers", "2"),
            ("epochs", "1"),
        ]);
        let model =
            SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false)).unwrap();
        let tokens: Vec<Vec<u32>> = (0..5)
            .map(|n| (0..n * 3).map(|k| 4 + k % 3).collect())
            .collect();
        let samples: Vec<Sample<'_>> = tokens
            .iter()
            .map(|t| Sample {
                tokens: t,
                ages: None,
                reference: 0.0,
            })
            .collect();
        let batch = Batch::new(&samples, 50, &Device::Cpu).unwrap();
        let network = model.network();
        let full = network.encode(&batch, &mut None, false).unwrap();
        let last = full.i((.., batch.length - 1)).unwrap();
        let summary = network
            .encode(&batch, &mut None, true)
            .unwrap()
            .squeeze(1)
            .unwrap();
        let diff = (last - &summary).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        // The fused linear layers, layer norms and attention give candle's states.
        assert!(network.fused);
        let through_candle = Network {
            fused: false,
            ..model.network()
        };
        let reference = through_candle
            .encode(&batch, &mut None, true)
            .unwrap()
            .squeeze(1)
            .unwrap();
        let diff = (reference - summary)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    }

    #[test]
    fn the_cpu_lstm_matches_candles() {
        // Two layers, histories of 0 to 300 events (left padding, truncation at max_len 200),
        // unknown tokens, with and without ages; more rows than one parallel task.
        let data = planted(64, 8);
        let opts = options(&[
            ("architecture", "lstm"),
            ("d_model", "16"),
            ("layers", "2"),
            ("epochs", "1"),
            ("max_len", "200"),
        ]);
        let model =
            SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false)).unwrap();
        let mut rng = StdRng::seed_from_u64(9);
        let tokens: Vec<Vec<u32>> = (0..600)
            .map(|r| {
                let n = if r % 7 == 0 { 300 } else { r % 40 };
                (0..n).map(|_| rng.random_range(1..8)).collect()
            })
            .collect();
        let ages: Vec<Vec<f32>> = tokens
            .iter()
            .map(|t| (0..t.len()).map(|k| (t.len() - k) as f32 * 1.5).collect())
            .collect();
        let samples: Vec<Sample<'_>> = tokens
            .iter()
            .zip(&ages)
            .enumerate()
            .map(|(r, (t, a))| Sample {
                tokens: t,
                ages: (r % 2 == 0).then_some(a.as_slice()),
                reference: 0.0,
            })
            .collect();
        let batch = Batch::new(&samples, 200, &Device::Cpu).unwrap();
        let network = model.network();
        assert!(
            network.cpu_lstm.is_some(),
            "a CPU LSTM scores on the CPU path"
        );
        let fast = network.summary(&batch, &mut None).unwrap();
        let candle = network.recur(&batch, &mut None).unwrap();
        assert_eq!(fast.dims(), candle.dims());
        let diff = (fast - candle).unwrap().abs().unwrap().max_all().unwrap();
        let diff = diff.to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "largest difference {diff}");
    }

    #[test]
    fn bad_targets_and_options_are_named() {
        let mut data = planted(50, 5);
        data.target = vec![true; 50];
        let err = SequenceModel::train(&data, &options(&[]), &mut |_| {}, &AtomicBool::new(false))
            .unwrap_err();
        assert!(err.to_string().contains("single class"), "{err}");
        let mut bad = Options::new([("d_model", "10"), ("heads", "4")]);
        let err = SequenceOptions::from_options(&mut bad, "sequence").unwrap_err();
        assert!(err.to_string().contains("multiple of heads"), "{err}");
        let mut bad = Options::new([("architecture", "lstm"), ("task", "embedding")]);
        let err = SequenceOptions::from_options(&mut bad, "sequence").unwrap_err();
        assert!(
            err.to_string().contains("needs architecture 'transformer'"),
            "{err}"
        );
    }

    #[test]
    fn next_item_learns_a_successor_rule_and_embedding_trains() {
        // Each token is followed by its successor in a cycle of 12: fully predictable.
        let mut rng = StdRng::seed_from_u64(9);
        let events: Vec<Option<Vec<Option<String>>>> = (0..400)
            .map(|_| {
                let start = rng.random_range(0..12);
                let n = rng.random_range(2..10);
                Some(
                    (0..n)
                        .map(|k| Some(format!("t{}", (start + k) % 12)))
                        .collect(),
                )
            })
            .collect();
        let data = TrainingData {
            features: vec![("events".into(), FeatureColumn::TextList(events))],
            target: Vec::new(),
        };
        let opts = options(&[
            ("task", "next_item"),
            ("d_model", "16"),
            ("heads", "2"),
            ("epochs", "20"),
            ("learning_rate", "0.01"),
            ("dropout", "0"),
        ]);
        let model =
            SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false)).unwrap();
        let metric = |name: &str| model.metrics().iter().find(|m| m.0 == name).unwrap().1;
        assert!(metric("hr_at_10") > 0.99, "{:?}", model.metrics());
        let history = vec![Some(vec![Some("t3"), Some("t4")])];
        let next = model
            .next_tokens(&[FeatureValues::TextList(&history)], 1)
            .unwrap();
        assert_eq!(next[0].as_ref().unwrap()[0].0, "t5");

        let opts = options(&[
            ("task", "embedding"),
            ("d_model", "16"),
            ("heads", "2"),
            ("epochs", "2"),
        ]);
        let model =
            SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false)).unwrap();
        let vectors = model.embed(&[FeatureValues::TextList(&history)]).unwrap();
        assert_eq!(vectors[0].as_ref().unwrap().len(), 16);
        assert!(model.metrics().iter().any(|m| m.0 == "masked_accuracy"));
    }
}
