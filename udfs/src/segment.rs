//! `segment(model, features...)` and `segment_name(model, features...)`: the segment a
//! customer falls in, by number (0 the largest) or by the name of its profile, from a
//! kmeans model.

use std::sync::Arc;

use datafusion::logical_expr::{Documentation, ScalarUDF};
use tenure_models::Kind;

use crate::docs::DOC_SECTION;
use crate::registry::ModelRegistry;
use crate::scoring::{ScoreOutput, ScoringFunction};

pub fn segment(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let documentation = Documentation::builder(
        DOC_SECTION,
        "The segment of the customer, from a kmeans model: the nearest centroid after the \
         model's log transform and standardisation. Segments are numbered by size, 0 the \
         largest. NULL if a feature is NULL or NaN, or negative where the model takes its log.",
        "segment(model, feature1, ..., featureN)",
    )
    .with_argument("model", "text literal: a kmeans model, or name@version")
    .with_argument("features", "the model's features, in training order")
    .with_sql_example("SELECT segment('segments', recency_days, frequency, monetary) FROM rfm")
    .build();
    ScalarUDF::new_from_impl(
        ScoringFunction::new("segment", &[Kind::Kmeans], registry, documentation)
            .with_output(ScoreOutput::Segment),
    )
}

pub fn segment_name(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let documentation = Documentation::builder(
        DOC_SECTION,
        "The name of the customer's segment, from its centroid's profile: the two features \
         that most set it apart, as 'high frequency, low recency_days' ('typical' when none \
         does by half a standard deviation). NULL as for segment().",
        "segment_name(model, feature1, ..., featureN)",
    )
    .with_argument("model", "text literal: a kmeans model, or name@version")
    .with_argument("features", "the model's features, in training order")
    .build();
    ScalarUDF::new_from_impl(
        ScoringFunction::new("segment_name", &[Kind::Kmeans], registry, documentation)
            .with_output(ScoreOutput::SegmentName),
    )
}
