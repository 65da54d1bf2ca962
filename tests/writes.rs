//! Concurrent and frequent writes through the real `tenure serve`: many autocommit sessions
//! inserting, copying, updating and deleting in one table all commit, with every row and
//! increment accounted for; a reader never sees half of a statement; a SIGKILL during group
//! commit, compaction or VACUUM loses no acknowledged write and applies none twice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::Client;

use crate::support::Serve;

async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Sends `rows` (tab-separated lines) with COPY FROM STDIN.
async fn copy_in(client: &Client, table: &str, rows: &str) -> u64 {
    let sink = client
        .copy_in(&format!("COPY {table} FROM STDIN"))
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from(rows.to_string())).await.unwrap();
    sink.finish().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_autocommit_writes_all_commit() {
    const CLIENTS: i64 = 8;
    const ROUNDS: i64 = 30;
    let serve = Serve::start("");
    let admin = serve.connect("tenure", None).await;
    admin
        .batch_execute(
            "CREATE TABLE events (client bigint NOT NULL, n bigint NOT NULL, kind text);
             CREATE TABLE counter (id int, hits bigint);
             INSERT INTO counter VALUES (1, 0);",
        )
        .await
        .unwrap();

    // A reader that checks, while the writers run, that no statement is ever half visible:
    // each COPY adds 10 rows of kind 'copy' in one statement and each DELETE removes a
    // client's 'doomed' rows in one, so per client the copied rows come in tens and the doomed
    // ones are all there or none.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let client = serve.connect("tenure", None).await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let rows = client
                    .query(
                        "SELECT client, count(*) FILTER (WHERE kind = 'copy'), \
                         count(*) FILTER (WHERE kind = 'doomed') FROM events GROUP BY client",
                        &[],
                    )
                    .await
                    .unwrap();
                for row in rows {
                    let (client, copied, doomed): (i64, i64, i64) =
                        (row.get(0), row.get(1), row.get(2));
                    assert_eq!(copied % 10, 0, "client {client}: a COPY seen in part");
                    assert!(
                        doomed == 0 || doomed == 5,
                        "client {client}: a DELETE seen in part ({doomed})"
                    );
                }
                reads += 1;
            }
            reads
        })
    };

    let mut writers = Vec::new();
    for client_id in 0..CLIENTS {
        let client = serve.connect("tenure", None).await;
        writers.push(tokio::spawn(async move {
            let insert = client
                .prepare("INSERT INTO events VALUES ($1, $2, 'insert')")
                .await
                .unwrap();
            let mut increments = 0;
            for round in 0..ROUNDS {
                client
                    .execute(&insert, &[&client_id, &round])
                    .await
                    .unwrap();
                if round % 10 == 0 {
                    client
                        .execute("UPDATE counter SET hits = hits + 1 WHERE id = 1", &[])
                        .await
                        .unwrap();
                    increments += 1;
                }
                if round % 15 == 0 {
                    let rows: String = (0..10)
                        .map(|i| format!("{client_id}\t{}\tcopy\n", 1000 + round * 10 + i))
                        .collect();
                    assert_eq!(copy_in(&client, "events", &rows).await, 10);
                }
                if round == ROUNDS / 2 {
                    // Five rows that one DELETE then removes.
                    client
                        .batch_execute(&format!(
                            "INSERT INTO events VALUES ({client_id}, -1, 'doomed'), \
                             ({client_id}, -2, 'doomed'), ({client_id}, -3, 'doomed'), \
                             ({client_id}, -4, 'doomed'), ({client_id}, -5, 'doomed')"
                        ))
                        .await
                        .unwrap();
                    let deleted = client
                        .execute(
                            &format!(
                                "DELETE FROM events WHERE client = {client_id} AND kind = 'doomed'"
                            ),
                            &[],
                        )
                        .await
                        .unwrap();
                    assert_eq!(deleted, 5);
                }
            }
            increments
        }));
    }
    let mut increments = 0;
    for writer in writers {
        increments += writer.await.expect("a writer failed");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.await.expect("the reader failed") > 0);

    assert_eq!(
        count(&admin, "SELECT hits FROM counter WHERE id = 1").await,
        increments
    );
    for client_id in 0..CLIENTS {
        let inserted: Vec<i64> = admin
            .query(
                "SELECT n FROM events WHERE client = $1 AND kind = 'insert' ORDER BY n",
                &[&client_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            inserted,
            (0..ROUNDS).collect::<Vec<_>>(),
            "client {client_id}"
        );
    }
    let copies = (0..ROUNDS).filter(|r| r % 15 == 0).count() as i64;
    assert_eq!(
        count(&admin, "SELECT count(*) FROM events WHERE kind = 'copy'").await,
        CLIENTS * copies * 10
    );
    assert_eq!(
        count(&admin, "SELECT count(*) FROM events WHERE kind = 'doomed'").await,
        0
    );

    // An append too large for the write buffer is written as files while it streams in.
    admin
        .batch_execute(
            "CREATE TABLE wide (id bigint, label text);
             INSERT INTO wide SELECT value, md5(CAST(value AS text)) FROM generate_series(1, 300000);
             INSERT INTO wide VALUES (0, 'small');",
        )
        .await
        .unwrap();
    assert_eq!(
        count(&admin, "SELECT count(DISTINCT label) FROM wide").await,
        300_001
    );

    // Upkeep on demand; the background flush leaves nothing buffered within seconds.
    admin.batch_execute("OPTIMIZE events").await.unwrap();
    admin
        .batch_execute("VACUUM (VERBOSE, ANALYZE) events")
        .await
        .unwrap();
    admin.batch_execute("VACUUM FULL").await.unwrap();
    let files = count(
        &admin,
        "SELECT data_files FROM tenure.table_storage WHERE table_name = 'events'",
    )
    .await;
    assert_eq!(files, 1, "OPTIMIZE leaves one file");
    let total = count(&admin, "SELECT count(*) FROM events").await;
    assert_eq!(total, CLIENTS * ROUNDS + CLIENTS * copies * 10);

    // Statements that cannot run get their PostgreSQL errors.
    for (sql, code) in [
        ("VACUUM (NOSUCH) events", "42601"),
        ("OPTIMIZE", "42601"),
        ("VACUUM no_such_table", "42P01"),
    ] {
        let error = admin.batch_execute(sql).await.expect_err(sql);
        assert_eq!(error.code().map(|c| c.code()), Some(code), "{sql}: {error}");
    }
    admin.batch_execute("BEGIN").await.unwrap();
    let error = admin.batch_execute("VACUUM events").await.unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some("25001"), "{error}");
    admin.batch_execute("ROLLBACK").await.unwrap();
    serve.stop();
}

/// Writers insert numbered rows and note which were acknowledged; the server is SIGKILLed
/// at moments spread over group commits, background flushes, OPTIMIZE and VACUUM (retention
/// zero, so VACUUM really deletes); after each restart every acknowledged row is there
/// exactly once and nothing else is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_writes_and_upkeep_loses_nothing() {
    const CONFIG: &str = "vacuum_retention = 0\n";
    let mut serve = Serve::start(CONFIG);
    serve
        .connect("tenure", None)
        .await
        .batch_execute("CREATE TABLE ledger (id bigint NOT NULL, writer int)")
        .await
        .unwrap();
    let mut acknowledged = BTreeSet::new();
    let mut attempted = BTreeSet::new();
    for round in 0..4i64 {
        let mut tasks = Vec::new();
        for writer in 0..4i64 {
            let client = serve.connect("tenure", None).await;
            tasks.push(tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut attempted: Vec<i64> = Vec::new();
                for i in 0.. {
                    // Single-row INSERTs store base; every seventh statement is one INSERT
                    // of three rows, base + 1 ..= base + 3, all of them or none.
                    let base = round * 10_000_000 + writer * 1_000_000 + i * 10;
                    let ids: Vec<i64> = if i % 7 == 6 {
                        (1..=3).map(|k| base + k).collect()
                    } else {
                        vec![base]
                    };
                    attempted.extend(&ids);
                    let ok = if ids.len() == 1 {
                        client
                            .execute(
                                "INSERT INTO ledger VALUES ($1, $2)",
                                &[&base, &(writer as i32)],
                            )
                            .await
                            .is_ok()
                    } else {
                        let rows: Vec<String> =
                            ids.iter().map(|id| format!("({id}, {writer})")).collect();
                        client
                            .batch_execute(&format!(
                                "INSERT INTO ledger VALUES {}",
                                rows.join(", ")
                            ))
                            .await
                            .is_ok()
                    };
                    if !ok {
                        break;
                    }
                    acknowledged.extend(ids);
                }
                (acknowledged, attempted)
            }));
        }
        let upkeep = {
            let client = serve.connect("tenure", None).await;
            tokio::spawn(async move {
                while client.batch_execute("OPTIMIZE ledger").await.is_ok()
                    && client.batch_execute("VACUUM ledger").await.is_ok()
                {}
            })
        };
        // Kill at a different moment each round (writes are running from the start).
        tokio::time::sleep(Duration::from_millis(700 + 450 * round as u64)).await;
        let dir = serve.kill();
        for task in tasks {
            let (acked, tried) = task.await.unwrap();
            acknowledged.extend(acked);
            attempted.extend(tried);
        }
        upkeep.await.unwrap();
        serve = Serve::start_in(dir, CONFIG);
        let client = serve.connect("tenure", None).await;
        let stored: Vec<i64> = client
            .query("SELECT id FROM ledger", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut seen = BTreeSet::new();
        for id in &stored {
            assert!(seen.insert(*id), "row {id} is stored twice (round {round})");
        }
        let missing: Vec<_> = acknowledged.difference(&seen).take(5).collect();
        assert!(
            missing.is_empty(),
            "acknowledged rows lost after SIGKILL in round {round}: {missing:?}"
        );
        let unknown: Vec<_> = seen.difference(&attempted).take(5).collect();
        assert!(unknown.is_empty(), "rows nobody wrote: {unknown:?}");
        // A multi-row INSERT is there whole or not at all.
        for base in seen.iter().filter(|id| *id % 10 == 1) {
            assert!(
                seen.contains(&(base + 1)) && seen.contains(&(base + 2)),
                "a three-row INSERT is partly stored at {base}"
            );
        }
        assert!(!acknowledged.is_empty());
    }
    let log = serve.stop();
    assert!(!log.contains("panicked"), "{log}");
}
