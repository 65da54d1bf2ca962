//! How functions find models. The engine owns the models (on disk, in its cache); functions
//! see them only through [`ModelRegistry`], so this crate needs no storage and an executor in
//! a cluster can supply its own registry.

use std::fmt::Debug;
use std::sync::Arc;

use tenure_models::{Model, ModelCard};

/// A model ready to score, with its card. Shared by every query that uses it.
#[derive(Debug)]
pub struct LoadedModel {
    pub card: ModelCard,
    pub model: Model,
}

/// Why a model reference did not give a model. Each message is complete and user-facing,
/// e.g. "model 'x' does not exist; models: churn, risk".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// The text is not `name` or `name@version`.
    InvalidReference(String),
    /// No model, or no such version of it; the message lists what exists.
    NotFound(String),
    /// The version exists but its files cannot be read (deleted or unreadable).
    Unreadable(String),
    /// The version's card or weights are there but do not load.
    Corrupt(String),
}

impl ModelError {
    pub fn message(&self) -> &str {
        match self {
            ModelError::InvalidReference(m)
            | ModelError::NotFound(m)
            | ModelError::Unreadable(m)
            | ModelError::Corrupt(m) => m,
        }
    }

    /// The same error with `prefix` before its message (the function that met it).
    pub fn prefixed(self, prefix: &str) -> ModelError {
        let with = |m: String| format!("{prefix}: {m}");
        match self {
            ModelError::InvalidReference(m) => ModelError::InvalidReference(with(m)),
            ModelError::NotFound(m) => ModelError::NotFound(with(m)),
            ModelError::Unreadable(m) => ModelError::Unreadable(with(m)),
            ModelError::Corrupt(m) => ModelError::Corrupt(with(m)),
        }
    }
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ModelError {}

/// Resolves model references such as `churn` (the latest version) or `churn@2`.
pub trait ModelRegistry: Debug + Send + Sync {
    /// The model `reference` names.
    fn model(&self, reference: &str) -> Result<Arc<LoadedModel>, ModelError>;

    /// Every version of every model, oldest first per name (for `tenure.models`).
    fn cards(&self) -> Vec<ModelCard>;
}
