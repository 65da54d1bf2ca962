//! The default classifier on real tables nobody here generated (tests/data/real, from the R
//! package modeldata): a telco's churn, a phone company's churn and credit risk, each with a
//! fixed train/test split. Its test ROC AUC must reach the best of scikit-learn's logistic
//! regression and LightGBM's defaults on the same split, and its accuracy logistic
//! regression's; both baselines run here, through benches/real_data/baselines.py.

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

/// The baselines' figures per table, or None (with a message) without a Python that has
/// tests/clients/requirements.txt installed.
fn baselines() -> Option<HashMap<String, serde_json::Value>> {
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
        .arg(project_file("benches/real_data/baselines.py"))
        .arg(project_file("tests/data/real"))
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "baselines.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                (value["table"].as_str().unwrap().to_string(), value)
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
    let baselines = baselines();
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
