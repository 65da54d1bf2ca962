//! Temporary tables over the wire with tokio-postgres: private to the session that made
//! them, found before a table of the same name, ended by ON COMMIT DROP, by a block that
//! rolls back and by the session's end, and gone at the next start after a crash.

use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::server::{TestServer, simple_rows, sqlstate};

async fn value(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = simple_rows(client, sql).await;
    rows[0][0].clone().unwrap_or_else(|| "NULL".into())
}

/// Entries of the data directory's temp_tables (one per session with temporary tables).
fn sessions_on_disk(server: &TestServer) -> usize {
    std::fs::read_dir(server.data_dir().join("temp_tables")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_belong_to_their_session() {
    let dir = tempfile::tempdir().unwrap();
    // What a crashed process left: the next start removes it.
    let leftover = dir.path().join("data/temp_tables/s7/t1");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("part-0.parquet"), b"left by a crash").unwrap();
    let server = TestServer::start_on(dir, |_| {}).await;
    assert_eq!(
        sessions_on_disk(&server),
        0,
        "the start removed temp_tables/s7"
    );

    let a = server.connect().await;
    let b = server.connect().await;
    a.batch_execute("CREATE TABLE t AS SELECT 1 AS id")
        .await
        .unwrap();
    a.batch_execute("CREATE TEMP TABLE t AS SELECT 2 AS id; INSERT INTO t VALUES (3)")
        .await
        .unwrap();
    let ids = "SELECT string_agg(CAST(id AS TEXT), ',' ORDER BY id) FROM t";
    assert_eq!(value(&a, ids).await, "2,3");
    assert_eq!(value(&a, "SELECT count(*) FROM public.t").await, "1");
    assert_eq!(value(&b, ids).await, "1", "b reads the shared table");
    assert_eq!(
        sqlstate(b.simple_query("SELECT * FROM pg_temp.t").await),
        SqlState::UNDEFINED_TABLE.code()
    );
    // The extended protocol finds it too, with parameters.
    let row = a
        .query_one("SELECT count(*) FROM t WHERE id > $1", &[&2_i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    // Listed in the session's own pg_temp_N schema, for that session only.
    let schema = value(
        &a,
        "SELECT table_schema FROM information_schema.tables \
         WHERE table_name = 't' AND table_schema <> 'public'",
    )
    .await;
    assert!(schema.starts_with("pg_temp_"), "{schema}");
    assert_eq!(
        value(&a, &format!("SELECT count(*) FROM {schema}.t")).await,
        "2"
    );
    assert_eq!(
        value(
            &b,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema LIKE 'pg_temp%'"
        )
        .await,
        "0"
    );
    assert_eq!(
        sqlstate(b.simple_query(&format!("SELECT * FROM {schema}.t")).await),
        SqlState::UNDEFINED_TABLE.code()
    );
    // pg_catalog shows it in that schema, to that session alone.
    let listed = "SELECT n.nspname || '.' || c.relname || ':' || c.relpersistence || ':' \
                         || c.relnatts || ':' || a.attname \
                  FROM pg_catalog.pg_class c \
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
                  WHERE c.relname = 't' AND n.nspname <> 'public'";
    assert_eq!(value(&a, listed).await, format!("{schema}.t:t:1:id"));
    assert_eq!(simple_rows(&b, listed).await.len(), 0);
    // psql's \d, as PostgreSQL 15 prints it (the schema's number aside).
    let (ok, out, err) = server.psql_with_input(
        &[],
        b"CREATE TEMP TABLE scratch (a INT NOT NULL, j jsonb, v varchar(5));\n\\d scratch\n",
    );
    assert!(ok, "{err}");
    let shown: Vec<&str> = out.lines().map(str::trim_end).collect();
    assert!(
        shown[1].trim_start().starts_with("Table \"pg_temp_") && shown[1].ends_with(".scratch\""),
        "{out}"
    );
    assert_eq!(
        shown[2..],
        [
            " Column |         Type         | Collation | Nullable | Default",
            "--------+----------------------+-----------+----------+---------",
            " a      | integer              |           | not null |",
            " j      | jsonb                |           |          |",
            " v      | character varying(5) |           |          |",
            "",
        ],
        "{out}"
    );

    // In a transaction block: ON COMMIT DROP ends with the block, and a table created in a
    // block that rolls back is gone with it.
    a.batch_execute(
        "BEGIN; CREATE TEMP TABLE staged ON COMMIT DROP AS SELECT id FROM t; \
         INSERT INTO public.t SELECT id * 10 FROM staged; COMMIT",
    )
    .await
    .unwrap();
    assert_eq!(
        value(
            &a,
            "SELECT string_agg(CAST(id AS TEXT), ',' ORDER BY id) FROM public.t"
        )
        .await,
        "1,20,30"
    );
    assert_eq!(
        sqlstate(a.simple_query("SELECT * FROM staged").await),
        SqlState::UNDEFINED_TABLE.code()
    );
    a.batch_execute("BEGIN; CREATE TEMP TABLE undone (x INT); ROLLBACK")
        .await
        .unwrap();
    assert_eq!(
        sqlstate(a.simple_query("SELECT * FROM undone").await),
        SqlState::UNDEFINED_TABLE.code()
    );
    assert_eq!(
        value(&a, ids).await,
        "2,3",
        "the older temporary table stays"
    );

    // The session's end drops its temporary tables and their files.
    assert_eq!(sessions_on_disk(&server), 1);
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sessions_on_disk(&server) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sessions_on_disk(&server),
        0,
        "the closed session's files are gone"
    );
    let c = server.connect().await;
    assert_eq!(value(&c, ids).await, "1,20,30");
    server.stop().await;
}
