//! External tables: Delta tables written elsewhere, and the allowed-roots rule for server
//! clients.

use tenure::{Config, Engine, PathAccess};

use crate::support::{open_engine, scalar};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_delta_tables_follow_their_writer() {
    let writer_dir = tempfile::tempdir().unwrap();
    let reader_dir = tempfile::tempdir().unwrap();
    let writer = open_engine(writer_dir.path()).await;
    writer
        .run("CREATE TABLE events AS SELECT value AS id FROM generate_series(1, 10)")
        .await
        .unwrap();
    let location = writer_dir.path().join("tables/t000001");
    assert!(
        location.join("_delta_log").exists(),
        "the first table is tables/t000001"
    );

    let reader = open_engine(reader_dir.path()).await;
    reader
        .run(&format!(
            "CREATE EXTERNAL TABLE shared_events STORED AS DELTA LOCATION '{}'",
            location.display()
        ))
        .await
        .unwrap();
    assert_eq!(
        scalar(&reader, "SELECT count(*) FROM shared_events").await,
        "10"
    );
    // A commit by the other writer is visible at the next query: a small INSERT reaches
    // the Delta log when the writer's background task flushes its write buffer (within
    // about a second).
    writer
        .run("INSERT INTO events VALUES (11), (12)")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let seen = scalar(&reader, "SELECT count(*) FROM shared_events").await;
        if seen == "12" {
            break;
        }
        assert_eq!(seen, "10", "the reader sees the INSERT whole or not at all");
        assert!(
            std::time::Instant::now() < deadline,
            "the INSERT never reached the Delta log"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let err = reader
        .run("INSERT INTO shared_events VALUES (13)")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    // The registration survives a restart of the reader.
    drop(reader);
    let reader = open_engine(reader_dir.path()).await;
    assert_eq!(
        scalar(&reader, "SELECT max(id) FROM shared_events").await,
        "12"
    );

    let missing = reader
        .run("CREATE EXTERNAL TABLE nothing STORED AS DELTA LOCATION '/nonexistent/delta'")
        .await
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("cannot open Delta table at /nonexistent/delta"),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_clients_read_only_under_allowed_roots() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        threads: 2,
        ..Config::default()
    };
    let roots = config.effective_allowed_roots();
    let engine = Engine::open(&config, PathAccess::Roots(roots))
        .await
        .unwrap();
    let inside = dir.path().join("import/ok.parquet");
    engine
        .run(&format!("COPY (SELECT 1 AS x) TO '{}'", inside.display()))
        .await
        .expect("writing under import/ is allowed");
    engine
        .run(&format!(
            "CREATE EXTERNAL TABLE ok STORED AS PARQUET LOCATION '{}'",
            inside.display()
        ))
        .await
        .expect("reading under import/ is allowed");
    assert_eq!(scalar(&engine, "SELECT x FROM ok").await, "1");
    for location in [
        outside.path().join("secret.parquet").display().to_string(),
        format!("{}/import/../catalog.json", dir.path().display()),
        "/etc/passwd".to_string(),
    ] {
        let err = engine
            .run(&format!(
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{location}'"
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("permission denied") && err.contains("outside"),
            "{location}: {err}"
        );
        let err = engine
            .run(&format!("COPY (SELECT 1) TO '{location}'"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("permission denied"), "{location}: {err}");
    }
    // A symbolic link inside the root that points outside it does not open a way out.
    let link = dir.path().join("import/escape");
    std::os::unix::fs::symlink(outside.path(), &link).unwrap();
    let err = engine
        .run(&format!(
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}/x.csv'",
            link.display()
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("permission denied"), "{err}");
}
