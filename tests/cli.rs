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
        out.contains(" sql -c \"SELECT count(*) FROM orders\""),
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
        table.starts_with(" k | v\n---+---\n a | 1\n b | 2\n(2 rows)\n"),
        "{table}"
    );
    assert!(
        table.contains(" k      | text    |"),
        "\\d shows PostgreSQL's column types: {table}"
    );
    assert!(table.contains(" v      | integer |"), "{table}");
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
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        " count\n-------\n     0\n(1 row)\n\n",
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

/// The shell prints what psql would: PostgreSQL's column names and text values, CSV and
/// JSON that keep every value, timing apart from the rows, the user's own relations.
#[test]
fn the_shell_answers_as_psql_does() {
    let dir = tempfile::tempdir().unwrap();
    tenure_ok(
        dir.path(),
        &[
            "sql",
            "-c",
            "CREATE TABLE t (id INT, name TEXT, v NUMERIC(12,2)); \
             INSERT INTO t VALUES (1, 'a', 2.5), (2, NULL, NULL)",
        ],
    );
    // Column names as PostgreSQL gives them; values in its text forms.
    let out = tenure_ok(
        dir.path(),
        &[
            "sql",
            "-c",
            "SELECT round(avg(v), 1), count(*), 1 + 1, '7'::int, ARRAY[1, 2], \
             CASE WHEN true THEN 'y' END, 0.1::float8 + 0.2 FROM t",
        ],
    );
    assert_eq!(
        out,
        " round | count | ?column? | int4 | array | case |      ?column?\n\
         -------+-------+----------+------+-------+------+---------------------\n   \
         2.5 |     2 |        2 |    7 | {1,2} | y    | 0.30000000000000004\n\
         (1 row)\n\n"
    );
    // CSV keeps lists and records in PostgreSQL's text forms (and NULL as nothing); JSON
    // keeps NULL keys and writes non-finite floats as strings; --timing goes to stderr.
    let list_query = "SELECT ARRAY['a', 'b c'] AS tags, named_struct('n', 1, 's', 'x') AS pair, \
                      NULL::int AS missing, 'NaN'::double AS nan, 'Infinity'::double AS inf";
    let output = tenure(
        dir.path(),
        &["sql", "--format", "csv", "--timing", "-c", list_query],
    );
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "tags,pair,missing,nan,inf\n\"{a,\"\"b c\"\"}\",\"(1,x)\",,NaN,Infinity\n"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("Time: "));
    let json = tenure_ok(dir.path(), &["sql", "--format", "json", "-c", list_query]);
    assert_eq!(
        json,
        "[{\"tags\":[\"a\",\"b c\"],\"pair\":{\"n\":1,\"s\":\"x\"},\"missing\":null,\
         \"nan\":\"NaN\",\"inf\":\"Infinity\"}]\n"
    );
    // \d lists the user's relations; \dS the system's too; an unknown one is an error.
    let listed = tenure_ok(dir.path(), &["sql", "-c", "\\d"]);
    assert!(listed.contains(" public | t    | table"), "{listed}");
    assert!(!listed.contains("pg_catalog"), "{listed}");
    let system = tenure_ok(dir.path(), &["sql", "-c", "\\dS"]);
    assert!(system.contains("pg_catalog"), "{system}");
    let unknown = tenure(dir.path(), &["sql", "-c", "\\d nosuch"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("Did not find any relation named \"nosuch\""),
        "{unknown:?}"
    );
    // A script may start with a comment, which clap would otherwise take for a flag.
    let commented = tenure_ok(dir.path(), &["sql", "-c", "-- the answer\nSELECT 42 AS x"]);
    assert!(commented.contains("42"), "{commented}");
    // A VALUES list inside INSERT ... SELECT plans as it does alone.
    let inserted = tenure_ok(
        dir.path(),
        &[
            "sql",
            "-c",
            "INSERT INTO t (id, name) SELECT x, 'y' FROM (VALUES (10), (11)) v(x)",
        ],
    );
    assert!(inserted.contains("INSERT 2"), "{inserted}");
}

/// Bad values fail in PostgreSQL's words; a value too large for its column names the table,
/// the column and the value.
#[test]
fn value_errors_read_as_postgresql_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    tenure_ok(
        dir.path(),
        &[
            "sql",
            "-c",
            "CREATE TABLE t (id INT, name TEXT, v NUMERIC(12,2))",
        ],
    );
    for (sql, expected) in [
        (
            "SELECT 'x'::int",
            "invalid input syntax for type integer: \"x\"",
        ),
        (
            "SELECT 'x'::date",
            "invalid input syntax for type date: \"x\"",
        ),
        ("SELECT 3000000000::int", "integer out of range"),
        (
            "INSERT INTO t VALUES (7, 'x', 123456789012.5)",
            "invalid value for column v of table public.t: numeric field overflow: \
             123456789012.50 does not fit numeric(12,2)",
        ),
        (
            "INSERT INTO t VALUES ('seven', 'x', 1)",
            "invalid value for column id of table public.t: invalid input syntax for type \
             integer: \"seven\"",
        ),
    ] {
        let out = tenure(dir.path(), &["sql", "-c", sql]);
        assert!(!out.status.success(), "{sql} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{sql}: {stderr}");
    }
}

/// `sql` and `serve` open only a tenure data directory (or an empty one) unless told to
/// create one, so a typo in --data-dir does not start an empty database.
#[test]
fn data_directories_are_checked_before_use() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("tenure-dta");
    let out = tenure(&typo, &["sql", "-c", "SELECT 1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("data directory {} does not exist", typo.display()))
            && stderr.contains("--create"),
        "{stderr}"
    );
    assert!(!typo.exists(), "nothing was created");
    // With --create it is made; afterwards it opens without.
    tenure_ok(&typo, &["sql", "--create", "-c", "CREATE TABLE t (a INT)"]);
    tenure_ok(&typo, &["sql", "-c", "SELECT * FROM t"]);
    // Inside another data directory: refused, even with --create.
    let inside = typo.join("tables");
    let out = tenure(&inside, &["sql", "--create", "-c", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is inside the tenure data directory"),
        "{out:?}"
    );
    // A file, and a directory that holds something else.
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "x").unwrap();
    let out = tenure(&file, &["sql", "--create", "-c", "SELECT 1"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a file, not a directory"),
        "{out:?}"
    );
    let other = dir.path().join("photos");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("cat.jpg"), "x").unwrap();
    let out = tenure(&other, &["sql", "-c", "SELECT 1"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a tenure data directory"),
        "{out:?}"
    );
    // demo creates, and its hints carry the --data-dir they need; following one works.
    let demo = dir.path().join("shop");
    let out = tenure_ok(&demo, &["demo", "--scale", "0.01"]);
    let hint = out
        .lines()
        .find(|l| l.contains("SELECT count(*) FROM orders"))
        .expect("a hint");
    assert!(
        hint.contains(&format!("tenure --data-dir {} sql -c", demo.display())),
        "{out}"
    );
    let counted = tenure_ok(&demo, &["sql", "-c", "SELECT count(*) FROM orders"]);
    assert!(counted.contains("(1 row)"), "{counted}");
}

/// Ctrl-C (SIGINT) stops the running statement, a training included, which then stores no
/// version; the first epoch's report says how long the rest may take.
#[test]
fn ctrl_c_cancels_the_running_statement() {
    use std::io::BufRead;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    tenure_ok(dir.path(), &["demo", "--scale", "0.02"]);
    let interrupt_when = |sql: &str, ready: &dyn Fn(&str) -> bool| -> String {
        let mut child = tenure_bin()
            .arg("--data-dir")
            .arg(dir.path())
            .args(["sql", "-c", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, received) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines.send(line);
            }
        });
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ready("") && !seen.iter().any(|l: &String| ready(l)) {
            match received.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    assert!(
                        Instant::now() < deadline,
                        "{sql} did not get going: {seen:?}"
                    );
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{sql} ended before it was interrupted: {seen:?}")
                }
            }
        }
        let interrupted = Instant::now();
        let kill = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                interrupted.elapsed() < Duration::from_secs(30),
                "{sql} still runs 30 s after Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "{sql} ended as if it had finished");
        seen.extend(received.try_iter());
        seen.join("\n")
    };

    let training = "CREATE MODEL endless KIND churn_classifier TARGET churned \
                    OPTIONS (epochs = 10000, patience = 10000, hidden = '64,64') \
                    AS SELECT recency_days, frequency, tenure_days, device, churned \
                    FROM churn_features";
    let stderr = interrupt_when(training, &|line| line.contains("epoch 2/"));
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the other 9999 epochs take at most about"),
        "the first epoch's report estimates the rest: {stderr}"
    );
    let versions = tenure_ok(
        dir.path(),
        &[
            "sql",
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n FROM tenure.models WHERE model = 'endless'",
        ],
    );
    assert_eq!(versions, "n\n0\n", "a cancelled training stores no version");

    // A query that would run for minutes, stopped once it has started (the shell prints its
    // timing only at the end, so wait a moment instead).
    let started = Instant::now();
    let stderr = interrupt_when("SELECT count(*) FROM range(100000000000)", &|_| {
        started.elapsed() > Duration::from_secs(2)
    });
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
}

/// Errors that suggest SQL suggest SQL that works: the expression a date or timestamp feature
/// should become trains; CREATE MODEL's clauses out of order get the order.
#[test]
fn hints_that_suggest_sql_work() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = (0..40)
        .map(|x| {
            format!(
                "({x}, DATE '2025-01-{:02}', TIMESTAMP '2025-02-{:02} 10:00:00', {})",
                x % 28 + 1,
                x % 27 + 1,
                x % 3 == 0
            )
        })
        .collect();
    let create = format!(
        "CREATE TABLE visits (id BIGINT, first_day DATE, last_seen TIMESTAMP, left_us BOOLEAN); \
         INSERT INTO visits VALUES {}",
        rows.join(", ")
    );
    tenure_ok(dir.path(), &["sql", "-c", &create]);
    for column in ["first_day", "last_seen"] {
        let sql = format!(
            "CREATE MODEL m KIND churn_classifier TARGET left_us OPTIONS (epochs = 2) \
             AS SELECT {column}, left_us FROM visits"
        );
        let out = tenure(dir.path(), &["sql", "-c", &sql]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let suggested = stderr
            .split("such as days since it: ")
            .nth(1)
            .unwrap_or_else(|| panic!("no suggestion: {stderr}"))
            .trim();
        let fixed = format!(
            "CREATE MODEL m KIND churn_classifier TARGET left_us OPTIONS (epochs = 2) \
             AS SELECT {suggested} AS days, left_us FROM visits"
        );
        tenure_ok(dir.path(), &["sql", "-c", &fixed]);
    }
    let out = tenure(
        dir.path(),
        &[
            "sql",
            "-c",
            "CREATE MODEL m KIND churn_classifier OPTIONS (epochs = 2) TARGET left_us \
             AS SELECT id, left_us FROM visits",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "CREATE MODEL takes its clauses in this order: CREATE [OR REPLACE] MODEL \
             [IF NOT EXISTS] name KIND kind [TARGET column] [TREATMENT column] [OPTIONS (key = \
             value, ...)] {AS query | FROM 'directory'}"
        ),
        "{out:?}"
    );
}

/// On a terminal (a pseudo-terminal here, driven by Python's pty module), Ctrl-C cancels the
/// running statement and the shell goes on to the next one, as psql does.
#[test]
fn ctrl_c_on_a_terminal_keeps_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    tenure_ok(dir.path(), &["sql", "-c", "SELECT 1"]);
    // Types a query that would run for minutes, then Ctrl-C (the terminal turns it into
    // SIGINT), then a query that answers, then \q; prints everything the shell wrote.
    let driver = r#"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "--data-dir", sys.argv[2], "sql"])
out = b""
def read_until(marker, seconds):
    global out
    deadline = time.time() + seconds
    while marker not in out and time.time() < deadline:
        try:
            out += os.read(fd, 4096)
        except OSError:
            break
    return marker in out
read_until(b"tenure=> ", 30)
os.write(fd, b"SELECT count(*) FROM range(100000000000);\r")
time.sleep(2)
os.write(fd, b"\x03")
read_until(b"canceling statement", 30)
os.write(fd, b"SELECT 40 + 2 AS answer;\r")
read_until(b"(1 row)", 30)
os.write(fd, b"\\q\r")
read_until(b"\x00", 5)
os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", driver, env!("CARGO_BIN_EXE_tenure")])
        .arg(dir.path())
        .env("HOME", dir.path())
        .output()
        .expect("python3 runs");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{screen}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        screen.contains("ERROR: canceling statement due to user request"),
        "{screen}"
    );
    let after = screen.split("canceling statement").nth(1).unwrap_or("");
    assert!(after.contains("answer") && after.contains("42"), "{screen}");
}
