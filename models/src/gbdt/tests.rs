use std::sync::atomic::AtomicBool;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::data::stratified_split;

/// `rows` rows: x (numeric, 10% missing), colour (12 labels, 2% missing) and noise; the target
/// depends on an interaction of x with a set of colours, and on missingness itself.
fn synthetic(rows: usize, seed: u64) -> TrainingData {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut x, mut colour, mut noise, mut target) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rows {
        let xi: f64 = rng.random_range(-1.0..1.0);
        let missing = rng.random::<f64>() < 0.1;
        let c = rng.random_range(0..12u32);
        let warm = [1, 4, 7, 9].contains(&c);
        let logit = if missing {
            1.5
        } else if warm {
            3.0 * xi
        } else {
            -3.0 * xi
        };
        target.push(rng.random::<f64>() < sigmoid(logit));
        x.push(if missing { f64::NAN } else { xi });
        colour.push(if rng.random::<f64>() < 0.02 {
            None
        } else {
            Some(format!("c{c}"))
        });
        noise.push(rng.random::<f64>());
    }
    TrainingData {
        features: vec![
            ("x".into(), FeatureColumn::Numeric(x)),
            ("colour".into(), FeatureColumn::Categorical(colour)),
            ("noise".into(), FeatureColumn::Numeric(noise)),
        ],
        target,
    }
}

fn train(data: &TrainingData) -> (Booster, BoostReport, Vec<usize>) {
    let (train, validation) = stratified_split(&data.target, 0.2, 7);
    let (booster, report) = Booster::train(
        data,
        &train,
        &validation,
        1.0,
        &GbdtOptions::defaults(),
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    (booster, report, validation)
}

fn columns(data: &TrainingData) -> Vec<FeatureColumn> {
    data.features.iter().map(|(_, c)| c.clone()).collect()
}

fn margins(booster: &Booster, data: &TrainingData) -> Vec<f64> {
    let owned = columns(data);
    let labels: Vec<Option<&str>> = match &owned[1] {
        FeatureColumn::Categorical(v) => v.iter().map(|s| s.as_deref()).collect(),
        _ => unreachable!(),
    };
    let values = [
        match &owned[0] {
            FeatureColumn::Numeric(v) => FeatureValues::Numeric(v),
            _ => unreachable!(),
        },
        FeatureValues::Categorical(&labels),
        match &owned[2] {
            FeatureColumn::Numeric(v) => FeatureValues::Numeric(v),
            _ => unreachable!(),
        },
    ];
    booster.margins(&values).unwrap()
}

#[test]
fn learns_an_interaction_with_a_label_set_and_missingness() {
    let data = synthetic(20_000, 1);
    let (booster, report, _) = train(&data);
    assert!(report.best_round > 5, "{}", report.best_round);
    let fresh = synthetic(5_000, 2);
    let p: Vec<f64> = margins(&booster, &fresh).into_iter().map(sigmoid).collect();
    let auc = roc_auc(&p, &fresh.target);
    // The Bayes rate's AUC on this data is about 0.85; a linear model gets about 0.5.
    assert!(auc > 0.8, "held-out AUC {auc}");
    // Rows with x missing are predicted near sigmoid(1.5) = 0.82.
    let x = match &fresh.features[0].1 {
        FeatureColumn::Numeric(v) => v.clone(),
        _ => unreachable!(),
    };
    let missing: Vec<f64> = (0..x.len())
        .filter(|&i| x[i].is_nan())
        .map(|i| p[i])
        .collect();
    let mean = missing.iter().sum::<f64>() / missing.len() as f64;
    assert!((mean - 0.82).abs() < 0.06, "mean P for missing x: {mean}");
}

#[test]
fn the_same_data_gives_the_same_trees() {
    let data = synthetic(3_000, 3);
    assert_eq!(train(&data).0, train(&data).0);
}

#[test]
fn raw_and_binned_scoring_agree_and_shap_adds_up() {
    let data = synthetic(3_000, 4);
    let (booster, _, _) = train(&data);
    let raw = margins(&booster, &data);
    let all: Vec<usize> = (0..data.rows()).collect();
    let owned = columns(&data);
    let refs: Vec<&FeatureColumn> = owned.iter().collect();
    let binned = BinnedData::new(&refs, &booster.features, &all);
    let from_bins = FlatForest::new(&booster).margins_binned(&binned);
    for (a, b) in raw.iter().zip(&from_bins) {
        assert!((a - b).abs() < 1e-12, "{a} {b}");
    }
    // The flattened forest routes as the trees themselves do.
    for (row, margin) in raw.iter().enumerate() {
        let by_trees = booster.base_score
            + booster
                .trees
                .iter()
                .map(|t| t.predict(|f| bin_value(&binned, f, row)))
                .sum::<f64>();
        assert!((by_trees - margin).abs() < 1e-12);
    }
    let shap = booster.shap_binned(&binned, 500);
    let baseline = booster.expected_value();
    for (phi, margin) in shap.iter().zip(&raw) {
        let total = baseline + phi.iter().sum::<f64>();
        assert!((total - margin).abs() < 1e-9, "{total} against {margin}");
    }
    // The noise feature matters least.
    let mean_abs = |f: usize| shap.iter().map(|p| p[f].abs()).sum::<f64>() / shap.len() as f64;
    assert!(mean_abs(2) < mean_abs(0) && mean_abs(2) < mean_abs(1));
}

#[test]
fn the_trees_serialise_and_come_back_equal() {
    let data = synthetic(2_000, 5);
    let (booster, _, _) = train(&data);
    let json = serde_json::to_string(&booster).unwrap();
    let back: Booster = serde_json::from_str(&json).unwrap();
    assert_eq!(back, booster);
}

#[test]
fn scoring_refuses_columns_of_the_wrong_kind() {
    let data = synthetic(2_000, 6);
    let (booster, _, _) = train(&data);
    let numbers = [1.0, 2.0];
    let err = booster
        .margins(&[
            FeatureValues::Numeric(&numbers),
            FeatureValues::Numeric(&numbers),
            FeatureValues::Numeric(&numbers),
        ])
        .unwrap_err();
    assert!(
        err.to_string().contains("feature 2 was categorical"),
        "{err}"
    );
}

#[test]
fn a_label_per_row_and_an_all_null_feature_train_without_harm() {
    // 200,000 distinct labels: the most frequent `max_categories` get bins (all tied here,
    // so the first in label order), the rest share one; an all-NULL column has only its
    // missing bin and is never split on.
    let rows = 200_000;
    let mut rng = StdRng::seed_from_u64(9);
    let x: Vec<f64> = (0..rows).map(|_| rng.random_range(-1.0..1.0)).collect();
    let target: Vec<bool> = x
        .iter()
        .map(|v| rng.random::<f64>() < sigmoid(3.0 * v))
        .collect();
    let data = TrainingData {
        features: vec![
            ("x".into(), FeatureColumn::Numeric(x)),
            (
                "order_id".into(),
                FeatureColumn::Categorical((0..rows).map(|i| Some(format!("o{i}"))).collect()),
            ),
            ("empty".into(), FeatureColumn::Numeric(vec![f64::NAN; rows])),
        ],
        target,
    };
    let (booster, _, _) = train(&data);
    match &booster.features[1] {
        FeatureBins::Categorical { labels } => assert_eq!(labels.len(), 100),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        booster.features[2].count(),
        2,
        "one empty value bin and the missing bin"
    );
    let used: Vec<u32> = booster
        .trees
        .iter()
        .flat_map(|t| t.nodes.iter().map(|n| n.feature))
        .collect();
    assert!(!used.contains(&2), "split on the all-NULL feature");
    // Unseen labels score like any other row.
    let labels = [Some("never seen"), None];
    let p = booster
        .margins(&[
            FeatureValues::Numeric(&[0.5, -0.5]),
            FeatureValues::Categorical(&labels),
            FeatureValues::Numeric(&[f64::NAN, f64::NAN]),
        ])
        .unwrap();
    assert!(p[0] > 0.5 && p[1] < -0.5, "{p:?}");
}

#[test]
fn missingness_alone_is_split_on() {
    // One value or NULL: no boundary between values, but NULL means positive.
    let rows = 4_000;
    let mut rng = StdRng::seed_from_u64(10);
    let (mut flag, mut target) = (Vec::new(), Vec::new());
    for _ in 0..rows {
        let missing = rng.random::<f64>() < 0.3;
        flag.push(if missing { f64::NAN } else { 1.0 });
        target.push(rng.random::<f64>() < if missing { 0.8 } else { 0.2 });
    }
    let data = TrainingData {
        features: vec![("flag".into(), FeatureColumn::Numeric(flag))],
        target,
    };
    let (booster, _, _) = train(&data);
    let p = booster
        .margins(&[FeatureValues::Numeric(&[1.0, f64::NAN, 7.0])])
        .unwrap();
    assert!(p[0] < -1.0 && p[1] > 1.0, "{p:?}");
    // A value never seen at training goes with the values, not with NULL.
    assert!((p[2] - p[0]).abs() < 1e-12);
    let json = serde_json::to_string(&booster).unwrap();
    assert_eq!(serde_json::from_str::<Booster>(&json).unwrap(), booster);
}

/// Three trees grown as deep as leaf-wise growth goes: alternating labels over distinct
/// values make the best split always peel one row off an end, so each tree is a chain as
/// long as the rows allow.
fn chain_booster() -> Booster {
    let rows = 300;
    let x: Vec<f64> = (0..rows).map(f64::from).collect();
    let target: Vec<bool> = (0..rows).map(|i| i % 2 == 0).collect();
    let data = TrainingData {
        features: vec![("x".into(), FeatureColumn::Numeric(x))],
        target,
    };
    let (train_rows, validation) = stratified_split(&data.target, 0.2, 7);
    let mut options = GbdtOptions::defaults();
    options.grow.num_leaves = 4_096;
    options.grow.min_rows_in_leaf = 1;
    options.trees = 3;
    let (booster, _) = Booster::train(
        &data,
        &train_rows,
        &validation,
        1.0,
        &options,
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    booster
}

#[test]
fn trees_without_max_depth_stop_at_64_levels() {
    let booster = chain_booster();
    let deepest = booster.trees.iter().map(|t| t.depth()).max().unwrap();
    assert!(deepest > 8 && deepest <= 64, "depth {deepest}");
}

#[test]
fn flattened_forests_route_deep_chains_and_single_leaves_as_the_trees_do() {
    // Deep chains, a single-leaf tree, NaN and values beyond every threshold, over a row
    // count that ends mid-block and mid-group.
    let mut booster = chain_booster();
    booster.trees.push(Tree {
        nodes: Vec::new(),
        leaves: vec![0.25],
        leaf_rows: vec![1.0],
    });
    assert!(booster.trees[0].depth() > 8);
    let mut values: Vec<f64> = (0..1_000).map(|i| f64::from(i) * 0.37 - 20.0).collect();
    values.extend([f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 299.5]);
    let margins = booster.margins(&[FeatureValues::Numeric(&values)]).unwrap();
    for (v, margin) in values.iter().zip(&margins) {
        let value = if v.is_nan() {
            Value::Missing
        } else {
            Value::Number(*v)
        };
        let by_trees = booster.base_score
            + booster
                .trees
                .iter()
                .map(|t| t.predict(|_| value))
                .sum::<f64>();
        assert!(
            (by_trees - margin).abs() < 1e-12,
            "{v}: {by_trees} {margin}"
        );
    }
}
