//! The model card: what a model version is, how it was trained and how it scored, as JSON
//! saved beside its weights (see [`crate::weights`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::anomaly::AnomalySpec;
use crate::btyd::{BgNbd, GammaGamma};
use crate::classifier::ClassifierSpec;
use crate::error::{Error, Result};
use crate::kind::Kind;
use crate::kmeans::KMeans;
use crate::preprocess::FeatureKind;
use crate::recommender::RecommenderSpec;
use crate::sequence::SequenceSpec;
use crate::text_encoder::TextEncoderSpec;
use crate::text_encoder::projection::TextProjection;
use crate::uplift::UpliftSpec;

/// Version of the card layout, bumped on incompatible changes.
pub const CARD_FORMAT: u32 = 1;

/// One input feature: its name, how the model treats it and its SQL type at training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub name: String,
    pub kind: FeatureKind,
    pub sql_type: String,
    /// For a text feature (kind `text`): its encoder and projection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextProjection>,
}

/// The kind-specific part of a card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSpec {
    Classifier(ClassifierSpec),
    Bgnbd(BgNbd),
    GammaGamma(GammaGamma),
    KMeans(KMeans),
    Recommender(RecommenderSpec),
    Anomaly(AnomalySpec),
    Sequence(SequenceSpec),
    Uplift(Box<UpliftSpec>),
    TextEncoder(TextEncoderSpec),
}

/// Everything known about one model version except its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: u32,
    pub name: String,
    pub version: u32,
    pub kind: Kind,
    pub target: Option<String>,
    pub features: Vec<FeatureSpec>,
    /// OPTIONS as given.
    pub options: BTreeMap<String, String>,
    /// Validation metrics, in display order.
    pub metrics: Vec<(String, f64)>,
    pub rows: u64,
    pub seconds: f64,
    /// FNV-1a of the training data (features and target), to tell retrains on new data apart.
    pub fingerprint: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// FNV-1a of the safetensors bytes.
    pub weights_checksum: String,
    pub spec: ModelSpec,
}

impl ModelCard {
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data to a Vec cannot fail.
        serde_json::to_vec_pretty(self).expect("model card serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<ModelCard> {
        let card: ModelCard = serde_json::from_slice(bytes)
            .map_err(|e| Error::CorruptArtifact(format!("card does not parse: {e}")))?;
        if card.format != CARD_FORMAT {
            return Err(Error::CorruptArtifact(format!(
                "card format {} is not supported (this build reads {CARD_FORMAT})",
                card.format
            )));
        }
        Ok(card)
    }

    /// The features in order, as "name type" text for error messages.
    pub fn feature_list(&self) -> String {
        self.features
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
