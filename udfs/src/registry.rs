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

/// Resolves model references such as `churn` (the latest version) or `churn@2`.
pub trait ModelRegistry: Debug + Send + Sync {
    /// The model `reference` names. The error message is complete and user-facing, e.g.
    /// "model 'x' does not exist; models: churn, risk".
    fn model(&self, reference: &str) -> Result<Arc<LoadedModel>, String>;

    /// Every version of every model, oldest first per name (for `tenure.models`).
    fn cards(&self) -> Vec<ModelCard>;
}
