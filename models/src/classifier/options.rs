//! A classifier's OPTIONS: which model family, and each family's hyper-parameters.

use crate::error::{Error, Result};
use crate::gbdt::{self, GbdtOptions};
use crate::options::Options;
use crate::train::TrainingOptions;

/// The networks' training defaults.
const DEFAULTS: TrainingOptions = TrainingOptions {
    epochs: 30,
    batch_size: 256,
    learning_rate: 0.003,
    weight_decay: 1e-4,
    patience: 5,
    validation_fraction: 0.2,
};

/// Options only the networks (logistic regression and the MLP) take.
/// The candidates `model = 'auto'` cross-validates, cheapest first (ties go to the earlier).
pub(crate) const CANDIDATES: &[&str] =
    &["logistic", "gbdt_7_leaves", "gbdt_31_leaves", "mlp_64_32"];

const NETWORK_OPTIONS: &[&str] = &["hidden", "dropout", "epochs", "batch_size", "weight_decay"];

/// The model family (`model = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Logistic,
    Mlp,
    Gbdt,
    /// Cross-validate the families and keep the best.
    Auto,
    /// What `auto` may choose: the mean log-odds of a network and a tree model.
    Blend,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Logistic => "logistic",
            Family::Mlp => "mlp",
            Family::Gbdt => "gbdt",
            Family::Auto => "auto",
            Family::Blend => "blend",
        }
    }
}

/// Hyper-parameters, from OPTIONS.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierOptions {
    pub family: Family,
    /// Hidden layer widths of the MLP; empty for logistic regression.
    pub hidden: Vec<usize>,
    pub dropout: f64,
    /// Epochs, batch size, AdamW, early stopping and the validation split.
    pub training: TrainingOptions,
    /// Boosted trees' hyper-parameters.
    pub gbdt: GbdtOptions,
    /// Cross-validation folds of `model = 'auto'`.
    pub folds: usize,
    /// Seconds `model = 'auto'` may spend cross-validating; None for no limit.
    pub time_budget: Option<f64>,
    /// The names of CANDIDATES `model = 'auto'` tries (option candidates); empty for all.
    pub candidates: Vec<String>,
    /// Weight positives by negatives/positives so both classes count equally.
    pub balanced: bool,
    pub seed: u64,
    pub max_categories: usize,
    /// Probability at or above which a row counts as positive in accuracy, precision, ...
    pub threshold: f64,
    pub device: String,
    /// Train on every row for exactly the epochs (trees) given, with no validation split:
    /// how `model = 'auto'` refits its choice. Not an OPTION.
    pub(crate) refit: bool,
}

impl ClassifierOptions {
    /// Reads the options a classifier understands; any other option is an error.
    ///
    /// Without `model`, the family follows from the options given: network options (such as
    /// `hidden`) choose the network (`hidden = ''` logistic regression), tree options (such as
    /// `num_leaves`) the trees, and none of either `auto`.
    pub fn from_options(options: &mut Options, kind: &str) -> Result<Self> {
        let given = |names: &[&str]| -> Vec<String> {
            names
                .iter()
                .filter(|n| options.contains(n))
                .map(|n| n.to_string())
                .collect()
        };
        let network_options = given(NETWORK_OPTIONS);
        let tree_options = given(gbdt::OPTION_NAMES);
        let hidden_text = options.get("hidden").map(str::to_string);
        let family = match options.get("model").map(str::to_ascii_lowercase) {
            Some(name) => match name.as_str() {
                "logistic" => Family::Logistic,
                "mlp" => Family::Mlp,
                "gbdt" => Family::Gbdt,
                "auto" => Family::Auto,
                other => {
                    return Err(Error::option(format!(
                        "option model must be 'logistic', 'mlp', 'gbdt' or 'auto', got '{other}'"
                    )));
                }
            },
            None if !tree_options.is_empty() => Family::Gbdt,
            None if !network_options.is_empty() || options.contains("learning_rate") => {
                match &hidden_text {
                    Some(text) if text.trim().is_empty() => Family::Logistic,
                    _ => Family::Mlp,
                }
            }
            None => Family::Auto,
        };
        let refuse = |names: &[String], reason: &str| -> Result<()> {
            match names.first() {
                None => Ok(()),
                Some(first) => Err(Error::option(format!(
                    "option {first} does not apply to model = '{}': {reason}",
                    family.name()
                ))),
            }
        };
        match family {
            Family::Logistic => {
                refuse(&tree_options, "it is a boosted-tree option")?;
                let descent: Vec<String> = ["dropout", "epochs", "batch_size", "weight_decay"]
                    .iter()
                    .chain(["learning_rate", "patience"].iter())
                    .filter(|n| options.contains(n))
                    .map(|n| n.to_string())
                    .collect();
                refuse(
                    &descent,
                    "logistic regression is fitted to convergence by Newton's method, with no \
                     epochs or learning rate",
                )?;
            }
            Family::Mlp | Family::Blend => refuse(&tree_options, "it is a boosted-tree option")?,
            Family::Gbdt => refuse(&network_options, "it is a network option")?,
            Family::Auto => {
                let mut specific = network_options.clone();
                specific.extend(tree_options.iter().cloned());
                if options.contains("learning_rate") {
                    specific.push("learning_rate".into());
                }
                refuse(
                    &specific,
                    "cross-validation tries every family with its own settings; choose a \
                     model ('logistic', 'mlp' or 'gbdt') to set it",
                )?;
            }
        }
        let hidden = match (family, hidden_text) {
            (Family::Logistic, Some(text)) if !text.trim().is_empty() => {
                return Err(Error::option(format!(
                    "model = 'logistic' has no hidden layers, got hidden = '{text}'"
                )));
            }
            (Family::Logistic, _) => Vec::new(),
            (Family::Mlp, Some(text)) => {
                let hidden = parse_hidden(&text)?;
                if hidden.is_empty() {
                    return Err(Error::option(
                        "model = 'mlp' needs hidden layers; hidden = '' is model = 'logistic'",
                    ));
                }
                hidden
            }
            _ => vec![64, 32],
        };
        let class_weight = options.get("class_weight").unwrap_or("none").to_string();
        let balanced = match class_weight.as_str() {
            "none" => false,
            "balanced" => true,
            other => {
                return Err(Error::option(format!(
                    "option class_weight must be 'none' or 'balanced', got '{other}'"
                )));
            }
        };
        let learning_rate = options
            .contains("learning_rate")
            .then(|| options.number("learning_rate", 0.1, 1e-7..=10.0))
            .transpose()?;
        let patience = options
            .contains("patience")
            .then(|| options.number("patience", 5, 1..=10_000))
            .transpose()?;
        let max_categories = options.number("max_categories", 100, 1..=100_000)?;
        let time_budget: f64 = options.number("time_budget", 0.0, 0.0..=1e7)?;
        let candidates = match options.get("candidates") {
            None => Vec::new(),
            Some(_) if family != Family::Auto => {
                return Err(Error::option(format!(
                    "option candidates does not apply to model = '{}': it chooses what \
                     model = 'auto' cross-validates",
                    family.name()
                )));
            }
            Some(text) => parse_candidates(text)?,
        };
        let parsed = ClassifierOptions {
            family,
            hidden,
            balanced,
            dropout: options.number("dropout", 0.0, 0.0..=0.9)?,
            training: TrainingOptions::from_options(options, &DEFAULTS, 1 << 20)?,
            gbdt: GbdtOptions::from_options(options, learning_rate, patience, max_categories)?,
            folds: options.number("folds", 5, 2..=20)?,
            time_budget: (time_budget > 0.0).then_some(time_budget),
            candidates,
            seed: options.number("seed", 42, 0..=u64::MAX)?,
            max_categories,
            threshold: options.number("threshold", 0.5, 0.0..=1.0)?,
            device: options.get("device").unwrap_or("cpu").to_string(),
            refit: false,
        };
        if family == Family::Gbdt && !parsed.device.eq_ignore_ascii_case("cpu") {
            return Err(Error::option(format!(
                "model = 'gbdt' trains and scores on the CPU; device = '{}' is for the networks",
                parsed.device
            )));
        }
        options.finish(kind)?;
        Ok(parsed)
    }

    /// These options with another family (for the candidates of `model = 'auto'`).
    pub(crate) fn with_family(&self, family: Family) -> ClassifierOptions {
        let mut options = self.clone();
        options.family = family;
        if family == Family::Logistic {
            options.hidden.clear();
        }
        options
    }
}

/// A comma-separated list of CANDIDATES names, each at most once, in CANDIDATES' order.
fn parse_candidates(text: &str) -> Result<Vec<String>> {
    let names: Vec<String> = text
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    match names.iter().find(|n| !CANDIDATES.contains(&n.as_str())) {
        Some(unknown) => Err(Error::option(format!(
            "option candidates must be a comma-separated list of {}; '{unknown}' is none of \
             them (a blend of the best network and the best trees is tried whenever both kinds \
             are listed)",
            CANDIDATES.join(", ")
        ))),
        None => Ok(CANDIDATES
            .iter()
            .filter(|c| names.iter().any(|n| n == *c))
            .map(|c| c.to_string())
            .collect()),
    }
}

fn parse_hidden(text: &str) -> Result<Vec<usize>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|part| match part.trim().parse::<usize>() {
            Ok(width) if (1..=65_536).contains(&width) => Ok(width),
            _ => Err(Error::option(format!(
                "option hidden must be comma-separated layer widths such as '64,32' \
                 (or '' for logistic regression), got '{text}'"
            ))),
        })
        .collect()
}
