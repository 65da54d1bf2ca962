//! The BTYD models' speed (README's lifecycle-model benchmark table).
//!
//! `cargo bench --bench btyd` measures:
//! - `btyd/bgnbd_fit_cdnow_master`: maximum-likelihood BG/NBD on the full CDNOW data (23,570
//!   customers, 78 weeks; the summary is built once, before timing, by rfm_summary);
//! - `btyd/gamma_gamma_fit_cdnow_master`: Gamma-Gamma on its 11,515 repeat customers;
//! - `btyd/rfm_summary_cdnow_master`: rfm_summary over the 69,659 transactions, in SQL;
//! - `btyd/p_alive_sql`: `SELECT sum(p_alive('bg', frequency, recency, t)) FROM t` over
//!   `TENURE_BENCH_ROWS` rows (default 10,000,000) in memory, through the whole engine;
//! - `btyd/clv_12_months_sql`: the same for clv over 12 months on 1,000,000 rows.
//!
//! benches/compare_lifetimes.py times lifetimes on the same work.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::datasource::MemTable;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tenure::{Config, Engine, PathAccess};
use tenure_models::btyd::{BgNbd, GammaGamma, TimeUnit};

const BATCH: usize = 8192;

const MASTER_SUMMARY: &str = "rfm_summary('SELECT customer_id, date, dollars FROM cdnow', \
                              '1998-06-30', 'week')";

/// `rows` customers like CDNOW's: frequency, recency ≤ t, monetary value.
fn customers(rows: usize, seed: u64) -> Vec<RecordBatch> {
    let mut rng = StdRng::seed_from_u64(seed);
    let schema = Arc::new(Schema::new(vec![
        Field::new("frequency", DataType::Int64, false),
        Field::new("recency", DataType::Float64, false),
        Field::new("t", DataType::Float64, false),
        Field::new("monetary_value", DataType::Float64, false),
    ]));
    (0..rows)
        .step_by(BATCH)
        .map(|start| {
            let len = BATCH.min(rows - start);
            let mut f = Vec::with_capacity(len);
            let (mut r, mut t, mut m) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..len {
                let age: f64 = rng.random_range(1.0..78.0);
                let x: i64 = if rng.random::<f64>() < 0.5 {
                    0
                } else {
                    rng.random_range(1..20)
                };
                f.push(x);
                r.push(if x == 0 {
                    0.0
                } else {
                    rng.random_range(0.0..age)
                });
                t.push(age);
                m.push(if x == 0 {
                    0.0
                } else {
                    rng.random_range(5.0..200.0)
                });
            }
            let arrays: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(f)),
                Arc::new(Float64Array::from(r)),
                Arc::new(Float64Array::from(t)),
                Arc::new(Float64Array::from(m)),
            ];
            RecordBatch::try_new(schema.clone(), arrays).unwrap()
        })
        .collect()
}

fn btyd(c: &mut Criterion) {
    let rows: usize = std::env::var("TENURE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: scratch.path().to_path_buf(),
        ..Config::default()
    };
    let engine = runtime
        .block_on(Engine::open(&config, PathAccess::Unrestricted))
        .unwrap();
    let master = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/cdnow/cdnow_master.csv"
    );
    runtime
        .block_on(engine.run(&format!(
            "CREATE EXTERNAL TABLE cdnow STORED AS CSV LOCATION '{master}' \
             OPTIONS ('format.has_header' 'true')"
        )))
        .unwrap();

    // The master summary as plain vectors, for the fits alone.
    let summary = runtime
        .block_on(engine.query(&format!(
            "SELECT CAST(frequency AS DOUBLE), recency, t, monetary_value FROM {MASTER_SUMMARY} \
             WHERE frequency = 0 OR monetary_value > 0"
        )))
        .unwrap();
    let column = |i: usize| -> Vec<f64> {
        summary
            .iter()
            .flat_map(|b| b.column(i).as_primitive::<Float64Type>().values().to_vec())
            .collect()
    };
    let (x, recency, age, monetary) = (column(0), column(1), column(2), column(3));

    let mut group = c.benchmark_group("btyd");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("bgnbd_fit_cdnow_master", |b| {
        b.iter(|| BgNbd::fit(&x, &recency, &age, TimeUnit::Week, 0.0, &|| false).unwrap())
    });
    group.bench_function("gamma_gamma_fit_cdnow_master", |b| {
        b.iter(|| GammaGamma::fit(&x, &monetary, 0.0, &|| false).unwrap())
    });
    group.bench_function("rfm_summary_cdnow_master", |b| {
        b.iter(|| {
            runtime
                .block_on(engine.query(&format!("SELECT count(*) FROM {MASTER_SUMMARY}")))
                .unwrap()
        })
    });

    // Models trained in SQL, then scored over a large in-memory table.
    runtime
        .block_on(engine.run(&format!(
            "CREATE MODEL bg KIND bgnbd AS SELECT frequency, recency, t FROM {MASTER_SUMMARY}; \
             CREATE MODEL gg KIND gamma_gamma AS SELECT frequency, monetary_value \
             FROM {MASTER_SUMMARY} WHERE frequency = 0 OR monetary_value > 0"
        )))
        .unwrap();
    let register = |name: &str, rows: usize| {
        let batches = customers(rows, 7);
        let partitions = config.threads.max(1);
        let mut split = vec![Vec::new(); partitions];
        for (i, batch) in batches.into_iter().enumerate() {
            split[i % partitions].push(batch);
        }
        let schema = split[0][0].schema();
        engine
            .context()
            .register_table(name, Arc::new(MemTable::try_new(schema, split).unwrap()))
            .unwrap();
    };
    register("t", rows);
    register("t_small", 1_000_000);
    let check: i64 = runtime
        .block_on(engine.query("SELECT count(*) FROM t"))
        .unwrap()[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0);
    assert_eq!(check as usize, rows);

    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function(format!("p_alive_sql/{rows}_rows"), |b| {
        b.iter(|| {
            runtime
                .block_on(engine.query("SELECT sum(p_alive('bg', frequency, recency, t)) FROM t"))
                .unwrap()
        })
    });
    group.throughput(Throughput::Elements(1_000_000));
    group.bench_function("clv_12_months_sql/1000000_rows", |b| {
        b.iter(|| {
            runtime
                .block_on(engine.query(
                    "SELECT sum(clv('bg', 'gg', frequency, recency, t, monetary_value, 12, 0.01)) \
                     FROM t_small",
                ))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, btyd);
criterion_main!(benches);
