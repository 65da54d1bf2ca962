//! KIND recommender on the demo world: implicit ALS over browsing and buying must beat the
//! popularity ranking on held-out last interactions (the world's taste clusters are what it
//! can learn), and recommend() / recommendations() must leave out what users already have.

use crate::support::{demo_engine, scalar};

const INTERACTIONS: &str = "SELECT customer_id, item_id, \
     CASE event_type WHEN 'view' THEN 1 WHEN 'add_to_cart' THEN 3 ELSE 5 END AS weight \
     FROM events WHERE item_id IS NOT NULL ORDER BY event_time, event_id";

async fn number(engine: &tenure::Engine, sql: &str) -> f64 {
    scalar(engine, sql)
        .await
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommender_beats_popularity_on_the_demo_world() {
    let (_dir, engine) = demo_engine(0.2).await;
    engine
        .run(&format!(
            "CREATE MODEL recs KIND recommender OPTIONS (factors = 8, seed = 1) AS {INTERACTIONS}"
        ))
        .await
        .unwrap();
    let metrics = scalar(
        &engine,
        "SELECT metrics FROM tenure.models WHERE model = 'recs'",
    )
    .await;
    let metrics: serde_json::Value = serde_json::from_str(&metrics).unwrap();
    let hit_rate = metrics["hit_rate_10"].as_f64().unwrap();
    let popularity = metrics["popularity_hit_rate_10"].as_f64().unwrap();
    let users = metrics["validation_users"].as_f64().unwrap();
    println!("HR@10 {hit_rate:.4} vs popularity {popularity:.4} on {users} users; {metrics}");
    assert!(users > 15_000.0, "{metrics}");
    // Measured: 0.339 against 0.276 (implicit 0.7.3 with the same settings: 0.339).
    assert!(hit_rate > popularity + 0.03, "{metrics}");
    assert!(
        metrics["ndcg_10"].as_f64().unwrap() > metrics["popularity_ndcg_10"].as_f64().unwrap(),
        "{metrics}"
    );

    // No user is recommended an item they interacted with.
    let overlap = number(
        &engine,
        "WITH recs AS (SELECT customer_id, unnest(recommend('recs', customer_id, 10)) AS item_id \
                       FROM customers WHERE customer_id % 50 = 0) \
         SELECT CAST(count(*) AS DOUBLE) FROM recs JOIN (SELECT DISTINCT customer_id, item_id FROM events) e \
         USING (customer_id, item_id)",
    )
    .await;
    assert_eq!(overlap, 0.0);

    // The table function agrees with the scalar one, ten rows a user, ranks 1-10.
    let disagreements = number(
        &engine,
        "WITH a AS (SELECT * FROM recommendations('recs', 10)), \
              b AS (SELECT customer_id, unnest(recommend('recs', customer_id, 10)) AS item_id FROM \
                    (SELECT DISTINCT customer_id FROM a)) \
         SELECT CAST((SELECT count(*) FROM a) - (SELECT count(*) FROM b) \
              + (SELECT count(*) FROM (SELECT customer_id, item_id FROM a EXCEPT SELECT customer_id, item_id FROM b)) \
              AS DOUBLE)",
    )
    .await;
    assert_eq!(disagreements, 0.0);
    assert_eq!(
        scalar(
            &engine,
            "SELECT min(rank) || '-' || max(rank) FROM recommendations('recs', 10)"
        )
        .await,
        "1-10"
    );

    // A user the model never saw gets the most popular items.
    let unknown = scalar(&engine, "SELECT cardinality(recommend('recs', -1, 5))").await;
    assert_eq!(unknown, "5");
    assert_eq!(
        scalar(&engine, "SELECT recommend('recs', NULL, 5) IS NULL").await,
        "true"
    );

    for (sql, expected) in [
        (
            "SELECT recommend('recs', 'abc', 5)",
            "argument 2 (user_id) must be int8 like the model's users, got text",
        ),
        (
            "SELECT recommend('recs', 1, 5000)",
            "recommend: k must be from 0 to 1000, got 5000",
        ),
        (
            "SELECT * FROM recommendations('recs', 0)",
            "recommendations: k must be from 1 to 1000, got 0",
        ),
        (
            "SELECT recommend('nope', 1, 5)",
            "recommend: model 'nope' does not exist; models: recs",
        ),
        (
            "SELECT churn_score('recs', 1)",
            "churn_score: model 'recs' is of kind recommender",
        ),
    ] {
        let err = engine.run(sql).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{sql}: {err}");
    }
    let err = engine
        .run("CREATE MODEL bad KIND recommender AS SELECT customer_id FROM customers")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("KIND recommender trains on (user, item[, weight]) columns"),
        "{err}"
    );
}
