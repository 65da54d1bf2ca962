//! Experiments and uplift: ab_test and ab_sample_size checked against scipy and statsmodels
//! on the same numbers (tests/clients/ab_test_reference.py, through psycopg; the SQL surface
//! and its errors are in sql/slt/experiments.slt), and KIND uplift on the demo world's
//! randomised win-back campaign.

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Float64Type};
use tenure_models::metrics::UpliftMetrics;

use crate::server::TestServer;
use crate::support::{demo_engine, python_client, scalar};

/// The reference script, through psycopg (see `support::python_client`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_test_matches_scipy_and_statsmodels() {
    let server = TestServer::start().await;
    python_client("ab_test_reference.py", server.addr.port()).await;
    server.stop().await;
}

const FEATURES: &str = "f.recency_days, f.frequency, f.tenure_days, f.avg_amount, \
    f.sessions_since_last_order, f.days_since_last_visit, f.abandoned_carts_before_last_order, \
    f.failed_searches_before_last_order, f.last_order_rating, f.acquisition_channel, f.device";

/// Columns of `query` as f64 (booleans as 0/1), by position.
async fn columns(engine: &tenure::Engine, query: &str) -> Vec<Vec<f64>> {
    let batches = engine.query(query).await.unwrap();
    let width = batches[0].num_columns();
    (0..width)
        .map(|i| {
            batches
                .iter()
                .flat_map(|b| {
                    let column = arrow::compute::cast(b.column(i), &DataType::Float64).unwrap();
                    column
                        .as_primitive::<Float64Type>()
                        .iter()
                        .map(|v| v.expect("no NULLs"))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .collect()
}

/// The point of KIND uplift on the demo world's randomised win-back campaign: trained on four
/// fifths of the customers, on the other fifth it ranks by the coupon's effect nearly as well
/// as the true effect does, and sending the coupon to its top 20 % retains more customers
/// than sending it to the top 20 % by churn score.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplift_finds_whom_the_coupon_wins_back() {
    let (_dir, engine) = demo_engine(0.5).await;
    engine
        .run(&format!(
            "CREATE MODEL coupon KIND uplift TARGET retained TREATMENT got_coupon \
             OPTIONS (hidden = '16', seed = 1) \
             AS SELECT {FEATURES}, w.arm = 'coupon' AS got_coupon, w.retained \
             FROM winback_campaign w JOIN churn_features f USING (customer_id) \
             WHERE w.customer_id % 5 <> 0 ORDER BY w.customer_id; \
             CREATE MODEL transformed KIND uplift TARGET retained TREATMENT got_coupon \
             OPTIONS (hidden = '32,16', seed = 1, estimator = 'class_transform') \
             AS SELECT {FEATURES}, w.arm = 'coupon' AS got_coupon, w.retained \
             FROM winback_campaign w JOIN churn_features f USING (customer_id) \
             WHERE w.customer_id % 5 <> 0 ORDER BY w.customer_id; \
             CREATE MODEL churn KIND churn_classifier TARGET churned \
             OPTIONS (hidden = '32,16', seed = 1) \
             AS SELECT {FEATURES}, f.churned FROM churn_features f \
             WHERE f.customer_id % 5 <> 0 ORDER BY f.customer_id"
        ))
        .await
        .unwrap();
    let held_out = "FROM winback_campaign w JOIN churn_features f USING (customer_id) \
        JOIN truth.customers t USING (customer_id) WHERE w.customer_id % 5 = 0 \
        ORDER BY w.customer_id";
    let [model, transformed, churn, truth, treated, retained]: [Vec<f64>; 6] = columns(
        &engine,
        &format!(
            "SELECT uplift_score('coupon', {FEATURES}), uplift_score('transformed', {FEATURES}), \
             churn_score('churn', {FEATURES}), \
             t.coupon_uplift, w.arm = 'coupon', w.retained {held_out}"
        ),
    )
    .await
    .try_into()
    .unwrap();
    let treated: Vec<bool> = treated.iter().map(|t| *t == 1.0).collect();
    let retained: Vec<bool> = retained.iter().map(|r| *r == 1.0).collect();
    let qini = |scores: &[f64]| UpliftMetrics::compute(scores, &treated, &retained).qini;
    let (model_qini, truth_qini, churn_qini) = (qini(&model), qini(&truth), qini(&churn));
    let transformed_qini = qini(&transformed);
    // Expected extra customers retained by sending the coupon to the top 20 % by a score.
    let extra_retained = |scores: &[f64]| {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        order[..scores.len() / 5]
            .iter()
            .map(|&i| truth[i])
            .sum::<f64>()
    };
    let (by_model, by_churn, by_truth) = (
        extra_retained(&model),
        extra_retained(&churn),
        extra_retained(&truth),
    );
    println!(
        "held-out customers {}: qini model {model_qini:.4}, truth {truth_qini:.4}, churn score \
         {churn_qini:.4}; extra retained from the top 20 %: model {by_model:.0}, churn score \
         {by_churn:.0}, truth {by_truth:.0}; class_transform: qini {transformed_qini:.4}, \
         extra retained {:.0}",
        model.len(),
        extra_retained(&transformed)
    );
    assert!(
        model_qini >= 0.8 * truth_qini,
        "{model_qini} < 0.8 * {truth_qini}"
    );
    assert!(
        transformed_qini >= 0.8 * truth_qini,
        "{transformed_qini} < 0.8 * {truth_qini}"
    );
    assert!(by_model > by_churn, "{by_model} <= {by_churn}");

    // model_evaluate measures the same Qini through SQL.
    let evaluated = scalar(
        &engine,
        &format!(
            "SELECT value FROM model_evaluate('coupon', 'SELECT {FEATURES}, w.arm = ''coupon'' \
             AS got_coupon, w.retained {}') WHERE metric = 'qini'",
            held_out.replace('\'', "''")
        ),
    )
    .await
    .parse::<f64>()
    .unwrap();
    assert!(
        (evaluated - model_qini).abs() < 1e-9,
        "{evaluated} vs {model_qini}"
    );
}

/// Bad treatments get clear errors before or instead of a biased model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplift_refuses_bad_treatments() {
    let (_dir, engine) = demo_engine(0.05).await;
    let create = |treatment: &str, options: &str| {
        format!(
            "CREATE OR REPLACE MODEL coupon KIND uplift TARGET retained TREATMENT got_coupon \
             OPTIONS (hidden = ''{options}) \
             AS SELECT {FEATURES}, {treatment} AS got_coupon, w.retained \
             FROM winback_campaign w JOIN churn_features f USING (customer_id)"
        )
    };
    let error = |sql: String| {
        let engine = &engine;
        async move { engine.run(&sql).await.unwrap_err().to_string() }
    };
    for (treatment, options, expected) in [
        ("true", "", "has one value in all"),
        (
            "CASE WHEN w.customer_id % 7 = 0 THEN NULL ELSE w.arm = 'coupon' END",
            "",
            "is NULL in row",
        ),
        ("2", "", "is 2 in row 1; it must be a boolean or 0/1"),
        ("'yes'", "", "must be a boolean or 0/1 column"),
        // Coupons sent to the customers who ordered least recently: not randomised.
        (
            "f.recency_days > 120",
            "",
            "does not look randomised: the features predict it",
        ),
        (
            "w.arm = 'coupon'",
            ", propensity = 'maybe'",
            "option propensity must be",
        ),
        (
            "w.arm = 'coupon'",
            ", estimator = 'x'",
            "option estimator must be 'two_model' or",
        ),
        (
            "w.customer_id = 42",
            "",
            "the treated arm has 1 units; an uplift model needs at least 20",
        ),
        (
            "w.arm = 'coupon'",
            ", class_weight = 'balanced'",
            "KIND uplift takes no class_weight = 'balanced'",
        ),
        (
            "w.arm = 'coupon'",
            ", estimator = 'class_transform', propensity = 'model'",
            "cannot take propensity = 'model'",
        ),
    ] {
        let message = error(create(treatment, options)).await;
        assert!(message.contains(expected), "{treatment}: {message}");
    }
    // Accepting the bias explicitly trains, and the card keeps how predictable it was.
    engine
        .run(&create("f.recency_days > 120", ", propensity = 'model'"))
        .await
        .unwrap();
    let metrics: serde_json::Value = serde_json::from_str(
        &scalar(
            &engine,
            "SELECT metrics FROM tenure.models WHERE model = 'coupon' AND latest",
        )
        .await,
    )
    .unwrap();
    let auc = metrics["propensity_auc"].as_f64().unwrap();
    assert!(auc > 0.9, "{metrics}");

    let message = error(format!(
        "CREATE MODEL c KIND churn_classifier TARGET churned TREATMENT x AS SELECT {FEATURES}, \
         f.churned FROM churn_features f"
    ))
    .await;
    assert!(
        message.contains("KIND churn_classifier takes no TREATMENT"),
        "{message}"
    );
    let message = error(format!(
        "CREATE MODEL c KIND uplift TARGET retained AS SELECT {FEATURES}, w.retained \
         FROM winback_campaign w JOIN churn_features f USING (customer_id)"
    ))
    .await;
    assert!(message.contains("KIND uplift needs TREATMENT"), "{message}");
    let message = error(format!(
        "CREATE MODEL c KIND uplift TARGET retained TREATMENT nope AS SELECT {FEATURES}, \
         w.retained FROM winback_campaign w JOIN churn_features f USING (customer_id)"
    ))
    .await;
    assert!(
        message.contains("has no column nope (the TREATMENT)"),
        "{message}"
    );
    // A class with a single row is an error, not a failed split.
    let message = error(
        "CREATE MODEL c KIND churn_classifier TARGET y AS SELECT value AS x, value = 7 AS y \
         FROM generate_series(1, 100)"
            .to_string(),
    )
    .await;
    assert!(
        message.contains("the target is true in only one of 100 rows"),
        "{message}"
    );
    // The scoring functions keep to their kinds.
    let message = error(format!(
        "SELECT churn_score('coupon', {FEATURES}) FROM churn_features f"
    ))
    .await;
    assert!(message.contains("churn_score scores"), "{message}");
}
