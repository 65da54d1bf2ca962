//! KIND sequence on the demo world: a Transformer over each customer's event history against
//! the LSTM baseline and a tabular churn model over per-customer aggregates, all trained on the
//! same four fifths of the customers and judged on the other fifth; next-item prediction
//! against popularity; embed(), recommend() and cosine_similarity() in SQL; bad input.
//!
//! Training queries are ordered: the validation split follows row order, and an unordered
//! aggregate's rows come in whatever order its threads finish.

use crate::support::{demo_engine, scalar};

/// Per-customer aggregates that do not see the order of events: recency, frequency, tenure,
/// spend, how much they browse and review, channel and device.
const AGGREGATES: &str = "recency_days, frequency, tenure_days, account_age_days, avg_amount, \
    browse_sessions, events_per_session, reviews, acquisition_channel, device";

const SEQUENCES: &str = "SELECT s.customer_id, s.events, s.ages, f.churned \
    FROM customer_event_sequences s JOIN churn_features f USING (customer_id)";

async fn held_out_auc(engine: &tenure::Engine, model: &str, query: &str) -> f64 {
    let sql = format!(
        "SELECT value FROM model_evaluate('{model}', '{}') WHERE metric = 'roc_auc'",
        query.replace('\'', "''")
    );
    scalar(engine, &sql).await.parse().unwrap()
}

/// Runs CREATE MODEL and returns the value of the metric column `name` of its result row.
async fn create_model(engine: &tenure::Engine, sql: &str, names: &[&str]) -> Vec<f64> {
    let batches = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batch = &batches[0];
    names
        .iter()
        .map(|name| {
            let column = batch
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no column {name} in {:?}", batch.schema()));
            let values =
                arrow::compute::cast(column, &arrow::datatypes::DataType::Float64).unwrap();
            arrow::array::AsArray::as_primitive::<arrow::datatypes::Float64Type>(&values).value(0)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transformer_reads_churn_from_event_order() {
    let (_dir, engine) = demo_engine(0.1).await;
    let train = format!("{SEQUENCES} WHERE s.customer_id % 5 <> 0");
    let held_out = format!("SELECT * FROM ({SEQUENCES}) WHERE customer_id % 5 = 0");
    let options = "d_model = 32, heads = 4, layers = 2, max_len = 50, epochs = 6, \
                   patience = 2, learning_rate = 0.002, seed = 1";
    engine
        .run(&format!(
            "CREATE MODEL behaviour KIND sequence TARGET churned \
             OPTIONS (task = 'churn', architecture = 'transformer', {options}) \
             AS SELECT events, ages, churned FROM ({train}) ORDER BY customer_id"
        ))
        .await
        .unwrap();
    engine
        .run(&format!(
            "CREATE MODEL behaviour_lstm KIND sequence TARGET churned \
             OPTIONS (task = 'churn', architecture = 'lstm', {options}) \
             AS SELECT events, ages, churned FROM ({train}) ORDER BY customer_id"
        ))
        .await
        .unwrap();
    engine
        .run(&format!(
            "CREATE MODEL aggregates KIND churn_classifier TARGET churned \
             OPTIONS (hidden = '32,16', epochs = 40, seed = 1) \
             AS SELECT {AGGREGATES}, churned FROM churn_features WHERE customer_id % 5 <> 0 \
             ORDER BY customer_id"
        ))
        .await
        .unwrap();

    let transformer = held_out_auc(&engine, "behaviour", &held_out).await;
    let lstm = held_out_auc(&engine, "behaviour_lstm", &held_out).await;
    let aggregates = held_out_auc(
        &engine,
        "aggregates",
        "SELECT * FROM churn_features WHERE customer_id % 5 = 0",
    )
    .await;
    // For the record, not asserted: the hand-built order-aware features of churn_features
    // (what the generator's dropout rule reads), on the same customers.
    engine
        .run(
            "CREATE MODEL engineered KIND churn_classifier TARGET churned \
             OPTIONS (hidden = '32,16', epochs = 40, seed = 1) \
             AS SELECT recency_days, frequency, tenure_days, account_age_days, avg_amount, \
                browse_sessions, sessions_since_last_order, visit_days_since_last_order, \
                days_since_last_visit, events_per_session, reviews, \
                abandoned_carts_before_last_order, failed_searches_before_last_order, \
                last_order_rating, acquisition_channel, device, churned \
             FROM churn_features WHERE customer_id % 5 <> 0 ORDER BY customer_id",
        )
        .await
        .unwrap();
    let engineered = held_out_auc(
        &engine,
        "engineered",
        "SELECT * FROM churn_features WHERE customer_id % 5 = 0",
    )
    .await;
    let customers: f64 = scalar(
        &engine,
        "SELECT count(*) FROM churn_features f JOIN truth.customers t USING (customer_id) \
         WHERE f.customer_id % 5 = 0",
    )
    .await
    .parse()
    .unwrap();
    eprintln!(
        "held-out churn AUC on {customers} customers: transformer {transformer:.4}, lstm {lstm:.4}, \
         aggregates {aggregates:.4}, engineered features {engineered:.4}"
    );
    assert!(
        transformer > aggregates,
        "the transformer ({transformer:.4}) must beat the aggregate model ({aggregates:.4})"
    );
    assert!(
        transformer >= lstm - 0.01,
        "transformer {transformer:.4} vs lstm {lstm:.4}"
    );

    // churn_score over the list columns matches model_evaluate's scores; a NULL event list
    // scores NULL, an empty one scores.
    let scored = scalar(
        &engine,
        &format!(
            "SELECT count(*) FROM ({held_out}) \
             WHERE churn_score('behaviour', events, ages) BETWEEN 0 AND 1"
        ),
    )
    .await;
    let rows = scalar(&engine, &format!("SELECT count(*) FROM ({held_out})")).await;
    assert_eq!(scored, rows);
    assert_eq!(
        scalar(
            &engine,
            "SELECT CAST(churn_score('behaviour', CAST(NULL AS VARCHAR[]), CAST(NULL AS DOUBLE[])) AS VARCHAR) IS NULL"
        )
        .await,
        "true"
    );
    let empty: f64 = scalar(
        &engine,
        "SELECT churn_score('behaviour', CAST([] AS VARCHAR[]), CAST([] AS DOUBLE[]))",
    )
    .await
    .parse()
    .unwrap();
    assert!((0.0..=1.0).contains(&empty));
    let unknown: f64 = scalar(
        &engine,
        "SELECT churn_score('behaviour', ['teleport', NULL, 'view'], [3.0, NULL, 1.0])",
    )
    .await
    .parse()
    .unwrap();
    assert!((0.0..=1.0).contains(&unknown));

    // embed(): d_model floats per customer; the most similar customer to one is itself.
    engine
        .run(
            "CREATE TABLE customer_embeddings AS \
             SELECT customer_id, embed('behaviour', events, ages) AS embedding \
             FROM customer_event_sequences WHERE customer_id <= 200",
        )
        .await
        .unwrap();
    assert_eq!(
        scalar(
            &engine,
            "SELECT min(cardinality(embedding)) || ' ' || max(cardinality(embedding)) FROM customer_embeddings"
        )
        .await,
        "32 32"
    );
    let nearest = scalar(
        &engine,
        "SELECT e.customer_id FROM customer_embeddings e, \
             (SELECT embedding FROM customer_embeddings WHERE customer_id = 7) me \
         ORDER BY cosine_similarity(e.embedding, me.embedding) DESC LIMIT 1",
    )
    .await;
    assert_eq!(nearest, "7");
    assert_eq!(
        scalar(
            &engine,
            "SELECT CAST(cosine_similarity([1.0, 0.0], [2.0, 0.0]) AS VARCHAR) || ' ' || \
             CAST(cosine_similarity([1.0, 0.0], [0.0, -3.0]) AS VARCHAR) || ' ' || \
             coalesce(CAST(cosine_similarity([0.0, 0.0], [1.0, 2.0]) AS VARCHAR), 'null')"
        )
        .await,
        "1.0 0.0 null"
    );

    // Bad input.
    for (sql, expected) in [
        (
            "SELECT churn_score('behaviour', 1.5, [1.0])",
            "argument 2 (events) must be a list of text",
        ),
        (
            "SELECT churn_score('behaviour', ['view'])",
            "expects 2 features, got 1",
        ),
        (
            "SELECT churn_score('behaviour', ['view', 'search'], [1.0])",
            "the age list has 1 elements and the event list 2",
        ),
        (
            "SELECT cosine_similarity([1.0, 2.0], [1.0])",
            "the vectors have 2 and 1 elements",
        ),
        (
            "SELECT cosine_similarity('a', [1.0])",
            "argument 1 must be a list of numbers",
        ),
        (
            "SELECT recommend('behaviour', ['view'], [1.0], 3)",
            "recommend needs a sequence model of task next_item",
        ),
        (
            "CREATE MODEL nope KIND sequence OPTIONS (task = 'churn') AS SELECT events FROM customer_event_sequences",
            "KIND sequence needs TARGET",
        ),
        (
            "CREATE MODEL nope KIND sequence OPTIONS (task = 'forecast') AS SELECT events FROM customer_event_sequences",
            "option task must be 'churn', 'next_item' or 'embedding', got 'forecast'",
        ),
        (
            "CREATE MODEL nope KIND sequence TARGET n AS SELECT events, 2 AS n FROM customer_event_sequences",
            "must be boolean or 0/1",
        ),
        (
            "CREATE MODEL nope KIND sequence TARGET churned OPTIONS (exclude_seen = false) \
             AS SELECT s.events, f.churned FROM customer_event_sequences s JOIN churn_features f USING (customer_id)",
            "option exclude_seen applies to task 'next_item' only",
        ),
        (
            "CREATE MODEL nope KIND sequence OPTIONS (task = 'next_item', exclude_seen = 'maybe') \
             AS SELECT items FROM customer_item_sequences",
            "option exclude_seen must be true or false, got 'maybe'",
        ),
        (
            "CREATE MODEL nope KIND sequence TARGET y OPTIONS (task = 'next_item') \
             AS SELECT events, true AS y FROM customer_event_sequences",
            "takes a TARGET only for task 'churn'",
        ),
        (
            "CREATE MODEL nope KIND churn_classifier TARGET churned \
             AS SELECT s.events, f.churned FROM customer_event_sequences s JOIN churn_features f USING (customer_id)",
            "lists are for KIND sequence",
        ),
    ] {
        let err = engine.run(sql).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{sql}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_item_beats_popularity() {
    let (_dir, engine) = demo_engine(0.1).await;
    let metrics = create_model(
        &engine,
        "CREATE MODEL next_items KIND sequence \
         OPTIONS (task = 'next_item', d_model = 32, heads = 4, layers = 2, max_len = 30, \
                  epochs = 8, learning_rate = 0.003, seed = 1) \
         AS SELECT items, ages FROM customer_item_sequences ORDER BY customer_id",
        &[
            "validation_hr_at_10",
            "validation_popularity_hr_at_10",
            "validation_ndcg_at_10",
        ],
    )
    .await;
    let (hr, popularity, ndcg) = (metrics[0], metrics[1], metrics[2]);
    eprintln!("next item: HR@10 {hr:.4} (popularity {popularity:.4}), NDCG@10 {ndcg:.4}");
    assert!(
        hr > popularity,
        "HR@10 {hr:.4} must beat popularity's {popularity:.4}"
    );

    // recommend(model, items, ages, k): k item ids as text, from the model's vocabulary.
    let listed = scalar(
        &engine,
        "SELECT sum(cardinality(recommend('next_items', items, ages, 5))) || ' ' || count(*) \
         FROM customer_item_sequences WHERE customer_id <= 50",
    )
    .await;
    let parts: Vec<i64> = listed.split(' ').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts[0], 5 * parts[1], "{listed}");
    let in_catalog = scalar(
        &engine,
        "SELECT count(*) FROM (SELECT unnest(recommend('next_items', items, ages, 10)) AS item \
         FROM customer_item_sequences WHERE customer_id <= 20) r \
         WHERE CAST(r.item AS BIGINT) NOT IN (SELECT item_id FROM items)",
    )
    .await;
    assert_eq!(in_catalog, "0");

    // Masked-event pre-training gives embeddings for any history.
    let accuracy = create_model(
        &engine,
        "CREATE MODEL behaviour_embedding KIND sequence \
         OPTIONS (task = 'embedding', d_model = 32, heads = 4, layers = 2, epochs = 12, \
                  learning_rate = 0.003, dropout = 0) \
         AS SELECT events, ages FROM customer_event_sequences WHERE customer_id % 5 = 0 \
         ORDER BY customer_id",
        &["validation_masked_accuracy"],
    )
    .await[0];
    // Better than always guessing the commonest event type.
    let commonest: f64 = scalar(
        &engine,
        "SELECT CAST(max(n) AS DOUBLE) / sum(n) FROM (SELECT e, count(*) AS n FROM \
         (SELECT unnest(events) AS e FROM customer_event_sequences) GROUP BY e)",
    )
    .await
    .parse()
    .unwrap();
    assert!(
        accuracy > commonest,
        "masked accuracy {accuracy:.4} vs the commonest token's share {commonest:.4}"
    );
    assert_eq!(
        scalar(
            &engine,
            "SELECT cardinality(embed('behaviour_embedding', events, ages)) \
             FROM customer_event_sequences WHERE customer_id = 3"
        )
        .await,
        "32"
    );
}
