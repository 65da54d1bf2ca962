//! tenure-models: the machine learning behind tenure's SQL functions, on candle.
//!
//! It knows nothing of Arrow record batches or SQL; the `tenure-udfs` crate adapts it to
//! DataFusion and the `tenure` crate stores artifacts and runs CREATE MODEL.
//!
//! The modules form layers; each uses only modules listed before it (and a kind never
//! another kind, except uplift over classifier), so no two files import each other:
//!
//! 1. Foundations: [`error`]; [`options`], OPTIONS (...) parsing with errors that list what a
//!    kind accepts; [`preprocess`], standardisation, one-hot vocabularies, missing values and
//!    the feature-major matrix every tabular model consumes; [`metrics`], ROC AUC, PR AUC, log
//!    loss, threshold metrics, calibration; [`ab_test`], the statistics of A/B tests (z and
//!    Welch tests, intervals, the probability to beat control, sample sizes); `compute`, the candle device and the CPU thread
//!    pool ([`device`], [`set_compute_threads`]).
//! 2. What the kinds share: [`data`], the [`TrainingData`] every kind receives, train /
//!    validation splits and the tabular preprocessing fit; [`train`], the OPTIONS, AdamW
//!    settings, early stopping, [`EpochReport`] and losses of the kinds trained by gradient
//!    descent; [`weights`], safetensors weights and the checksums of weights and training
//!    data; `kernels`, hand-written CPU kernels ([`dense`] scores dense networks block by
//!    block; the others train them and run the sequence networks' layers, attention and LSTM).
//! 3. The kinds:
//!    - [`classifier`]: KIND churn_classifier and risk_classifier, an MLP or logistic
//!      regression trained with AdamW.
//!    - [`anomaly`]: KIND anomaly, an autoencoder whose calibrated reconstruction error
//!      scores risk.
//!    - [`sequence`]: KIND sequence, a Transformer (or LSTM baseline) over event histories for
//!      churn, next-event prediction and embeddings.
//!    - [`btyd`]: KIND bgnbd and gamma_gamma, the BG/NBD and Gamma-Gamma models of purchases
//!      and spend, and customer lifetime value.
//!    - [`kmeans`]: KIND kmeans, segments by k-means++ on standardised features.
//!    - [`recommender`]: KIND recommender, implicit-feedback ALS with leave-last-out
//!      validation.
//!    - [`uplift`]: KIND uplift, the effect of a treatment per unit: two classifiers (the one
//!      kind built on another), refusing a treatment that does not look randomised.
//!    - [`text_encoder`]: KIND text_encoder, a pretrained BERT-family sentence encoder
//!      imported from a sentence-transformers directory (candle-transformers' BERT and the
//!      `tokenizers` crate), not trained.
//! 4. Over all kinds: [`Kind`], the kinds CREATE MODEL knows and what each reads; [`card`],
//!    the JSON model card ([`ModelCard`]) with each kind's section ([`ModelSpec`]); and
//!    [`Model`], the one type the other crates hold: any trained model, by kind, trained,
//!    loaded, scored and saved through one dispatch.
//!
//! The re-exports below are for the other crates; inside this crate every module imports an
//! item from the module that defines it, so that the layers above hold.

pub mod ab_test;
pub mod anomaly;
pub mod btyd;
pub mod card;
pub mod classifier;
mod compute;
pub mod data;
pub mod error;
pub mod gbdt;
mod kernels;
mod kind;
pub mod kmeans;
mod linalg;
pub mod metrics;
mod model;
pub mod options;
pub mod preprocess;
pub mod recommender;
pub mod sequence;
pub mod text_encoder;
pub mod train;
pub mod uplift;
pub mod weights;

pub use candle_core;
pub use card::{FeatureSpec, ModelCard, ModelSpec};
pub use classifier::{Classifier, ClassifierOptions, Explanation};
pub use compute::{device, parse_device_name, set_compute_threads};
pub use data::TrainingData;
pub use error::{Error, Result};
pub use kernels::dense;
pub use kind::Kind;
pub use model::{Model, check_options};
pub use options::Options;
pub use preprocess::{FeatureColumn, FeatureKind, FeatureValues};
pub use train::EpochReport;

/// The card and weights functions at the path they had when one module held both
/// (`tenure_models::artifact::...`), which the `tenure` crate imports.
pub mod artifact {
    pub use crate::card::{CARD_FORMAT, FeatureSpec, ModelCard, ModelSpec};
    pub use crate::weights::{
        deserialize_weights, fingerprint, fnv1a_hex, layer_tensors, serialize_weights, take_layers,
    };
}
