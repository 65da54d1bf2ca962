//! `risk_score(model, features...)`: how risky a transaction looks, in [0, 1], from a
//! risk_classifier (the probability of the risk label) or an anomaly model (the share of
//! normal validation rows that look less unusual).

use std::sync::Arc;

use datafusion::logical_expr::{Documentation, ScalarUDF};
use tenure_models::Kind;

use crate::docs::DOC_SECTION;
use crate::registry::ModelRegistry;
use crate::scoring::ScoringFunction;

pub fn risk_score(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let documentation = Documentation::builder(
        DOC_SECTION,
        "Risk in [0, 1]: for a risk_classifier the probability of the risk label (fraud); for \
         an anomaly model the calibrated reconstruction error, the share of the training's \
         validation rows that the autoencoder reconstructs better (0.99 = more unusual than \
         99% of them). Features in training order; NULL means missing.",
        "risk_score(model, feature1, ..., featureN)",
    )
    .with_argument("model", "text literal: a risk_classifier or anomaly model")
    .with_argument("features", "the model's features, in training order")
    .with_sql_example("SELECT order_id, risk_score('fraud', amount, account_age_days, payment_method) FROM orders")
    .build();
    ScalarUDF::new_from_impl(ScoringFunction::new(
        "risk_score",
        &[Kind::RiskClassifier, Kind::Anomaly],
        registry,
        documentation,
    ))
}
