//! Transaction blocks that write, over the wire with tokio-postgres: BEGIN ... COMMIT is all
//! or nothing, invisible to other sessions until COMMIT, undone by ROLLBACK, by a dropped
//! connection and by a crash, and other writers wait for it.

use std::process::Stdio;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::server::{TestServer, connect, simple_rows, spawn_serve, sqlstate};
use crate::support::{open_engine, scalar};

/// One cell of a simple query, as text.
async fn value(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = simple_rows(client, sql).await;
    rows[0][0].clone().unwrap_or_else(|| "NULL".into())
}

/// The accounts as `id:balance,...` in id order.
async fn balances(client: &tokio_postgres::Client) -> String {
    value(
        client,
        "SELECT string_agg(id || ':' || balance, ',' ORDER BY id) FROM accounts",
    )
    .await
}

/// The account ids as `id,...` in order.
async fn ids(client: &tokio_postgres::Client) -> String {
    value(
        client,
        "SELECT string_agg(CAST(id AS TEXT), ',' ORDER BY id) FROM accounts",
    )
    .await
}

/// Table directories on disk (`tables/t*`).
fn table_dirs(data_dir: &std::path::Path) -> usize {
    std::fs::read_dir(data_dir.join("tables"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with('t')
        })
        .count()
}

const SETUP: &str = "CREATE TABLE accounts (id BIGINT NOT NULL, balance BIGINT); \
     INSERT INTO accounts VALUES (1, 100), (2, 250); \
     CREATE VIEW rich AS SELECT id FROM accounts WHERE balance > 200";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_is_private_until_commit_and_then_all_of_it_lands() {
    let server = TestServer::start().await;
    let a = server.connect().await;
    let b = server.connect().await;
    a.batch_execute(SETUP).await.unwrap();
    let dirs_before = table_dirs(&server.data_dir());

    a.batch_execute(
        "BEGIN; \
         INSERT INTO accounts VALUES (3, 900); \
         UPDATE accounts SET balance = balance + 200 WHERE id = 1; \
         DELETE FROM accounts WHERE id = 2; \
         CREATE TABLE audit AS SELECT id, balance FROM accounts; \
         CREATE SCHEMA reports; \
         CREATE VIEW reports.total AS SELECT sum(balance) AS total FROM accounts; \
         ALTER TABLE audit RENAME TO audit_log",
    )
    .await
    .unwrap();
    // The block sees its own writes, views included ...
    assert_eq!(balances(&a).await, "1:300,3:900");
    assert_eq!(value(&a, "SELECT count(*) FROM rich").await, "2");
    assert_eq!(value(&a, "SELECT count(*) FROM audit_log").await, "2");
    assert_eq!(value(&a, "SELECT total FROM reports.total").await, "1200");
    // ... and nobody else does.
    assert_eq!(balances(&b).await, "1:100,2:250");
    assert_eq!(value(&b, "SELECT count(*) FROM rich").await, "1");
    assert_eq!(
        sqlstate(b.simple_query("SELECT * FROM audit_log").await),
        SqlState::UNDEFINED_TABLE.code()
    );

    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(balances(&b).await, "1:300,3:900");
    assert_eq!(value(&b, "SELECT count(*) FROM rich").await, "2");
    assert_eq!(value(&b, "SELECT count(*) FROM audit_log").await, "2");
    assert_eq!(value(&b, "SELECT total FROM reports.total").await, "1200");
    assert_eq!(
        value(
            &b,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'audit_log'"
        )
        .await,
        "1"
    );
    // accounts now lives in its copy; the old directory is gone, audit_log's is new.
    assert_eq!(table_dirs(&server.data_dir()), dirs_before + 1);
    drop((a, b));
    let data_dir = server.data_dir();
    let _kept = server.stop().await;

    // What was committed is what a restart finds.
    let engine = open_engine(&data_dir).await;
    assert_eq!(
        scalar(&engine, "SELECT sum(balance) FROM accounts").await,
        "1200"
    );
    assert_eq!(scalar(&engine, "SELECT count(*) FROM audit_log").await, "2");
    assert_eq!(
        scalar(&engine, "SELECT total FROM reports.total").await,
        "1200"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_a_failed_block_and_a_dropped_connection_leave_nothing() {
    let server = TestServer::start().await;
    let a = server.connect().await;
    a.batch_execute(SETUP).await.unwrap();
    let dirs_before = table_dirs(&server.data_dir());

    // ROLLBACK undoes DDL and DML, on new tables and on tables from before the block.
    a.batch_execute(
        "BEGIN; \
         CREATE TABLE scratch AS SELECT * FROM accounts; \
         INSERT INTO accounts VALUES (3, 1); \
         DROP VIEW rich; \
         DROP TABLE accounts; \
         ROLLBACK",
    )
    .await
    .unwrap();
    assert_eq!(value(&a, "SELECT count(*) FROM accounts").await, "2");
    assert_eq!(value(&a, "SELECT count(*) FROM rich").await, "1");
    assert_eq!(
        sqlstate(a.simple_query("SELECT * FROM scratch").await),
        SqlState::UNDEFINED_TABLE.code()
    );
    assert_eq!(table_dirs(&server.data_dir()), dirs_before);

    // A statement that fails makes the block fail; its COMMIT rolls back.
    a.batch_execute("BEGIN; INSERT INTO accounts VALUES (4, 4)")
        .await
        .unwrap();
    assert_eq!(
        sqlstate(
            a.simple_query("INSERT INTO accounts VALUES (NULL, 1)")
                .await
        ),
        SqlState::NOT_NULL_VIOLATION.code()
    );
    let commit = a.simple_query("COMMIT").await.unwrap();
    assert!(
        matches!(
            &commit[0],
            tokio_postgres::SimpleQueryMessage::CommandComplete(_)
        ),
        "{commit:?}"
    );
    assert_eq!(value(&a, "SELECT count(*) FROM accounts").await, "2");

    // ROLLBACK TO SAVEPOINT clears a failed statement; it does not pretend to undo writes.
    a.batch_execute("BEGIN; INSERT INTO accounts VALUES (5, 5); SAVEPOINT s")
        .await
        .unwrap();
    assert_eq!(
        sqlstate(a.simple_query("SELECT * FROM missing").await),
        SqlState::UNDEFINED_TABLE.code()
    );
    a.batch_execute("ROLLBACK TO SAVEPOINT s; INSERT INTO accounts VALUES (6, 6)")
        .await
        .unwrap();
    assert_eq!(
        sqlstate(a.simple_query("ROLLBACK TO SAVEPOINT s").await),
        SqlState::FEATURE_NOT_SUPPORTED.code()
    );
    a.batch_execute("ROLLBACK").await.unwrap();
    a.batch_execute("BEGIN; INSERT INTO accounts VALUES (5, 5); SAVEPOINT s")
        .await
        .unwrap();
    let _ = a.simple_query("SELECT * FROM missing").await;
    a.batch_execute("ROLLBACK TO s; INSERT INTO accounts VALUES (6, 6); COMMIT")
        .await
        .unwrap();
    assert_eq!(ids(&a).await, "1,2,5,6");
    let dirs_committed = table_dirs(&server.data_dir());

    // A connection that goes away inside a block rolls it back and lets others write.
    let c = server.connect().await;
    c.batch_execute("BEGIN; CREATE TABLE orphan (x BIGINT); INSERT INTO accounts VALUES (7, 7)")
        .await
        .unwrap();
    drop(c);
    a.batch_execute("SET statement_timeout = '20s'; INSERT INTO accounts VALUES (8, 8)")
        .await
        .unwrap();
    assert_eq!(ids(&a).await, "1,2,5,6,8");
    assert_eq!(
        sqlstate(a.simple_query("SELECT * FROM orphan").await),
        SqlState::UNDEFINED_TABLE.code()
    );
    assert_eq!(table_dirs(&server.data_dir()), dirs_committed);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_writers_wait_for_a_writing_block() {
    let server = TestServer::start().await;
    let a = server.connect().await;
    let b = server.connect().await;
    a.batch_execute(SETUP).await.unwrap();
    a.batch_execute("BEGIN; INSERT INTO accounts VALUES (3, 3)")
        .await
        .unwrap();
    // B's write waits for A's block; statement_timeout stops the wait.
    b.batch_execute("SET statement_timeout = '300ms'")
        .await
        .unwrap();
    assert_eq!(
        sqlstate(b.simple_query("INSERT INTO accounts VALUES (4, 4)").await),
        SqlState::QUERY_CANCELED.code()
    );
    // B's own block waits for the lock too.
    assert_eq!(
        sqlstate(b.simple_query("BEGIN; CREATE TABLE t (x BIGINT)").await),
        SqlState::QUERY_CANCELED.code()
    );
    b.batch_execute("ROLLBACK; SET statement_timeout = 0")
        .await
        .unwrap();
    // Reads never wait.
    assert_eq!(value(&b, "SELECT count(*) FROM accounts").await, "2");
    // A write queued behind the block lands after its COMMIT.
    let queued = tokio::spawn(async move {
        b.batch_execute("INSERT INTO accounts VALUES (4, 4)")
            .await
            .map(|()| b)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.batch_execute("COMMIT").await.unwrap();
    let b = queued.await.unwrap().unwrap();
    assert_eq!(ids(&b).await, "1,2,3,4");

    // COPY FROM STDIN inside a block is part of it.
    a.batch_execute("BEGIN").await.unwrap();
    let sink = a
        .copy_in::<_, &'static [u8]>("COPY accounts FROM STDIN WITH (FORMAT csv)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    futures::SinkExt::send(&mut sink, &b"10,1\n11,1\n"[..])
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    assert_eq!(value(&a, "SELECT count(*) FROM accounts").await, "6");
    assert_eq!(value(&b, "SELECT count(*) FROM accounts").await, "4");
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(value(&a, "SELECT count(*) FROM accounts").await, "4");
    server.stop().await;
}

/// A server killed with SIGKILL inside a writing block: after a restart the block never
/// happened and its files are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_inside_a_block_loses_the_block_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = spawn_serve(dir.path(), "warn", Stdio::null());
    let client = connect(&format!(
        "host=127.0.0.1 port={port} user=tenure dbname=tenure"
    ))
    .await;
    client.batch_execute(SETUP).await.unwrap();
    client
        .batch_execute(
            "BEGIN; CREATE TABLE half AS SELECT * FROM accounts; \
             INSERT INTO accounts VALUES (3, 3); DROP VIEW rich",
        )
        .await
        .unwrap();
    let dirs_in_block = table_dirs(dir.path());
    child.kill().unwrap();
    child.wait().unwrap();
    drop(client);
    assert_eq!(dirs_in_block, 3, "accounts, its copy and half");

    let engine = open_engine(dir.path()).await;
    assert_eq!(scalar(&engine, "SELECT count(*) FROM accounts").await, "2");
    assert_eq!(scalar(&engine, "SELECT count(*) FROM rich").await, "1");
    assert!(engine.query("SELECT * FROM half").await.is_err());
    assert_eq!(
        table_dirs(dir.path()),
        1,
        "the block's directories are removed"
    );
}
