//! Every probe of the hardening issue, replayed against the real `tenure serve` binary: file
//! locations that try to leave the allowed roots, malformed protocol messages and idle
//! sockets that tried to lock everyone out, statements that crashed the process or could
//! not be stopped, client-named S3 endpoints, secrets on disk and in errors. Each must fail
//! safely, with its SQLSTATE, and leave the server serving.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::support::{Serve, tenure_bin};

/// The SQLSTATE of a statement's error; panics if it succeeded.
async fn error_code(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("{sql} succeeded"),
        Err(e) => e
            .code()
            .map_or_else(|| format!("no code: {e}"), |c| c.code().to_string()),
    }
}

async fn first_value(client: &Client, sql: &str) -> String {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .expect("a row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_locations_stay_inside_the_allowed_roots() {
    let server = Serve::start("");
    let import = server.import();
    let outside = server.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let secret = outside.join("secret.csv");
    std::fs::write(&secret, "line\nTOP-SECRET\n").unwrap();
    std::os::unix::fs::symlink(&secret, import.join("pw_link.csv")).unwrap();
    let client = server.connect("tenure", None).await;

    let probes = [
        "CREATE EXTERNAL TABLE pw (line text) STORED AS CSV LOCATION 'FILE:///etc/passwd'"
            .to_string(),
        format!(
            "COPY (SELECT 1 AS a) TO 'File://{}/y.csv'",
            outside.display()
        ),
        format!(
            "COPY (SELECT 1 AS a) TO 'file://{}/%2e%2e/%2e%2e/x.csv'",
            import.display()
        ),
        format!(
            "CREATE EXTERNAL TABLE link (line text) STORED AS CSV LOCATION '{}/pw_link.csv'",
            import.display()
        ),
        format!(
            "CREATE EXTERNAL TABLE up (line text) STORED AS CSV LOCATION '{}/../../outside/'",
            import.display()
        ),
    ];
    for probe in &probes {
        assert_eq!(error_code(&client, probe).await, "42501", "{probe}");
    }
    assert!(!outside.join("y.csv").exists());
    assert!(!server.dir.path().join("x.csv").exists());

    // A glob inside the roots that matches a link out of them: refused when it is created
    // (its files are listed to infer the schema) or at the latest when it is read.
    let glob = format!(
        "CREATE EXTERNAL TABLE globbed STORED AS CSV LOCATION '{}/pw*' \
         OPTIONS ('format.has_header' 'true')",
        import.display()
    );
    let refused = match client.simple_query(&glob).await {
        Err(e) => e.code().map(|c| c.code().to_string()),
        Ok(_) => match client.simple_query("SELECT * FROM globbed").await {
            Err(e) => e.code().map(|c| c.code().to_string()),
            Ok(rows) => panic!("the glob read through the link: {rows:?}"),
        },
    };
    assert_eq!(refused.as_deref(), Some("42501"));

    // Inside the roots, in any spelling of file:, everything works; so do managed tables.
    client
        .simple_query(&format!(
            "COPY (SELECT 42 AS answer) TO '{}/ok.parquet'",
            import.display()
        ))
        .await
        .unwrap();
    client
        .simple_query(&format!(
            "CREATE EXTERNAL TABLE ok STORED AS PARQUET LOCATION 'FILE://{}/ok.parquet'",
            import.display()
        ))
        .await
        .unwrap();
    assert_eq!(first_value(&client, "SELECT answer FROM ok").await, "42");
    client
        .simple_query("CREATE TABLE kept AS SELECT 7 AS x")
        .await
        .unwrap();
    assert_eq!(first_value(&client, "SELECT max(x) FROM kept").await, "7");

    // An S3 endpoint a client names is never called.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", trap.local_addr().unwrap());
    let s3 = format!(
        "CREATE EXTERNAL TABLE s3t STORED AS PARQUET LOCATION 's3://bucket/key/' OPTIONS \
         ('aws.endpoint' '{endpoint}', 'aws.allow_http' 'true')"
    );
    assert_eq!(error_code(&client, &s3).await, "42501");
    assert!(trap.accept().is_err(), "the server connected to {endpoint}");
    assert_eq!(
        error_code(&client, "COPY (SELECT 1 AS a) TO 's3://bucket/x.parquet'").await,
        "0A000"
    );

    // Owner-only data directory and catalog.
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.data()), 0o700);
    assert_eq!(mode(&server.data().join("catalog.json")), 0o600);

    let log = server.stop();
    assert!(!log.contains("TOP-SECRET"), "{log}");
}

/// A frame: type byte, then the length (which counts itself) and the body.
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(i32::try_from(body.len()).unwrap() + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn startup(user: &str) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for (key, value) in [("user", user), ("database", "tenure")] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = (i32::try_from(body.len()).unwrap() + 4)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(&body);
    out
}

/// Reads until the server closes the connection (or 10 s pass) and returns what came.
fn read_to_close(socket: &mut TcpStream) -> Vec<u8> {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_and_idle_sockets_lock_no_one_out() {
    let server = Serve::start(
        "max_connections = 3\nauthentication_timeout = 2\n\
         [[users]]\nname = \"analyst\"\npassword = \"right pass\"\n",
    );
    // 200 clients that never authenticate: a SASLInitialResponse whose inner length
    // claims a megabyte.
    for _ in 0..200 {
        let mut socket = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        socket.write_all(&startup("analyst")).unwrap();
        let mut sasl = b"SCRAM-SHA-256\0".to_vec();
        sasl.extend_from_slice(&1_000_000i32.to_be_bytes());
        sasl.extend_from_slice(b"n,,n=,r=abc");
        socket.write_all(&frame(b'p', &sasl)).unwrap();
        let reply = read_to_close(&mut socket);
        assert!(contains(&reply, b"08P01"), "{reply:?}");
        assert!(
            !contains(&reply, b"Z\0\0\0\x05"),
            "ReadyForQuery after a FATAL: {reply:?}"
        );
    }
    // Idle sockets in the handshake do not take sessions' places, and are closed after
    // authentication_timeout.
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).unwrap())
        .collect();
    let a = server.connect("analyst", Some("right pass")).await;
    let b = server.connect("analyst", Some("right pass")).await;
    let c = server.connect("analyst", Some("right pass")).await;
    assert_eq!(first_value(&a, "SELECT current_user").await, "analyst");
    assert_eq!(first_value(&b, "SELECT session_user").await, "analyst");
    let fourth = tokio_postgres::connect(&server.url("analyst", Some("right pass")), NoTls)
        .await
        .err()
        .expect("max_connections = 3");
    assert_eq!(fourth.code(), Some(&SqlState::TOO_MANY_CONNECTIONS));
    drop(c);
    let start = Instant::now();
    let closed = read_to_close(&mut idle[0]);
    assert!(closed.is_empty(), "{closed:?}");
    assert!(
        start.elapsed() < Duration::from_secs(9),
        "an idle handshake outlived authentication_timeout"
    );
    idle.clear();

    // An unknown user and a wrong password fail alike, after the whole exchange.
    let message = |e: tokio_postgres::Error| {
        let db = e.as_db_error().expect("a server error").clone();
        (db.code().code().to_string(), db.message().to_string())
    };
    let wrong = tokio_postgres::connect(&server.url("analyst", Some("wrong")), NoTls)
        .await
        .err()
        .unwrap();
    let unknown = tokio_postgres::connect(&server.url("nobody", Some("wrong")), NoTls)
        .await
        .err()
        .unwrap();
    let (wrong, unknown) = (message(wrong), message(unknown));
    assert_eq!(wrong.0, "28P01");
    assert_eq!(unknown.0, "28P01");
    assert_eq!(
        wrong.1.replace("analyst", "USER"),
        unknown.1.replace("nobody", "USER")
    );
    drop((a, b));
    server.stop();

    // Extended-protocol messages that panicked the decoder, and a query that is not UTF-8,
    // from an authenticated client: each ends that connection with its error; others go on.
    let server = Serve::start("");
    let bad_binds: [&[u8]; 2] = [
        // A negative parameter count.
        b"\0\0\0\0\xff\xff\0\0",
        // One parameter whose value claims a gigabyte.
        b"\0\0\0\0\0\x01\x40\0\0\0ab\0\0",
    ];
    for bind in bad_binds {
        let mut socket = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        socket.write_all(&startup("tenure")).unwrap();
        socket.write_all(&frame(b'P', b"\0SELECT 1\0\0\0")).unwrap();
        socket.write_all(&frame(b'B', bind)).unwrap();
        socket.write_all(&frame(b'S', b"")).unwrap();
        let reply = read_to_close(&mut socket);
        assert!(contains(&reply, b"08P01"), "{reply:?}");
    }
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    socket.write_all(&startup("tenure")).unwrap();
    socket
        .write_all(&frame(b'Q', b"SELECT 'caf\xe9'\0"))
        .unwrap();
    let reply = read_to_close(&mut socket);
    assert!(contains(&reply, b"22021"), "{reply:?}");
    let client = server.connect("tenure", None).await;
    assert_eq!(first_value(&client, "SELECT 1 + 1").await, "2");
    drop(client);
    let log = server.stop();
    assert!(!log.contains("overflowed its stack"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_endless_statements_fail_safely() {
    let server = Serve::start("");
    let client = server.connect("tenure", None).await;

    // A long OR chain works; past the depth limit, and for calls nested too deep to parse
    // in reasonable time, statement_too_complex.
    let or_chain = |n: usize| {
        let terms: Vec<String> = (0..n).map(|i| format!("x = {i}")).collect();
        format!(
            "SELECT count(*) FROM (VALUES (1), (7)) t(x) WHERE {}",
            terms.join(" OR ")
        )
    };
    assert_eq!(first_value(&client, &or_chain(2_000)).await, "2");
    assert_eq!(error_code(&client, &or_chain(20_000)).await, "54001");
    let nested = format!("SELECT {}1{}", "abs(".repeat(45), ")".repeat(45));
    assert_eq!(error_code(&client, &nested).await, "54001");
    let parens = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
    assert_eq!(error_code(&client, &parens).await, "54001");
    let sum: Vec<String> = (1..=10_000).map(|i| format!("${i}::int")).collect();
    let prepared = client
        .prepare(&format!("SELECT {}", sum.join(" + ")))
        .await
        .expect_err("refused");
    assert_eq!(prepared.code(), Some(&SqlState::STATEMENT_TOO_COMPLEX));

    // A cross join of two billion-row ranges stops at statement_timeout.
    let endless = "SELECT count(*) FROM range(1000000000) a CROSS JOIN range(1000000000) b";
    client
        .simple_query("SET statement_timeout = '2s'")
        .await
        .unwrap();
    // Bounded, so that a statement that cannot be stopped fails the test, not hangs it.
    let stopped = tokio::time::timeout(Duration::from_secs(60), error_code(&client, endless))
        .await
        .expect("statement_timeout stopped the cross join");
    assert_eq!(stopped, "57014");
    client
        .simple_query("RESET statement_timeout")
        .await
        .unwrap();

    // ... and when its client goes away.
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    socket.write_all(&startup("tenure")).unwrap();
    socket
        .write_all(&frame(b'Q', format!("{endless}\0").as_bytes()))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(socket);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().contains("client connection lost") {
        assert!(
            Instant::now() < deadline,
            "the statement outlived its client: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The stopped statements' work ended too: the execution threads are free again.
    let served = tokio::time::timeout(
        Duration::from_secs(60),
        first_value(&client, "SELECT 'still serving'"),
    )
    .await
    .expect("the stopped cross joins still hold the execution threads");
    assert_eq!(served, "still serving");
    drop(client);
    let log = server.stop();
    assert!(log.contains("running=0"), "{log}");
}

#[test]
fn configuration_and_startup_errors_are_plain() {
    let dir = tempfile::tempdir().unwrap();
    // A malformed tenure.toml: the error says where, never what the line holds.
    let config = dir.path().join("tenure.toml");
    std::fs::write(
        &config,
        "[[users]]\nname = \"analyst\"\npassword = \"hunter2-secret\" oops\n",
    )
    .unwrap();
    let output = tenure_bin()
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // A port in use, and a TLS key that is not there: a message, no panic.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let missing_key = format!(
        "tls_cert = \"{0}/none.crt\"\ntls_key = \"{0}/none.key\"\n",
        dir.path().display()
    );
    let tls_config = dir.path().join("tls.toml");
    std::fs::write(&tls_config, missing_key).unwrap();
    for extra in [
        vec!["--listen", listen.as_str()],
        vec!["--config", tls_config.to_str().unwrap()],
    ] {
        let output = tenure_bin()
            .args(["serve", "--create", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(&extra)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("ERROR"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_tls_refuses_clients_without_it() {
    let keys = tempfile::tempdir().unwrap();
    let (cert, key) = crate::support::self_signed_cert(keys.path());
    let server = Serve::start(&format!(
        "require_tls = true\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    let plain = tokio_postgres::connect(&server.url("tenure", None), NoTls)
        .await
        .err()
        .expect("refused without TLS");
    assert_eq!(
        plain.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{plain}"
    );
    let output = std::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=tenure dbname=tenure sslmode=require",
            server.port
        ))
        .args([
            "-X",
            "-t",
            "-A",
            "-c",
            "SELECT ssl FROM (VALUES (true)) v(ssl)",
        ])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "t");
    server.stop();
}
