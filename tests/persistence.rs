//! Durability: restarts keep everything, one process owns a data directory, and a process
//! killed with SIGKILL in the middle of a write leaves each table as it was before or after
//! the statement.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{open_engine, scalar, tenure, tenure_bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let parquet = files.path().join("points.parquet");
    let before;
    {
        let engine = open_engine(dir.path()).await;
        engine
            .run(&format!(
                "CREATE SCHEMA sales;
                 CREATE TABLE sales.orders (id BIGINT NOT NULL, amount DOUBLE, note TEXT);
                 INSERT INTO sales.orders VALUES (1, 10.5, 'a'), (2, 20.0, NULL), (3, 7.25, 'c');
                 UPDATE sales.orders SET amount = amount * 2 WHERE id = 1;
                 DELETE FROM sales.orders WHERE id = 3;
                 CREATE TABLE big AS SELECT value AS n FROM generate_series(1, 1000);
                 ALTER TABLE big RENAME TO numbers;
                 CREATE VIEW sales.totals AS SELECT count(*) AS orders, sum(amount) AS total FROM sales.orders;
                 CREATE TABLE sales.lines (id BIGINT PRIMARY KEY, order_id BIGINT, state TEXT DEFAULT 'new');
                 COMMENT ON TABLE sales.lines IS 'Order lines';
                 COPY (SELECT 1 AS x, 'one' AS label) TO '{}';
                 CREATE EXTERNAL TABLE points STORED AS PARQUET LOCATION '{}';",
                parquet.display(),
                parquet.display()
            ))
            .await
            .expect("setup statements run");
        // pg_catalog hands out oids when first asked; a table created after that, whose
        // name sorts first, must keep its own across the restart too.
        let first = relation_oids(&engine).await;
        engine.run("CREATE TABLE aaa (x INT)").await.unwrap();
        before = relation_oids(&engine).await;
        for entry in first.split([',', ' ']) {
            assert!(before.contains(entry), "{entry} kept: {before}");
        }
    }
    let engine = open_engine(dir.path()).await;
    assert_eq!(
        relation_oids(&engine).await,
        before,
        "relation and schema oids survive a restart"
    );
    // Counted from 16384 in creation order; a renamed table keeps its oid.
    for entry in [
        "sales=16384",
        "sales.orders=16385",
        "public.numbers=16386",
        "public.aaa=16390",
    ] {
        assert!(before.contains(entry), "{entry}: {before}");
    }
    assert_eq!(
        scalar(
            &engine,
            "SELECT count(*) FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'sales' AND c.relname = 'orders'"
        )
        .await,
        "3",
        "pg_attribute joins pg_class and pg_namespace by the kept oids"
    );
    assert_eq!(
        scalar(&engine, "SELECT orders FROM sales.totals").await,
        "2"
    );
    assert_eq!(
        scalar(&engine, "SELECT total FROM sales.totals").await,
        "41.0"
    );
    assert_eq!(
        scalar(&engine, "SELECT sum(n) FROM numbers").await,
        "500500"
    );
    assert_eq!(scalar(&engine, "SELECT label FROM points").await, "one");
    // Keys, comments and defaults are in the catalog; the default is planned again.
    assert_eq!(
        scalar(
            &engine,
            "SELECT constraint_name || ' ' || (SELECT comment FROM tenure.comments) \
             FROM tenure.keys"
        )
        .await,
        "lines_pkey Order lines"
    );
    engine
        .run("INSERT INTO sales.lines (id, order_id) VALUES (1, 1)")
        .await
        .unwrap();
    assert_eq!(
        scalar(&engine, "SELECT state FROM sales.lines").await,
        "new"
    );
    let missing = engine
        .query("SELECT * FROM big")
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("big"), "the old name is gone: {missing}");
    // The Delta tables are ordinary Delta Lake tables with a commit log.
    let tables = dir.path().join("tables");
    let logs = std::fs::read_dir(&tables).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .path()
            .join("_delta_log/00000000000000000000.json")
            .exists()
    });
    assert_eq!(logs.count(), 4, "one Delta table per managed table");
}

/// `schema.relation=oid,...` for the relations of public and sales, and sales's oid.
async fn relation_oids(engine: &tenure::Engine) -> String {
    scalar(
        engine,
        "SELECT string_agg(n.nspname || '.' || c.relname || '=' || c.oid, ',' \
                           ORDER BY n.nspname, c.relname) \
                || ' sales=' || (SELECT oid FROM pg_catalog.pg_namespace \
                                 WHERE nspname = 'sales') \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname IN ('public', 'sales') AND c.relkind IN ('r', 'v')",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_is_refused_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path()).await;
    let output = tenure(dir.path(), &["sql", "-c", "SELECT 1"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!("is in use by process {}", std::process::id());
    assert!(
        stderr.contains("data directory") && stderr.contains(&expected),
        "{stderr}"
    );
    drop(engine);
    let output = tenure(dir.path(), &["sql", "-c", "SELECT 1"]);
    assert!(
        output.status.success(),
        "the lock is released with the engine"
    );
}

/// Parquet files under `dir`, recursively (not the Delta log or write-ahead log).
fn data_files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == "_delta_log") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.insert(path);
            }
        }
    }
    found
}

/// Starts `tenure sql -c statement` and SIGKILLs it as soon as it has written a data file
/// under `tables/` that was not there before, i.e. in the middle of the write. Returns true
/// when it was killed while running, false when it finished first.
fn kill_mid_write(data_dir: &Path, statement: &str) -> bool {
    let tables = data_dir.join("tables");
    let before = data_files(&tables);
    let mut child: Child = tenure_bin()
        .arg("--data-dir")
        .arg(data_dir)
        .args(["sql", "-c", statement])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tenure starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("child status") {
            assert!(status.success(), "{statement} failed on its own");
            return false;
        }
        if data_files(&tables).difference(&before).next().is_some() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "{statement} neither wrote nor finished"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_write_leaves_before_or_after() {
    let dir = tempfile::tempdir().unwrap();
    const ROWS: u64 = 4_000_000;
    {
        let engine = open_engine(dir.path()).await;
        engine
            .run("CREATE TABLE t AS SELECT value AS id, 1 AS v FROM generate_series(1, 1000)")
            .await
            .unwrap();
    }

    // CREATE TABLE AS: afterwards the table does not exist or is complete.
    let killed_ctas = kill_mid_write(
        dir.path(),
        &format!(
            "CREATE TABLE c AS SELECT value AS id, value * 2 AS twice, \
             md5(CAST(value AS VARCHAR)) AS h FROM generate_series(1, {ROWS})"
        ),
    );
    {
        let engine = open_engine(dir.path()).await;
        match engine.query("SELECT count(*) FROM c").await {
            Ok(_) => assert_eq!(
                scalar(&engine, "SELECT count(*) FROM c").await,
                ROWS.to_string()
            ),
            Err(e) => assert!(e.to_string().contains("c"), "table c is absent: {e}"),
        }
        assert_eq!(scalar(&engine, "SELECT count(*) FROM t").await, "1000");
        // A failed CTAS leaves no directory behind after the next start.
        let dirs = std::fs::read_dir(dir.path().join("tables"))
            .unwrap()
            .count();
        let tables = scalar(
            &engine,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .await;
        assert_eq!(
            dirs.to_string(),
            tables,
            "every table directory belongs to a table"
        );
    }

    // INSERT: all rows or none.
    let killed_insert = kill_mid_write(
        dir.path(),
        &format!("INSERT INTO t SELECT value + 1000 AS id, 1 AS v FROM generate_series(1, {ROWS})"),
    );
    let count = {
        let engine = open_engine(dir.path()).await;
        scalar(&engine, "SELECT count(*) FROM t").await
    };
    assert!(
        count == "1000" || count == (1000 + ROWS).to_string(),
        "INSERT left {count} rows, neither before nor after"
    );

    // UPDATE: every row updated or none.
    let killed_update = kill_mid_write(dir.path(), "UPDATE t SET v = v + 1");
    {
        let engine = open_engine(dir.path()).await;
        let values = scalar(&engine, "SELECT count(DISTINCT v) FROM t").await;
        assert_eq!(values, "1", "UPDATE left a mix of old and new values");
        let rows = scalar(&engine, "SELECT count(*) FROM t").await;
        assert_eq!(rows, count, "UPDATE changed the row count");
    }
    assert!(
        killed_ctas && killed_insert && killed_update,
        "each statement was killed mid-write (ctas {killed_ctas}, insert {killed_insert}, \
         update {killed_update})"
    );
}
