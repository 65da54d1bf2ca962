//! External tables on S3, against a local S3 server (moto, installed by `.ci/run`).
//!
//! The test starts `moto_server` on a free loopback port. Where moto is not installed it
//! says so and passes, unless `TENURE_REQUIRE_S3_TEST=1` (set by CI) makes that a failure.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

use std::path::Path;

use tenure::config::{Config, SecretKeySource};
use tenure::engine::{Engine, PathAccess};

use crate::support::scalar;

const BUCKET: &str = "tenure-test";

struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> Option<String> {
    if let Ok(path) = std::env::var("TENURE_MOTO_SERVER") {
        return Some(path);
    }
    let found = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    found
        .ok()
        .filter(|s| s.success())
        .map(|_| "moto_server".to_string())
}

fn start_moto(binary: &str) -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on {endpoint}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let moto = Moto { child, endpoint };
    // Create the bucket with a plain S3 CreateBucket request (moto accepts it unsigned).
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "PUT /{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "CreateBucket: {response}"
    );
    moto
}

fn store(endpoint: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_region("us-east-1")
            .build()
            .unwrap(),
    )
}

/// Uploads every file under `local` to `prefix/` in the bucket.
async fn upload_dir(store: &dyn ObjectStore, local: &std::path::Path, prefix: &str) {
    let mut stack = vec![local.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(local)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let key = StorePath::from(format!("{prefix}/{relative}"));
            store
                .put(&key, std::fs::read(&path).unwrap().into())
                .await
                .unwrap();
        }
    }
}

/// A running moto, or None (and the reason printed) where it is not installed.
fn moto_or_skip() -> Option<Moto> {
    let Some(binary) = moto_binary() else {
        assert!(
            std::env::var_os("TENURE_REQUIRE_S3_TEST").is_none(),
            "TENURE_REQUIRE_S3_TEST is set but moto_server is not installed"
        );
        eprintln!("s3 test not run: moto_server is not installed (pip install 'moto[server]')");
        return None;
    };
    Some(start_moto(&binary))
}

/// An engine whose secrets are sealed with the key in `key_file` (or with none).
async fn open_sealing(dir: &Path, key: SecretKeySource) -> Engine {
    let config = Config {
        data_dir: dir.to_path_buf(),
        threads: 2,
        secret_key: key,
        ..Config::default()
    };
    Engine::open(&config, PathAccess::Unrestricted)
        .await
        .expect("engine opens")
}

fn key_file(path: &Path, hex_digit: char) -> SecretKeySource {
    std::fs::write(path, hex_digit.to_string().repeat(64)).unwrap();
    SecretKeySource::File {
        path: path.to_path_buf(),
        create: false,
    }
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_and_delta_tables_on_s3() {
    let Some(moto) = moto_or_skip() else {
        return;
    };
    let bucket = store(&moto.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let key = key_file(&files.path().join("secret.key"), 'c');
    let options = format!(
        "OPTIONS ('aws.endpoint' '{}', 'aws.allow_http' 'true', 'aws.access_key_id' 'test', \
         'aws.secret_access_key' 'test', 'aws.region' 'us-east-1')",
        moto.endpoint
    );
    {
        let engine = open_sealing(dir.path(), key.clone()).await;
        // A Parquet file and a Delta table made locally, then uploaded.
        let parquet = files.path().join("parquet");
        std::fs::create_dir_all(&parquet).unwrap();
        engine
            .run(&format!(
                "COPY (SELECT value AS id, value * 10 AS amount FROM generate_series(1, 500)) \
                 TO '{}/part-0.parquet'",
                parquet.display()
            ))
            .await
            .unwrap();
        upload_dir(bucket.as_ref(), &parquet, "orders").await;
        engine
            .run("CREATE TABLE local_delta AS SELECT value AS n FROM generate_series(1, 42)")
            .await
            .unwrap();
        upload_dir(
            bucket.as_ref(),
            &dir.path().join("tables/t000001"),
            "delta/numbers",
        )
        .await;

        engine
            .run(&format!(
                "CREATE EXTERNAL TABLE s3_orders STORED AS PARQUET LOCATION 's3://{BUCKET}/orders/' {options}"
            ))
            .await
            .unwrap();
        assert_eq!(
            scalar(&engine, "SELECT sum(amount) FROM s3_orders").await,
            "1252500"
        );
        engine
            .run(&format!(
                "CREATE EXTERNAL TABLE s3_numbers STORED AS DELTA LOCATION 's3://{BUCKET}/delta/numbers/' {options}"
            ))
            .await
            .unwrap();
        assert_eq!(
            scalar(&engine, "SELECT count(*) FROM s3_numbers").await,
            "42"
        );
    }
    // Both registrations, with their options, survive a restart.
    let engine = open_sealing(dir.path(), key.clone()).await;
    assert_eq!(
        scalar(&engine, "SELECT count(*) FROM s3_orders").await,
        "500"
    );
    assert_eq!(scalar(&engine, "SELECT max(n) FROM s3_numbers").await, "42");
    let err = engine
        .run(&format!(
            "CREATE EXTERNAL TABLE nope STORED AS PARQUET LOCATION 's3://{BUCKET}/missing/x.parquet' {options}"
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let err = engine
        .run("CREATE EXTERNAL TABLE bad STORED AS PARQUET LOCATION 's3://b/x' OPTIONS ('aws.colour' 'red')")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown S3 option aws.colour"),
        "{err}"
    );
}

/// Credentials given to external tables, by a named secret, by a secret's scope or in the
/// table's OPTIONS, are kept in the data directory only sealed; the right key reads them
/// after a restart, a wrong or missing key loses nothing, and a catalog written before
/// secrets (credentials in clear) is sealed at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_keep_s3_credentials_sealed() {
    let Some(moto) = moto_or_skip() else {
        return;
    };
    let bucket = store(&moto.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let key = key_file(&outside.path().join("secret.key"), 'a');
    let endpoint = &moto.endpoint;
    let parquet = outside.path().join("orders");
    std::fs::create_dir_all(&parquet).unwrap();
    // moto takes any credentials; these are what must never be found in clear.
    let clear = [
        "moto-key-id-3",
        "moto-secret-7",
        "moto-key-id-4",
        "moto-secret-8",
    ];
    {
        let engine = open_sealing(dir.path(), key.clone()).await;
        engine
            .run(&format!(
                "COPY (SELECT value AS amount FROM generate_series(1, 100)) TO '{}/part-0.parquet'",
                parquet.display()
            ))
            .await
            .unwrap();
        upload_dir(bucket.as_ref(), &parquet, "orders").await;
        engine
            .run(&format!(
                "CREATE SECRET lake (TYPE s3, KEY_ID 'moto-key-id-3', SECRET 'moto-secret-7', \
                 REGION 'us-east-1', ENDPOINT '{endpoint}', SCOPE 's3://{BUCKET}/orders')"
            ))
            .await
            .unwrap();
        engine
            .run(&format!(
                "CREATE EXTERNAL TABLE named STORED AS PARQUET LOCATION 's3://{BUCKET}/orders/' \
                 OPTIONS ('secret' 'lake')"
            ))
            .await
            .unwrap();
        // No options: the secret whose scope covers the location.
        engine
            .run(&format!(
                "CREATE EXTERNAL TABLE scoped STORED AS PARQUET LOCATION 's3://{BUCKET}/orders/'"
            ))
            .await
            .unwrap();
        engine
            .run(&format!(
                "CREATE EXTERNAL TABLE inline STORED AS PARQUET LOCATION 's3://{BUCKET}/orders/' \
                 OPTIONS ('aws.endpoint' '{endpoint}', 'aws.allow_http' 'true', \
                 'aws.access_key_id' 'moto-key-id-4', 'aws.secret_access_key' 'moto-secret-8', \
                 'aws.region' 'us-east-1')"
            ))
            .await
            .unwrap();
        for table in ["named", "scoped", "inline"] {
            assert_eq!(
                scalar(&engine, &format!("SELECT sum(amount) FROM {table}")).await,
                "5050"
            );
        }
        assert_eq!(
            scalar(
                &engine,
                "SELECT name || ' ' || type || ' ' || provider || ' ' || scope || ' ' || region \
                 || ' ' || has_credentials FROM tenure.secrets"
            )
            .await,
            format!("lake s3 config s3://{BUCKET}/orders us-east-1 true")
        );
        let err = engine
            .run("DROP SECRET lake")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("external tables use it")
                && err.contains("named")
                && err.contains("scoped"),
            "{err}"
        );
        let err = engine
            .run("CREATE SECRET lake (TYPE s3)")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("already exists"), "{err}");
        // Replaced, the secret's users are registered again with it.
        engine
            .run(&format!(
                "CREATE OR REPLACE SECRET lake (TYPE s3, KEY_ID 'moto-key-id-3', \
                 SECRET 'moto-secret-7', ENDPOINT '{endpoint}', SCOPE 's3://{BUCKET}/orders')"
            ))
            .await
            .unwrap();
        assert_eq!(scalar(&engine, "SELECT count(*) FROM named").await, "100");
        let err = engine
            .run(&format!(
                "CREATE EXTERNAL TABLE both_ STORED AS PARQUET LOCATION 's3://{BUCKET}/orders/' \
                 OPTIONS ('secret' 'lake', 'aws.secret_access_key' 'x', 'aws.access_key_id' 'y')"
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
        let err = engine
            .run("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://b/x' OPTIONS ('secret' 'nope')")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret nope does not exist"), "{err}");
    }
    for value in clear {
        assert_eq!(
            files_containing(dir.path(), value),
            Vec::<std::path::PathBuf>::new(),
            "{value}"
        );
    }
    let catalog_path = dir.path().join("catalog.json");

    // A wrong key: the tables that need it are unavailable, and nothing is rewritten.
    let before = std::fs::read(&catalog_path).unwrap();
    {
        let wrong = key_file(&outside.path().join("wrong.key"), 'b');
        let engine = open_sealing(dir.path(), wrong).await;
        let err = engine
            .query("SELECT count(*) FROM named")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("named"), "{err}");
    }
    assert_eq!(std::fs::read(&catalog_path).unwrap(), before);

    // A catalog from before secrets: the inline credentials in clear in OPTIONS.
    let mut catalog: serde_json::Value = serde_json::from_slice(&before).unwrap();
    let inline = catalog["relations"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|pair| pair.to_string().contains("\"inline\""))
        .unwrap();
    let table = &mut inline[1];
    table
        .as_object_mut()
        .unwrap()
        .remove("sealed_options")
        .unwrap();
    let options = table["options"].as_array_mut().unwrap();
    options.push(serde_json::json!(["aws.access_key_id", "'moto-key-id-4'"]));
    options.push(serde_json::json!([
        "aws.secret_access_key",
        "'moto-secret-8'"
    ]));
    std::fs::write(&catalog_path, serde_json::to_vec(&catalog).unwrap()).unwrap();
    // Without a key the clear credentials still work and stay as they were.
    {
        let engine = open_sealing(dir.path(), SecretKeySource::None).await;
        assert_eq!(scalar(&engine, "SELECT count(*) FROM inline").await, "100");
    }
    assert_eq!(files_containing(dir.path(), "moto-secret-8").len(), 1);
    // With the key they are sealed at start, and every table answers.
    let engine = open_sealing(dir.path(), key.clone()).await;
    for table in ["named", "scoped", "inline"] {
        assert_eq!(
            scalar(&engine, &format!("SELECT count(*) FROM {table}")).await,
            "100"
        );
    }
    for value in clear {
        assert_eq!(
            files_containing(dir.path(), value),
            Vec::<std::path::PathBuf>::new(),
            "{value}"
        );
    }
    drop(engine);

    // `tenure rekey`: everything sealed again with a new key, made where it does not exist.
    let config = outside.path().join("tenure.toml");
    let old_key = outside.path().join("secret.key");
    std::fs::write(
        &config,
        format!("secret_key_file = {:?}\n", old_key.display().to_string()),
    )
    .unwrap();
    let new_key = outside.path().join("keys/new.key");
    let output = crate::support::tenure_bin()
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .arg("rekey")
        .arg("--new-key-file")
        .arg(&new_key)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Sealed 1 secrets and the credentials of 1 external tables"),
        "{stdout}"
    );
    {
        let engine = open_sealing(dir.path(), key).await;
        let err = engine
            .query("SELECT count(*) FROM inline")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("inline"),
            "the old key opens nothing: {err}"
        );
    }
    let new = SecretKeySource::File {
        path: new_key,
        create: false,
    };
    let engine = open_sealing(dir.path(), new).await;
    for table in ["named", "scoped", "inline"] {
        assert_eq!(
            scalar(&engine, &format!("SELECT count(*) FROM {table}")).await,
            "100"
        );
    }
}
