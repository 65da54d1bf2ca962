//! The example dbt project (sql/dbt) with the stock dbt-postgres adapter against a tenure
//! server holding the demo world and its lifecycle mart: `dbt seed`, `dbt run`, `dbt test`,
//! `dbt snapshot` twice and a second `dbt run` all pass, and what they built holds the right
//! rows. The second run
//! updates the three incremental models (append, delete+insert and merge strategies, through
//! temporary tables) with the events added in between.
//!
//! dbt is the executable in TENURE_TEST_DBT (`.ci/run` installs it from
//! tests/clients/requirements.txt). Without it the test says so and passes, unless
//! TENURE_REQUIRE_CLIENT_TESTS=1 makes that a failure.

use std::process::Command;

use crate::server::{TestServer, simple_rows};
use crate::support::{project_file, tenure_ok};

/// Runs `dbt COMMAND` on the project against `port`, its output and logs in `work`.
fn dbt(executable: &str, command: &str, port: u16, work: &std::path::Path) -> String {
    let project = project_file("sql/dbt");
    let output = Command::new(executable)
        .args(command.split_whitespace())
        .arg("--project-dir")
        .arg(&project)
        .arg("--profiles-dir")
        .arg(&project)
        .arg("--target-path")
        .arg(work.join("target"))
        .arg("--log-path")
        .arg(work.join("logs"))
        .env("TENURE_PORT", port.to_string())
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .output()
        .expect("dbt runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "dbt {command} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbt_seed_run_test_and_run_again() {
    let Ok(executable) = std::env::var("TENURE_TEST_DBT") else {
        assert!(
            std::env::var_os("TENURE_REQUIRE_CLIENT_TESTS").is_none(),
            "TENURE_REQUIRE_CLIENT_TESTS is set but TENURE_TEST_DBT is not"
        );
        eprintln!("skipping the dbt test: set TENURE_TEST_DBT to a dbt with dbt-postgres");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    tenure_ok(&data_dir, &["demo", "--scale", "0.05"]);
    let mart = project_file("sql/lifecycle_mart.sql");
    tenure_ok(&data_dir, &["sql", "-f", mart.to_str().unwrap()]);
    let server = TestServer::start_on(dir, |_| {}).await;
    let port = server.addr.port();
    let work = tempfile::tempdir().unwrap();

    let run = {
        let executable = executable.clone();
        let work = work.path().to_path_buf();
        move |command: &'static str| {
            let executable = executable.clone();
            let work = work.clone();
            tokio::task::spawn_blocking(move || dbt(&executable, command, port, &work))
        }
    };
    let seeded = run("seed").await.unwrap();
    assert!(seeded.contains("PASS=1"), "{seeded}");
    let built = run("run").await.unwrap();
    assert!(built.contains("PASS=9"), "{built}");
    let tested = run("test").await.unwrap();
    assert!(
        tested.contains("PASS=26") && tested.contains("ERROR=0"),
        "{tested}"
    );
    // New events: one a day after the last for a customer already counted, one two days
    // after for a customer without events so far.
    let client = server.connect().await;
    // A snapshot: a type-2 history of each customer's country and device. A change closes
    // the row's current version and opens a new one (dbt-postgres stages the changes in a
    // temporary table, reads its columns from information_schema, then UPDATE ... FROM and
    // INSERT).
    let snapshotted = run("snapshot").await.unwrap();
    assert!(snapshotted.contains("PASS=1"), "{snapshotted}");
    client
        .batch_execute("UPDATE customers SET device = 'kiosk' WHERE customer_id <= 2")
        .await
        .unwrap();
    let snapshotted = run("snapshot").await.unwrap();
    assert!(snapshotted.contains("PASS=1"), "{snapshotted}");
    let history = simple_rows(
        &client,
        "SELECT (SELECT count(*) FROM snapshots.customer_country_history) \
                  - (SELECT count(*) FROM customers), \
                (SELECT string_agg(customer_id || ':' || device, ',' ORDER BY customer_id) \
                 FROM snapshots.customer_country_history \
                 WHERE dbt_valid_to IS NULL AND customer_id <= 2), \
                (SELECT string_agg(customer_id || ':' || device, ',' ORDER BY customer_id) \
                 FROM snapshots.customer_country_history WHERE dbt_valid_to IS NOT NULL) \
                  IS NOT NULL",
    )
    .await;
    assert_eq!(
        history[0],
        [
            Some("2".to_string()),
            Some("1:kiosk,2:kiosk".to_string()),
            Some("t".to_string())
        ],
        "two new versions, the old ones closed"
    );
    client
        .batch_execute(
            "INSERT INTO events SELECT max(event_id) + 1, min(customer_id), \
                 max(event_time) + INTERVAL '1 day', 'view', NULL, 0, NULL FROM events; \
             INSERT INTO events SELECT max(event_id) + 1, max(customer_id) + 1, \
                 max(event_time) + INTERVAL '1 day', 'view', NULL, 0, NULL FROM events",
        )
        .await
        .unwrap();
    // The second run replaces every table and view model (tables through dbt's
    // rename-and-drop, views with CREATE OR REPLACE semantics) and updates the incremental
    // ones from a temporary table each; it leaves no temporary or backup relation behind.
    let rebuilt = run("run").await.unwrap();
    assert!(rebuilt.contains("PASS=9"), "{rebuilt}");
    for (model, command) in [
        ("events_appended", "INSERT 0 2"),
        ("daily_events", "INSERT 0 3"),
        ("customer_activity", "MERGE 2"),
    ] {
        assert!(
            rebuilt.lines().any(
                |l| l.contains(&format!("incremental model analytics.{model} "))
                    && l.contains(command)
            ),
            "{model}: {rebuilt}"
        );
    }
    let retested = run("test").await.unwrap();
    assert!(retested.contains("PASS=26"), "{retested}");
    let incremental = simple_rows(
        &client,
        "SELECT (SELECT count(*) FROM events) AS events, \
                (SELECT count(*) FROM analytics.events_appended) AS appended, \
                (SELECT sum(events) FROM analytics.daily_events) AS daily, \
                (SELECT sum(events) FROM analytics.customer_activity) AS per_customer, \
                (SELECT count(*) FROM analytics.customer_activity) AS customers, \
                (SELECT count(DISTINCT customer_id) FROM events) AS customers_with_events",
    )
    .await;
    let incremental: Vec<&str> = incremental[0]
        .iter()
        .map(|v| v.as_deref().unwrap())
        .collect();
    assert_eq!(incremental[1], incremental[0], "append: every event once");
    assert_eq!(
        incremental[2], incremental[0],
        "delete+insert: every event once"
    );
    assert_eq!(incremental[3], incremental[0], "merge: every event once");
    assert_eq!(
        incremental[4], incremental[5],
        "merge: one row per customer"
    );
    // `dbt docs generate` reads the catalog (pg_is_other_temp_schema among the functions its
    // query calls) and writes every model with its columns.
    let documented = run("docs generate").await.unwrap();
    assert!(documented.contains("Catalog written"), "{documented}");
    let catalog: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join("target/catalog.json")).unwrap(),
    )
    .unwrap();
    let actions = &catalog["nodes"]["model.tenure_demo.lifecycle_actions"];
    assert_eq!(actions["metadata"]["type"], "BASE TABLE", "{catalog}");
    assert!(
        actions["columns"]["lifecycle_stage"]["type"].is_string(),
        "{catalog}"
    );

    let relations = simple_rows(
        &client,
        "SELECT string_agg(table_name || ':' || table_type, ',' ORDER BY table_name) \
         FROM information_schema.tables WHERE table_schema = 'analytics'",
    )
    .await;
    assert_eq!(
        relations[0][0].as_deref(),
        Some(
            "customer_activity:BASE TABLE,customer_orders:BASE TABLE,\
             daily_events:BASE TABLE,events_appended:BASE TABLE,lifecycle_actions:BASE TABLE,\
             lifecycle_summary:VIEW,monthly_revenue:BASE TABLE,stage_playbook:BASE TABLE,\
             stg_customers:VIEW,stg_orders:VIEW"
        )
    );
    let counts = simple_rows(
        &client,
        "SELECT (SELECT count(*) FROM analytics.stage_playbook) AS seeded, \
                (SELECT count(*) FROM analytics.lifecycle_actions) AS actions, \
                (SELECT count(*) FROM public.customers) AS customers, \
                (SELECT sum(customers) FROM analytics.lifecycle_summary) AS summarised, \
                (SELECT sum(orders) FROM analytics.monthly_revenue) AS monthly_orders, \
                (SELECT count(*) FROM public.orders) AS orders, \
                (SELECT sum(orders) FROM analytics.customer_orders) AS customer_orders",
    )
    .await;
    let counts: Vec<&str> = counts[0].iter().map(|v| v.as_deref().unwrap()).collect();
    assert_eq!(counts[0], "7", "the seed's rows");
    assert_eq!(counts[1], counts[2], "one action per customer");
    assert_eq!(
        counts[3], counts[2],
        "the summary view covers every customer"
    );
    assert_eq!(counts[4], counts[5], "monthly revenue counts every order");
    assert_eq!(counts[6], counts[5], "customer_orders counts every order");
    // The churned customers get the reactivation campaign from the seed.
    let churned = simple_rows(
        &client,
        "SELECT DISTINCT action FROM analytics.lifecycle_actions WHERE lifecycle_stage = 'churned'",
    )
    .await;
    assert_eq!(churned, [[Some("reactivation campaign".to_string())]]);
    // persist_docs: the descriptions of schema.yml as comments, after the second run too.
    let comments = simple_rows(
        &client,
        "SELECT coalesce(column_name, '-') || ': ' || comment FROM tenure.comments \
         WHERE table_name = 'lifecycle_actions' ORDER BY column_name NULLS FIRST",
    )
    .await;
    assert_eq!(
        comments,
        [
            [Some(
                "-: One row per customer with the next action for their lifecycle stage."
                    .to_string()
            )],
            [Some("customer_id: The customer, one row each.".to_string())]
        ]
    );
    server.stop().await;
}
