//! What fitting either BTYD model shares: the time unit, the report of a fit, the checks of
//! the training rows and of the optimiser's convergence.

use serde::{Deserialize, Serialize};

use super::optimize;
use crate::error::{Error, Result};

/// The unit recency, T and horizons are measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    #[default]
    Day,
    Week,
    Month,
}

impl TimeUnit {
    pub const ALL: [TimeUnit; 3] = [TimeUnit::Day, TimeUnit::Week, TimeUnit::Month];

    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Day => "day",
            TimeUnit::Week => "week",
            TimeUnit::Month => "month",
        }
    }

    pub fn parse(text: &str) -> Result<TimeUnit> {
        let text = text.trim().to_ascii_lowercase();
        let text = text.strip_suffix('s').unwrap_or(&text);
        TimeUnit::ALL
            .into_iter()
            .find(|u| u.name() == text)
            .ok_or_else(|| {
                Error::option(format!(
                    "time_unit must be 'day', 'week' or 'month', got '{text}'"
                ))
            })
    }

    /// Days in one unit, to convert day counts: a month is 30 days.
    pub fn days(self) -> f64 {
        match self {
            TimeUnit::Day => 1.0,
            TimeUnit::Week => 7.0,
            TimeUnit::Month => 30.0,
        }
    }

    /// Units in one month for horizons given in months, as lifetimes converts them: 30 days,
    /// 4.345 weeks.
    pub fn per_month(self) -> f64 {
        match self {
            TimeUnit::Day => 30.0,
            TimeUnit::Week => 4.345,
            TimeUnit::Month => 1.0,
        }
    }
}

/// How a maximum-likelihood fit went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// The maximised log-likelihood (without any penalty).
    pub log_likelihood: f64,
    /// Customers the fit used.
    pub customers: u64,
    pub iterations: u64,
    pub seconds: f64,
}

/// Counts of training rows that are not valid input, by reason.
#[derive(Debug, Default)]
pub(super) struct InvalidRows {
    missing: usize,
    negative: usize,
    fractional_frequency: usize,
    recency_after_t: usize,
    monetary_not_positive: usize,
}

impl InvalidRows {
    pub(super) fn check_bgnbd(&mut self, x: f64, recency: f64, age: f64) {
        if !(x.is_finite() && recency.is_finite() && age.is_finite()) {
            self.missing += 1;
        } else if x < 0.0 || recency < 0.0 || age < 0.0 {
            self.negative += 1;
        } else if x.fract() != 0.0 {
            self.fractional_frequency += 1;
        } else if recency > age {
            self.recency_after_t += 1;
        }
    }

    pub(super) fn check_gamma_gamma(&mut self, x: f64, monetary: f64) {
        if !x.is_finite() {
            self.missing += 1;
        } else if x < 0.0 {
            self.negative += 1;
        } else if x.fract() != 0.0 {
            self.fractional_frequency += 1;
        } else if x > 0.0 && !(monetary > 0.0 && monetary.is_finite()) {
            self.monetary_not_positive += 1;
        }
    }

    fn total(&self) -> usize {
        self.missing
            + self.negative
            + self.fractional_frequency
            + self.recency_after_t
            + self.monetary_not_positive
    }
}

/// The fit-time error for invalid rows, naming how many and why; None when all are valid.
pub(super) fn invalid_rows_error(
    kind: &str,
    rows: usize,
    problems: &InvalidRows,
) -> Option<String> {
    if problems.total() == 0 {
        return None;
    }
    let reasons: Vec<String> = [
        (problems.missing, "NULL or NaN"),
        (problems.negative, "a negative value"),
        (problems.fractional_frequency, "a fractional frequency"),
        (problems.recency_after_t, "recency greater than t"),
        (
            problems.monetary_not_positive,
            "frequency > 0 but monetary value not > 0",
        ),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{n} with {why}"))
    .collect();
    Some(format!(
        "{kind}: {} of {rows} rows are not valid input ({}); filter or fix them before training",
        problems.total(),
        reasons.join(", ")
    ))
}

/// An error unless the optimiser converged to finite, moderate parameters.
pub(super) fn check_converged(
    kind: &str,
    minimum: &optimize::Minimum,
    names: &[&str],
) -> Result<()> {
    // Parameters are optimised as logarithms; beyond e^±30 one has run off to 0 or ∞,
    // which means the data do not identify the model.
    if let Some((name, theta)) = names
        .iter()
        .zip(&minimum.x)
        .find(|(_, theta)| !theta.is_finite() || theta.abs() > 30.0)
    {
        return Err(Error::data(format!(
            "{kind}: the fit did not converge: parameter {name} ran to {:e} after {} \
             iterations; the data do not identify the model (too few customers or repeat \
             purchases?)",
            theta.exp(),
            minimum.iterations
        )));
    }
    if !minimum.converged {
        return Err(Error::data(format!(
            "{kind}: the fit did not converge after {} iterations (largest gradient {:.2e}); \
             try more data or a penalizer (OPTIONS (penalizer = 0.001))",
            minimum.iterations, minimum.gradient_norm
        )));
    }
    Ok(())
}
