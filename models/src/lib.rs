//! tenure-models: the machine learning behind tenure's SQL functions, on candle.
//!
//! It knows nothing of Arrow record batches or SQL; the `tenure-udfs` crate adapts it to
//! DataFusion and the `tenure` crate stores artifacts and runs CREATE MODEL.
//!
//! - [`preprocess`]: standardisation, one-hot vocabularies, missing values; the feature-major
//!   matrix every model consumes.
//! - [`classifier`]: KIND churn_classifier, an MLP or logistic regression trained with AdamW.
//! - [`dense`]: the fused CPU forward pass that scores dense networks block by block.
//! - [`metrics`]: ROC AUC, PR AUC, log loss, threshold metrics, calibration.
//! - [`artifact`]: the JSON model card and safetensors weights.
//! - [`options`]: OPTIONS (...) parsing with errors that list what a kind accepts.
//!
//! [`Model`] is the one type the other crates hold: any trained model, by kind.

pub mod artifact;
pub mod classifier;
pub mod dense;
pub mod error;
pub mod metrics;
pub mod options;
pub mod preprocess;

use std::sync::atomic::AtomicBool;

use candle_core::Device;
use serde::{Deserialize, Serialize};

pub use artifact::{FeatureSpec, ModelCard, ModelSpec};
pub use classifier::{Classifier, ClassifierOptions, EpochReport, Explanation, TrainingData};
pub use error::{Error, Result};
pub use options::Options;
pub use preprocess::{FeatureColumn, FeatureKind, FeatureValues};

/// The model kinds CREATE MODEL knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ChurnClassifier,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[Kind::ChurnClassifier];

    pub fn name(self) -> &'static str {
        match self {
            Kind::ChurnClassifier => "churn_classifier",
        }
    }

    /// Parses a KIND name; the error lists the kinds that exist.
    pub fn parse(name: &str) -> Result<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                Error::option(format!(
                    "unknown model kind '{name}'; kinds: {}",
                    known.join(", ")
                ))
            })
    }

    /// Whether CREATE MODEL needs a TARGET column.
    pub fn is_supervised(self) -> bool {
        matches!(self, Kind::ChurnClassifier)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A trained model of any kind.
#[derive(Debug, Clone)]
pub enum Model {
    Classifier(Classifier),
}

impl Model {
    /// Trains a model of `kind`. Options a kind does not know are an error.
    pub fn train(
        kind: Kind,
        data: &TrainingData,
        options: &mut Options,
        on_epoch: &mut dyn FnMut(&EpochReport),
        cancel: &AtomicBool,
    ) -> Result<Model> {
        match kind {
            Kind::ChurnClassifier => {
                let parsed = ClassifierOptions::from_options(options, kind.name())?;
                Ok(Model::Classifier(Classifier::train(
                    data, &parsed, on_epoch, cancel,
                )?))
            }
        }
    }

    /// Rebuilds a model from its card and safetensors bytes on `device`.
    pub fn load(card: &ModelCard, weights: &[u8], device: &Device) -> Result<Model> {
        let tensors = artifact::deserialize_weights(weights, &card.weights_checksum, device)?;
        match &card.spec {
            ModelSpec::Classifier(spec) => Ok(Model::Classifier(Classifier::from_parts(
                spec.clone(),
                tensors,
                device,
            )?)),
        }
    }

    /// Scores one batch of feature columns: a probability per row for classifiers.
    pub fn predict(&self, columns: &[FeatureValues<'_>]) -> Result<Vec<f64>> {
        match self {
            Model::Classifier(c) => c.predict(columns),
        }
    }

    /// The kind-specific card section.
    pub fn spec(&self) -> ModelSpec {
        match self {
            Model::Classifier(c) => ModelSpec::Classifier(c.spec.clone()),
        }
    }

    /// Validation metrics as (name, value) in display order.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        match self {
            Model::Classifier(c) => c
                .spec
                .training
                .validation
                .named()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
        }
    }

    /// Safetensors bytes of the weights.
    pub fn weights(&self) -> Result<Vec<u8>> {
        match self {
            Model::Classifier(c) => artifact::serialize_weights(&c.tensors()),
        }
    }

    /// Rows trained on and seconds spent.
    pub fn training_summary(&self) -> (u64, f64) {
        match self {
            Model::Classifier(c) => (c.spec.training.rows, c.spec.training.seconds),
        }
    }
}

/// The candle device for a `device` option: `cpu`, `cuda` or `cuda:N`.
pub fn device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.as_str() {
        "cuda" => Some(0),
        s => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok()),
    };
    let Some(ordinal) = ordinal else {
        return Err(Error::Device(format!(
            "unknown device '{spec}'; use 'cpu' or 'cuda:N'"
        )));
    };
    cuda_device(&spec, ordinal)
}

#[cfg(feature = "cuda")]
fn cuda_device(spec: &str, ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal)
        .map_err(|e| Error::Device(format!("device '{spec}' is not available: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(spec: &str, _ordinal: usize) -> Result<Device> {
    Err(Error::Device(format!(
        "device '{spec}' needs tenure built with --features cuda; this build runs on the CPU only"
    )))
}

/// Sizes the thread pool candle's CPU kernels run on, so model work and DataFusion's
/// threads together do not oversubscribe the cores. Call once, before any model runs; later
/// calls are ignored.
pub fn set_compute_threads(threads: usize) {
    // An error means the global pool already exists, which is fine: it keeps its size.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("tenure-model-{i}"))
        .build_global();
}
pub use candle_core;

/// Checks OPTIONS for `kind` (names, values, device) without training.
pub fn check_options(kind: Kind, options: &mut Options) -> Result<()> {
    match kind {
        Kind::ChurnClassifier => {
            let parsed = ClassifierOptions::from_options(options, kind.name())?;
            device(&parsed.device).map(|_| ())
        }
    }
}
