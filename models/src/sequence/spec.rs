//! What a sequence model is, as its card records it: the task, the architecture, the
//! vocabulary and the shape of every weight; and the token ids and time buckets with a fixed
//! meaning that the other files share.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::train::EpochReport;

/// Token ids with a fixed meaning; the vocabulary starts after them.
pub(super) const PAD: u32 = 0;
pub(super) const UNKNOWN: u32 = 1;
pub(super) const SUMMARY: u32 = 2;
pub(super) const MASK: u32 = 3;
pub(super) const SPECIAL_TOKENS: usize = 4;

/// Time buckets: half-octaves of minutes up to about two years, then "no previous event" and
/// "time unknown".
pub(super) const TIME_BUCKETS: usize = 42;
pub(super) const NO_PREVIOUS: u32 = TIME_BUCKETS as u32;
pub(super) const TIME_UNKNOWN: u32 = TIME_BUCKETS as u32 + 1;
pub(super) const TIME_EMBEDDINGS: usize = TIME_BUCKETS + 2;

/// What the model learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Churn,
    NextItem,
    Embedding,
}

impl Task {
    pub(super) fn parse(text: &str) -> Result<Task> {
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
    /// Attention sees only earlier events (task next_item's Transformer, trained on every
    /// position at once); false in cards written before it existed.
    #[serde(default)]
    pub causal: bool,
    /// The next-token head's weights are the token embeddings, as SASRec shares them: a rare
    /// item's output vector learns from its every appearance as an input too.
    #[serde(default)]
    pub tied: bool,
    /// recommend() leaves out the tokens already in the history (option exclude_seen).
    #[serde(default)]
    pub exclude_seen: bool,
    /// Training occurrences of each vocabulary token, for the popularity blend.
    #[serde(default)]
    pub popularity: Vec<u64>,
    /// β of the popularity blend: a history of n known events is scored as
    /// (n · p_model + β · p_popular) / (n + β); chosen on the validation histories.
    #[serde(default)]
    pub popularity_blend: f64,
    pub training: SequenceReport,
}

impl SequenceSpec {
    pub(super) fn vocabulary_size(&self) -> usize {
        SPECIAL_TOKENS + self.vocabulary.len()
    }

    pub(super) fn outputs(&self) -> usize {
        match self.task {
            Task::Churn => 1,
            Task::NextItem | Task::Embedding => self.vocabulary_size(),
        }
    }

    /// Turns one history's next-token probabilities `p` into recommend()'s scores: blended
    /// with popularity by `blend` (β), then every token already in the history at -1 under
    /// exclude_seen, so that a ranking can drop it.
    pub(super) fn next_token_scores(&self, p: &mut [f32], history: &[u32], blend: f64) {
        let total: u64 = self.popularity.iter().sum();
        if blend > 0.0 && total > 0 {
            let known = history
                .iter()
                .filter(|&&t| t as usize >= SPECIAL_TOKENS)
                .count() as f64;
            let model_weight = (known / (known + blend)) as f32;
            let popular_weight = (blend / (known + blend) / total as f64) as f32;
            for (x, &count) in p[SPECIAL_TOKENS..].iter_mut().zip(&self.popularity) {
                *x = model_weight * *x + popular_weight * count as f32;
            }
        }
        if self.exclude_seen {
            for &t in history {
                if t as usize >= SPECIAL_TOKENS {
                    p[t as usize] = -1.0;
                }
            }
        }
    }

    /// Every weight tensor's name and shape, which both initialisation and loading follow.
    pub(super) fn shapes(&self) -> Vec<(String, Vec<usize>)> {
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
        if !self.tied {
            shapes.push(("head.weight".to_string(), vec![self.outputs(), d]));
        }
        shapes.push(("head.bias".to_string(), vec![self.outputs()]));
        shapes
    }
}

/// Vocabulary ids (special tokens excluded) of the `k` largest values, best first.
pub(super) fn top_tokens(values: &[f32], k: usize) -> Vec<(usize, f32)> {
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
