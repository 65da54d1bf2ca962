//! The `tenure` command line, run as a user would: demo, one-shot SQL, formats, exit codes.

use crate::support::{tenure, tenure_bin, tenure_ok};

#[test]
fn demo_then_query_from_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let parquet = tempfile::tempdir().unwrap();
    let out = tenure_ok(
        dir.path(),
        &[
            "demo",
            "--scale",
            "0.01",
            "--seed",
            "7",
            "--parquet",
            parquet.path().to_str().unwrap(),
        ],
    );
    assert!(
        out.contains("tenure sql"),
        "demo says what to try next: {out}"
    );
    let count = tenure_ok(
        dir.path(),
        &[
            "sql",
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n FROM orders",
        ],
    );
    let n: u64 = count
        .lines()
        .nth(1)
        .expect("a value row")
        .parse()
        .expect("a count");
    assert!(
        n > 1000,
        "1000 customers place more than 1000 orders, got {n}"
    );
    // The Parquet export holds the same rows.
    let orders = parquet.path().join("orders.parquet");
    assert!(orders.exists() && parquet.path().join("truth/customers.parquet").exists());
    let sql = format!(
        "CREATE EXTERNAL TABLE o STORED AS PARQUET LOCATION '{}'; SELECT count(*) AS n FROM o",
        orders.display()
    );
    let exported = tenure_ok(dir.path(), &["sql", "--format", "csv", "-c", &sql]);
    assert_eq!(exported.lines().nth(1), Some(n.to_string().as_str()));
    // The lifecycle views answer.
    for view in ["rfm", "cohort_retention", "funnel", "repeat_purchase_rate"] {
        let rows = tenure_ok(
            dir.path(),
            &[
                "sql",
                "--format",
                "csv",
                "-c",
                &format!("SELECT count(*) FROM {view}"),
            ],
        );
        let rows: u64 = rows.lines().nth(1).unwrap().parse().unwrap();
        assert!(rows > 0, "view {view} is empty");
    }
    // The same seed gives the same world.
    let again = tempfile::tempdir().unwrap();
    tenure_ok(again.path(), &["demo", "--scale", "0.01", "--seed", "7"]);
    // Cents, so that the order of a parallel floating-point sum does not matter.
    let digest =
        "SELECT count(*), sum(CAST(round(amount * 100) AS BIGINT)), sum(customer_id) FROM orders";
    assert_eq!(
        tenure_ok(again.path(), &["sql", "-c", digest]),
        tenure_ok(dir.path(), &["sql", "-c", digest])
    );
}

#[test]
fn formats_files_and_flag_positions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // --data-dir after the subcommand works as well as before it.
    let out = tenure_bin()
        .args([
            "sql",
            "--data-dir",
            d,
            "--format",
            "json",
            "-c",
            "SELECT 1 AS a, 'x' AS b",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[{\"a\":1,\"b\":\"x\"}]\n"
    );

    let script = dir.path().join("setup.sql");
    std::fs::write(
        &script,
        "CREATE TABLE kv (k TEXT, v INT);\nINSERT INTO kv VALUES ('a', 1), ('b', 2);\n\\dt\n",
    )
    .unwrap();
    let out = tenure_ok(dir.path(), &["sql", "-f", script.to_str().unwrap()]);
    assert!(out.contains("INSERT 2") && out.contains("kv"), "{out}");
    let table = tenure_ok(
        dir.path(),
        &[
            "sql",
            "-c",
            "SELECT k, v FROM kv ORDER BY k",
            "-c",
            "\\d kv",
        ],
    );
    assert!(
        table.contains("| a | 1 |") && table.contains("(2 rows)"),
        "{table}"
    );
    assert!(table.contains("Int32"), "\\d shows column types: {table}");
}

#[test]
fn errors_exit_non_zero_and_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    for (sql, expected) in [
        ("SELECT * FROM nowhere", "nowhere"),
        ("SELEC 1", "SELEC"),
        (
            "CREATE TABLE t (a INT); INSERT INTO t VALUES ('abc')",
            "column a",
        ),
    ] {
        let out = tenure(dir.path(), &["sql", "-c", sql]);
        assert!(!out.status.success(), "{sql} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{sql}: {stderr}");
    }
    let out = tenure(dir.path(), &["sql", "-c", "SELECT count(*) FROM t"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("| 0 "),
        "the failed insert added nothing"
    );
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "treads = 4\n").unwrap();
    let out = tenure(
        dir.path(),
        &[
            "--config",
            bad_config.to_str().unwrap(),
            "sql",
            "-c",
            "SELECT 1",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));

    // The configured device is opened at start: a GPU this build or machine lacks stops it
    // with the reason, before any statement runs.
    if !cfg!(feature = "cuda") {
        let out = tenure(dir.path(), &["--device", "cuda:0", "sql", "-c", "SELECT 1"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("needs tenure built with --features cuda"),
            "{stderr}"
        );
    }
    let out = tenure(dir.path(), &["--device", "tpu", "sql", "-c", "SELECT 1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"tpu\" is not a device"), "{stderr}");
}
