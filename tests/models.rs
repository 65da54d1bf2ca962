//! Models trained in SQL: learning the demo world's churn against its ground truth,
//! progress reports, persistence across restarts, and a model directory that disappears.

use arrow::array::AsArray;
use arrow::datatypes::Float64Type;
use tenure::demo::DemoOptions;
use tenure::lifecycle::load_demo;
use tenure::{Output, Progress};

use crate::support::{open_engine, project_file, scalar};

const FEATURES: &str = "recency_days, frequency, tenure_days, account_age_days, avg_amount, \
    browse_sessions, sessions_since_last_order, visit_days_since_last_order, \
    days_since_last_visit, events_per_session, reviews, abandoned_carts_before_last_order, \
    failed_searches_before_last_order, last_order_rating, acquisition_channel, device";

/// ROC AUC of `model` on the held-out fifth of `view` (customer_id % 5 = 0).
async fn held_out_auc(engine: &tenure::Engine, model: &str, view: &str) -> f64 {
    scalar(
        engine,
        &format!(
            "SELECT value FROM model_evaluate('{model}', \
             'SELECT * FROM {view} WHERE customer_id % 5 = 0') WHERE metric = 'roc_auc'"
        ),
    )
    .await
    .parse()
    .unwrap()
}

/// (float8 score, boolean label) pairs from two-column batches without NULLs.
fn scores_and_labels(batches: &[arrow::array::RecordBatch]) -> (Vec<f64>, Vec<bool>) {
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for batch in batches {
        let column = batch.column(0).as_primitive::<Float64Type>();
        scores.extend(column.values().iter().copied());
        let column = batch.column(1).as_boolean();
        labels.extend((0..column.len()).map(|i| column.value(i)));
    }
    (scores, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_model_comes_within_three_points_of_the_true_hazard() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path()).await;
    let demo = DemoOptions {
        scale: 0.5,
        seed: 42,
    };
    load_demo(&engine, &demo, None).await.unwrap();

    // The view's label is computed from public orders only; it must be the truth's label.
    let disagreements = scalar(
        &engine,
        "SELECT count(*) FROM churn_features f JOIN truth.customers t USING (customer_id) \
         WHERE f.churned <> t.churned",
    )
    .await;
    assert_eq!(disagreements, "0");

    // Train on four fifths of the customers, with progress reports.
    let (sender, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let mut statements = engine
        .parse(&format!(
            "CREATE MODEL churn KIND churn_classifier TARGET churned \
             OPTIONS (hidden = '32,16', epochs = 40, learning_rate = 0.003, seed = 1) \
             AS SELECT {FEATURES}, churned FROM churn_features WHERE customer_id % 5 <> 0"
        ))
        .unwrap();
    let output = engine
        .execute_with_progress(statements.remove(0), Some(&sender))
        .await
        .unwrap();
    drop(sender);
    let Output::Rows(stream) = output else {
        panic!("CREATE MODEL returns a row")
    };
    let batches: Vec<_> = futures::TryStreamExt::try_collect(stream).await.unwrap();
    let schema = batches[0].schema();
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        &columns[..5],
        ["model", "version", "kind", "rows", "seconds"]
    );
    assert!(columns.contains(&"validation_roc_auc"), "{columns:?}");
    let mut epochs = 0;
    while let Some(progress) = reports.recv().await {
        if let Progress::Epoch { report, .. } = progress {
            epochs += 1;
            assert_eq!(report.epoch, epochs);
            assert!(
                report.train_loss.is_finite() && report.validation_auc.is_some_and(|auc| auc > 0.5)
            );
        }
    }
    assert!(epochs >= 5, "{epochs} epochs reported");

    // Score the held-out fifth, and the true hazard on the same rows.
    let model_auc = held_out_auc(&engine, "churn", "churn_features").await;
    let truth = engine
        .query(
            "SELECT t.churn_hazard, f.churned FROM churn_features f \
             JOIN truth.customers t USING (customer_id) WHERE f.customer_id % 5 = 0",
        )
        .await
        .unwrap();
    let (hazard, churned) = scores_and_labels(&truth);
    let truth_auc = tenure_models::metrics::roc_auc(&hazard, &churned);
    eprintln!(
        "churn on the demo world (scale 0.5, {} held-out customers): model AUC {model_auc:.4}, \
         true hazard AUC {truth_auc:.4}",
        hazard.len()
    );
    assert!(
        model_auc >= truth_auc - 0.03,
        "model AUC {model_auc} is not within 0.03 of the true hazard's {truth_auc}"
    );

    // The default (model = 'auto', no OPTIONS) on the same rows is no worse than the tuned
    // MLP above.
    engine
        .run(&format!(
            "CREATE MODEL churn_default KIND churn_classifier TARGET churned \
             AS SELECT {FEATURES}, churned FROM churn_features WHERE customer_id % 5 <> 0"
        ))
        .await
        .unwrap();
    let default_auc = held_out_auc(&engine, "churn_default", "churn_features").await;
    eprintln!("the default model on the same rows: AUC {default_auc:.4}");
    assert!(
        default_auc >= model_auc - 0.005,
        "the default model's AUC {default_auc} is below the MLP's {model_auc} by over 0.005"
    );

    // Scores as a column: one per customer, all probabilities.
    let scored = scalar(
        &engine,
        &format!(
            "SELECT count(*) FROM churn_features \
             WHERE churn_score('churn', {FEATURES}) BETWEEN 0 AND 1"
        ),
    )
    .await;
    let customers = scalar(&engine, "SELECT count(*) FROM churn_features").await;
    assert_eq!(scored, customers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_survive_restarts_and_a_deleted_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let score = "SELECT churn_score('m', 0.3, 'a') FROM (VALUES (1)) AS t(x)";
    let before = {
        let engine = open_engine(dir.path()).await;
        engine
            .run(
                "CREATE TABLE t AS SELECT CAST(i AS DOUBLE) / 100 AS x, \
                 CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END AS c, i % 100 < 40 AS y \
                 FROM generate_series(1, 500) AS s(i); \
                 CREATE MODEL m KIND churn_classifier TARGET y OPTIONS (epochs = 3) \
                 AS SELECT x, c, y FROM t",
            )
            .await
            .unwrap();
        scalar(&engine, score).await
    };
    // A training that died before its card was written leaves a directory without one.
    let half_written = dir.path().join("models/m/v2");
    std::fs::create_dir_all(&half_written).unwrap();
    std::fs::write(half_written.join("weights.safetensors"), b"partial").unwrap();

    let engine = open_engine(dir.path()).await;
    assert_eq!(
        scalar(&engine, score).await,
        before,
        "same score after a restart"
    );
    assert!(!half_written.exists(), "the unfinished version was removed");
    assert_eq!(
        scalar(&engine, "SELECT max(version) FROM tenure.models").await,
        "1"
    );

    // Deleted under a running engine before it was loaded: a clear error, the rest works.
    let engine_dir = dir.path().to_path_buf();
    drop(engine);
    let engine = open_engine(&engine_dir).await;
    std::fs::remove_dir_all(engine_dir.join("models/m")).unwrap();
    let err = engine.query(score).await.unwrap_err();
    // A model whose files are gone is an I/O error (58030), not a planning error.
    assert_eq!(
        err.sqlstate(),
        tenure::pg::sqlstate::SqlState::IoError,
        "{err}"
    );
    let err = err.to_string();
    assert!(
        err.contains("model 'm' version 1: cannot read") && err.contains("card.json"),
        "{err}"
    );
    assert_eq!(scalar(&engine, "SELECT count(*) FROM t").await, "500");
}

/// Churn on the real CDNOW data: given a customer's first 52 weeks (from 1997-01-01), will
/// they buy nothing in weeks 53-78? README reports the held-out AUC this test prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_model_on_cdnow_beats_recency_alone() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path()).await;
    let csv = project_file("tests/data/cdnow/cdnow_master.csv");
    engine
        .run(&format!(
            "CREATE EXTERNAL TABLE cdnow (customer_id BIGINT, date DATE, cds INT, dollars DOUBLE) \
             STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            csv.display()
        ))
        .await
        .unwrap();
    engine.run(CDNOW_CHURN_VIEW).await.unwrap();
    assert_eq!(
        scalar(&engine, "SELECT count(*) FROM cdnow_churn").await,
        "23570",
        "every customer of the cohort bought in the first 52 weeks"
    );
    engine
        .run(
            "CREATE MODEL cdnow_churn KIND churn_classifier TARGET churned \
             OPTIONS (hidden = '32,16', epochs = 40, seed = 1) \
             AS SELECT frequency, recency_weeks, t_weeks, weeks_since_last, spend, \
             spend_per_purchase, cds, days_last_13_weeks, churned \
             FROM cdnow_churn WHERE customer_id % 5 <> 0",
        )
        .await
        .unwrap();
    let model_auc = held_out_auc(&engine, "cdnow_churn", "cdnow_churn").await;
    let holdout = engine
        .query("SELECT weeks_since_last, churned FROM cdnow_churn WHERE customer_id % 5 = 0")
        .await
        .unwrap();
    let (recency, churned) = scores_and_labels(&holdout);
    let recency_auc = tenure_models::metrics::roc_auc(&recency, &churned);
    eprintln!(
        "CDNOW churn (weeks 53-78), {} held-out customers: model AUC {model_auc:.4}, \
         weeks since the last purchase alone {recency_auc:.4}",
        churned.len()
    );
    assert!(model_auc > 0.75, "model AUC {model_auc}");
    assert!(
        model_auc > recency_auc,
        "{model_auc} vs recency alone {recency_auc}"
    );

    // The default model on the same rows is no worse than the MLP.
    engine
        .run(
            "CREATE MODEL cdnow_default KIND churn_classifier TARGET churned \
             AS SELECT frequency, recency_weeks, t_weeks, weeks_since_last, spend, \
             spend_per_purchase, cds, days_last_13_weeks, churned \
             FROM cdnow_churn WHERE customer_id % 5 <> 0",
        )
        .await
        .unwrap();
    let default_auc = held_out_auc(&engine, "cdnow_default", "cdnow_churn").await;
    eprintln!("CDNOW churn, the default model: AUC {default_auc:.4}");
    assert!(
        default_auc >= model_auc - 0.005,
        "the default model's AUC {default_auc} is below the MLP's {model_auc} by over 0.005"
    );
}

/// Per customer: what the first 52 weeks show, and whether weeks 53-78 had no purchase.
/// Several purchases on one day count as one (the BTYD convention).
const CDNOW_CHURN_VIEW: &str = "
CREATE VIEW cdnow_churn AS
WITH days AS (
    SELECT customer_id, date, sum(dollars) AS dollars, sum(cds) AS cds
    FROM cdnow WHERE date < DATE '1997-12-31'
    GROUP BY customer_id, date
),
history AS (
    SELECT customer_id,
           count(*) AS purchase_days,
           min(date) AS first_day,
           max(date) AS last_day,
           sum(dollars) AS spend,
           sum(cds) AS cds,
           count(*) FILTER (WHERE date >= DATE '1997-10-01') AS days_last_13_weeks
    FROM days GROUP BY customer_id
),
later AS (
    SELECT DISTINCT customer_id FROM cdnow
    WHERE date >= DATE '1997-12-31' AND date < DATE '1998-07-01'
),
weeks AS (
    SELECT customer_id, purchase_days, spend, cds, days_last_13_weeks,
           (extract(epoch FROM CAST(last_day AS TIMESTAMP))
              - extract(epoch FROM CAST(first_day AS TIMESTAMP))) / 604800 AS recency_weeks,
           (extract(epoch FROM TIMESTAMP '1997-12-31 00:00:00')
              - extract(epoch FROM CAST(first_day AS TIMESTAMP))) / 604800 AS t_weeks,
           (extract(epoch FROM TIMESTAMP '1997-12-31 00:00:00')
              - extract(epoch FROM CAST(last_day AS TIMESTAMP))) / 604800 AS weeks_since_last
    FROM history
)
SELECT w.customer_id,
       w.purchase_days - 1 AS frequency,
       w.recency_weeks,
       w.t_weeks,
       w.weeks_since_last,
       w.spend,
       w.spend / w.purchase_days AS spend_per_purchase,
       w.cds,
       w.days_last_13_weeks,
       l.customer_id IS NULL AS churned
FROM weeks w LEFT JOIN later l ON l.customer_id = w.customer_id";

/// A CREATE MODEL whose statement is dropped (a cancelled query, a closed connection) stops
/// training and leaves no version behind; the name can be trained again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_training_leaves_no_version() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path()).await;
    engine
        .run(
            "CREATE TABLE t AS SELECT CAST(i % 1000 AS DOUBLE) AS x, i % 7 < 3 AS y \
             FROM generate_series(1, 100000) AS s(i)",
        )
        .await
        .unwrap();
    let (sender, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let statement = engine
        .parse(
            "CREATE MODEL slow KIND churn_classifier TARGET y \
             OPTIONS (epochs = 10000, patience = 10000, batch_size = 64) AS SELECT x, y FROM t",
        )
        .unwrap()
        .remove(0);
    let training = engine.execute_with_progress(statement, Some(&sender));
    // Cancel once training is under way: after its first epoch report.
    let cancelled = tokio::select! {
        _ = training => false,
        _ = reports.recv() => true,
    };
    assert!(cancelled, "training finished before it could be cancelled");
    assert_eq!(
        scalar(&engine, "SELECT count(*) FROM tenure.models").await,
        "0"
    );
    let err = engine
        .query("SELECT churn_score('slow', 1.0)")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("model 'slow' does not exist"), "{err}");
    engine
        .run(
            "CREATE MODEL slow KIND churn_classifier TARGET y OPTIONS (epochs = 1) \
             AS SELECT x, y FROM t LIMIT 1000",
        )
        .await
        .unwrap();
    assert_eq!(
        scalar(&engine, "SELECT max(version) FROM tenure.models").await,
        "1"
    );
    let versions: Vec<_> = std::fs::read_dir(dir.path().join("models/slow"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        versions,
        ["v1"],
        "no directory of the cancelled training is left"
    );
}
