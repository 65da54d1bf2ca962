//! The model kinds CREATE MODEL knows, and what each needs from its training query.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sequence;

/// The model kinds CREATE MODEL knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ChurnClassifier,
    RiskClassifier,
    Anomaly,
    Bgnbd,
    GammaGamma,
    Kmeans,
    Recommender,
    Sequence,
    Uplift,
    TextEncoder,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::ChurnClassifier,
        Kind::RiskClassifier,
        Kind::Anomaly,
        Kind::Bgnbd,
        Kind::GammaGamma,
        Kind::Kmeans,
        Kind::Recommender,
        Kind::Sequence,
        Kind::Uplift,
        Kind::TextEncoder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::ChurnClassifier => "churn_classifier",
            Kind::RiskClassifier => "risk_classifier",
            Kind::Anomaly => "anomaly",
            Kind::Bgnbd => "bgnbd",
            Kind::GammaGamma => "gamma_gamma",
            Kind::Kmeans => "kmeans",
            Kind::Recommender => "recommender",
            Kind::Sequence => "sequence",
            Kind::Uplift => "uplift",
            Kind::TextEncoder => "text_encoder",
        }
    }

    /// Whether the kind trains with candle and so takes a `device` option. The BTYD kinds
    /// are f64 likelihoods over a few parameters and always run on the CPU.
    pub fn uses_device(self) -> bool {
        matches!(
            self,
            Kind::ChurnClassifier
                | Kind::RiskClassifier
                | Kind::Anomaly
                | Kind::Sequence
                | Kind::Uplift
                | Kind::TextEncoder
        )
    }

    /// The training columns a kind reads by position, for kinds that fix them.
    pub fn fixed_inputs(self) -> Option<&'static [&'static str]> {
        match self {
            Kind::ChurnClassifier
            | Kind::RiskClassifier
            | Kind::Anomaly
            | Kind::Kmeans
            | Kind::Uplift => None,
            Kind::Recommender => Some(&["user", "item", "weight (optional)"]),
            Kind::Bgnbd => Some(&["frequency", "recency", "t"]),
            Kind::GammaGamma => Some(&["frequency", "monetary_value"]),
            Kind::Sequence => Some(&["events (a list)", "event ages in days (a list, optional)"]),
            Kind::TextEncoder => Some(&["text"]),
        }
    }

    /// Parses a KIND name; the error lists the kinds that exist.
    pub fn parse(name: &str) -> Result<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                Error::option(format!(
                    "unknown model kind '{name}'; kinds: {}",
                    known.join(", ")
                ))
            })
    }

    /// Whether CREATE MODEL needs a TARGET column; for KIND sequence it depends on the task
    /// (see [`Kind::needs_target`]).
    pub fn is_supervised(self) -> bool {
        matches!(
            self,
            Kind::ChurnClassifier | Kind::RiskClassifier | Kind::Uplift
        )
    }

    /// Whether CREATE MODEL of this kind with these OPTIONS needs a TARGET column.
    pub fn needs_target(self, options: &[(String, String)]) -> bool {
        match self {
            Kind::Sequence => sequence::needs_target(options),
            kind => kind.is_supervised(),
        }
    }

    /// Whether the kind is imported from files (`CREATE MODEL ... FROM 'directory'`) rather
    /// than trained on a query.
    pub fn is_imported(self) -> bool {
        matches!(self, Kind::TextEncoder)
    }

    /// Whether CREATE MODEL's metrics are measured on held-out validation rows (rather than
    /// being the fit itself: parameters, log-likelihood, silhouette).
    pub fn reports_validation(self) -> bool {
        self.is_supervised() || matches!(self, Kind::Sequence)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
