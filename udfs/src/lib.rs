//! tenure-udfs: tenure's SQL functions as DataFusion scalar and table functions.
//!
//! - [`registry`]: the [`ModelRegistry`] trait through which functions find models.
//! - `model_arg`: a function's model argument: the text literal read, the model resolved
//!   through the registry and its kind checked, once for every function.
//! - [`features`]: argument checks against a model card; Arrow arrays to model input.
//! - [`training`]: Arrow batches to training data (CREATE MODEL, model_evaluate).
//! - [`scoring`]: the shared `fn(model, features...) -> float8` machinery.
//! - One module per SQL function: [`churn_score`], [`predict`], [`explain`],
//!   [`model_features`], [`model_evaluate`], [`rfm_summary`], [`segment`] (and
//!   segment_name), [`recommend`] (and recommendations), [`risk_score`], [`uplift_score`].
//! - [`btyd`]: the BG/NBD and Gamma-Gamma functions (p_alive, expected_purchases,
//!   purchase_probability, expected_spend, clv).
//! - [`lifecycle`]: rule-based rfm_segment and lifecycle_stage.
//! - [`experiments`]: assign_variant, the deterministic arm of an A/B test; [`ab_test`]:
//!   the ab_test table function that reads one, and ab_sample_size that plans one.
//! - [`sequence`]: embed, next-event recommend and cosine_similarity for sequence models;
//!   [`recommend`] hands it the calls naming a sequence model.
//! - [`text`]: embed_text, text_similarity and the semantic_search table function of
//!   text_encoder models; [`text_features`]: text columns as features of the tabular kinds
//!   (OPTIONS text_encoder), embedded and projected at training and in [`features`] at
//!   scoring.
//! - `table_args`: the literal arguments of table functions; `docs`: the documentation
//!   section every function is listed under.
//!
//! The function modules use the shared ones, never this file or each other (except
//! [`recommend`] calling into [`sequence`]), so no two files import each other.

pub mod ab_test;
pub mod access;
pub mod btyd;
pub mod churn_score;
mod docs;
pub mod experiments;
pub mod explain;
pub mod features;
pub mod lifecycle;
mod model_arg;
pub mod model_evaluate;
pub mod model_features;
pub mod predict;
pub mod recommend;
pub mod registry;
pub mod rfm_summary;
pub mod risk_score;
pub mod scoring;
pub mod segment;
pub mod sequence;
mod table_args;
pub mod text;
pub mod text_features;
pub mod training;
pub mod uplift_score;

use std::sync::Arc;

use datafusion::prelude::SessionContext;

pub use registry::{LoadedModel, ModelError, ModelRegistry};

/// Registers all of tenure's functions with `ctx`, resolving models through `registry`.
/// The scalar functions whose leading text-literal arguments name models (one, or several
/// for the BTYD functions that combine models): the engine checks USAGE on each.
pub const MODEL_FUNCTIONS: [&str; 16] = [
    "churn_score",
    "predict",
    "uplift_score",
    "risk_score",
    "explain",
    "p_alive",
    "expected_purchases",
    "purchase_probability",
    "expected_spend",
    "clv",
    "segment",
    "segment_name",
    "recommend",
    "embed",
    "embed_text",
    "text_similarity",
];

pub fn register_all(ctx: &SessionContext, registry: Arc<dyn ModelRegistry>) {
    ctx.register_udf(churn_score::churn_score(registry.clone()));
    ctx.register_udf(predict::predict(registry.clone()));
    ctx.register_udf(uplift_score::uplift_score(registry.clone()));
    ctx.register_udf(risk_score::risk_score(registry.clone()));
    ctx.register_udf(explain::explain(registry.clone()));
    ctx.register_udf(btyd::p_alive(registry.clone()));
    ctx.register_udf(btyd::expected_purchases(registry.clone()));
    ctx.register_udf(btyd::purchase_probability(registry.clone()));
    ctx.register_udf(btyd::expected_spend(registry.clone()));
    ctx.register_udf(btyd::clv_function(registry.clone()));
    ctx.register_udf(segment::segment(registry.clone()));
    ctx.register_udf(segment::segment_name(registry.clone()));
    ctx.register_udf(recommend::recommend(registry.clone()));
    ctx.register_udf(sequence::embed(registry.clone()));
    ctx.register_udf(sequence::cosine_similarity());
    ctx.register_udf(text::embed_text(registry.clone()));
    ctx.register_udf(text::text_similarity(registry.clone()));
    ctx.register_udtf(
        "semantic_search",
        Arc::new(text::SemanticSearch {
            registry: registry.clone(),
        }),
    );
    ctx.register_udtf(
        "recommendations",
        Arc::new(recommend::Recommendations {
            registry: registry.clone(),
        }),
    );
    ctx.register_udf(lifecycle::rfm_segment());
    ctx.register_udf(experiments::assign_variant());
    ctx.register_udf(ab_test::ab_sample_size());
    ctx.register_udtf("ab_test", Arc::new(ab_test::AbTest));
    ctx.register_udf(lifecycle::lifecycle_stage());
    ctx.register_udtf("rfm_summary", Arc::new(rfm_summary::RfmSummary));
    ctx.register_udtf(
        "model_features",
        Arc::new(model_features::ModelFeatures {
            registry: registry.clone(),
        }),
    );
    ctx.register_udtf(
        "model_evaluate",
        Arc::new(model_evaluate::ModelEvaluate { registry }),
    );
}
