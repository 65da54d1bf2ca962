//! [`Model`], any trained model: the one place that dispatches over the kinds to train, load,
//! score and save them, and to check a kind's OPTIONS.

use std::sync::atomic::AtomicBool;

use candle_core::Device;

use crate::card::{ModelCard, ModelSpec};
use crate::classifier::{Classifier, ClassifierOptions};
use crate::compute::device;
use crate::data::TrainingData;
use crate::error::{Error, Result};
use crate::kind::Kind;
use crate::options::Options;
use crate::preprocess::{FeatureColumn, FeatureValues};
use crate::train::EpochReport;
use crate::weights::{deserialize_weights, serialize_weights};
use crate::{anomaly, btyd, kmeans, recommender, sequence, text_encoder, uplift};

/// A trained model of any kind.
// Models live behind an Arc, one per loaded version, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Model {
    Classifier(Classifier),
    Bgnbd(btyd::BgNbd),
    GammaGamma(btyd::GammaGamma),
    KMeans(kmeans::KMeans),
    Recommender(recommender::Recommender),
    Anomaly(anomaly::Anomaly),
    Sequence(sequence::SequenceModel),
    Uplift(uplift::Uplift),
    TextEncoder(text_encoder::TextEncoder),
}

impl Model {
    /// Trains a model of `kind`. Options a kind does not know are an error.
    pub fn train(
        kind: Kind,
        data: &TrainingData,
        options: &mut Options,
        on_epoch: &mut dyn FnMut(&EpochReport),
        cancel: &AtomicBool,
    ) -> Result<Model> {
        let list_column = data
            .features
            .iter()
            .find(|(_, c)| matches!(c, FeatureColumn::TextList(_) | FeatureColumn::NumberList(_)));
        if kind != Kind::Sequence
            && let Some((name, _)) = list_column
        {
            return Err(Error::data(format!(
                "column {name} is a list; KIND {kind} takes scalar features (lists are for \
                 KIND sequence)"
            )));
        }
        match kind {
            Kind::TextEncoder => Err(Error::option(
                "KIND text_encoder is imported, not trained: CREATE MODEL name KIND \
                 text_encoder FROM 'directory'",
            )),
            Kind::Sequence => {
                let parsed = sequence::SequenceOptions::from_options(options, kind.name())?;
                Ok(Model::Sequence(sequence::SequenceModel::train(
                    data, &parsed, on_epoch, cancel,
                )?))
            }
            Kind::ChurnClassifier | Kind::RiskClassifier => {
                let parsed = ClassifierOptions::from_options(options, kind.name())?;
                Ok(Model::Classifier(Classifier::train(
                    data, &parsed, on_epoch, cancel,
                )?))
            }
            Kind::Uplift => {
                let parsed = uplift::UpliftOptions::from_options(options, kind.name())?;
                Ok(Model::Uplift(uplift::Uplift::train(
                    data, &parsed, on_epoch, cancel,
                )?))
            }
            Kind::Anomaly => {
                let parsed = anomaly::AnomalyOptions::from_options(options, kind.name())?;
                Ok(Model::Anomaly(anomaly::Anomaly::train(
                    data, &parsed, on_epoch, cancel,
                )?))
            }
            Kind::Bgnbd => {
                let parsed = BtydOptions::from_options(options, kind)?;
                let [x, recency, age] = numeric_inputs::<3>(kind, data)?;
                let cancelled = || cancel.load(std::sync::atomic::Ordering::Relaxed);
                Ok(Model::Bgnbd(btyd::BgNbd::fit(
                    x,
                    recency,
                    age,
                    parsed.time_unit,
                    parsed.penalizer,
                    &cancelled,
                )?))
            }
            Kind::GammaGamma => {
                let parsed = BtydOptions::from_options(options, kind)?;
                let [x, monetary] = numeric_inputs::<2>(kind, data)?;
                let cancelled = || cancel.load(std::sync::atomic::Ordering::Relaxed);
                Ok(Model::GammaGamma(btyd::GammaGamma::fit(
                    x,
                    monetary,
                    parsed.penalizer,
                    &cancelled,
                )?))
            }
            Kind::Kmeans => {
                let parsed = kmeans::KMeansOptions::from_options(options, kind.name())?;
                let cancelled = || cancel.load(std::sync::atomic::Ordering::Relaxed);
                Ok(Model::KMeans(kmeans::KMeans::fit(
                    data, &parsed, &cancelled,
                )?))
            }
            Kind::Recommender => {
                let parsed = recommender::RecommenderOptions::from_options(options, kind.name())?;
                let cancelled = || cancel.load(std::sync::atomic::Ordering::Relaxed);
                Ok(Model::Recommender(recommender::Recommender::fit(
                    data, &parsed, &cancelled,
                )?))
            }
        }
    }

    /// Rebuilds a model from its card and safetensors bytes on `device`.
    pub fn load(card: &ModelCard, weights: &[u8], device: &Device) -> Result<Model> {
        let tensors = deserialize_weights(weights, &card.weights_checksum, device)?;
        match &card.spec {
            ModelSpec::Classifier(spec) => Ok(Model::Classifier(Classifier::from_parts(
                spec.clone(),
                tensors,
                device,
            )?)),
            ModelSpec::Bgnbd(spec) => Ok(Model::Bgnbd(spec.clone())),
            ModelSpec::GammaGamma(spec) => Ok(Model::GammaGamma(spec.clone())),
            ModelSpec::KMeans(spec) => Ok(Model::KMeans(spec.clone())),
            ModelSpec::Anomaly(spec) => Ok(Model::Anomaly(anomaly::Anomaly::from_parts(
                spec.clone(),
                tensors,
                device,
            )?)),
            ModelSpec::Recommender(spec) => Ok(Model::Recommender(
                recommender::Recommender::from_parts(spec.clone(), tensors)?,
            )),
            ModelSpec::Sequence(spec) => Ok(Model::Sequence(sequence::SequenceModel::from_parts(
                spec.clone(),
                tensors,
                device,
            )?)),
            ModelSpec::Uplift(spec) => Ok(Model::Uplift(uplift::Uplift::from_parts(
                spec.as_ref().clone(),
                tensors,
                device,
            )?)),
            ModelSpec::TextEncoder(spec) => Ok(Model::TextEncoder(
                text_encoder::TextEncoder::from_parts(spec.clone(), tensors, device)?,
            )),
        }
    }

    /// Scores one batch of feature columns: a probability per row for classifiers, P(alive)
    /// for BG/NBD, the expected spend per transaction for Gamma-Gamma, the segment for
    /// k-means (NaN where the input is not valid for the model).
    pub fn predict(&self, columns: &[FeatureValues<'_>]) -> Result<Vec<f64>> {
        match self {
            Model::Classifier(c) => c.predict(columns),
            Model::Bgnbd(m) => {
                let [x, recency, age] = numeric_columns::<3>(columns)?;
                Ok((0..x.len())
                    .map(|i| m.p_alive(x[i], recency[i], age[i]))
                    .collect())
            }
            Model::GammaGamma(m) => {
                let [x, monetary] = numeric_columns::<2>(columns)?;
                Ok((0..x.len())
                    .map(|i| m.expected_spend(x[i], monetary[i]))
                    .collect())
            }
            Model::KMeans(m) => Ok(m
                .assign(columns)?
                .into_iter()
                .map(|s| s.map_or(f64::NAN, f64::from))
                .collect()),
            Model::Anomaly(m) => m.predict(columns),
            Model::Sequence(m) => m.predict(columns),
            Model::Uplift(m) => m.predict(columns),
            Model::Recommender(_) => Err(Error::input(
                "a recommender has no per-row score; use recommend(model, user_id, k)",
            )),
            Model::TextEncoder(_) => Err(Error::input(
                "a text encoder has no per-row score; use embed_text(model, text)",
            )),
        }
    }

    /// The kind-specific card section.
    pub fn spec(&self) -> ModelSpec {
        match self {
            Model::Classifier(c) => ModelSpec::Classifier(c.spec.clone()),
            Model::Bgnbd(m) => ModelSpec::Bgnbd(m.clone()),
            Model::GammaGamma(m) => ModelSpec::GammaGamma(m.clone()),
            Model::KMeans(m) => ModelSpec::KMeans(m.clone()),
            Model::Recommender(m) => ModelSpec::Recommender(m.spec.clone()),
            Model::Anomaly(m) => ModelSpec::Anomaly(m.spec.clone()),
            Model::Sequence(m) => ModelSpec::Sequence(m.spec.clone()),
            Model::Uplift(m) => ModelSpec::Uplift(Box::new(m.spec.clone())),
            Model::TextEncoder(m) => ModelSpec::TextEncoder(m.spec.clone()),
        }
    }

    /// The segment of each row for a segmenting model (k-means); None where a feature is
    /// missing. An error for other kinds.
    pub fn segments(&self, columns: &[FeatureValues<'_>]) -> Result<Vec<Option<u32>>> {
        match self {
            Model::KMeans(m) => m.assign(columns),
            _ => Err(Error::input("the model does not assign segments")),
        }
    }

    /// Segment names by segment number, for a segmenting model.
    pub fn segment_names(&self) -> Option<&[String]> {
        match self {
            Model::KMeans(m) => Some(&m.names),
            _ => None,
        }
    }

    /// Validation metrics as (name, value) in display order.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        match self {
            Model::Classifier(c) => {
                let mut metrics: Vec<(String, f64)> = c
                    .spec
                    .training
                    .validation
                    .named()
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect();
                // model = 'auto': every candidate's cross-validated AUC.
                for candidate in &c.spec.selection {
                    metrics.push((format!("cv_auc_{}", candidate.name), candidate.mean_auc));
                    metrics.push((format!("cv_auc_sd_{}", candidate.name), candidate.sd_auc));
                }
                metrics
            }
            Model::Bgnbd(m) => m.metrics(),
            Model::GammaGamma(m) => m.metrics(),
            Model::KMeans(m) => m.metrics(),
            Model::Recommender(m) => m.metrics(),
            Model::Anomaly(m) => m.metrics(),
            Model::Sequence(m) => m.metrics(),
            Model::Uplift(m) => m.metrics(),
            Model::TextEncoder(m) => m.metrics(),
        }
    }

    /// Safetensors bytes of the weights; none for the BTYD kinds and k-means, whose few
    /// parameters are in the card.
    pub fn weights(&self) -> Result<Vec<u8>> {
        match self {
            Model::Classifier(c) => serialize_weights(&c.tensors()),
            Model::Bgnbd(_) | Model::GammaGamma(_) | Model::KMeans(_) => serialize_weights(&[]),
            Model::Recommender(m) => serialize_weights(&m.tensors()?),
            Model::Anomaly(m) => serialize_weights(&m.tensors()),
            Model::Sequence(m) => serialize_weights(&m.tensors()),
            Model::Uplift(m) => serialize_weights(&m.tensors()),
            Model::TextEncoder(m) => serialize_weights(&m.tensors()),
        }
    }

    /// Rows trained on and seconds spent.
    pub fn training_summary(&self) -> (u64, f64) {
        match self {
            Model::Classifier(c) => (c.spec.training.rows, c.spec.training.seconds),
            Model::Bgnbd(m) => (m.fit.customers, m.fit.seconds),
            Model::GammaGamma(m) => (m.fit.customers, m.fit.seconds),
            Model::KMeans(m) => (m.rows, m.seconds),
            Model::Recommender(m) => (m.spec.interactions, m.spec.seconds),
            Model::Anomaly(m) => (m.spec.rows, m.spec.seconds),
            Model::Sequence(m) => (m.spec.training.rows, m.spec.training.seconds),
            Model::Uplift(m) => (m.spec.rows, m.spec.seconds),
            Model::TextEncoder(m) => (0, m.spec.seconds),
        }
    }
}

/// Checks OPTIONS for `kind` (names, values, device) without training.
pub fn check_options(kind: Kind, options: &mut Options) -> Result<()> {
    match kind {
        Kind::ChurnClassifier | Kind::RiskClassifier => {
            let parsed = ClassifierOptions::from_options(options, kind.name())?;
            device(&parsed.device).map(|_| ())
        }
        Kind::Anomaly => {
            let parsed = anomaly::AnomalyOptions::from_options(options, kind.name())?;
            device(&parsed.device).map(|_| ())
        }
        Kind::Bgnbd | Kind::GammaGamma => BtydOptions::from_options(options, kind).map(|_| ()),
        Kind::Kmeans => kmeans::KMeansOptions::from_options(options, kind.name()).map(|_| ()),
        Kind::Recommender => {
            recommender::RecommenderOptions::from_options(options, kind.name()).map(|_| ())
        }
        Kind::Sequence => {
            let parsed = sequence::SequenceOptions::from_options(options, kind.name())?;
            device(&parsed.device).map(|_| ())
        }
        Kind::Uplift => {
            let parsed = uplift::UpliftOptions::from_options(options, kind.name())?;
            device(&parsed.classifier.device).map(|_| ())
        }
        Kind::TextEncoder => {
            let parsed = text_encoder::TextEncoderOptions::from_options(options, kind.name())?;
            device(&parsed.device).map(|_| ())
        }
    }
}

/// OPTIONS of the BTYD kinds.
struct BtydOptions {
    time_unit: btyd::TimeUnit,
    penalizer: f64,
}

impl BtydOptions {
    fn from_options(options: &mut Options, kind: Kind) -> Result<BtydOptions> {
        let time_unit = match (kind, options.get("time_unit")) {
            (Kind::Bgnbd, Some(unit)) => btyd::TimeUnit::parse(unit)?,
            _ => btyd::TimeUnit::default(),
        };
        let penalizer = options.number("penalizer", 0.0, 0.0..=1e6)?;
        if kind != Kind::Bgnbd {
            // time_unit was looked up above; only bgnbd may have it.
            options.forget("time_unit");
        }
        options.finish(kind.name())?;
        Ok(BtydOptions {
            time_unit,
            penalizer,
        })
    }
}

/// The `N` training columns of a kind with fixed inputs, which must all be numeric.
fn numeric_inputs<const N: usize>(kind: Kind, data: &TrainingData) -> Result<[&[f64]; N]> {
    let expected = kind.fixed_inputs().unwrap_or_default();
    let usage = || {
        format!(
            "KIND {kind} trains on {N} numeric columns, in this order: {}",
            expected.join(", ")
        )
    };
    let names: Vec<&str> = data.features.iter().map(|(n, _)| n.as_str()).collect();
    if data.features.len() != N {
        return Err(Error::data(format!(
            "{}; the query returned {} ({})",
            usage(),
            names.len(),
            names.join(", ")
        )));
    }
    let mut out: [&[f64]; N] = [&[]; N];
    for (i, (name, column)) in data.features.iter().enumerate() {
        match column {
            FeatureColumn::Numeric(values) => out[i] = values,
            FeatureColumn::Categorical(_) => {
                return Err(Error::data(format!("{}; column {name} is text", usage())));
            }
            FeatureColumn::TextList(_) | FeatureColumn::NumberList(_) => {
                return Err(Error::data(format!("{}; column {name} is a list", usage())));
            }
        }
    }
    Ok(out)
}

/// The `N` numeric columns a BTYD model scores.
fn numeric_columns<'a, const N: usize>(columns: &[FeatureValues<'a>]) -> Result<[&'a [f64]; N]> {
    if columns.len() != N {
        return Err(Error::input(format!(
            "expected {N} feature columns, got {}",
            columns.len()
        )));
    }
    let mut out: [&[f64]; N] = [&[]; N];
    for (i, column) in columns.iter().enumerate() {
        match column {
            FeatureValues::Numeric(values) => out[i] = values,
            _ => {
                return Err(Error::input(format!("feature {} must be numeric", i + 1)));
            }
        }
    }
    Ok(out)
}
