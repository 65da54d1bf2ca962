//! The OPTIONS of KIND sequence.

use super::spec::{Architecture, Task};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::train::TrainingOptions;

/// The training options' defaults for a sequence model.
const DEFAULTS: TrainingOptions = TrainingOptions {
    epochs: 20,
    batch_size: 128,
    learning_rate: 0.001,
    weight_decay: 0.01,
    patience: 3,
    validation_fraction: 0.2,
};

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
    /// Epochs, batch size, AdamW, early stopping and the validation split.
    pub training: TrainingOptions,
    pub max_vocabulary: usize,
    /// Task next_item: recommend() leaves out the tokens already in the history.
    pub exclude_seen: bool,
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
        if task != Task::NextItem && options.get("exclude_seen").is_some() {
            return Err(Error::option(
                "option exclude_seen applies to task 'next_item' only",
            ));
        }
        let parsed = SequenceOptions {
            task,
            architecture,
            d_model: options.number("d_model", 64, 4..=4096)?,
            layers: options.number("layers", 2, 1..=48)?,
            heads: options.number("heads", 4, 1..=64)?,
            dropout: options.number("dropout", 0.1, 0.0..=0.9)?,
            max_len: options.number("max_len", 50, 1..=4096)?,
            training: TrainingOptions::from_options(options, &DEFAULTS, 1 << 16)?,
            max_vocabulary: options.number("max_vocabulary", 20_000, 1..=1_000_000)?,
            exclude_seen: options.parse("exclude_seen", true, "true or false")?,
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
