use std::sync::atomic::AtomicBool;

use candle_core::IndexOp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::data::TrainingData;
use crate::options::Options;
use crate::preprocess::FeatureColumn;

/// Histories over tokens a..e where churners end with "cart search" before the summary
/// (order matters: the same tokens in the other order mean nothing).
fn planted(rows: usize, seed: u64) -> TrainingData {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events = Vec::new();
    let mut ages = Vec::new();
    let mut target = Vec::new();
    for _ in 0..rows {
        let n = rng.random_range(3..12);
        let mut list: Vec<Option<String>> = (0..n)
            .map(|_| Some(["view", "search", "cart", "buy"][rng.random_range(0..4)].to_string()))
            .collect();
        let churned = rng.random::<bool>();
        let tail = if churned {
            ["cart", "search"]
        } else {
            ["search", "cart"]
        };
        list.extend(tail.iter().map(|t| Some(t.to_string())));
        let n = list.len();
        ages.push(Some((0..n).map(|k| (n - k) as f64).collect()));
        events.push(Some(list));
        target.push(churned);
    }
    TrainingData {
        features: vec![
            ("events".into(), FeatureColumn::TextList(events)),
            ("ages".into(), FeatureColumn::NumberList(ages)),
        ],
        target,
    }
}

fn options(pairs: &[(&str, &str)]) -> SequenceOptions {
    let mut options = Options::new(pairs.iter().copied());
    SequenceOptions::from_options(&mut options, "sequence").unwrap()
}

fn score(model: &SequenceModel, data: &TrainingData) -> Vec<f64> {
    let FeatureColumn::TextList(events) = &data.features[0].1 else {
        panic!()
    };
    let FeatureColumn::NumberList(ages) = &data.features[1].1 else {
        panic!()
    };
    let events: Vec<Option<Vec<Option<&str>>>> = events
        .iter()
        .map(|l| l.as_ref().map(|l| l.iter().map(|t| t.as_deref()).collect()))
        .collect();
    model
        .predict(&[
            FeatureValues::TextList(&events),
            FeatureValues::NumberList(ages),
        ])
        .unwrap()
}

#[test]
fn both_architectures_learn_an_order_only_pattern() {
    let data = planted(600, 1);
    let test = planted(300, 2);
    for architecture in ["transformer", "lstm"] {
        let opts = options(&[
            ("architecture", architecture),
            ("d_model", "16"),
            ("heads", "2"),
            ("layers", "1"),
            ("epochs", "15"),
            ("learning_rate", "0.01"),
            ("dropout", "0"),
        ]);
        let model =
            SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false)).unwrap();
        let auc = crate::metrics::roc_auc(&score(&model, &test), &test.target);
        assert!(auc > 0.95, "{architecture}: held-out AUC {auc}");
    }
}

#[test]
fn same_seed_same_model_and_save_load_is_exact() {
    let data = planted(200, 3);
    let opts = options(&[("d_model", "8"), ("heads", "2"), ("epochs", "2")]);
    let train = || SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false));
    let (a, b) = (train().unwrap(), train().unwrap());
    assert_eq!(score(&a, &data), score(&b, &data));
    let bytes = crate::weights::serialize_weights(&a.tensors()).unwrap();
    let sum = crate::weights::fnv1a_hex(&bytes);
    let tensors = crate::weights::deserialize_weights(&bytes, &sum, &Device::Cpu).unwrap();
    let loaded = SequenceModel::from_parts(a.spec.clone(), tensors, &Device::Cpu).unwrap();
    assert_eq!(score(&a, &data), score(&loaded, &data));
}

#[test]
fn empty_null_unknown_and_long_histories_score() {
    let data = planted(100, 4);
    let opts = options(&[
        ("d_model", "8"),
        ("heads", "2"),
        ("epochs", "1"),
        ("max_len", "5"),
    ]);
    let model = SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    let long: Vec<Option<&str>> = vec![Some("view"); 40];
    let events = vec![
        Some(vec![]),
        None,
        Some(vec![None, Some("never seen")]),
        Some(long),
    ];
    let ages = vec![Some(vec![]), None, Some(vec![2.0, f64::NAN]), None];
    let scores = model
        .predict(&[
            FeatureValues::TextList(&events),
            FeatureValues::NumberList(&ages),
        ])
        .unwrap();
    assert!(scores[0].is_finite() && scores[2].is_finite() && scores[3].is_finite());
    assert!(scores[1].is_nan(), "a NULL event list scores NULL");
    let mismatched = vec![Some(vec![1.0])];
    let err = model
        .predict(&[
            FeatureValues::TextList(&events[2..3]),
            FeatureValues::NumberList(&mismatched),
        ])
        .unwrap_err();
    assert!(err.to_string().contains("age list has 1 elements"), "{err}");
}

#[test]
fn the_summary_only_pass_equals_the_full_pass() {
    let data = planted(64, 6);
    let opts = options(&[
        ("d_model", "16"),
        ("heads", "4"),
        ("layers", "2"),
        ("epochs", "1"),
    ]);
    let model = SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    let tokens: Vec<Vec<u32>> = (0..5)
        .map(|n| (0..n * 3).map(|k| 4 + k % 3).collect())
        .collect();
    let samples: Vec<Sample<'_>> = tokens
        .iter()
        .map(|t| Sample {
            tokens: t,
            ages: None,
            reference: 0.0,
        })
        .collect();
    let batch = Batch::new(&samples, 50, &Device::Cpu).unwrap();
    let network = model.network();
    let full = network.encode(&batch, &mut None, false).unwrap();
    let last = full.i((.., batch.length - 1)).unwrap();
    let summary = network
        .encode(&batch, &mut None, true)
        .unwrap()
        .squeeze(1)
        .unwrap();
    let diff = (last - &summary).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    // The fused linear layers, layer norms and attention give candle's states.
    assert!(network.fused);
    let through_candle = Network {
        fused: false,
        ..model.network()
    };
    let reference = through_candle
        .encode(&batch, &mut None, true)
        .unwrap()
        .squeeze(1)
        .unwrap();
    let diff = (reference - summary)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
}

#[test]
fn the_cpu_lstm_matches_candles() {
    // Two layers, histories of 0 to 300 events (left padding, truncation at max_len 200),
    // unknown tokens, with and without ages; more rows than one parallel task.
    let data = planted(64, 8);
    let opts = options(&[
        ("architecture", "lstm"),
        ("d_model", "16"),
        ("layers", "2"),
        ("epochs", "1"),
        ("max_len", "200"),
    ]);
    let model = SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let tokens: Vec<Vec<u32>> = (0..600)
        .map(|r| {
            let n = if r % 7 == 0 { 300 } else { r % 40 };
            (0..n).map(|_| rng.random_range(1..8)).collect()
        })
        .collect();
    let ages: Vec<Vec<f32>> = tokens
        .iter()
        .map(|t| (0..t.len()).map(|k| (t.len() - k) as f32 * 1.5).collect())
        .collect();
    let samples: Vec<Sample<'_>> = tokens
        .iter()
        .zip(&ages)
        .enumerate()
        .map(|(r, (t, a))| Sample {
            tokens: t,
            ages: (r % 2 == 0).then_some(a.as_slice()),
            reference: 0.0,
        })
        .collect();
    let batch = Batch::new(&samples, 200, &Device::Cpu).unwrap();
    let network = model.network();
    assert!(
        network.cpu_lstm.is_some(),
        "a CPU LSTM scores on the CPU path"
    );
    let fast = network.summary(&batch, &mut None).unwrap();
    let candle = network.recur(&batch, &mut None).unwrap();
    assert_eq!(fast.dims(), candle.dims());
    let diff = (fast - candle).unwrap().abs().unwrap().max_all().unwrap();
    let diff = diff.to_scalar::<f32>().unwrap();
    assert!(diff < 1e-4, "largest difference {diff}");
}

#[test]
fn bad_targets_and_options_are_named() {
    let mut data = planted(50, 5);
    data.target = vec![true; 50];
    let err = SequenceModel::train(&data, &options(&[]), &mut |_| {}, &AtomicBool::new(false))
        .unwrap_err();
    assert!(err.to_string().contains("single class"), "{err}");
    let mut bad = Options::new([("d_model", "10"), ("heads", "4")]);
    let err = SequenceOptions::from_options(&mut bad, "sequence").unwrap_err();
    assert!(err.to_string().contains("multiple of heads"), "{err}");
    let mut bad = Options::new([("architecture", "lstm"), ("task", "embedding")]);
    let err = SequenceOptions::from_options(&mut bad, "sequence").unwrap_err();
    assert!(
        err.to_string().contains("needs architecture 'transformer'"),
        "{err}"
    );
}

#[test]
fn next_item_learns_a_successor_rule_and_embedding_trains() {
    // Each token is followed by its successor in a cycle of 12: fully predictable.
    let mut rng = StdRng::seed_from_u64(9);
    let events: Vec<Option<Vec<Option<String>>>> = (0..400)
        .map(|_| {
            let start = rng.random_range(0..12);
            let n = rng.random_range(2..10);
            Some(
                (0..n)
                    .map(|k| Some(format!("t{}", (start + k) % 12)))
                    .collect(),
            )
        })
        .collect();
    let data = TrainingData {
        features: vec![("events".into(), FeatureColumn::TextList(events))],
        target: Vec::new(),
    };
    let opts = options(&[
        ("task", "next_item"),
        ("d_model", "16"),
        ("heads", "2"),
        ("epochs", "20"),
        ("learning_rate", "0.01"),
        ("dropout", "0"),
    ]);
    let model = SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    let metric = |name: &str| model.metrics().iter().find(|m| m.0 == name).unwrap().1;
    assert!(metric("hr_at_10") > 0.99, "{:?}", model.metrics());
    let history = vec![Some(vec![Some("t3"), Some("t4")])];
    let next = model
        .next_tokens(&[FeatureValues::TextList(&history)], 1)
        .unwrap();
    assert_eq!(next[0].as_ref().unwrap()[0].0, "t5");

    let opts = options(&[
        ("task", "embedding"),
        ("d_model", "16"),
        ("heads", "2"),
        ("epochs", "2"),
    ]);
    let model = SequenceModel::train(&data, &opts, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    let vectors = model.embed(&[FeatureValues::TextList(&history)]).unwrap();
    assert_eq!(vectors[0].as_ref().unwrap().len(), 16);
    assert!(model.metrics().iter().any(|m| m.0 == "masked_accuracy"));
}
