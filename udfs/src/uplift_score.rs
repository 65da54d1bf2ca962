//! `uplift_score(model, features...)`: for KIND uplift, the change in the outcome's
//! probability that the treatment causes for this unit.

use std::sync::Arc;

use datafusion::logical_expr::{Documentation, ScalarUDF};
use tenure_models::Kind;

use crate::docs::DOC_SECTION;
use crate::registry::ModelRegistry;
use crate::scoring::ScoringFunction;

pub fn uplift_score(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let documentation = Documentation::builder(
        DOC_SECTION,
        "The expected change in the outcome's probability if this unit is treated: \
         P(outcome | treated) - P(outcome | control), in [-1, 1]. Negative marks units the \
         treatment pushes the other way. NULL where a feature is missing and the model cannot \
         score.",
        "uplift_score(model, feature1, ..., featureN)",
    )
    .with_argument(
        "model",
        "text literal: a KIND uplift model, or name@version",
    )
    .with_argument(
        "features",
        "the model's features, in training order (not the treatment)",
    )
    .with_sql_example(
        "SELECT customer_id, uplift_score('coupon', recency_days, frequency, monetary) AS uplift \
         FROM customer_features ORDER BY uplift DESC LIMIT 100",
    )
    .build();
    ScalarUDF::new_from_impl(ScoringFunction::new(
        "uplift_score",
        &[Kind::Uplift],
        registry,
        documentation,
    ))
}
