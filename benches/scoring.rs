//! Model scoring and training throughput (README's model benchmark table).
//!
//! `cargo bench --bench scoring` measures, with a 24-64-32-1 MLP over 24 float8 features:
//! - `scoring/sql`: `SELECT sum(churn_score('m', f1, ..., f24)) FROM t` over
//!   `TENURE_BENCH_ROWS` rows (default 10,000,000) held in memory, through the whole engine;
//! - `scoring/batch_*`: one 8,192-row batch through the model alone, split into its parts:
//!   `assemble` (Arrow-shaped columns to the standardised feature matrix), `forward` (the
//!   network on that matrix) and `predict` (both);
//! - `training/epoch`: one epoch over 1,000,000 rows, batch 1,024, AdamW (the time of the
//!   epoch itself, from the training report).
//!
//! Inputs are built before the timed loops.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arrow::array::{ArrayRef, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::datasource::MemTable;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tenure::{Config, Engine, PathAccess};
use tenure_models::classifier::ClassifierOptions;
use tenure_models::{Classifier, FeatureColumn, FeatureValues, Model, Options, TrainingData};

const FEATURES: usize = 24;
const BATCH: usize = 8192;

/// `rows` rows of 24 standard-ish uniform features and a label from a logistic rule.
fn columns(rows: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<bool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut columns: Vec<Vec<f64>> = (0..FEATURES).map(|_| Vec::with_capacity(rows)).collect();
    let mut labels = Vec::with_capacity(rows);
    for _ in 0..rows {
        let mut z = -0.5;
        for (j, column) in columns.iter_mut().enumerate() {
            let x: f64 = rng.random_range(-2.0..2.0);
            z += if j % 3 == 0 { 0.8 * x } else { -0.1 * x };
            column.push(x);
        }
        labels.push(rng.random::<f64>() < 1.0 / (1.0 + (-z).exp()));
    }
    (columns, labels)
}

fn training_data(rows: usize, seed: u64) -> TrainingData {
    let (columns, target) = columns(rows, seed);
    TrainingData {
        features: columns
            .into_iter()
            .enumerate()
            .map(|(j, c)| (format!("f{}", j + 1), FeatureColumn::Numeric(c)))
            .collect(),
        target,
    }
}

fn options(epochs: usize, batch_size: usize) -> Options {
    Options::new([
        ("hidden", "64,32".to_string()),
        ("epochs", epochs.to_string()),
        ("batch_size", batch_size.to_string()),
        ("validation_fraction", "0.01".to_string()),
    ])
}

fn train(data: &TrainingData, epochs: usize, batch_size: usize) -> Classifier {
    let parsed =
        ClassifierOptions::from_options(&mut options(epochs, batch_size), "churn_classifier")
            .unwrap();
    Classifier::train(data, &parsed, &mut |_| {}, &AtomicBool::new(false)).unwrap()
}

fn scoring(c: &mut Criterion) {
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

    // The model, trained in SQL on a small table with the same columns.
    let schema = Arc::new(Schema::new(
        (1..=FEATURES)
            .map(|j| Field::new(format!("f{j}"), DataType::Float64, false))
            .collect::<Vec<_>>(),
    ));
    let to_batches = |rows: usize, seed: u64| -> (Vec<RecordBatch>, Vec<bool>) {
        let (columns, labels) = columns(rows, seed);
        let batches = (0..rows)
            .step_by(BATCH)
            .map(|start| {
                let len = BATCH.min(rows - start);
                let arrays: Vec<ArrayRef> = columns
                    .iter()
                    .map(|c| {
                        Arc::new(Float64Array::from(c[start..start + len].to_vec())) as ArrayRef
                    })
                    .collect();
                RecordBatch::try_new(schema.clone(), arrays).unwrap()
            })
            .collect();
        (batches, labels)
    };
    let (train_batches, labels) = to_batches(50_000, 1);
    let mut with_label = Vec::new();
    let mut offset = 0;
    for batch in &train_batches {
        let y: Vec<bool> = labels[offset..offset + batch.num_rows()].to_vec();
        offset += batch.num_rows();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("y", DataType::Boolean, false));
        let mut arrays = batch.columns().to_vec();
        arrays.push(Arc::new(arrow::array::BooleanArray::from(y)));
        with_label.push(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap());
    }
    let train_schema = with_label[0].schema();
    let ctx = engine.context();
    ctx.register_table(
        "train",
        Arc::new(MemTable::try_new(train_schema, vec![with_label]).unwrap()),
    )
    .unwrap();
    runtime
        .block_on(engine.run(
            "CREATE MODEL m KIND churn_classifier TARGET y OPTIONS (hidden = '64,32', epochs = 2) \
             AS SELECT * FROM train",
        ))
        .unwrap();

    // The scored table: `rows` rows in memory, split across the engine's partitions.
    let (batches, _) = to_batches(rows, 2);
    let partitions = config.threads.max(1);
    let mut split = vec![Vec::new(); partitions];
    for (i, batch) in batches.into_iter().enumerate() {
        split[i % partitions].push(batch);
    }
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema.clone(), split).unwrap()),
    )
    .unwrap();
    let arguments: Vec<String> = (1..=FEATURES).map(|j| format!("f{j}")).collect();
    let sql = format!(
        "SELECT sum(churn_score('m', {})) FROM t",
        arguments.join(", ")
    );

    let mut group = c.benchmark_group("scoring");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function(format!("sql/{rows}_rows"), |b| {
        b.iter(|| runtime.block_on(engine.query(&sql)).unwrap());
    });

    // One batch through the model alone, and its two halves.
    let data = training_data(20_000, 3);
    let classifier = train(&data, 1, 1024);
    let (batch_columns, _) = columns(BATCH, 4);
    let views: Vec<FeatureValues<'_>> = batch_columns
        .iter()
        .map(|c| FeatureValues::Numeric(c))
        .collect();
    let matrix = classifier.spec.preprocessor.transform(&views).unwrap();
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("batch_assemble", |b| {
        b.iter(|| classifier.spec.preprocessor.transform(&views).unwrap());
    });
    group.bench_function("batch_forward", |b| {
        b.iter(|| classifier.predict_encoded(&matrix).unwrap());
    });
    group.bench_function("batch_predict", |b| {
        b.iter(|| classifier.predict(&views).unwrap());
    });
    group.finish();
}

fn training(c: &mut Criterion) {
    let data = training_data(1_000_000, 5);
    let mut group = c.benchmark_group("training");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(1_000_000));
    group.bench_function("epoch/1000000_rows_batch_1024", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let model = Model::train(
                    tenure_models::Kind::ChurnClassifier,
                    &data,
                    &mut options(1, 1024),
                    &mut |_| {},
                    &AtomicBool::new(false),
                )
                .unwrap();
                let Model::Classifier(classifier) = model else {
                    unreachable!("a churn_classifier trains a classifier")
                };
                total += Duration::from_secs_f64(classifier.spec.training.history[0].seconds);
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, scoring, training);
criterion_main!(benches);
