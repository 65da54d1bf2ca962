//! sql/lifecycle_mart.sql on the demo world: it trains its models and builds
//! customer_lifecycle, one row per customer with every lifecycle score and the next best
//! action.

use crate::support::{demo_engine, scalar};

const MART_SQL: &str = include_str!("../sql/lifecycle_mart.sql");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_mart_has_every_score_for_every_customer() {
    let (_dir, engine) = demo_engine(0.2).await;
    engine.run(MART_SQL).await.unwrap();

    let customers = scalar(&engine, "SELECT count(*) FROM customers").await;
    assert_eq!(
        scalar(
            &engine,
            "SELECT count(*) || '/' || count(DISTINCT customer_id) FROM customer_lifecycle"
        )
        .await,
        format!("{customers}/{customers}")
    );
    // Every customer with an order has RFM, BTYD scores, CLV, a segment and a stage.
    let missing = scalar(
        &engine,
        "SELECT count(*) FROM customer_lifecycle WHERE orders > 0 AND (rfm_segment IS NULL \
         OR p_alive IS NULL OR clv_12_months IS NULL OR segment IS NULL OR segment_name IS NULL \
         OR lifecycle_stage IS NULL OR max_order_risk IS NULL)",
    )
    .await;
    assert_eq!(missing, "0");
    // Customers without orders are in acquisition or churned, never scored as buyers.
    let never = scalar(
        &engine,
        "SELECT count(*) FROM customer_lifecycle WHERE orders = 0 \
         AND (lifecycle_stage NOT IN ('acquisition', 'at_risk', 'churned') OR p_alive IS NOT NULL)",
    )
    .await;
    assert_eq!(never, "0");
    // BG/NBD gives p_alive = 1 to every customer without a repeat purchase; the stage of
    // those customers comes from their inactivity, so many of them are churned.
    let alive_by_construction = scalar(
        &engine,
        "SELECT min(p_alive) || ' ' || sum(CASE WHEN lifecycle_stage = 'churned' THEN 1 ELSE 0 END) \
         || ' ' || sum(CASE WHEN recency_days > 180 AND lifecycle_stage <> 'churned' THEN 1 ELSE 0 END) \
         FROM customer_lifecycle WHERE repeat_purchases = 0",
    )
    .await;
    let parts: Vec<&str> = alive_by_construction.split(' ').collect();
    assert_eq!(parts[0], "1.0", "{alive_by_construction}");
    assert!(
        parts[1].parse::<i64>().unwrap() > 100,
        "{alive_by_construction}"
    );
    assert_eq!(parts[2], "0", "{alive_by_construction}");
    // The stages mean something: loyal customers are worth more and churn less than churned ones.
    let ordered = scalar(
        &engine,
        "SELECT avg(CASE WHEN lifecycle_stage = 'loyalty' THEN clv_12_months END) > \
                avg(CASE WHEN lifecycle_stage = 'churned' THEN clv_12_months END) \
            AND avg(CASE WHEN lifecycle_stage = 'loyalty' THEN churn_score END) < \
                avg(CASE WHEN lifecycle_stage = 'churned' THEN churn_score END) \
         FROM customer_lifecycle",
    )
    .await;
    assert_eq!(ordered, "true");
    let stages = scalar(
        &engine,
        "SELECT count(DISTINCT lifecycle_stage) FROM customer_lifecycle",
    )
    .await;
    assert!(stages.parse::<i64>().unwrap() >= 5, "{stages} stages");

    // The next best action picks some customers for the coupon and leaves others out (those
    // not at risk when the campaign ran among them), and sending the coupon where it says so
    // is worth more, by the generator's true effect, than sending it to every customer at
    // risk.
    let actions = scalar(
        &engine,
        "SELECT count(DISTINCT l.next_best_action) || ' ' || \
                count(CASE WHEN f.recency_days < 30 AND l.next_best_action = 'winback_coupon' THEN 1 END) \
         FROM customer_lifecycle l JOIN churn_features f USING (customer_id)",
    )
    .await;
    assert_eq!(actions, "2 0");
    let values = scalar(
        &engine,
        "SELECT sum(t.coupon_uplift * l.clv_12_months - 5.0) || ' ' || \
                sum(CASE WHEN l.next_best_action = 'winback_coupon' \
                         THEN t.coupon_uplift * l.clv_12_months - 5.0 ELSE 0 END) \
         FROM customer_lifecycle l JOIN truth.customers t USING (customer_id) \
         WHERE t.coupon_uplift IS NOT NULL",
    )
    .await;
    let [everyone, by_action] =
        [0, 1].map(|i| values.split(' ').nth(i).unwrap().parse::<f64>().unwrap());
    println!(
        "true value of the coupon: to everyone at risk {everyone:.0}, by next_best_action {by_action:.0}"
    );
    assert!(by_action > everyone && by_action > 0.0, "{values}");
}
