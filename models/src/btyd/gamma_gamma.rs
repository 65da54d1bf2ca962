//! KIND gamma_gamma: the Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005,
//! "RFM and CLV: using iso-value curves"), fitted by maximum likelihood in f64.
//!
//! A customer's transaction values are Gamma(p, ν) with ν ~ Gamma(q, γ) across customers.
//! Input per customer: frequency x (repeat purchases) and monetary m (the mean value of those
//! repeat purchases). Customers without a repeat purchase carry no spend information and are
//! left out of the fit.

use serde::{Deserialize, Serialize};

use super::fit::{Fit, InvalidRows, check_converged, invalid_rows_error};
use super::optimize::bfgs;
use super::special::{digamma, ln_gamma};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGammaParams {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GammaGamma {
    pub params: GammaGammaParams,
    pub fit: Fit,
    /// Rows left out because the customer has no repeat purchase.
    pub skipped_without_repeat: u64,
    /// Pearson correlation of frequency and monetary value over the fitted customers; the
    /// model assumes they are independent, so a value far from 0 is a warning.
    pub frequency_monetary_correlation: f64,
}

impl GammaGamma {
    pub fn fit(
        frequency: &[f64],
        monetary: &[f64],
        penalizer: f64,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<GammaGamma> {
        let started = std::time::Instant::now();
        let mut problems = InvalidRows::default();
        let mut x = Vec::new();
        let mut m = Vec::new();
        for (&f, &v) in frequency.iter().zip(monetary) {
            problems.check_gamma_gamma(f, v);
            if f > 0.0 && f.is_finite() && v > 0.0 && v.is_finite() {
                x.push(f);
                m.push(v);
            }
        }
        if let Some(message) = invalid_rows_error("gamma_gamma", frequency.len(), &problems) {
            return Err(Error::data(message));
        }
        if x.len() < 2 {
            return Err(Error::data(format!(
                "gamma_gamma: {} of the {} rows have a repeat purchase (frequency > 0); the \
                 model needs at least 2",
                x.len(),
                frequency.len()
            )));
        }
        let n = x.len() as f64;
        let mean_m = m.iter().sum::<f64>() / n;
        // Start at p = 1, q = 2, where the population mean spend pγ/(q-1) is the data's.
        let start = [0.0, 2f64.ln(), mean_m.ln()];
        let mut objective = |theta: &[f64]| {
            let (p, q, g) = (theta[0].exp(), theta[1].exp(), theta[2].exp());
            let (ll, grad) = log_likelihood(p, q, g, &x, &m);
            let params = [p, q, g];
            let value = -ll / n + penalizer * params.iter().map(|v| v * v).sum::<f64>();
            let gradient: Vec<f64> = (0..3)
                .map(|i| (-grad[i] / n + 2.0 * penalizer * params[i]) * params[i])
                .collect();
            (value, gradient)
        };
        let minimum = bfgs(&mut objective, &start, 1e-9, 2_000, cancelled);
        if cancelled() {
            return Err(Error::Cancelled);
        }
        check_converged("gamma_gamma", &minimum, &["p", "q", "gamma"])?;
        let (p, q, gamma) = (minimum.x[0].exp(), minimum.x[1].exp(), minimum.x[2].exp());
        let (log_likelihood, _) = log_likelihood(p, q, gamma, &x, &m);
        Ok(GammaGamma {
            params: GammaGammaParams { p, q, gamma },
            fit: Fit {
                log_likelihood,
                customers: x.len() as u64,
                iterations: minimum.iterations as u64,
                seconds: started.elapsed().as_secs_f64(),
            },
            skipped_without_repeat: (frequency.len() - x.len()) as u64,
            frequency_monetary_correlation: correlation(&x, &m),
        })
    }

    /// E[spend per transaction | x, m̄]: the customer's expected mean transaction value, a
    /// weighted average of the population mean and their own; the population mean for
    /// x = 0. NaN for input that is not valid or when q ≤ 1 (the population mean is infinite).
    pub fn expected_spend(&self, x: f64, m: f64) -> f64 {
        let GammaGammaParams { p, q, gamma } = self.params;
        if !(x >= 0.0) || !x.is_finite() || q <= 1.0 {
            return f64::NAN;
        }
        if x == 0.0 {
            return p * gamma / (q - 1.0);
        }
        if !(m > 0.0) || !m.is_finite() {
            return f64::NAN;
        }
        (gamma + m * x) * p / (p * x + q - 1.0)
    }

    /// The population mean spend per transaction, pγ/(q-1).
    pub fn mean_spend(&self) -> f64 {
        self.expected_spend(0.0, 0.0)
    }

    pub fn metrics(&self) -> Vec<(String, f64)> {
        let p = self.params;
        vec![
            ("p".into(), p.p),
            ("q".into(), p.q),
            ("gamma".into(), p.gamma),
            ("log_likelihood".into(), self.fit.log_likelihood),
            ("customers".into(), self.fit.customers as f64),
            ("mean_spend".into(), self.mean_spend()),
            (
                "frequency_monetary_correlation".into(),
                self.frequency_monetary_correlation,
            ),
            ("iterations".into(), self.fit.iterations as f64),
        ]
    }
}

/// Σ ln L(p, q, γ | x, m) and its gradient in (p, q, γ).
fn log_likelihood(p: f64, q: f64, gamma: f64, x: &[f64], m: &[f64]) -> (f64, [f64; 3]) {
    let (lg_q, dg_q, ln_gamma_param) = (ln_gamma(q), digamma(q), gamma.ln());
    let mut ll = 0.0;
    let mut g = [0.0; 3];
    for (&x, &m) in x.iter().zip(m) {
        let px = p * x;
        let ln_denominator = (gamma + m * x).ln();
        ll += ln_gamma(px + q) - ln_gamma(px) - lg_q
            + q * ln_gamma_param
            + (px - 1.0) * m.ln()
            + px * x.ln()
            - (px + q) * ln_denominator;
        let dg_pxq = digamma(px + q);
        g[0] += x * (dg_pxq - digamma(px) + m.ln() + x.ln() - ln_denominator);
        g[1] += dg_pxq - dg_q + ln_gamma_param - ln_denominator;
        g[2] += q / gamma - (px + q) / (gamma + m * x);
    }
    (ll, g)
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    cov / (va * vb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let x = [1.0, 3.0, 7.0];
        let m = [20.0, 35.5, 12.25];
        let (p, q, g) = (6.0, 3.5, 15.0);
        let (_, grad) = log_likelihood(p, q, g, &x, &m);
        let at = |i: usize, h: f64| {
            let mut v = [p, q, g];
            v[i] += h;
            log_likelihood(v[0], v[1], v[2], &x, &m).0
        };
        for (i, gi) in grad.iter().enumerate() {
            let numeric = (at(i, 1e-6) - at(i, -1e-6)) / 2e-6;
            assert!(
                (gi - numeric).abs() < 1e-5 * numeric.abs().max(1.0),
                "{i}: {gi} vs {numeric}"
            );
        }
    }

    #[test]
    fn expected_spend_shrinks_towards_the_population_mean() {
        let model = GammaGamma {
            params: GammaGammaParams {
                p: 6.25,
                q: 3.74,
                gamma: 15.44,
            },
            fit: Fit::default(),
            skipped_without_repeat: 0,
            frequency_monetary_correlation: 0.0,
        };
        let population = 6.25 * 15.44 / 2.74;
        assert!((model.mean_spend() - population).abs() < 1e-12);
        // By hand: (γ + m x) p / (p x + q - 1) for x = 2, m = 50.
        let expected = (15.44 + 100.0) * 6.25 / (12.5 + 2.74);
        assert!((model.expected_spend(2.0, 50.0) - expected).abs() < 1e-12);
        assert!(model.expected_spend(2.0, 50.0) < 50.0);
        assert!(model.expected_spend(2.0, -1.0).is_nan());
        // lifetimes 0.11.3: GammaGammaFitter.conditional_expected_average_profit.
        assert!((model.expected_spend(3.0, 40.0) - 39.390_414_146_114_47).abs() < 1e-9);
        assert!((model.expected_spend(10.0, 25.0) - 25.429_184_549_356_222).abs() < 1e-9);
        assert!(model.expected_spend(-1.0, 10.0).is_nan());
    }
}
