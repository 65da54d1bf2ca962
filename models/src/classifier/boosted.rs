//! Training a classifier of boosted trees (`model = 'gbdt'`): the same split, metrics and
//! card as the networks, with SHAP importance besides permutation importance.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::{Classifier, ClassifierOptions, ClassifierSpec, TrainingReport, split, validate};
use crate::data::{TrainingData, fit_preprocessor};
use crate::error::Result;
use crate::gbdt::bins::BinnedData;
use crate::gbdt::{Booster, FlatForest, sigmoid};
use crate::metrics::{BinaryMetrics, calibration_table, roc_auc};
use crate::preprocess::FeatureColumn;
use crate::train::EpochReport;

/// Validation rows that SHAP importance averages over at most.
const SHAP_ROWS: usize = 2_000;
/// Validation rows permutation importance shuffles at most (as scikit-learn's
/// `max_samples`): each feature costs a scoring pass over them.
const PERMUTATION_ROWS: usize = 20_000;

pub(super) fn train(
    data: &TrainingData,
    options: &ClassifierOptions,
    on_round: &mut dyn FnMut(&EpochReport),
    cancel: &AtomicBool,
) -> Result<Classifier> {
    let started = Instant::now();
    validate(data, options)?;
    let (train_rows, validation_rows) = split(data, options);
    // The trees read raw values; the preprocessor is fitted for what the card says about
    // each feature (its encoding and statistics), as for the networks.
    let preprocessor = fit_preprocessor(data, &train_rows, options.max_categories)?;
    let positives = train_rows.iter().filter(|&&r| data.target[r]).count() as f64;
    let positive_weight = if options.balanced {
        (train_rows.len() as f64 - positives) / positives
    } else {
        1.0
    };
    let (booster, report) = Booster::train(
        data,
        &train_rows,
        &validation_rows,
        positive_weight,
        &options.gbdt,
        on_round,
        cancel,
    )?;

    let columns: Vec<&FeatureColumn> = data.features.iter().map(|(_, c)| c).collect();
    let validation = BinnedData::new(&columns, &booster.features, &validation_rows);
    let validation_y: Vec<bool> = validation_rows.iter().map(|&r| data.target[r]).collect();
    let forest = FlatForest::new(&booster);
    let probabilities = |data: &BinnedData| -> Vec<f64> {
        forest
            .margins_binned(data)
            .into_iter()
            .map(sigmoid)
            .collect()
    };
    let scores = probabilities(&validation);
    let metrics = BinaryMetrics::compute(&scores, &validation_y, options.threshold);

    // Permutation importance: the drop in validation AUC with one feature's bins shuffled,
    // on at most PERMUTATION_ROWS validation rows drawn at random.
    let mut rng = StdRng::seed_from_u64(options.seed ^ 0x1a9_0a7a);
    let mut picked: Vec<usize> = (0..validation_y.len()).collect();
    if picked.len() > PERMUTATION_ROWS {
        picked.shuffle(&mut rng);
        picked.truncate(PERMUTATION_ROWS);
        picked.sort_unstable();
    }
    let sample = BinnedData {
        bins: validation
            .bins
            .iter()
            .map(|b| picked.iter().map(|&i| b[i]).collect())
            .collect(),
        features: validation.features.clone(),
    };
    let sample_y: Vec<bool> = picked.iter().map(|&i| validation_y[i]).collect();
    let sample_y = &sample_y[..];
    let sample_auc = roc_auc(&probabilities(&sample), sample_y);
    // The permutations drawn in feature order (so the seed fixes them), then each feature's
    // AUC scored by its own task.
    let mut permutation: Vec<usize> = (0..sample.rows()).collect();
    let shuffled: Vec<Vec<u8>> = (0..data.features.len())
        .map(|f| {
            permutation.shuffle(&mut rng);
            permutation.iter().map(|&i| sample.bins[f][i]).collect()
        })
        .collect();
    let importance = data
        .features
        .par_iter()
        .zip(shuffled)
        .enumerate()
        .map(|(f, ((name, _), column))| {
            let mut bins = sample.bins.clone();
            bins[f] = column;
            let with_shuffled = BinnedData {
                bins,
                features: sample.features.clone(),
            };
            let auc = roc_auc(&probabilities(&with_shuffled), sample_y);
            (name.clone(), sample_auc - auc)
        })
        .collect();
    let shap = booster.shap_binned(&validation, SHAP_ROWS);
    let shap_importance = data
        .features
        .iter()
        .enumerate()
        .map(|(f, (name, _))| {
            let mean = shap.iter().map(|phi| phi[f].abs()).sum::<f64>() / shap.len().max(1) as f64;
            (name.clone(), mean)
        })
        .collect();

    let spec = ClassifierSpec {
        preprocessor,
        hidden: Vec::new(),
        threshold: options.threshold,
        training: TrainingReport {
            rows: data.rows() as u64,
            train_rows: train_rows.len() as u64,
            validation_rows: validation_rows.len() as u64,
            best_epoch: report.best_round,
            history: report.history,
            calibration: calibration_table(&scores, &validation_y),
            validation: metrics,
            importance,
            shap_importance,
            seconds: started.elapsed().as_secs_f64(),
        },
        booster: Some(booster),
        selection: Vec::new(),
        members: Vec::new(),
    };
    Classifier::new(spec, Vec::new(), Device::Cpu)
}
