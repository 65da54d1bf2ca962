//! KIND uplift: how much a treatment (a coupon, a call) changes the probability of a binary
//! outcome (retained, converted) for each unit, learnt from a randomised campaign.
//!
//! Two estimators (OPTIONS estimator), each over the tabular classifier of KIND
//! churn_classifier with the same OPTIONS:
//! - `two_model` (the default, T-learner): one classifier of the outcome among the treated,
//!   one among the control units, over one preprocessing fitted on all training rows (so
//!   scoring encodes each block of rows once for both networks); the uplift of a unit is
//!   P(outcome | treated) - P(outcome | control).
//! - `class_transform` (Jaskowski and Jaroszewicz's class variable transformation): one
//!   classifier of Z = (treated and positive) or (control and negative), on arms made equal
//!   by leaving out random units of the larger one; under randomisation uplift = 2 P(Z | x) -
//!   1. One network to score, so it scores at the classifier's speed.
//!
//! Negative uplift marks the "sleeping dogs" whom a contact pushes out.
//!
//! The difference of two models is only the effect of the treatment if nothing else tells
//! the treated apart. So training first fits a logistic regression of the treatment on the
//! features; if it ranks treated above control units on held-out rows better than chance
//! allows (ROC AUC beyond [`propensity_limit`]), the data is refused as not randomised,
//! unless OPTIONS (propensity = 'model') accepts it (the AUC is then kept in the card, and
//! the estimate holds only if the features capture every reason for being treated).
//!
//! 20 % of the rows (OPTIONS validation_fraction) are held out; the card's metrics are the
//! Qini coefficient, AUUC and uplift at the top 10/20/30 % on them.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::classifier::{Classifier, ClassifierOptions, ClassifierSpec, Family};
use crate::data::{TrainingData, fit_preprocessor, stratified_split};
use crate::error::{Error, Result};
use crate::kernels::dense::DenseNetwork;
use crate::metrics::{BinaryMetrics, UpliftMetrics};
use crate::options::Options;
use crate::preprocess::{FeatureColumn, FeatureValues};
use crate::train::EpochReport;

/// How training treats data whose treatment the features predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Propensity {
    /// Refuse it (the default): uplift from a non-randomised treatment is biased.
    Check,
    /// Accept it, trusting the features to explain who was treated.
    Model,
}

/// How the uplift is estimated; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    TwoModel,
    ClassTransform,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpliftOptions {
    /// The 0/1 or boolean column that says who was treated (CREATE MODEL's TREATMENT).
    pub treatment: String,
    pub propensity: Propensity,
    pub estimator: Estimator,
    pub classifier: ClassifierOptions,
}

impl UpliftOptions {
    pub fn from_options(options: &mut Options, kind: &str) -> Result<Self> {
        let treatment = options
            .get("treatment")
            .map(str::to_string)
            .ok_or_else(|| {
                Error::option(
                    "KIND uplift needs TREATMENT: the column that says who was treated \
                     (CREATE MODEL m KIND uplift TARGET retained TREATMENT got_coupon AS ...)",
                )
            })?;
        let propensity = match options.get("propensity").unwrap_or("check") {
            "check" => Propensity::Check,
            "model" => Propensity::Model,
            other => {
                return Err(Error::option(format!(
                    "option propensity must be 'check' (refuse a treatment the features \
                     predict) or 'model' (accept it), got '{other}'"
                )));
            }
        };
        let estimator = match options.get("estimator").unwrap_or("two_model") {
            "two_model" => Estimator::TwoModel,
            "class_transform" => Estimator::ClassTransform,
            other => {
                return Err(Error::option(format!(
                    "option estimator must be 'two_model' or 'class_transform', got '{other}'"
                )));
            }
        };
        let mut classifier = ClassifierOptions::from_options(options, kind)?;
        // The outcome models share one preprocessing and are fused at scoring: networks.
        match classifier.family {
            Family::Logistic | Family::Mlp => {}
            Family::Auto => classifier.family = Family::Mlp,
            Family::Gbdt | Family::Blend => {
                return Err(Error::option(
                    "KIND uplift's estimators are networks: model must be 'mlp' or 'logistic'",
                ));
            }
        }
        if classifier.balanced {
            return Err(Error::option(
                "KIND uplift takes no class_weight = 'balanced': reweighting the classes \
                 changes the probabilities whose difference is the uplift",
            ));
        }
        if estimator == Estimator::ClassTransform && propensity == Propensity::Model {
            return Err(Error::option(
                "estimator 'class_transform' assumes every unit had the same chance of \
                 treatment, so it cannot take propensity = 'model'; use estimator 'two_model'",
            ));
        }
        Ok(UpliftOptions {
            treatment,
            propensity,
            estimator,
            classifier,
        })
    }
}

/// The ROC AUC of the treatment's logistic regression above which the treatment does not
/// look randomised: 0.5 plus four standard deviations of the AUC of a random split of these
/// sizes (Hanley and McNeil under the null), and at least 0.05.
pub fn propensity_limit(treated: usize, control: usize) -> f64 {
    let (t, c) = (treated as f64, control as f64);
    let sd = ((t + c + 1.0) / (12.0 * t * c)).sqrt();
    0.5 + (4.0 * sd).max(0.05)
}

/// The card's section of an uplift model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpliftSpec {
    pub treatment: String,
    pub propensity: Propensity,
    /// The held-out ROC AUC of the treatment's logistic regression on the features.
    #[serde(with = "crate::metrics::nan_as_null")]
    pub propensity_auc: f64,
    pub treated_share: f64,
    pub estimator: Estimator,
    /// two_model: the treated units' classifier, then the control units'; class_transform:
    /// the one classifier of the transformed class.
    pub classifiers: Vec<ClassifierSpec>,
    pub validation: UpliftMetrics,
    pub rows: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct Uplift {
    pub spec: UpliftSpec,
    /// In the order of `spec.classifiers`.
    classifiers: Vec<Classifier>,
}

const NO_OPTIONS: [(&str, &str); 0] = [];

/// The fewest units an arm may have: below this a held-out fifth says nothing and the
/// arm's classifier has almost nothing to learn from. (A single outcome class in an arm is
/// the classifier's own error.)
const MIN_UNITS_PER_ARM: usize = 20;

impl Estimator {
    /// The weight-name prefix of each classifier, in order.
    fn prefixes(self) -> &'static [&'static str] {
        match self {
            Estimator::TwoModel => &["treated.", "control."],
            Estimator::ClassTransform => &["transformed."],
        }
    }
}

impl Uplift {
    pub fn train(
        data: &TrainingData,
        options: &UpliftOptions,
        on_epoch: &mut dyn FnMut(&EpochReport),
        cancel: &AtomicBool,
    ) -> Result<Uplift> {
        let started = std::time::Instant::now();
        let (treatment, data) = take_treatment(data, &options.treatment)?;
        let rows = treatment.len();
        let treated_rows = treatment.iter().filter(|t| **t).count();
        if treated_rows == 0 || treated_rows == rows {
            return Err(Error::data(format!(
                "the treatment {} has one value in all {rows} rows ({}); uplift compares \
                 treated and control units",
                options.treatment,
                if treated_rows == 0 {
                    "no unit was treated"
                } else {
                    "every unit was treated"
                }
            )));
        }
        let mut rng = StdRng::seed_from_u64(options.classifier.seed ^ 0x0091_1f7e_d5ee_d000);
        let fraction = options.classifier.training.validation_fraction;
        let smaller_arm = treated_rows.min(rows - treated_rows);
        if smaller_arm < MIN_UNITS_PER_ARM {
            return Err(Error::data(format!(
                "the {} arm has {smaller_arm} units; an uplift model needs at least \
                 {MIN_UNITS_PER_ARM} in each arm",
                if treated_rows == smaller_arm {
                    "treated"
                } else {
                    "control"
                }
            )));
        }
        // Both arms in both sets, in proportion.
        let (train, validation) = stratified_split(&treatment, fraction, options.classifier.seed);
        let subset = |rows: &[usize], target: &[bool]| data.subset(rows, target);

        // Is the treatment random given the features? A logistic regression with the
        // classifier's default training (not the OPTIONS meant for the outcome models, which
        // may train for a few epochs only) answers.
        let defaults = ClassifierOptions::from_options(&mut Options::new(NO_OPTIONS), "uplift")?;
        let propensity_options = ClassifierOptions {
            training: defaults.training,
            ..options.classifier.with_family(Family::Logistic)
        };
        let propensity_model = Classifier::train(
            &subset(&train, &treatment),
            &propensity_options,
            &mut |_| {},
            cancel,
        )
        .map_err(|e| in_group("the treatment's propensity model", e))?;
        let validation_data = subset(&validation, &data.target);
        let propensity_scores = validation_data.score(|v| propensity_model.predict(v))?;
        let validation_treatment: Vec<bool> = validation.iter().map(|&i| treatment[i]).collect();
        let propensity_auc =
            BinaryMetrics::compute(&propensity_scores, &validation_treatment, 0.5).roc_auc;
        let treated_validation = validation_treatment.iter().filter(|t| **t).count();
        let limit = propensity_limit(
            treated_validation,
            validation_treatment.len() - treated_validation,
        );
        if options.propensity == Propensity::Check && propensity_auc > limit {
            return Err(Error::data(format!(
                "the treatment {} does not look randomised: the features predict it (ROC AUC \
                 {propensity_auc:.3} on held-out rows; a random assignment stays below \
                 {limit:.3}), so the difference between treated and control customers is not \
                 the treatment's effect. Randomise it (assign_variant); or, if the features hold \
                 every reason a unit was treated, accept it with OPTIONS (propensity = 'model')",
                options.treatment
            )));
        }

        let group = |want: bool| -> Vec<usize> {
            train
                .iter()
                .copied()
                .filter(|&i| treatment[i] == want)
                .collect()
        };
        let classifiers = match options.estimator {
            Estimator::TwoModel => {
                // One preprocessing, fitted on every training row, for both: scoring encodes
                // each block of rows once for the two networks.
                let shared = fit_preprocessor(&data, &train, options.classifier.max_categories)?;
                let mut train_arm = |treated: bool, name: &str| {
                    Classifier::train_with(
                        &subset(&group(treated), &data.target),
                        &options.classifier,
                        Some(&shared),
                        on_epoch,
                        cancel,
                    )
                    .map_err(|e| in_group(name, e))
                };
                vec![
                    train_arm(true, "the treated units")?,
                    train_arm(false, "the control units")?,
                ]
            }
            Estimator::ClassTransform => {
                // Equal arms: leave out random units of the larger one.
                let (mut treated, mut control) = (group(true), group(false));
                let smaller = treated.len().min(control.len());
                let larger = if treated.len() > control.len() {
                    &mut treated
                } else {
                    &mut control
                };
                larger.shuffle(&mut rng);
                larger.truncate(smaller);
                let mut rows: Vec<usize> = treated.into_iter().chain(control).collect();
                rows.sort_unstable();
                // Z: treated and positive, or control and negative.
                let transformed: Vec<bool> = (0..data.target.len())
                    .map(|i| treatment[i] == data.target[i])
                    .collect();
                vec![
                    Classifier::train(
                        &subset(&rows, &transformed),
                        &options.classifier,
                        on_epoch,
                        cancel,
                    )
                    .map_err(|e| in_group("the transformed classes", e))?,
                ]
            }
        };

        let mut model = Uplift {
            spec: UpliftSpec {
                treatment: options.treatment.clone(),
                propensity: options.propensity,
                propensity_auc,
                treated_share: treated_rows as f64 / rows as f64,
                estimator: options.estimator,
                classifiers: classifiers.iter().map(|c| c.spec.clone()).collect(),
                validation: UpliftMetrics::compute(&[], &[], &[]),
                rows: rows as u64,
                seconds: 0.0,
            },
            classifiers,
        };
        let scores = validation_data.score(|v| model.predict(v))?;
        model.spec.validation =
            UpliftMetrics::compute(&scores, &validation_treatment, &validation_data.target);
        model.spec.seconds = started.elapsed().as_secs_f64();
        Ok(model)
    }

    /// The change in P(outcome) if treated, per row.
    pub fn predict(&self, columns: &[FeatureValues<'_>]) -> Result<Vec<f64>> {
        match (self.spec.estimator, self.classifiers.as_slice()) {
            (Estimator::TwoModel, [treated, control]) => {
                let (treated, control) = match (treated.dense(), control.dense()) {
                    // The fused CPU path, each block encoded once for both networks.
                    (Some(t), Some(c))
                        if treated.spec.preprocessor == control.spec.preprocessor =>
                    {
                        let encoder = treated.spec.preprocessor.encoder(columns)?;
                        let [t, c] = DenseNetwork::predict_columns_with(&[t, c], &encoder)?
                            .try_into()
                            .expect("two networks, two outputs");
                        (t, c)
                    }
                    _ => (treated.predict(columns)?, control.predict(columns)?),
                };
                Ok(treated.iter().zip(&control).map(|(t, c)| t - c).collect())
            }
            (Estimator::ClassTransform, [transformed]) => Ok(transformed
                .predict(columns)?
                .into_iter()
                .map(|p| 2.0 * p - 1.0)
                .collect()),
            _ => Err(Error::CorruptArtifact(format!(
                "an uplift model of estimator {:?} has {} classifiers",
                self.spec.estimator,
                self.classifiers.len()
            ))),
        }
    }

    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut metrics: Vec<(String, f64)> = self
            .spec
            .validation
            .named()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        metrics.push(("propensity_auc".into(), self.spec.propensity_auc));
        metrics.push(("treated_share".into(), self.spec.treated_share));
        metrics
    }

    /// Every classifier's weights, named by its prefix (`treated.*`, `control.*`, ...).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.spec
            .estimator
            .prefixes()
            .iter()
            .zip(&self.classifiers)
            .flat_map(|(prefix, classifier)| {
                classifier
                    .tensors()
                    .into_iter()
                    .map(move |(name, t)| (format!("{prefix}{name}"), t))
            })
            .collect()
    }

    pub fn from_parts(
        spec: UpliftSpec,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Uplift> {
        let prefixes = spec.estimator.prefixes();
        if prefixes.len() != spec.classifiers.len() {
            return Err(Error::CorruptArtifact(format!(
                "an uplift model of estimator {:?} lists {} classifiers",
                spec.estimator,
                spec.classifiers.len()
            )));
        }
        let mut groups: Vec<HashMap<String, Tensor>> = vec![HashMap::new(); prefixes.len()];
        for (name, tensor) in tensors {
            let Some((group, rest)) = prefixes
                .iter()
                .enumerate()
                .find_map(|(i, prefix)| name.strip_prefix(prefix).map(|rest| (i, rest)))
            else {
                return Err(Error::CorruptArtifact(format!(
                    "an uplift model's weights hold {name}, of none of its classifiers"
                )));
            };
            groups[group].insert(rest.to_string(), tensor);
        }
        let classifiers = spec
            .classifiers
            .iter()
            .zip(groups)
            .map(|(classifier, tensors)| {
                Classifier::from_parts(classifier.clone(), tensors, device)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Uplift { spec, classifiers })
    }
}

/// The treatment column as booleans, and the training data without it.
fn take_treatment(data: &TrainingData, name: &str) -> Result<(Vec<bool>, TrainingData)> {
    let Some(position) = data.features.iter().position(|(n, _)| n == name) else {
        let names: Vec<&str> = data.features.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Error::data(format!(
            "the training query has no column {name} (the TREATMENT); its columns: {}",
            names.join(", ")
        )));
    };
    let FeatureColumn::Numeric(values) = &data.features[position].1 else {
        return Err(Error::data(format!(
            "the treatment {name} must be a boolean or 0/1 column"
        )));
    };
    let mut treatment = Vec::with_capacity(values.len());
    for (row, &v) in values.iter().enumerate() {
        match v {
            0.0 => treatment.push(false),
            1.0 => treatment.push(true),
            v if v.is_nan() => {
                return Err(Error::data(format!(
                    "the treatment {name} is NULL in row {}; leave such rows out (WHERE {name} \
                     IS NOT NULL): whether they were treated is unknown",
                    row + 1
                )));
            }
            v => {
                return Err(Error::data(format!(
                    "the treatment {name} is {v} in row {}; it must be a boolean or 0/1",
                    row + 1
                )));
            }
        }
    }
    let features: Vec<(String, FeatureColumn)> = data
        .features
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != position)
        .map(|(_, f)| f.clone())
        .collect();
    if features.is_empty() {
        return Err(Error::data(
            "the training query has no feature columns besides the target and the treatment",
        ));
    }
    Ok((
        treatment,
        TrainingData {
            features,
            target: data.target.clone(),
        },
    ))
}

/// Says which of the models failed: "in the treated units: the target has a single class".
fn in_group(group: &str, error: Error) -> Error {
    match error {
        Error::InvalidData(message) => Error::data(format!("in {group}: {message}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Randomised data where the treatment adds 0.3 to P(outcome) for x > 0 and nothing
    /// otherwise; `z` is noise.
    fn campaign(rows: usize) -> TrainingData {
        let mut rng = StdRng::seed_from_u64(7);
        let (mut x, mut z, mut t, mut y) = (vec![], vec![], vec![], vec![]);
        for _ in 0..rows {
            let xi: f64 = rand::Rng::random_range(&mut rng, -1.0..1.0);
            let treated = rand::Rng::random_bool(&mut rng, 0.5);
            let p = 0.3 + if treated && xi > 0.0 { 0.3 } else { 0.0 };
            x.push(xi);
            z.push(rand::Rng::random_range(&mut rng, -1.0..1.0));
            t.push(f64::from(u8::from(treated)));
            y.push(rand::Rng::random_bool(&mut rng, p));
        }
        TrainingData {
            features: vec![
                ("x".into(), FeatureColumn::Numeric(x)),
                ("z".into(), FeatureColumn::Numeric(z)),
                ("t".into(), FeatureColumn::Numeric(t)),
            ],
            target: y,
        }
    }

    fn options(estimator: &str) -> UpliftOptions {
        UpliftOptions::from_options(
            &mut Options::new([
                ("treatment", "t"),
                ("estimator", estimator),
                ("hidden", "8"),
                ("seed", "1"),
            ]),
            "uplift",
        )
        .unwrap()
    }

    #[test]
    fn both_estimators_find_where_the_treatment_works_and_reload_exactly() {
        let data = campaign(20_000);
        let x: Vec<f64> = (0..200).map(|i| f64::from(i) / 100.0 - 1.0).collect();
        let z = vec![0.0; 200];
        let columns = [FeatureValues::Numeric(&x), FeatureValues::Numeric(&z)];
        for estimator in ["two_model", "class_transform"] {
            let model = Uplift::train(
                &data,
                &options(estimator),
                &mut |_| {},
                &AtomicBool::new(false),
            )
            .unwrap();
            let scores = model.predict(&columns).unwrap();
            let mean = |range: std::ops::Range<usize>| {
                scores[range.clone()].iter().sum::<f64>() / range.len() as f64
            };
            // x in [-1, -0.5) and [0.5, 1): far from the boundary.
            let (off, on) = (mean(0..50), mean(150..200));
            assert!(
                off.abs() < 0.08 && (on - 0.3).abs() < 0.08,
                "{estimator}: {off} {on}"
            );
            assert!(model.spec.validation.qini > 0.0, "{estimator}");
            assert!(model.spec.propensity_auc < 0.6, "{estimator}");

            let tensors: HashMap<String, Tensor> = model.tensors().into_iter().collect();
            let reloaded = Uplift::from_parts(model.spec.clone(), tensors, &Device::Cpu).unwrap();
            assert_eq!(reloaded.predict(&columns).unwrap(), scores, "{estimator}");
        }
    }

    #[test]
    fn two_models_share_one_preprocessing_and_the_fused_path_agrees() {
        let model = Uplift::train(
            &campaign(5_000),
            &options("two_model"),
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        let [treated, control] = model.classifiers.as_slice() else {
            panic!("two classifiers")
        };
        assert_eq!(treated.spec.preprocessor, control.spec.preprocessor);
        let x: Vec<f64> = (0..1000).map(|i| f64::from(i) / 500.0 - 1.0).collect();
        let z: Vec<f64> = x.iter().map(|v| v * 0.5).collect();
        let columns = [FeatureValues::Numeric(&x), FeatureValues::Numeric(&z)];
        let fused = model.predict(&columns).unwrap();
        let (t, c) = (
            treated.predict(&columns).unwrap(),
            control.predict(&columns).unwrap(),
        );
        for (i, score) in fused.iter().enumerate() {
            assert!((score - (t[i] - c[i])).abs() < 1e-12, "{i}");
        }
    }
}
