//! KIND risk_classifier and KIND anomaly on the demo world's planted fraud: trained on four
//! fifths of the customers, judged on the orders of the other fifth by precision at the
//! planted rate (of the N highest risk scores, N = the number of frauds, how many are fraud).

use crate::support::{demo_engine, scalar};

const FEATURES: &str = "f.amount, f.discount, f.item_count, f.payment_method, f.ships_abroad, \
    f.account_age_hours, f.hour_of_day, f.prior_orders, f.minutes_since_previous_order, \
    f.amount_to_previous_mean";

/// Precision at the planted rate of `score` (an expression over `f`) on held-out customers.
async fn precision_at_planted_rate(engine: &tenure::Engine, score: &str) -> (f64, f64) {
    let sql = format!(
        "WITH scored AS (SELECT t.is_fraud, {score} AS s FROM order_risk_features f \
                         JOIN truth.orders t USING (order_id) WHERE f.customer_id % 5 = 0), \
              planted AS (SELECT sum(CASE WHEN is_fraud THEN 1 ELSE 0 END) AS n, count(*) AS total FROM scored), \
              ranked AS (SELECT is_fraud, row_number() OVER (ORDER BY s DESC) AS r FROM scored) \
         SELECT avg(CAST(is_fraud AS DOUBLE)) || ' ' || (CAST(max(p.n) AS DOUBLE) / max(p.total)) \
         FROM ranked CROSS JOIN planted p WHERE r <= p.n"
    );
    let text = scalar(engine, &sql).await;
    let mut parts = text.split(' ').map(|v| v.parse::<f64>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_frauds_rank_high() {
    let (_dir, engine) = demo_engine(0.2).await;

    engine
        .run(&format!(
            "CREATE MODEL fraud KIND risk_classifier TARGET is_fraud \
             OPTIONS (hidden = '32,16', epochs = 15, seed = 1) \
             AS SELECT {FEATURES}, t.is_fraud FROM order_risk_features f \
             JOIN truth.orders t USING (order_id) WHERE f.customer_id % 5 <> 0"
        ))
        .await
        .unwrap();
    let args = FEATURES;
    let (supervised, base_rate) =
        precision_at_planted_rate(&engine, &format!("risk_score('fraud', {args})")).await;
    println!(
        "risk_classifier: precision at the planted rate {supervised:.3} (base rate {base_rate:.4})"
    );
    // Measured: 0.965 with 2.5% fraud.
    assert!(supervised > 0.9, "{supervised}");

    // The autoencoder never sees a label; unusual orders still rank fraud far above the
    // base rate.
    engine
        .run(&format!(
            "CREATE MODEL unusual KIND anomaly OPTIONS (epochs = 15, seed = 1) \
             AS SELECT {FEATURES} FROM order_risk_features f WHERE f.customer_id % 5 <> 0"
        ))
        .await
        .unwrap();
    let (anomaly, _) =
        precision_at_planted_rate(&engine, &format!("risk_score('unusual', {args})")).await;
    println!("anomaly: precision at the planted rate {anomaly:.3}");
    // Measured: 0.22-0.27, about ten times the base rate.
    assert!(
        anomaly > 5.0 * base_rate,
        "{anomaly} vs base rate {base_rate}"
    );

    // Scores are probabilities / calibrated shares in [0, 1].
    let range = scalar(
        &engine,
        &format!(
            "SELECT min(s) >= 0 AND max(s) <= 1 FROM (SELECT risk_score('unusual', {args}) AS s \
             FROM order_risk_features f)"
        ),
    )
    .await;
    assert_eq!(range, "true");
    for (sql, expected) in [
        (
            "SELECT risk_score('fraud', f.amount) FROM order_risk_features f".to_string(),
            "risk_score: model 'fraud' expects 10 features, got 1",
        ),
        (
            format!("SELECT churn_score('fraud', {args}) FROM order_risk_features f"),
            "churn_score: model 'fraud' is of kind risk_classifier; churn_score scores churn_classifier",
        ),
        (
            "CREATE MODEL x KIND anomaly TARGET y AS SELECT 1 AS y".to_string(),
            "KIND anomaly takes no TARGET",
        ),
    ] {
        let err = engine.run(&sql).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{sql}: {err}");
    }
}
