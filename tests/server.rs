//! The PostgreSQL wire server with real clients: tokio-postgres (simple and extended
//! protocol, binary values), psql (catalog commands, NOTICE, TLS) and raw sockets for bad
//! input. The server runs in-process on a free port, except where the binary is the subject
//! (SIGTERM).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tenure::config::User;
use tenure::server::{Server, ServerOptions};
use tenure::{Config, Engine, PathAccess};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::support::{project_file, python_client, tenure_bin};

/// A server on a free loopback port over a fresh data directory.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut ServerOptions)) -> TestServer {
        TestServer::start_on(tempfile::tempdir().unwrap(), adjust).await
    }

    /// A server over `dir/data`, which may already hold data.
    pub(crate) async fn start_on(
        dir: tempfile::TempDir,
        adjust: impl FnOnce(&mut ServerOptions),
    ) -> TestServer {
        let config = Config {
            data_dir: dir.path().join("data"),
            threads: 2,
            ..Config::default()
        };
        let engine = Arc::new(
            Engine::open(&config, PathAccess::Roots(vec![dir.path().join("import")]))
                .await
                .unwrap(),
        );
        let mut options = ServerOptions::from_config(&Config {
            listen: "127.0.0.1:0".into(),
            ..config
        });
        adjust(&mut options);
        let server = Server::bind(engine, &options, tokio::runtime::Handle::current())
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            server
                .serve(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        TestServer {
            addr,
            dir,
            stop: Some(stop),
            done: Some(done),
        }
    }

    fn url(&self, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=tenure",
            self.addr.port()
        )
    }

    /// The server's data directory.
    pub(crate) fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) async fn connect(&self) -> Client {
        connect(&self.url("tenure")).await
    }

    /// Runs psql with `args` against this server; returns (success, stdout, stderr).
    pub(crate) fn psql(&self, args: &[&str]) -> (bool, String, String) {
        self.psql_with_input(args, b"")
    }

    /// As [`TestServer::psql`], with `input` on psql's standard input (COPY FROM STDIN).
    pub(crate) fn psql_with_input(&self, args: &[&str], input: &[u8]) -> (bool, String, String) {
        let mut child = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args([
                "-U",
                "tenure",
                "-d",
                "tenure",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(args)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs (apt-get install postgresql-client)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Stops the server; returns its directory, deleted when dropped.
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.done.take().unwrap().await.unwrap();
        self.dir
    }
}

pub(crate) async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// The error of a connection attempt that must fail.
async fn connect_error(url: &str) -> tokio_postgres::Error {
    match tokio_postgres::connect(url, NoTls).await {
        Ok(_) => panic!("connecting with {url} should fail"),
        Err(e) => e,
    }
}

/// The SQLSTATE of a failed statement.
pub(crate) fn sqlstate(result: Result<impl std::fmt::Debug, tokio_postgres::Error>) -> String {
    let error = result.expect_err("the statement should fail");
    error
        .code()
        .unwrap_or_else(|| panic!("no SQLSTATE in {error:?}"))
        .code()
        .to_string()
}

/// The values of a simple query's rows, as text.
pub(crate) async fn simple_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_round_trips_values_in_both_protocols() {
    let server = TestServer::start().await;
    let client = server.connect().await;

    client
        .batch_execute(
            "CREATE TABLE people (id BIGINT NOT NULL, name TEXT, score DOUBLE PRECISION, \
             active BOOLEAN, born DATE, seen TIMESTAMP, small SMALLINT, ratio REAL); \
             INSERT INTO people VALUES (1, 'ada', 9.5, true, DATE '1815-12-10', \
             TIMESTAMP '2024-01-02 03:04:05', 7, 0.25)",
        )
        .await
        .unwrap();

    // Extended protocol: parameters of several types, binary results.
    let inserted = client
        .execute(
            "INSERT INTO people VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &2i64,
                &"grace",
                &7.25f64,
                &false,
                &chrono::NaiveDate::from_ymd_opt(1906, 12, 9).unwrap(),
                &chrono::NaiveDate::from_ymd_opt(2024, 5, 6)
                    .unwrap()
                    .and_hms_opt(7, 8, 9)
                    .unwrap(),
                &3i16,
                &0.5f32,
            ],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    client
        .execute(
            "INSERT INTO people (id, name) VALUES ($1, $2)",
            &[&3i64, &None::<String>],
        )
        .await
        .unwrap();

    let rows = client
        .query(
            "SELECT id, name, score, active, born, seen, small, ratio FROM people \
             WHERE id <= $1 ORDER BY id",
            &[&2i64],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let grace = &rows[1];
    assert_eq!(grace.get::<_, i64>(0), 2);
    assert_eq!(grace.get::<_, &str>(1), "grace");
    assert_eq!(grace.get::<_, f64>(2), 7.25);
    assert!(!grace.get::<_, bool>(3));
    assert_eq!(
        grace.get::<_, chrono::NaiveDate>(4),
        chrono::NaiveDate::from_ymd_opt(1906, 12, 9).unwrap()
    );
    assert_eq!(
        grace.get::<_, chrono::NaiveDateTime>(5).to_string(),
        "2024-05-06 07:08:09"
    );
    assert_eq!(grace.get::<_, i16>(6), 3);
    assert_eq!(grace.get::<_, f32>(7), 0.5);

    // A text parameter compared with a text column, NULLs both ways.
    let row = client
        .query_one("SELECT count(*) FROM people WHERE name = $1", &[&"ada"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    let row = client
        .query_one("SELECT name, score FROM people WHERE id = 3", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<&str>>(0), None);
    assert_eq!(row.get::<_, Option<f64>>(1), None);

    // Simple protocol: several statements in one string, text values.
    let messages = client
        .simple_query("SELECT 1 AS one; SELECT name FROM people ORDER BY id LIMIT 2")
        .await
        .unwrap();
    let values: Vec<String> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(values, ["1", "ada", "grace"]);

    // Text values as PostgreSQL 15 writes them (each expected string is what it printed;
    // its timestamptz is `'2024-01-01 00:00:01.25+00'::timestamptz`, with TimeZone UTC).
    let messages = client
        .simple_query(
            "SELECT CAST(1.0 AS DOUBLE PRECISION), CAST(1e20 AS DOUBLE PRECISION), \
             CAST(0.000015 AS DOUBLE PRECISION), CAST('NaN' AS DOUBLE PRECISION), \
             CAST(1e6 AS REAL), CAST(12.5 AS DECIMAL(12, 2)), \
             TIMESTAMP '2024-01-01 00:00:01', TIMESTAMP '2024-01-01 00:00:01.5', \
             arrow_cast(TIMESTAMP '2024-01-01 00:00:01.25', 'Timestamp(Microsecond, Some(\"UTC\"))'), DATE '2024-02-29', true",
        )
        .await
        .unwrap();
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .unwrap();
    let texts: Vec<&str> = (0..row.len()).map(|i| row.get(i).unwrap()).collect();
    assert_eq!(
        texts,
        [
            "1",
            "1e+20",
            "1.5e-05",
            "NaN",
            "1e+06",
            "12.50",
            "2024-01-01 00:00:01",
            "2024-01-01 00:00:01.5",
            "2024-01-01 00:00:01.25+00",
            "2024-02-29",
            "t"
        ]
    );

    // PostgreSQL's result names: a function's name, a bare column name, ?column?.
    let statement = client
        .prepare("SELECT count(*), p.name, sum(score), 1 + 1 FROM people p GROUP BY p.name")
        .await
        .unwrap();
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["count", "name", "sum", "?column?"]);
    // More of them, each as PostgreSQL 15 names it (checked with psql against it), through
    // both protocols; the regclass cast and the CASE are rewritten before DataFusion plans
    // them, and keep the names the client wrote.
    let sql = "SELECT round(avg(score), 2), CASE WHEN count(*) > 0 THEN 1 END, ARRAY[1, 2], \
               '7'::int, '1'::bigint::double precision, now(), sum(score)::int, \
               COALESCE(1, 2), extract(year FROM now()), substring('abc' FROM 1 FOR 2), \
               trim(' a '), position('a' IN 'ba'), current_date, 'a' || 'b', NULLIF(1, 2), \
               GREATEST(1, 2), 'people'::regclass::oid, count(*), count(score), 1, 2, \
               count(*)::int, NULL, NULL \
               FROM people";
    let expected = [
        "round",
        "case",
        "array",
        "int4",
        "float8",
        "now",
        "sum",
        "coalesce",
        "extract",
        "substring",
        "btrim",
        "position",
        "current_date",
        "?column?",
        "nullif",
        "greatest",
        "oid",
        "count",
        "count",
        "?column?",
        "?column?",
        // DataFusion names these like earlier items; PostgreSQL allows that.
        "count",
        "?column?",
        "?column?",
    ];
    let statement = client.prepare(sql).await.unwrap();
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, expected);
    let simple = client.simple_query(sql).await.unwrap();
    let Some(row) = simple.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    }) else {
        panic!("no row: {simple:?}");
    };
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, expected);
    // DataFusion's unsigned counts are bigint, as PostgreSQL's row_number() is.
    let row = client
        .query_one("SELECT row_number() OVER (), cardinality(ARRAY[1, 2])", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 2));
    // Names that the compatibility layer's own rewrites (current_user is session_user(),
    // current_catalog is current_database()) would otherwise change; asyncpg's `SET jit`;
    // Metabase's `format()`.
    client.batch_execute("SET jit = off").await.unwrap();
    let row = client
        .query_one(
            "SELECT current_catalog, current_user, session_user, \
             format('%I.%I %L %s%%', 'public', 'Big Spenders', 'it''s', 7)",
            &[],
        )
        .await
        .unwrap();
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        ["current_catalog", "current_user", "session_user", "format"]
    );
    assert_eq!(
        row.get::<_, String>(3),
        "public.\"Big Spenders\" 'it''s' 7%"
    );
    // A numeric without a declared precision is not padded to DataFusion's scale of 10.
    let simple = client
        .simple_query("SELECT 12345.6789::numeric, CAST(2 AS numeric)")
        .await
        .unwrap();
    let values: Vec<Option<&str>> = simple
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(vec![row.get(0), row.get(1)]),
            _ => None,
        })
        .unwrap();
    assert_eq!(values, [Some("12345.6789"), Some("2")]);

    // A portal read in pieces (row limit), through a transaction as the protocol requires.
    let mut client = client;
    let transaction = client.transaction().await.unwrap();
    let portal = transaction
        .bind("SELECT id FROM people ORDER BY id", &[])
        .await
        .unwrap();
    let first = transaction.query_portal(&portal, 2).await.unwrap();
    let rest = transaction.query_portal(&portal, 2).await.unwrap();
    assert_eq!((first.len(), rest.len()), (2, 1));
    assert_eq!(rest[0].get::<_, i64>(0), 3);
    transaction.commit().await.unwrap();

    server.stop().await;
}

/// A prepared query without parameters keeps its physical plan between executions; every
/// change that would make the kept plan wrong has to make it plan again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_plans_of_prepared_statements_see_every_change() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let other = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE kept (id BIGINT, label TEXT); INSERT INTO kept VALUES (1, 'a'), (2, 'b')",
        )
        .await
        .unwrap();
    let count = client
        .prepare("SELECT count(*), max(id) FROM kept WHERE label <> 'z'")
        .await
        .unwrap();
    let counted = |rows: Vec<tokio_postgres::Row>| {
        (rows[0].get::<_, i64>(0), rows[0].get::<_, Option<i64>>(1))
    };
    let run = async |client: &Client| counted(client.query(&count, &[]).await.unwrap());
    assert_eq!(run(&client).await, (2, Some(2)));
    assert_eq!(run(&client).await, (2, Some(2)));

    // A write from this session and one from another: each commit is a new snapshot. (DEFAULT
    // beside a parameter: a label without a default is NULL, which the count leaves out.)
    client
        .execute("INSERT INTO kept VALUES ($1, DEFAULT)", &[&9i64])
        .await
        .unwrap();
    assert_eq!(run(&client).await, (2, Some(2)));
    assert_eq!(
        simple_rows(&client, "SELECT id FROM kept WHERE label IS NULL").await,
        [[Some("9".into())]]
    );
    client
        .execute("INSERT INTO kept VALUES (3, 'c')", &[])
        .await
        .unwrap();
    assert_eq!(run(&client).await, (3, Some(3)));
    other
        .execute("INSERT INTO kept VALUES (4, 'd')", &[])
        .await
        .unwrap();
    assert_eq!(run(&client).await, (4, Some(4)));

    // Inside a transaction block the block's own writes count; after ROLLBACK they are gone.
    let transaction = client.transaction().await.unwrap();
    transaction
        .execute("INSERT INTO kept VALUES (5, 'e')", &[])
        .await
        .unwrap();
    assert_eq!(
        counted(transaction.query(&count, &[]).await.unwrap()),
        (5, Some(5))
    );
    transaction.rollback().await.unwrap();
    assert_eq!(run(&client).await, (4, Some(4)));

    // A table dropped and made again under the same name by another session: the statement
    // is planned again against the new table, as PostgreSQL does.
    other
        .batch_execute("DROP TABLE kept; CREATE TABLE kept (id BIGINT, label TEXT)")
        .await
        .unwrap();
    assert_eq!(run(&client).await, (0, None));
    other
        .execute("INSERT INTO kept VALUES (7, 'g')", &[])
        .await
        .unwrap();
    assert_eq!(run(&client).await, (1, Some(7)));

    // Functions that are not immutable are evaluated at each execution.
    let clock = client
        .prepare("SELECT CAST(now() AS TEXT), CAST(random() AS TEXT)")
        .await
        .unwrap();
    let first = client.query_one(&clock, &[]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = client.query_one(&clock, &[]).await.unwrap();
    assert_ne!(first.get::<_, &str>(0), second.get::<_, &str>(0));
    assert_ne!(first.get::<_, &str>(1), second.get::<_, &str>(1));

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstates_and_the_session_survives() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (a BIGINT NOT NULL, b TEXT)")
        .await
        .unwrap();

    let cases: &[(&str, SqlState)] = &[
        ("SELECT * FROM no_such_table", SqlState::UNDEFINED_TABLE),
        ("SELECT no_such_column FROM t", SqlState::UNDEFINED_COLUMN),
        ("SELEC 1", SqlState::SYNTAX_ERROR),
        ("SELECT no_such_function(1)", SqlState::UNDEFINED_FUNCTION),
        (
            "SELECT CAST('x1' AS BIGINT)",
            SqlState::INVALID_TEXT_REPRESENTATION,
        ),
        (
            "INSERT INTO t VALUES (NULL, 'x')",
            SqlState::NOT_NULL_VIOLATION,
        ),
        ("CREATE TABLE t (a INT)", SqlState::DUPLICATE_TABLE),
        ("SET no_such_setting = 1", SqlState::UNDEFINED_OBJECT),
        (
            "SELECT churn_score('no_model', 1)",
            SqlState::UNDEFINED_OBJECT,
        ),
    ];
    for (sql, expected) in cases {
        let code = sqlstate(client.simple_query(sql).await);
        assert_eq!(code, expected.code(), "{sql}");
        // And through the extended protocol.
        let code = sqlstate(client.query(*sql, &[]).await);
        assert_eq!(code, expected.code(), "{sql} (extended)");
        // The session keeps working after each error.
        assert_eq!(
            simple_rows(&client, "SELECT 41 + 1").await,
            [[Some("42".into())]]
        );
    }

    // A NULL parameter for a NOT NULL column.
    let code = sqlstate(
        client
            .execute("INSERT INTO t VALUES ($1, $2)", &[&None::<i64>, &"x"])
            .await,
    );
    assert_eq!(code, SqlState::NOT_NULL_VIOLATION.code());

    // Wrong parameter count and an unknown prepared statement are errors, not crashes.
    assert!(client.query("SELECT $1::BIGINT", &[]).await.is_err());
    assert_eq!(
        simple_rows(&client, "SELECT count(*) FROM t").await,
        [[Some("0".into())]]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_version_and_transactions() {
    let server = TestServer::start().await;
    let client = server.connect().await;

    let version = simple_rows(&client, "SELECT version()").await;
    let version = version[0][0].clone().unwrap();
    assert!(version.starts_with("PostgreSQL 15."), "{version}");
    assert!(version.contains("tenure"), "{version}");
    assert_eq!(
        simple_rows(&client, "SELECT current_database()").await,
        [[Some("tenure".into())]]
    );

    client
        .batch_execute("SET DateStyle = 'ISO, DMY'")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&client, "SHOW DateStyle").await,
        [[Some("ISO, DMY".into())]]
    );
    client
        .batch_execute("SET application_name TO 'reports'; SET extra_float_digits = 3")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&client, "SELECT current_setting('application_name')").await,
        [[Some("reports".into())]]
    );
    client
        .batch_execute("RESET application_name")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&client, "SHOW application_name").await,
        [[Some(String::new())]]
    );
    let all = simple_rows(&client, "SHOW ALL").await;
    assert!(
        all.iter()
            .any(|r| r[0].as_deref() == Some("server_version"))
    );

    // A transaction block reads and writes (tests/transactions.rs has the rest); CREATE
    // MODEL refuses to run in one, and the block then fails until ROLLBACK, as in
    // PostgreSQL.
    client
        .batch_execute("CREATE TABLE kept (x BIGINT)")
        .await
        .unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        simple_rows(&client, "SELECT count(*) FROM kept").await,
        [[Some("0".into())]]
    );
    client
        .batch_execute("INSERT INTO kept VALUES (1)")
        .await
        .unwrap();
    let code = sqlstate(
        client
            .simple_query("CREATE MODEL m KIND churn_classifier TARGET x AS SELECT x FROM kept")
            .await,
    );
    assert_eq!(code, SqlState::ACTIVE_SQL_TRANSACTION.code());
    let code = sqlstate(client.simple_query("SELECT 1").await);
    assert_eq!(code, SqlState::IN_FAILED_SQL_TRANSACTION.code());
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        simple_rows(&client, "SELECT count(*) FROM kept").await,
        [[Some("0".into())]]
    );
    client
        .batch_execute("INSERT INTO kept VALUES (1)")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&client, "SELECT count(*) FROM kept").await,
        [[Some("1".into())]]
    );

    // Settings are per session.
    let other = server.connect().await;
    assert_eq!(
        simple_rows(&other, "SHOW DateStyle").await,
        [[Some("ISO, MDY".into())]]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_fetch_a_result_piece_by_piece() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    let numbers = "SELECT x FROM generate_series(1, 10) AS g(x) ORDER BY x";
    let fetched = |rows: Vec<Vec<Option<String>>>| -> String {
        rows.iter()
            .map(|r| r[0].clone().unwrap())
            .collect::<Vec<_>>()
            .join(",")
    };

    // Without WITH HOLD a cursor needs a transaction block, as in PostgreSQL.
    assert_eq!(
        sqlstate(
            client
                .simple_query(&format!("DECLARE c CURSOR FOR {numbers}"))
                .await
        ),
        SqlState::NO_ACTIVE_SQL_TRANSACTION.code()
    );
    client
        .batch_execute(&format!("BEGIN; DECLARE c NO SCROLL CURSOR FOR {numbers}"))
        .await
        .unwrap();
    assert_eq!(
        fetched(simple_rows(&client, "FETCH 3 FROM c").await),
        "1,2,3"
    );
    assert_eq!(
        fetched(simple_rows(&client, "FETCH FORWARD 4 FROM c").await),
        "4,5,6,7"
    );
    // MOVE skips rows without sending them and says how many it moved.
    let moved = client.simple_query("MOVE FORWARD 1 FROM c").await.unwrap();
    assert!(
        matches!(moved.as_slice(), [SimpleQueryMessage::CommandComplete(1)]),
        "{moved:?}"
    );
    assert_eq!(
        fetched(simple_rows(&client, "FETCH NEXT FROM c").await),
        "9"
    );
    assert_eq!(
        sqlstate(client.simple_query("MOVE BACKWARD 1 FROM c").await),
        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE.code()
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    client
        .batch_execute(&format!(
            "BEGIN; DECLARE c NO SCROLL CURSOR FOR {numbers}; MOVE 7 FROM c"
        ))
        .await
        .unwrap();
    assert_eq!(
        fetched(simple_rows(&client, "FETCH NEXT FROM c").await),
        "8"
    );
    // The extended protocol describes a FETCH by its cursor's columns.
    let rows = client.query("FETCH ALL FROM c", &[]).await.unwrap();
    let values: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(values, [9, 10]);
    assert_eq!(rows[0].columns()[0].name(), "x");
    assert!(simple_rows(&client, "FETCH 5 FROM c").await.is_empty());
    assert_eq!(
        sqlstate(
            client
                .simple_query(&format!("DECLARE c CURSOR FOR {numbers}"))
                .await
        ),
        "42P03"
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        sqlstate(client.simple_query("FETCH 1 FROM c").await),
        SqlState::INVALID_CURSOR_NAME.code()
    );

    // Forward only; a backward fetch fails the block.
    client
        .batch_execute(&format!("BEGIN; DECLARE c CURSOR FOR {numbers}"))
        .await
        .unwrap();
    assert_eq!(
        sqlstate(client.simple_query("FETCH BACKWARD 1 FROM c").await),
        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE.code()
    );
    client.batch_execute("ROLLBACK").await.unwrap();

    // A SCROLL cursor goes both ways. Each step and its rows (or MOVE's count) as
    // PostgreSQL 15.18 answered the same steps.
    client
        .batch_execute(&format!("BEGIN; DECLARE s SCROLL CURSOR FOR {numbers}"))
        .await
        .unwrap();
    let steps = [
        ("FETCH 3 FROM s", "1,2,3"),
        ("FETCH PRIOR FROM s", "2"),
        ("FETCH BACKWARD 5 FROM s", "1"),
        ("FETCH NEXT FROM s", "1"),
        ("FETCH ABSOLUTE 7 FROM s", "7"),
        ("FETCH RELATIVE -2 FROM s", "5"),
        ("FETCH RELATIVE 0 FROM s", "5"),
        ("FETCH LAST FROM s", "10"),
        ("FETCH NEXT FROM s", ""),
        ("FETCH PRIOR FROM s", "10"),
        ("FETCH ABSOLUTE -3 FROM s", "8"),
        ("FETCH FIRST FROM s", "1"),
        ("FETCH ABSOLUTE 20 FROM s", ""),
        ("FETCH BACKWARD 2 FROM s", "10,9"),
        ("FETCH ALL FROM s", "10"),
        ("FETCH BACKWARD ALL FROM s", "10,9,8,7,6,5,4,3,2,1"),
        ("MOVE ABSOLUTE 4 IN s", "MOVE 1"),
        ("FETCH FORWARD 0 FROM s", "4"),
        ("MOVE FORWARD 100 FROM s", "MOVE 6"),
        ("MOVE BACKWARD 3 FROM s", "MOVE 3"),
        ("FETCH -2 FROM s", "7,6"),
        ("FETCH ABSOLUTE 0 FROM s", ""),
        ("FETCH RELATIVE 3 FROM s", "3"),
        ("FETCH ABSOLUTE -20 FROM s", ""),
        ("FETCH s", "1"),
    ];
    for (step, expected) in steps {
        let answer = match client.simple_query(step).await.unwrap().as_slice() {
            [SimpleQueryMessage::CommandComplete(n)] if step.starts_with("MOVE") => {
                format!("MOVE {n}")
            }
            messages => messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(","),
        };
        assert_eq!(answer, expected, "{step}");
    }
    // Without SCROLL a cursor still skips forward to an ABSOLUTE or RELATIVE row.
    client
        .batch_execute(&format!("DECLARE f CURSOR FOR {numbers}; MOVE 2 FROM f"))
        .await
        .unwrap();
    assert_eq!(
        fetched(simple_rows(&client, "FETCH ABSOLUTE 5 FROM f").await),
        "5"
    );
    assert_eq!(
        fetched(simple_rows(&client, "FETCH RELATIVE 2 FROM f").await),
        "7"
    );
    assert_eq!(
        sqlstate(client.simple_query("FETCH ABSOLUTE 1 FROM f").await),
        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE.code()
    );
    client.batch_execute("ROLLBACK").await.unwrap();

    // WITH HOLD outlives its block until CLOSE.
    client
        .batch_execute(&format!(
            "BEGIN; DECLARE held CURSOR WITH HOLD FOR {numbers}; COMMIT"
        ))
        .await
        .unwrap();
    assert_eq!(
        fetched(simple_rows(&client, "FETCH 2 FROM held").await),
        "1,2"
    );
    client.batch_execute("CLOSE held").await.unwrap();
    assert_eq!(
        sqlstate(client.simple_query("CLOSE held").await),
        SqlState::INVALID_CURSOR_NAME.code()
    );

    // psql reads a result through a cursor when FETCH_COUNT is set.
    let (ok, out, err) = server.psql(&[
        "-v",
        "FETCH_COUNT=3",
        "-A",
        "-t",
        "-c",
        "SELECT x FROM generate_series(1, 10) AS g(x) ORDER BY x",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>().join(","),
        "1,2,3,4,5,6,7,8,9,10"
    );
    server.stop().await;
}

/// pgjdbc (tests/clients/JdbcMetadata.java) with the driver jar in TENURE_TEST_JDBC_JAR and
/// `java` on the PATH. Without them the test says so and passes, unless
/// TENURE_REQUIRE_CLIENT_TESTS=1 (set by .ci/run) makes that a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_database_metadata() {
    let Ok(jar) = std::env::var("TENURE_TEST_JDBC_JAR") else {
        assert!(
            std::env::var_os("TENURE_REQUIRE_CLIENT_TESTS").is_none(),
            "TENURE_REQUIRE_CLIENT_TESTS is set but TENURE_TEST_JDBC_JAR is not"
        );
        eprintln!("skipping the pgjdbc test: set TENURE_TEST_JDBC_JAR to postgresql.jar");
        return;
    };
    let server = TestServer::start().await;
    let port = server.addr.port().to_string();
    let program = project_file("tests/clients/JdbcMetadata.java");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("java")
            .args(["-cp", &jar])
            .arg(program)
            .arg(&port)
            .output()
    })
    .await
    .unwrap()
    .expect("java runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "pgjdbc:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "product: PostgreSQL 15.0 (tenure 0.1.0)",
            "getCatalogs: 1 rows: tenure",
            "getSchemas: 3 rows: pg_catalog;public;tenure",
            "getTables: 3 rows: null|public|jdbc_customers|TABLE;\
             null|public|jdbc_orders|TABLE;null|public|jdbc_big|VIEW",
            "getColumns: 4 rows: null|public|jdbc_orders|id|-5|int8|19;\
             null|public|jdbc_orders|customer|-5|int8|19;\
             null|public|jdbc_orders|amount|8|float8|17;\
             null|public|jdbc_orders|at|93|timestamp|29",
            // TABLE_SCHEM, TABLE_NAME, COLUMN_NAME, KEY_SEQ, PK_NAME
            "getPrimaryKeys: 2 rows: null|public|jdbc_orders|id|1|jdbc_orders_key;\
             null|public|jdbc_orders|at|2|jdbc_orders_key",
            // PK table and column, FK table and column, KEY_SEQ, UPDATE_RULE and
            // DELETE_RULE (3: no action), FK_NAME
            "getImportedKeys: 1 rows: null|public|jdbc_customers|id|null|public|jdbc_orders|\
             customer|1|3|3|jdbc_orders_customer_fkey",
            "getExportedKeys: 1 rows: null|public|jdbc_customers|id|null|public|jdbc_orders|\
             customer",
            // NON_UNIQUE, INDEX_NAME, TYPE (3: other), ORDINAL_POSITION, COLUMN_NAME
            "getIndexInfo: 2 rows: null|public|jdbc_customers|f|null|jdbc_customers_email_key|\
             3|1|email;null|public|jdbc_customers|f|null|jdbc_customers_pkey|3|1|id",
            "getTypeInfo: 20 or more types; int8|-5",
            "prepared: 0",
            // label=schema.table.column:nullable (0 no, 1 yes, 2 unknown), as PostgreSQL 15
            // answers: the RowDescription's table oid and column number, and pg_catalog.
            "resultSetMetaData: amount=public.jdbc_orders.amount:1;\
             order_id=public.jdbc_orders.id:0;email=public.jdbc_customers.email:1;doubled=..:2",
        ],
        "{stdout}"
    );
    server.stop().await;
}

/// A query that runs for many seconds on two cores.
const SLOW_QUERY: &str =
    "SELECT count(*) FROM generate_series(1, 5000000000) AS g(x) WHERE x % 7 = 3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_statement_timeout_stop_a_query_and_keep_the_connection() {
    let server = TestServer::start().await;
    let client = Arc::new(server.connect().await);

    // CancelRequest from a second connection, as psql's Ctrl-C sends it.
    let token = client.cancel_token();
    let running = {
        let client = client.clone();
        tokio::spawn(async move { client.simple_query(SLOW_QUERY).await })
    };
    // A cancel that arrives before the query starts is ignored (as in PostgreSQL): repeat.
    while !running.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        token.cancel_query(NoTls).await.unwrap();
    }
    let code = sqlstate(running.await.unwrap());
    assert_eq!(code, SqlState::QUERY_CANCELED.code());
    // tokio-postgres's cancel_query returns once the request is written, so the loop's last
    // one may still be on its way: let it land on the idle session (where it is ignored)
    // rather than on the next query.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(simple_rows(&client, "SELECT 1").await, [[Some("1".into())]]);

    client
        .batch_execute("SET statement_timeout = '300ms'")
        .await
        .unwrap();
    let code = sqlstate(client.simple_query(SLOW_QUERY).await);
    assert_eq!(code, SqlState::QUERY_CANCELED.code());
    let code = sqlstate(client.query(SLOW_QUERY, &[]).await);
    assert_eq!(code, SqlState::QUERY_CANCELED.code());
    assert_eq!(simple_rows(&client, "SELECT 2").await, [[Some("2".into())]]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_connections_and_a_slow_query_does_not_stall_the_others() {
    let server = TestServer::start().await;
    let slow = Arc::new(server.connect().await);
    let token = slow.cancel_token();
    let running = {
        let slow = slow.clone();
        tokio::spawn(async move { slow.simple_query(SLOW_QUERY).await })
    };

    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(server.connect().await);
    }
    let answers = futures::future::join_all(clients.iter().enumerate().map(|(i, c)| async move {
        c.query_one("SELECT $1::BIGINT * 2", &[&(i as i64)])
            .await
            .unwrap()
            .get::<_, i64>(0)
    }))
    .await;
    assert_eq!(answers, (0..100).map(|i| i * 2).collect::<Vec<i64>>());
    // The slow query was running all along: the others did not wait for it.
    assert!(
        !running.is_finished(),
        "the slow query should still be running"
    );
    token.cancel_query(NoTls).await.unwrap();
    let _ = running.await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_passwords_and_addresses() {
    let server = TestServer::start_with(|o| o.max_connections = 2).await;
    let _a = server.connect().await;
    let _b = server.connect().await;
    let error = connect_error(&server.url("tenure")).await;
    assert_eq!(
        error.code(),
        Some(&SqlState::TOO_MANY_CONNECTIONS),
        "{error}"
    );
    server.stop().await;

    // Trust mode knows one user and one database.
    let server = TestServer::start().await;
    let error = connect_error(&server.url("mallory")).await;
    assert_eq!(
        error.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    );
    let url = format!(
        "host=127.0.0.1 port={} user=tenure dbname=other",
        server.addr.port()
    );
    let error = connect_error(&url).await;
    assert_eq!(error.code(), Some(&SqlState::INVALID_CATALOG_NAME));
    server.stop().await;

    // SCRAM-SHA-256 with configured users.
    let server = TestServer::start_with(|o| {
        o.users = vec![User {
            name: "analyst".into(),
            password: "s3cret pass".into(),
        }];
    })
    .await;
    let good = format!("{} password='s3cret pass'", server.url("analyst"));
    let client = connect(&good).await;
    assert_eq!(
        simple_rows(&client, "SELECT current_setting('session_authorization')").await,
        [[Some("analyst".into())]]
    );
    let bad = format!("{} password=wrong", server.url("analyst"));
    let error = connect_error(&bad).await;
    assert_eq!(error.code(), Some(&SqlState::INVALID_PASSWORD), "{error}");
    let unknown = format!("{} password=x", server.url("nobody"));
    let error = connect_error(&unknown).await;
    assert_eq!(error.code(), Some(&SqlState::INVALID_PASSWORD), "{error}");
    server.stop().await;

    // Without users the server will not listen beyond loopback.
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "0.0.0.0:0".into(),
        ..Config::default()
    };
    let engine = Arc::new(
        Engine::open(&config, PathAccess::Unrestricted)
            .await
            .unwrap(),
    );
    let refused = Server::bind(
        engine,
        &ServerOptions::from_config(&config),
        tokio::runtime::Handle::current(),
    )
    .await;
    let message = refused.err().expect("refused").to_string();
    assert!(message.contains("without authentication"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_catalog_commands_notices_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::support::self_signed_cert(dir.path());
    let server = TestServer::start_with(|o| o.tls = Some((cert.clone(), key.clone()))).await;

    let (ok, out, err) = server.psql(&[
        "-c",
        "CREATE TABLE customers (customer_id BIGINT PRIMARY KEY, name TEXT, \
         spend DOUBLE PRECISION DEFAULT 0)",
        "-c",
        "CREATE VIEW big_spenders AS SELECT * FROM customers WHERE spend > 100",
        "-c",
        "CREATE INDEX customers_name_idx ON customers (name)",
        "-c",
        "COMMENT ON COLUMN customers.spend IS 'Lifetime spend in EUR'",
        "-c",
        "CREATE SCHEMA marts",
    ]);
    assert!(ok, "{out}{err}");

    // The owner is the configured user (pg_get_userbyid), not PostgreSQL's `postgres`.
    let (ok, out, err) = server.psql(&["-c", "\\dt"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.contains("customers") && l.trim_end().ends_with("| tenure")),
        "\\dt: {out}{err}"
    );
    let (ok, out, err) = server.psql(&["-c", "\\dv"]);
    assert!(ok && out.contains("big_spenders"), "\\dv: {out}{err}");
    // A view's definition (pg_get_viewdef), roles (ARRAY(subquery)), functions.
    let (ok, out, err) = server.psql(&["-c", "\\d+ big_spenders"]);
    assert!(
        ok && out.contains("View definition:")
            && out.contains(" SELECT * FROM customers WHERE spend > 100;"),
        "\\d+ big_spenders: {out}{err}"
    );
    let (ok, out, err) = server.psql(&["-c", "\\sv big_spenders"]);
    assert!(
        ok && out.starts_with("CREATE OR REPLACE VIEW public.big_spenders AS\n SELECT *"),
        "\\sv: {out}{err}"
    );
    let (ok, out, err) = server.psql(&["-c", "\\du"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with(" tenure") && l.contains("Superuser")),
        "\\du: {out}{err}"
    );
    let (ok, out, err) = server.psql(&["-c", "\\df"]);
    assert!(ok && out.contains("List of functions"), "\\df: {out}{err}");
    // The rest of psql 15's listing commands answer (most with no rows: tenure has no
    // domains, operators, text search configurations, event triggers, policies, ...).
    for command in [
        "\\dp",
        "\\z customers",
        "\\dy",
        "\\dX",
        "\\drds",
        "\\dAc",
        "\\dAf",
        "\\dAo",
        "\\dAp",
        "\\di",
        "\\ds",
        "\\dm",
        "\\dE",
        "\\dn+",
        "\\l+",
        "\\dg",
        "\\dT",
        "\\dx",
        "\\dC",
        "\\dD",
        "\\dc",
        "\\do",
        "\\db",
        "\\db+",
        "\\deu",
        "\\dA",
        "\\des",
        "\\dew",
        "\\det",
        "\\dRp",
        "\\dRs",
        "\\dP",
        "\\dconfig",
        "\\dO",
        "\\dL",
        "\\dd",
        "\\dF",
        "\\dFd",
        "\\dFp",
        "\\dFt",
        "\\dt+",
        "\\dv+",
    ] {
        let (ok, out, err) = server.psql(&["-c", command]);
        assert!(ok && !err.contains("ERROR"), "{command}: {out}{err}");
    }
    let (ok, out, err) = server.psql(&["-c", "\\d customers"]);
    assert!(
        ok && out.contains("customer_id")
            && out.contains("bigint")
            && out.contains("\"customers_pkey\" PRIMARY KEY, btree (customer_id)")
            && out.contains("\"customers_name_idx\" btree (name)")
            // The Default column, last.
            && out.lines().any(|l| l.trim_start().starts_with("spend") && l.ends_with("| 0")),
        "\\d customers: {out}{err}"
    );
    // \dt+: the table's size on disk (a few kB of Delta log here), through pg_table_size
    // and pg_size_pretty.
    let (ok, out, err) = server.psql(&["-c", "\\dt+ customers"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.contains("customers") && (l.contains(" bytes ") || l.contains(" kB "))),
        "\\dt+ customers: {out}{err}"
    );
    let (ok, out, err) = server.psql(&["-c", "\\d+ customers"]);
    assert!(
        ok && out.contains("Lifetime spend in EUR"),
        "\\d+ customers: {out}{err}"
    );
    // information_schema's key views, which ORMs and schema tools read.
    let (ok, out, err) = server.psql(&[
        "-t",
        "-A",
        "-c",
        "CREATE TABLE customer_orders (order_id BIGINT PRIMARY KEY, \
         customer_id BIGINT REFERENCES customers, amount NUMERIC(12,2))",
        "-c",
        "SELECT tc.constraint_type, kcu.column_name, kcu.ordinal_position, \
                kcu.position_in_unique_constraint \
         FROM information_schema.table_constraints tc \
         JOIN information_schema.key_column_usage kcu \
           ON kcu.constraint_name = tc.constraint_name AND kcu.table_name = tc.table_name \
         WHERE tc.table_name = 'customer_orders' ORDER BY 1",
        "-c",
        "SELECT unique_constraint_name, delete_rule FROM information_schema.referential_constraints \
         WHERE constraint_name = 'customer_orders_customer_id_fkey'",
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.lines().skip(1).collect::<Vec<_>>(),
        [
            "FOREIGN KEY|customer_id|1|1",
            "PRIMARY KEY|order_id|1|",
            "customers_pkey|NO ACTION"
        ],
        "{out}{err}"
    );
    // Foreign keys on both ends, as psql prints them for PostgreSQL 15 (which needs
    // relhastriggers, pg_trigger, pg_partition_ancestors and regclass names).
    let (ok, out, err) = server.psql(&["-c", "\\d customer_orders"]);
    assert!(
        ok && out.contains("Foreign-key constraints:")
            && out.contains(
                "\"customer_orders_customer_id_fkey\" FOREIGN KEY (customer_id) \
                 REFERENCES customers(customer_id)"
            )
            && out
                .lines()
                .any(|l| l.trim_start().starts_with("amount") && l.contains("numeric(12,2)")),
        "\\d customer_orders: {out}{err}"
    );
    let (ok, out, err) = server.psql(&["-c", "\\d customers"]);
    assert!(
        ok && out.contains("Referenced by:")
            && out.contains(
                "TABLE \"customer_orders\" CONSTRAINT \"customer_orders_customer_id_fkey\" \
                 FOREIGN KEY (customer_id) REFERENCES customers(customer_id)"
            ),
        "\\d customers: {out}{err}"
    );
    // json, jsonb and varchar(n), text underneath, under their own names.
    let (ok, out, err) = server.psql(&[
        "-c",
        "CREATE TABLE documents (id INT, body JSONB, raw JSON, title VARCHAR(40))",
        "-c",
        "\\d documents",
    ]);
    assert!(
        ok && [
            " body   | jsonb                 |",
            " raw    | json                  |",
            " title  | character varying(40) |"
        ]
        .iter()
        .all(|line| out.contains(line)),
        "\\d documents: {out}{err}"
    );
    // information_schema.columns in PostgreSQL's terms (dbt reads column types there).
    let (ok, out, err) = server.psql(&[
        "-t",
        "-A",
        "-c",
        "SELECT table_name, column_name, ordinal_position, data_type, numeric_precision, \
                numeric_scale, column_default, udt_name FROM information_schema.columns \
         WHERE table_name IN ('customers', 'customer_orders') ORDER BY 1, 3",
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "customer_orders|order_id|1|bigint|64|0||int8",
            "customer_orders|customer_id|2|bigint|64|0||int8",
            "customer_orders|amount|3|numeric|12|2||numeric",
            "customers|customer_id|1|bigint|64|0||int8",
            "customers|name|2|text||||text",
            "customers|spend|3|double precision|53||0|float8",
        ],
        "{out}{err}"
    );
    // A regclass shows the relation's name; a name that is no relation is an error (42P01).
    let (ok, out, err) = server.psql(&[
        "-t",
        "-A",
        "-c",
        "SELECT conrelid::regclass, confrelid::regclass::text, 'customers'::regclass \
         FROM pg_catalog.pg_constraint WHERE contype = 'f'",
    ]);
    assert!(
        ok && out.trim() == "customer_orders|customers|customers",
        "{out}{err}"
    );
    for query in [
        "SELECT 'nonesuch'::regclass",
        "SELECT pg_table_size('nonesuch')",
    ] {
        let (ok, out, err) = server.psql(&["-v", "VERBOSITY=verbose", "-c", query]);
        assert!(
            !ok && err.contains("42P01") && err.contains("relation \"nonesuch\" does not exist"),
            "{query}: {out}{err}"
        );
    }
    let (ok, out, err) = server.psql(&["-c", "\\dn"]);
    assert!(
        ok && out.contains("marts") && out.contains("public"),
        "\\dn: {out}{err}"
    );
    let (ok, out, err) = server.psql(&["-c", "\\l"]);
    assert!(ok && out.contains("tenure"), "\\l: {out}{err}");

    // Training over the wire: a NOTICE per epoch reaches psql.
    let (ok, out, err) = server.psql(&[
        "-c",
        "CREATE TABLE train AS SELECT x::DOUBLE PRECISION AS f, (x % 2 = 0) AS y \
         FROM generate_series(1, 400) AS g(x)",
        "-c",
        "CREATE MODEL parity KIND churn_classifier TARGET y OPTIONS (epochs = 3, hidden = '8') \
         AS SELECT f, y FROM train",
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("NOTICE:") && err.contains("epoch 1/3"),
        "{err}"
    );
    // SET tenure.device chooses the device of the session's trainings; without CUDA compiled
    // in (the default build) that is a clear error.
    let (ok, out, err) = server.psql(&[
        "-c",
        "SET tenure.device = 'cuda:0'",
        "-c",
        "CREATE MODEL parity_gpu KIND churn_classifier TARGET y OPTIONS (epochs = 1) \
         AS SELECT f, y FROM train",
    ]);
    if !cfg!(feature = "cuda") {
        assert!(!ok && err.to_lowercase().contains("cuda"), "{out}{err}");
    }

    // TLS: sslmode=require works with the configured certificate.
    let output = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=tenure dbname=tenure sslmode=require",
            server.addr.port()
        ))
        .args(["-X", "-t", "-A", "-c", "SELECT count(*) FROM customers"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "0");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_an_error_or_a_closed_socket_never_a_crash() {
    let server = TestServer::start().await;
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        // Garbage instead of a startup message.
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        socket
            .write_all(b"\x00\x00\x00\x08garbage-garbage")
            .unwrap();
        let mut buffer = Vec::new();
        let _ = socket.read_to_end(&mut buffer);

        // A startup message claiming a huge length.
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        socket
            .write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])
            .unwrap();
        let _ = socket.read_to_end(&mut buffer);
    })
    .await
    .unwrap();

    let client = server.connect().await;
    // A 10 MB query string: answered (here a syntax error), not a crash.
    let huge = format!("SELECT 1 {}", "+ ".repeat(5_000_000));
    assert!(client.simple_query(&huge).await.is_err());
    // A client that disconnects in the middle of a large result.
    {
        let quitter = server.connect().await;
        let task = tokio::spawn(async move {
            quitter
                .simple_query("SELECT x FROM generate_series(1, 50000000) AS g(x)")
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        task.abort();
    }
    assert_eq!(simple_rows(&client, "SELECT 3").await, [[Some("3".into())]]);
    server.stop().await;
}

/// The `tenure serve` binary on `data_dir` and a free port, once it listens; its log at
/// `log` level goes to `stderr`.
pub(crate) fn spawn_serve(
    data_dir: &std::path::Path,
    log: &str,
    stderr: Stdio,
) -> (std::process::Child, u16) {
    let port = free_port();
    let mut child = tenure_bin()
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", log)
        .stderr(stderr)
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child);
    (child, port)
}

#[test]
fn serve_drains_and_exits_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = spawn_serve(dir.path(), "info", Stdio::piped());
    let output = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user=tenure dbname=tenure"
        ))
        .args(["-X", "-t", "-A", "-c", "SELECT 40 + 2"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "42");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("shutting down"), "{log}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut std::process::Child) {
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("tenure serve exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("tenure serve did not listen on {port}");
}

/// psycopg 3, psycopg2, asyncpg and SQLAlchemy (tests/clients/python_clients.py), with the
/// interpreter in TENURE_TEST_PYTHON. Without it the test says so and passes, unless
/// TENURE_REQUIRE_CLIENT_TESTS=1 (set by .ci/run) makes that a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_drivers_and_sqlalchemy() {
    let server = TestServer::start().await;
    python_client("python_clients.py", server.addr.port()).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_and_from_stdin() {
    let server = TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute(
            "CREATE TABLE src (id BIGINT NOT NULL, name TEXT, amount DOUBLE PRECISION, day DATE); \
             INSERT INTO src VALUES (1, 'ann', 1.5, DATE '2024-01-02'), \
             (2, 'tab\there', NULL, NULL), (3, 'comma, \"quoted\"', -2.25, DATE '2024-03-04'); \
             CREATE TABLE dst (id BIGINT NOT NULL, name TEXT, amount DOUBLE PRECISION, day DATE)",
        )
        .await
        .unwrap();

    // psql's \copy in text and CSV, out and back in.
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("src.tsv");
    let csv = dir.path().join("src.csv");
    let (ok, out, err) = server.psql(&[
        "-c",
        &format!(
            "\\copy (SELECT * FROM src ORDER BY id) TO '{}'",
            text.display()
        ),
        "-c",
        &format!(
            "\\copy src TO '{}' WITH (FORMAT csv, HEADER)",
            csv.display()
        ),
    ]);
    assert!(ok, "{out}{err}");
    let written = std::fs::read_to_string(&text).unwrap();
    assert_eq!(
        written,
        "1\tann\t1.5\t2024-01-02\n2\ttab\\there\t\\N\t\\N\n3\tcomma, \"quoted\"\t-2.25\t2024-03-04\n"
    );
    let written = std::fs::read_to_string(&csv).unwrap();
    assert!(written.starts_with("id,name,amount,day\n"), "{written}");
    assert!(written.contains("\"comma, \"\"quoted\"\"\""), "{written}");

    let (ok, out, err) = server.psql(&[
        "-c",
        &format!("\\copy dst FROM '{}'", text.display()),
        "-c",
        &format!(
            "\\copy dst FROM '{}' WITH (FORMAT csv, HEADER)",
            csv.display()
        ),
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("COPY 3"), "{out}");
    let same = simple_rows(
        &client,
        "SELECT count(*) FROM (SELECT id, name, amount, day FROM dst \
         EXCEPT SELECT id, name, amount, day FROM src)",
    )
    .await;
    assert_eq!(same, [[Some("0".into())]]);
    assert_eq!(
        simple_rows(&client, "SELECT count(*) FROM dst").await,
        [[Some("6".into())]]
    );

    // A subset of columns; the others are NULL. A bad value names its column and
    // nothing is written.
    let (ok, out, err) = server.psql_with_input(
        &["-c", "COPY dst (id, name) FROM STDIN"],
        b"10\tten\n11\televen\n",
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        simple_rows(&client, "SELECT name, amount FROM dst WHERE id = 11").await,
        [[Some("eleven".into()), None]]
    );
    let (ok, out, err) = server.psql_with_input(
        &["-c", "COPY dst (id, amount) FROM STDIN"],
        b"12\t1.0\n13\tlots\n",
    );
    assert!(!ok && err.contains("column amount"), "{out}{err}");
    assert_eq!(
        simple_rows(&client, "SELECT count(*) FROM dst WHERE id >= 12").await,
        [[Some("0".into())]]
    );
    // The connection that saw the error goes on.
    assert_eq!(
        simple_rows(&client, "SELECT count(*) FROM dst").await,
        [[Some("8".into())]]
    );

    // A load of several chunks (the server parses a megabyte at a time) in many CopyData
    // messages, lines cut across them: every row arrives, in one commit.
    client
        .batch_execute("CREATE TABLE big (id BIGINT NOT NULL, label TEXT, score DOUBLE PRECISION)")
        .await
        .unwrap();
    let rows = 150_000;
    let data: Vec<u8> = (0..rows)
        .map(|i| format!("{i}\tlabel number {i} of the load\t{}.5\n", i % 100))
        .collect::<String>()
        .into_bytes();
    assert!(data.len() > 3 << 20, "{} bytes", data.len());
    let load = async |client: &Client, data: &[u8], finish: bool| {
        let sink = client
            .copy_in::<_, bytes::Bytes>("COPY big FROM STDIN")
            .await
            .unwrap();
        futures::pin_mut!(sink);
        for piece in data.chunks(65_521) {
            futures::SinkExt::send(&mut sink, bytes::Bytes::copy_from_slice(piece))
                .await
                .unwrap();
        }
        if finish {
            Some(sink.finish().await)
        } else {
            // Dropped unfinished: tokio-postgres sends CopyFail.
            None
        }
    };
    assert_eq!(load(&client, &data, true).await.unwrap().unwrap(), rows);
    assert_eq!(
        simple_rows(
            &client,
            "SELECT count(*), sum(id), count(DISTINCT label) FROM big"
        )
        .await,
        [[
            Some(rows.to_string()),
            Some((rows * (rows - 1) / 2).to_string()),
            Some(rows.to_string())
        ]]
    );
    // A bad value past the first chunk: the chunks before it are not written either.
    let mut bad = data.clone();
    bad.extend_from_slice(b"150000\tlast\tnot a number\n");
    let error = load(&client, &bad, true).await.unwrap().unwrap_err();
    assert_eq!(
        error.code(),
        Some(&SqlState::INVALID_TEXT_REPRESENTATION),
        "{error}"
    );
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("column score")),
        "{message:?}"
    );
    // A NULL in the NOT NULL column names its line.
    let error = load(&client, b"1\tx\t1\n\\N\ty\t2\n", true)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::NOT_NULL_VIOLATION), "{error}");
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("line 2")),
        "{message:?}"
    );
    // A COPY the client gives up on (CopyFail) writes nothing.
    assert!(load(&client, &data, false).await.is_none());
    assert_eq!(
        simple_rows(&client, "SELECT count(*) FROM big").await,
        [[Some(rows.to_string())]]
    );
    server.stop().await;
}
