//! The customer models' speed (README's customer-model benchmark tables).
//!
//! `cargo bench --bench customer_models` measures:
//! - `btyd/bgnbd_fit_cdnow_master`: maximum-likelihood BG/NBD on the full CDNOW data (23,570
//!   customers, 78 weeks; the summary is built once, before timing, by rfm_summary);
//! - `btyd/gamma_gamma_fit_cdnow_master`: Gamma-Gamma on its 11,515 repeat customers;
//! - `btyd/rfm_summary_cdnow_master`: rfm_summary over the 69,659 transactions, in SQL;
//! - `btyd/p_alive_sql`: `SELECT sum(p_alive('bg', frequency, recency, t)) FROM t` over
//!   `TENURE_BENCH_ROWS` rows (default 10,000,000) in memory, through the whole engine;
//! - `btyd/clv_12_months_sql`: the same for clv over 12 months on 1,000,000 rows;
//! - `kmeans/1m_x8_k8_iterations_{1,21}`: k-means++ and 1 or 21 Lloyd iterations (plus the
//!   silhouette on 4,000 rows) on 1,000,000 uniform rows x 8 features, k = 8; the difference
//!   over 20 is the time per iteration;
//! - `recommender/train_100k_users` (ALS, 32 factors, 15 iterations, 2,000,000 interactions)
//!   and `recommender/recommendations_100k_users_k10` (the table function through SQL).
//!
//! - `sequence/score_{transformer,lstm}_len{50,200}_batch1024`: churn scores of 1,024 event
//!   histories of exactly that length (d_model 64, 2 layers, 4 heads), one call as a scoring
//!   function makes per batch; throughput in sequences;
//! - `sequence/train_transformer_len50_epoch`: one training epoch (batch 128, AdamW, dropout
//!   0.1) over 2,048 histories of 50 events; throughput in tokens (events plus the summary
//!   token).
//!
//! benches/compare_python.py times lifetimes, scikit-learn and implicit on the same work;
//! benches/compare_pytorch_sequence.py times PyTorch on the sequence work.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::datasource::MemTable;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tenure::{Config, Engine, PathAccess};
use tenure_models::btyd::{BgNbd, GammaGamma, TimeUnit};
use tenure_models::kmeans::{KMeans, KMeansOptions};
use tenure_models::sequence::{SequenceModel, SequenceOptions};
use tenure_models::{FeatureColumn, FeatureValues, Options, TrainingData};

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
    // Read at run time: a bench binary cargo reuses from another checkout carries its path.
    let master = format!(
        "{}/tests/data/cdnow/cdnow_master.csv",
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string())
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
        b.iter(|| BgNbd::fit(&x, &recency, &age, TimeUnit::Week, 0.0, &|| false).unwrap());
    });
    group.bench_function("gamma_gamma_fit_cdnow_master", |b| {
        b.iter(|| GammaGamma::fit(&x, &monetary, 0.0, &|| false).unwrap());
    });
    group.bench_function("rfm_summary_cdnow_master", |b| {
        b.iter(|| {
            runtime
                .block_on(engine.query(&format!("SELECT count(*) FROM {MASTER_SUMMARY}")))
                .unwrap()
        });
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
        });
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
        });
    });
    group.finish();
}

/// 1,000,000 rows x 8 features, uniform in [0, 1): no structure, so Lloyd never converges
/// early and every run does the iterations asked for.
fn uniform_features(rows: usize, seed: u64) -> TrainingData {
    let mut rng = StdRng::seed_from_u64(seed);
    TrainingData {
        features: (0..8)
            .map(|j| {
                let column: Vec<f64> = (0..rows).map(|_| rng.random::<f64>()).collect();
                (format!("f{j}"), FeatureColumn::Numeric(column))
            })
            .collect(),
        target: Vec::new(),
    }
}

fn kmeans(c: &mut Criterion) {
    let data = uniform_features(1_000_000, 11);
    let mut group = c.benchmark_group("kmeans");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for iterations in [1, 21] {
        let options = KMeansOptions::from_options(
            &mut Options::new([
                ("k", "8".to_string()),
                ("n_init", "1".to_string()),
                ("max_iterations", iterations.to_string()),
            ]),
            "kmeans",
        )
        .unwrap();
        group.bench_function(format!("1m_x8_k8_iterations_{iterations}"), |b| {
            b.iter(|| {
                let model = KMeans::fit(&data, &options, &|| false).unwrap();
                assert_eq!(model.iterations, iterations as u64);
                model
            });
        });
    }
    group.finish();
}

/// The interactions benches/compare_python.py builds too: user u has 20 items, from a
/// 500-item neighbourhood that depends on u % 50, so there is structure to learn.
fn interaction_batches(users: usize) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("item_id", DataType::Int64, false),
    ]));
    let (mut u_col, mut i_col) = (Vec::new(), Vec::new());
    for u in 0..users as i64 {
        for j in 0..20i64 {
            u_col.push(u);
            i_col.push(((u % 50) * 97 + (u * 7919 + j * 104_729) % 500) % 5000);
        }
    }
    let rows = u_col.len();
    (0..rows)
        .step_by(BATCH)
        .map(|start| {
            let end = (start + BATCH).min(rows);
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(u_col[start..end].to_vec())),
                    Arc::new(Int64Array::from(i_col[start..end].to_vec())),
                ],
            )
            .unwrap()
        })
        .collect()
}

fn recommender(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: scratch.path().to_path_buf(),
        ..Config::default()
    };
    let engine = runtime
        .block_on(Engine::open(&config, PathAccess::Unrestricted))
        .unwrap();
    let batches = interaction_batches(100_000);
    let schema = batches[0].schema();
    engine
        .context()
        .register_table(
            "interactions",
            Arc::new(MemTable::try_new(schema, vec![batches]).unwrap()),
        )
        .unwrap();
    let train = "CREATE MODEL recs KIND recommender \
                 OPTIONS (factors = 32, iterations = 15, validate = false) \
                 AS SELECT user_id, item_id FROM interactions";
    let mut group = c.benchmark_group("recommender");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.bench_function("train_100k_users", |b| {
        b.iter(|| runtime.block_on(engine.run(train)).unwrap());
    });
    group.bench_function("recommendations_100k_users_k10", |b| {
        b.iter(|| {
            runtime
                .block_on(engine.query("SELECT count(*) FROM recommendations('recs', 10)"))
                .unwrap()
        });
    });
    group.finish();
}

/// `rows` event histories of exactly `length` events over 50 tokens, ages one day apart, with
/// a churn label.
fn event_histories(rows: usize, length: usize, seed: u64) -> TrainingData {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events = Vec::with_capacity(rows);
    let mut ages = Vec::with_capacity(rows);
    let mut target = Vec::with_capacity(rows);
    for _ in 0..rows {
        events.push(Some(
            (0..length)
                .map(|_| Some(format!("e{}", rng.random_range(0..50))))
                .collect(),
        ));
        ages.push(Some((0..length).map(|k| (length - k) as f64).collect()));
        target.push(rng.random::<bool>());
    }
    TrainingData {
        features: vec![
            ("events".into(), FeatureColumn::TextList(events)),
            ("ages".into(), FeatureColumn::NumberList(ages)),
        ],
        target,
    }
}

fn sequence_options(architecture: &str, epochs: &str, validation: &str) -> SequenceOptions {
    let mut options = Options::new([
        ("architecture", architecture),
        ("d_model", "64"),
        ("layers", "2"),
        ("heads", "4"),
        ("max_len", "200"),
        ("epochs", epochs),
        ("validation_fraction", validation),
    ]);
    SequenceOptions::from_options(&mut options, "sequence").unwrap()
}

fn sequence(c: &mut Criterion) {
    let mut group = c.benchmark_group("sequence");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let never = AtomicBool::new(false);
    for architecture in ["transformer", "lstm"] {
        let model = SequenceModel::train(
            &event_histories(256, 20, 1),
            &sequence_options(architecture, "1", "0.2"),
            &mut |_| {},
            &never,
        )
        .unwrap();
        for length in [50, 200] {
            let data = event_histories(1024, length, 2);
            let FeatureColumn::TextList(events) = &data.features[0].1 else {
                unreachable!()
            };
            let FeatureColumn::NumberList(ages) = &data.features[1].1 else {
                unreachable!()
            };
            let events: Vec<Option<Vec<Option<&str>>>> = events
                .iter()
                .map(|l| l.as_ref().map(|l| l.iter().map(|t| t.as_deref()).collect()))
                .collect();
            group.throughput(Throughput::Elements(1024));
            group.bench_function(format!("score_{architecture}_len{length}_batch1024"), |b| {
                b.iter(|| {
                    model
                        .predict(&[
                            FeatureValues::TextList(&events),
                            FeatureValues::NumberList(ages),
                        ])
                        .unwrap()
                });
            });
        }
    }
    let data = event_histories(2048, 50, 3);
    // 1% validation: the epoch is almost all training.
    let options = sequence_options("transformer", "1", "0.01");
    let train_rows = 2048 - (2048.0f64 * 0.01).round() as u64;
    group.throughput(Throughput::Elements(train_rows * 51));
    group.bench_function("train_transformer_len50_epoch", |b| {
        b.iter(|| SequenceModel::train(&data, &options, &mut |_| {}, &never).unwrap());
    });
    group.finish();
}

criterion_group!(benches, btyd, kmeans, recommender, sequence);
criterion_main!(benches);
