//! The BTYD models end to end in SQL on the real CDNOW data shipped in tests/data/cdnow:
//! rfm_summary, CREATE MODEL ... KIND bgnbd / gamma_gamma against the published fits and
//! lifetimes, the holdout forecast, and clv.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};

use crate::support::{open_engine, project_file, scalar};

fn cdnow(file: &str) -> String {
    project_file(&format!("tests/data/cdnow/{file}"))
        .display()
        .to_string()
}

/// The one row of `sql` (such as CREATE MODEL's report), numeric columns by name.
async fn numbers(engine: &tenure::Engine, sql: &str) -> HashMap<String, f64> {
    let results = engine
        .run(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let (_, batches) = results.last().expect("a result");
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    assert_eq!(batch.num_rows(), 1, "{sql}");
    let schema = batch.schema();
    let mut values = HashMap::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if column.data_type().is_numeric() && column.is_valid(0) {
            let column = arrow::compute::cast(column, &DataType::Float64).unwrap();
            values.insert(
                field.name().clone(),
                column.as_primitive::<Float64Type>().value(0),
            );
        }
    }
    values
}

fn within(name: &str, fitted: f64, expected: f64, relative: f64) {
    assert!(
        (fitted / expected - 1.0).abs() < relative,
        "{name}: fitted {fitted}, expected {expected}"
    );
}

const CALIBRATION: &str = "rfm_summary('SELECT customer_id, date, dollars FROM cdnow_sample', \
                           '1997-09-30', 'week')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdnow_sample_reproduces_the_published_bgnbd_and_gamma_gamma_fits() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path()).await;
    engine
        .run(&format!(
            "CREATE EXTERNAL TABLE cdnow_sample STORED AS CSV LOCATION '{}' \
             OPTIONS ('format.has_header' 'true')",
            cdnow("cdnow_sample.csv")
        ))
        .await
        .unwrap();

    // The summary as Fader, Hardie & Lee define it: 2,357 customers, 946 with repeat purchases.
    let customers = scalar(
        &engine,
        &format!("SELECT count(*) || '/' || sum(CASE WHEN frequency > 0 THEN 1 ELSE 0 END) FROM {CALIBRATION}"),
    )
    .await;
    assert_eq!(customers, "2357/946");

    // The time unit comes from rfm_summary; no OPTIONS needed.
    let bg = numbers(
        &engine,
        &format!("CREATE MODEL bg KIND bgnbd AS SELECT frequency, recency, t FROM {CALIBRATION}"),
    )
    .await;
    within("r", bg["r"], 0.243, 0.01);
    within("alpha", bg["alpha"], 4.414, 0.01);
    within("a", bg["a"], 0.793, 0.01);
    within("b", bg["b"], 2.426, 0.01);
    assert!(
        (bg["log_likelihood"] + 9582.4).abs() < 0.5,
        "log-likelihood {}",
        bg["log_likelihood"]
    );
    assert_eq!(
        scalar(
            &engine,
            "SELECT options FROM tenure.models WHERE model = 'bg'"
        )
        .await,
        r#"{"time_unit":"week"}"#
    );

    let gg = numbers(
        &engine,
        &format!(
            "CREATE MODEL gg KIND gamma_gamma AS SELECT frequency, monetary_value FROM {CALIBRATION}"
        ),
    )
    .await;
    assert_eq!(gg["customers"], 946.0);
    within("p", gg["p"], 6.25, 0.01);
    within("q", gg["q"], 3.74, 0.01);
    within("gamma", gg["gamma"], 15.44, 0.01);

    // Holdout, weeks 40-78: the model's expected repeat purchases against what happened.
    // lifetimes 0.11.3 gives 1653.41 for the same fit; 1,882 purchase days were observed.
    let holdout = numbers(
        &engine,
        &format!(
            "WITH holdout AS (SELECT customer_id, count(DISTINCT date) AS purchases FROM cdnow_sample \
               WHERE date > DATE '1997-09-30' AND date <= DATE '1998-06-30' GROUP BY customer_id) \
             SELECT sum(expected_purchases('bg', 39, frequency, recency, t)) AS expected, \
                    sum(coalesce(purchases, 0)) AS actual \
             FROM {CALIBRATION} LEFT JOIN holdout USING (customer_id)"
        ),
    )
    .await;
    assert!((holdout["expected"] - 1653.41).abs() < 0.5, "{holdout:?}");
    assert_eq!(holdout["actual"], 1882.0);

    // Customer 1 (2 repeat purchases, the last in week 30.43 of 38.86) against lifetimes with
    // the fitted parameters; clv over 12 months at 1% a month sums the monthly terms.
    let one = numbers(
        &engine,
        &format!(
            "SELECT p_alive('bg', frequency, recency, t) AS p_alive, \
                    expected_spend('gg', frequency, monetary_value) AS spend, \
                    clv('bg', 'gg', frequency, recency, t, monetary_value, 12, 0.01) AS clv, \
                    clv('bg', 'gg', frequency, recency, t, monetary_value, 1, 0.0) AS first_month, \
                    expected_purchases('bg', 4.345, frequency, recency, t) AS purchases_in_a_month \
             FROM {CALIBRATION} WHERE customer_id = 1"
        ),
    )
    .await;
    assert!((one["p_alive"] - 0.7266).abs() < 1e-3, "{one:?}");
    assert!(
        (one["first_month"] - one["spend"] * one["purchases_in_a_month"]).abs() < 1e-9,
        "{one:?}"
    );
    assert!(
        one["clv"] > one["first_month"] && one["clv"] < 12.0 * one["first_month"],
        "{one:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdnow_master_fits_like_lifetimes_and_names_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path()).await;
    engine
        .run(&format!(
            "CREATE EXTERNAL TABLE cdnow STORED AS CSV LOCATION '{}' \
             OPTIONS ('format.has_header' 'true')",
            cdnow("cdnow_master.csv")
        ))
        .await
        .unwrap();
    engine
        .run(
            "CREATE TABLE rfm AS SELECT * FROM \
             rfm_summary('SELECT customer_id, date, dollars FROM cdnow', '1998-06-30', 'week')",
        )
        .await
        .unwrap();
    // lifetimes 0.11.3, BetaGeoFitter on the same summary (78 weeks, 23,570 customers).
    let bg = numbers(
        &engine,
        "CREATE MODEL bg KIND bgnbd OPTIONS (time_unit = 'week') AS SELECT frequency, recency, t FROM rfm",
    )
    .await;
    assert_eq!(bg["customers"], 23570.0);
    within("r", bg["r"], 0.267_127_8, 1e-4);
    within("alpha", bg["alpha"], 5.986_492_5, 1e-4);
    within("a", bg["a"], 0.483_516_9, 1e-4);
    within("b", bg["b"], 2.111_608_1, 1e-4);

    // One customer's repeat purchases total $0: the Gamma-Gamma fit names the row count.
    let err = engine
        .run("CREATE MODEL gg KIND gamma_gamma AS SELECT frequency, monetary_value FROM rfm")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "1 of 23570 rows are not valid input (1 with frequency > 0 but monetary value not > 0)"
        ),
        "{err}"
    );
    // With it left out, lifetimes' estimates on the 11,515 others.
    let gg = numbers(
        &engine,
        "CREATE MODEL gg KIND gamma_gamma AS SELECT frequency, monetary_value FROM rfm \
         WHERE frequency = 0 OR monetary_value > 0",
    )
    .await;
    assert_eq!(gg["customers"], 11515.0);
    within("p", gg["p"], 5.086_044_1, 1e-4);
    within("q", gg["q"], 3.995_120_7, 1e-4);
    within("gamma", gg["gamma"], 21.252_237_6, 1e-4);

    // Scoring everyone: p_alive is 1 exactly for the customers without a repeat purchase.
    let counts = scalar(
        &engine,
        "SELECT count(*) || ' ' || sum(CASE WHEN p_alive('bg', frequency, recency, t) = 1 THEN 1 ELSE 0 END) \
         || ' ' || sum(CASE WHEN frequency = 0 THEN 1 ELSE 0 END) FROM rfm",
    )
    .await;
    let parts: Vec<&str> = counts.split(' ').collect();
    assert_eq!(parts[0], "23570");
    assert_eq!(parts[1], parts[2], "{counts}");
}
