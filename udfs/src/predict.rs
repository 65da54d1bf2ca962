//! `predict(model, features...)`: the score of any model that scores tabular features (for
//! a classifier, the probability of the positive class).

use std::sync::Arc;

use datafusion::logical_expr::{Documentation, ScalarUDF};

use crate::docs::DOC_SECTION;
use crate::registry::ModelRegistry;
use crate::scoring::ScoringFunction;

pub fn predict(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let documentation = Documentation::builder(
        DOC_SECTION,
        "The model's prediction for the given features: for a classifier, the probability of \
         the positive class.",
        "predict(model, feature1, ..., featureN)",
    )
    .with_argument("model", "text literal: a model name, or name@version")
    .with_argument("features", "the model's features, in training order")
    .build();
    ScalarUDF::new_from_impl(ScoringFunction::new(
        "predict",
        &[],
        registry,
        documentation,
    ))
}
