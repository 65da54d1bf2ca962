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

use crate::support::{open_engine, scalar};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_and_delta_tables_on_s3() {
    let Some(binary) = moto_binary() else {
        assert!(
            std::env::var_os("TENURE_REQUIRE_S3_TEST").is_none(),
            "TENURE_REQUIRE_S3_TEST is set but moto_server is not installed"
        );
        eprintln!("s3 test not run: moto_server is not installed (pip install 'moto[server]')");
        return;
    };
    let moto = start_moto(&binary);
    let bucket = store(&moto.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let options = format!(
        "OPTIONS ('aws.endpoint' '{}', 'aws.allow_http' 'true', 'aws.access_key_id' 'test', \
         'aws.secret_access_key' 'test', 'aws.region' 'us-east-1')",
        moto.endpoint
    );
    {
        let engine = open_engine(dir.path()).await;
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
    let engine = open_engine(dir.path()).await;
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
