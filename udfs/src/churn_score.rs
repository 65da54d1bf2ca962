//! `churn_score(model, features...)`: the probability that a customer churns, from a
//! churn_classifier model.

use std::sync::Arc;

use datafusion::logical_expr::{Documentation, ScalarUDF};
use tenure_models::Kind;

use crate::docs::DOC_SECTION;
use crate::registry::ModelRegistry;
use crate::scoring::ScoringFunction;

pub fn churn_score(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let documentation = Documentation::builder(
        DOC_SECTION,
        "Probability in [0, 1] that the customer churns, from a churn_classifier model or a \
         sequence model of task churn. Features are passed in the order the model was trained \
         on; NULL means missing. A sequence model takes the event list (and the age list if it \
         was trained with one); a NULL event list scores NULL, an empty one scores.",
        "churn_score(model, feature1, ..., featureN)",
    )
    .with_argument("model", "text literal: a model name, or name@version")
    .with_argument("features", "the model's features, in training order")
    .with_sql_example(
        "SELECT customer_id, churn_score('churn', tenure_days, orders, spend) FROM features",
    )
    .build();
    ScalarUDF::new_from_impl(ScoringFunction::new(
        "churn_score",
        &[Kind::ChurnClassifier, Kind::Sequence],
        registry,
        documentation,
    ))
}
