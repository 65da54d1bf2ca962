//! The lifecycle query suite (sql/bench/q*.sql) over the demo world's Parquet export.
//!
//! `TENURE_BENCH_PARQUET=DIR cargo bench --bench lifecycle` times the queries over an export
//! made by `tenure demo --scale 10 --parquet DIR` (the README figures); without it a
//! scale-0.1 world is generated into a temporary directory first. Each iteration plans and
//! runs one query and collects its whole result as Arrow batches, as a client would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tenure::{Config, Engine, PathAccess};

const TABLES: [&str; 5] = ["customers", "items", "events", "orders", "order_lines"];

fn queries() -> Vec<(String, String)> {
    // Read at run time: a bench binary cargo reuses from another checkout carries its path.
    let dir = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string()),
    )
    .join("sql/bench");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sql/bench exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("readable query"))
        })
        .collect()
}

fn lifecycle(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let scratch = tempfile::tempdir().expect("temp dir");
    let parquet = match std::env::var_os("TENURE_BENCH_PARQUET") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir = scratch.path().join("parquet");
            let config = Config {
                data_dir: scratch.path().join("gen"),
                ..Config::default()
            };
            runtime.block_on(async {
                let engine = Engine::open(&config, PathAccess::Unrestricted)
                    .await
                    .unwrap();
                let options = tenure::demo::DemoOptions {
                    scale: 0.1,
                    seed: 42,
                };
                tenure::lifecycle::load_demo(&engine, &options, Some(&dir))
                    .await
                    .unwrap();
            });
            dir
        }
    };
    let config = Config {
        data_dir: scratch.path().join("bench"),
        ..Config::default()
    };
    let engine = runtime.block_on(async {
        let engine = Engine::open(&config, PathAccess::Unrestricted)
            .await
            .unwrap();
        for table in TABLES {
            let location = parquet.join(format!("{table}.parquet"));
            engine
                .run(&format!(
                    "CREATE EXTERNAL TABLE {table} STORED AS PARQUET LOCATION '{}'",
                    location.display()
                ))
                .await
                .unwrap();
        }
        engine
    });
    let mut group = c.benchmark_group("lifecycle");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for (name, sql) in queries() {
        group.bench_function(&name, |b| {
            b.iter(|| runtime.block_on(engine.query(&sql)).expect("query runs"));
        });
    }
    group.finish();
}

criterion_group!(benches, lifecycle);
criterion_main!(benches);
