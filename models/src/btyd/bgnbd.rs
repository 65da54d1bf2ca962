//! KIND bgnbd: the BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005, "Counting
//! your customers the easy way"), fitted by maximum likelihood in f64.
//!
//! A customer buys at a Poisson rate λ ~ Gamma(r, α) while alive and, after each purchase,
//! drops out with probability p ~ Beta(a, b). Input per customer: frequency x (repeat
//! purchases), recency t_x (time of the last purchase since the first) and T (time since the
//! first purchase), all in the model's time unit.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::fit::{Fit, InvalidRows, TimeUnit, check_converged, invalid_rows_error};
use super::optimize::bfgs;
use super::special::{digamma, hyp2f1, ln_gamma};
use crate::error::{Error, Result};

/// The fitted parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbdParams {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Everything a BG/NBD model is: parameters, time unit and how the fit went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BgNbd {
    pub params: BgNbdParams,
    pub time_unit: TimeUnit,
    pub fit: Fit,
    /// Customers with at least one repeat purchase.
    pub repeat_customers: u64,
}

/// One distinct (x, t_x, T) and how many customers share it.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// Index into the distinct frequencies.
    x_index: u32,
    recency: f64,
    age: f64,
    weight: f64,
}

/// Series terms allowed for ₂F₁ before a prediction is reported as not computable (NULL).
const MAX_SERIES_TERMS: usize = 1_000_000;

/// Whether (x, t_x, T) is BG/NBD input: finite, non-negative, x a whole number, t_x ≤ T.
pub fn valid_input(x: f64, recency: f64, age: f64) -> bool {
    x >= 0.0
        && x.is_finite()
        && x.fract() == 0.0
        && recency >= 0.0
        && age.is_finite()
        && recency <= age
}

impl BgNbd {
    /// Maximum-likelihood fit. `penalizer` adds penalizer × Σ params² to the negative mean
    /// log-likelihood, as lifetimes' penalizer_coef does.
    pub fn fit(
        frequency: &[f64],
        recency: &[f64],
        age: &[f64],
        time_unit: TimeUnit,
        penalizer: f64,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<BgNbd> {
        let started = std::time::Instant::now();
        if frequency.is_empty() {
            return Err(Error::data("bgnbd: the training query returned no rows"));
        }
        let mut problems = InvalidRows::default();
        for ((&x, &tx), &t) in frequency.iter().zip(recency).zip(age) {
            problems.check_bgnbd(x, tx, t);
        }
        if let Some(message) = invalid_rows_error("bgnbd", frequency.len(), &problems) {
            return Err(Error::data(message));
        }
        let repeat_customers = frequency.iter().filter(|&&x| x > 0.0).count() as u64;
        if repeat_customers == 0 {
            return Err(Error::data(format!(
                "bgnbd: none of the {} customers has a repeat purchase (frequency > 0); the \
                 model cannot be fitted without them",
                frequency.len()
            )));
        }

        // Customers sharing (x, t_x, T) contribute identical terms: fit on the distinct ones.
        let mut distinct_x: Vec<f64> = Vec::new();
        let mut x_index: HashMap<u64, u32> = HashMap::new();
        let mut rows: HashMap<(u64, u64, u64), f64> = HashMap::new();
        for ((&x, &tx), &t) in frequency.iter().zip(recency).zip(age) {
            // For x = 0 the likelihood does not depend on t_x.
            let tx = if x == 0.0 { 0.0 } else { tx };
            x_index.entry(x.to_bits()).or_insert_with(|| {
                distinct_x.push(x);
                (distinct_x.len() - 1) as u32
            });
            *rows
                .entry((x.to_bits(), tx.to_bits(), t.to_bits()))
                .or_default() += 1.0;
        }
        let rows: Vec<Row> = rows
            .into_iter()
            .map(|((x, tx, t), weight)| Row {
                x_index: x_index[&x],
                recency: f64::from_bits(tx),
                age: f64::from_bits(t),
                weight,
            })
            .collect();
        let total_weight = frequency.len() as f64;

        // Start where the purchase rate r/α matches the mean rate and a = b = 1.
        let mean_x = frequency.iter().sum::<f64>() / total_weight;
        let mean_t = age.iter().sum::<f64>() / total_weight;
        let alpha0 = (mean_t / mean_x.max(1e-3)).clamp(1e-3, 1e6);
        let start = [0.0, alpha0.ln(), 0.0, 0.0];
        let mut objective = |theta: &[f64]| {
            let params = params_from(theta);
            let (ll, gradient) = log_likelihood(&params, &distinct_x, &rows);
            let p = [params.r, params.alpha, params.a, params.b];
            let value = -ll / total_weight + penalizer * p.iter().map(|v| v * v).sum::<f64>();
            let gradient: Vec<f64> = (0..4)
                .map(|i| (-gradient[i] / total_weight + 2.0 * penalizer * p[i]) * p[i])
                .collect();
            (value, gradient)
        };
        let minimum = bfgs(&mut objective, &start, 1e-9, 2_000, cancelled);
        if cancelled() {
            return Err(Error::Cancelled);
        }
        let params = params_from(&minimum.x);
        check_converged("bgnbd", &minimum, &["r", "alpha", "a", "b"])?;
        let (log_likelihood, _) = log_likelihood(&params, &distinct_x, &rows);
        Ok(BgNbd {
            params,
            time_unit,
            fit: Fit {
                log_likelihood,
                customers: frequency.len() as u64,
                iterations: minimum.iterations as u64,
                seconds: started.elapsed().as_secs_f64(),
            },
            repeat_customers,
        })
    }

    /// P(alive | x, t_x, T); NaN for input that is not valid. 1 for every customer without a
    /// repeat purchase, by construction of the model (drop-out happens only after a purchase).
    pub fn p_alive(&self, x: f64, recency: f64, age: f64) -> f64 {
        if !valid_input(x, recency, age) {
            return f64::NAN;
        }
        let BgNbdParams { r, alpha, a, b } = self.params;
        if x == 0.0 {
            return 1.0;
        }
        let odds = (a / (b + x - 1.0)) * ((alpha + age) / (alpha + recency)).powf(r + x);
        1.0 / (1.0 + odds)
    }

    /// E[purchases in (T, T + horizon] | x, t_x, T]: the expected repeat purchases of a customer
    /// over the next `horizon` time units; NaN for input that is not valid.
    pub fn expected_purchases(&self, horizon: f64, x: f64, recency: f64, age: f64) -> f64 {
        if !valid_input(x, recency, age) || !(horizon >= 0.0) || !horizon.is_finite() {
            return f64::NAN;
        }
        if horizon == 0.0 {
            return 0.0;
        }
        let BgNbdParams { r, alpha, a, b } = self.params;
        // ₂F₁(r+x, b+x; a+b+x-1; z) through Euler's transformation, (1-z)^(a-1-r-x) times a
        // series in small parameters, which converges fast and cannot overflow for large x.
        let z = horizon / (alpha + age + horizon);
        let Some(series) = hyp2f1(
            a + b - 1.0 - r,
            a - 1.0,
            a + b + x - 1.0,
            z,
            MAX_SERIES_TERMS,
        ) else {
            return f64::NAN;
        };
        let numerator = (a + b + x - 1.0) / (a - 1.0) * (1.0 - (1.0 - z).powf(a - 1.0) * series);
        let denominator = if x > 0.0 {
            1.0 + (a / (b + x - 1.0)) * ((alpha + age) / (alpha + recency)).powf(r + x)
        } else {
            1.0
        };
        numerator / denominator
    }

    /// E[X(t)]: the expected purchases of a customer just acquired, over `horizon` time units.
    pub fn expected_purchases_new(&self, horizon: f64) -> f64 {
        // The conditional expectation of a customer with no history (x = t_x = T = 0).
        self.expected_purchases(horizon, 0.0, 0.0, 0.0)
    }

    /// P(X(t) = n): the probability that a customer just acquired makes exactly `n` purchases
    /// in their first `horizon` time units (Fader, Hardie & Lee 2005, eq. 8).
    pub fn purchase_probability(&self, n: f64, horizon: f64) -> f64 {
        if !(n >= 0.0) || n.fract() != 0.0 || !n.is_finite() || !(horizon > 0.0) {
            return f64::NAN;
        }
        let BgNbdParams { r, alpha, a, b } = self.params;
        let ln_beta = |x: f64, y: f64| ln_gamma(x) + ln_gamma(y) - ln_gamma(x + y);
        let ln_stay = (alpha / (alpha + horizon)).ln();
        let ln_buy = (horizon / (alpha + horizon)).ln();
        // ln of Γ(r+j) / (Γ(r) j!) (α/(α+t))^r (t/(α+t))^j: the NBD probability of j purchases.
        let ln_nbd =
            |j: f64| ln_gamma(r + j) - ln_gamma(r) - ln_gamma(j + 1.0) + r * ln_stay + j * ln_buy;
        let mut p = (ln_beta(a, b + n) - ln_beta(a, b) + ln_nbd(n)).exp();
        if n > 0.0 {
            let below: f64 = (0..n as u64).map(|j| ln_nbd(j as f64).exp()).sum();
            p += (ln_beta(a + 1.0, b + n - 1.0) - ln_beta(a, b)).exp() * (1.0 - below);
        }
        p
    }

    /// The card's metrics.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let p = self.params;
        vec![
            ("r".into(), p.r),
            ("alpha".into(), p.alpha),
            ("a".into(), p.a),
            ("b".into(), p.b),
            ("log_likelihood".into(), self.fit.log_likelihood),
            ("customers".into(), self.fit.customers as f64),
            ("repeat_customers".into(), self.repeat_customers as f64),
            ("iterations".into(), self.fit.iterations as f64),
        ]
    }
}

fn params_from(theta: &[f64]) -> BgNbdParams {
    BgNbdParams {
        r: theta[0].exp(),
        alpha: theta[1].exp(),
        a: theta[2].exp(),
        b: theta[3].exp(),
    }
}

/// Terms of the log-likelihood that depend only on x, with their derivatives in
/// (r, α, a, b); `ln_a_over` is ln a - ln(b+x-1), the constant of the drop-out term.
struct FrequencyTerms {
    x: f64,
    constant: f64,
    d_constant: [f64; 4],
    ln_a_over: f64,
}

/// Σ weight × ln L(r, α, a, b | x, t_x, T) and its gradient in (r, α, a, b).
fn log_likelihood(p: &BgNbdParams, distinct_x: &[f64], rows: &[Row]) -> (f64, [f64; 4]) {
    let BgNbdParams { r, alpha, a, b } = *p;
    let (lg_r, lg_ab, lg_b) = (ln_gamma(r), ln_gamma(a + b), ln_gamma(b));
    let (dg_r, dg_ab, dg_b) = (digamma(r), digamma(a + b), digamma(b));
    let terms: Vec<FrequencyTerms> = distinct_x
        .iter()
        .map(|&x| {
            let constant = ln_gamma(r + x) - lg_r + r * alpha.ln() + lg_ab + ln_gamma(b + x)
                - lg_b
                - ln_gamma(a + b + x);
            let d_constant = [
                digamma(r + x) - dg_r + alpha.ln(),
                r / alpha,
                dg_ab - digamma(a + b + x),
                dg_ab + digamma(b + x) - dg_b - digamma(a + b + x),
            ];
            let ln_a_over = if x > 0.0 {
                a.ln() - (b + x - 1.0).ln()
            } else {
                f64::NEG_INFINITY
            };
            FrequencyTerms {
                x,
                constant,
                d_constant,
                ln_a_over,
            }
        })
        .collect();
    let sum_row = |row: &Row| -> (f64, [f64; 4]) {
        let t = &terms[row.x_index as usize];
        let x = t.x;
        let w = row.weight;
        let ln_age = (alpha + row.age).ln();
        let u = -(r + x) * ln_age;
        let mut ll = t.constant;
        let mut g = t.d_constant;
        if x > 0.0 {
            let ln_recency = (alpha + row.recency).ln();
            let v = t.ln_a_over - (r + x) * ln_recency;
            let m = u.max(v);
            let lse = m + ((u - m).exp() + (v - m).exp()).ln();
            let (pu, pv) = ((u - lse).exp(), (v - lse).exp());
            ll += lse;
            g[0] += -pu * ln_age - pv * ln_recency;
            g[1] += -(r + x) * (pu / (alpha + row.age) + pv / (alpha + row.recency));
            g[2] += pv / a;
            g[3] += -pv / (b + x - 1.0);
        } else {
            ll += u;
            g[0] += -ln_age;
            g[1] += -(r + x) / (alpha + row.age);
        }
        (w * ll, g.map(|gi| w * gi))
    };
    let add = |(l1, g1): (f64, [f64; 4]), (l2, g2): (f64, [f64; 4])| {
        (
            l1 + l2,
            [g1[0] + g2[0], g1[1] + g2[1], g1[2] + g2[2], g1[3] + g2[3]],
        )
    };
    const CHUNK: usize = 16_384;
    rows.par_chunks(CHUNK)
        .map(|chunk| chunk.iter().map(sum_row).fold((0.0, [0.0; 4]), add))
        .reduce(|| (0.0, [0.0; 4]), add)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(r: f64, alpha: f64, a: f64, b: f64) -> BgNbd {
        BgNbd {
            params: BgNbdParams { r, alpha, a, b },
            time_unit: TimeUnit::Week,
            fit: Fit::default(),
            repeat_customers: 0,
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let distinct_x = vec![0.0, 1.0, 4.0];
        let rows = vec![
            Row {
                x_index: 0,
                recency: 0.0,
                age: 30.0,
                weight: 3.0,
            },
            Row {
                x_index: 1,
                recency: 10.0,
                age: 25.0,
                weight: 1.0,
            },
            Row {
                x_index: 2,
                recency: 35.0,
                age: 38.0,
                weight: 2.0,
            },
        ];
        let p = BgNbdParams {
            r: 0.3,
            alpha: 4.0,
            a: 0.8,
            b: 2.5,
        };
        let (_, gradient) = log_likelihood(&p, &distinct_x, &rows);
        let at = |i: usize, h: f64| {
            let mut q = [p.r, p.alpha, p.a, p.b];
            q[i] += h;
            let q = BgNbdParams {
                r: q[0],
                alpha: q[1],
                a: q[2],
                b: q[3],
            };
            log_likelihood(&q, &distinct_x, &rows).0
        };
        for (i, g) in gradient.iter().enumerate() {
            let numeric = (at(i, 1e-6) - at(i, -1e-6)) / 2e-6;
            assert!(
                (g - numeric).abs() < 1e-5 * numeric.abs().max(1.0),
                "{i}: {g} vs {numeric}"
            );
        }
    }

    #[test]
    fn predictions_match_lifetimes() {
        // Reference values from lifetimes 0.11.3's BetaGeoFitter with these parameters
        // (benches/btyd_reference.py prints them).
        let m = model(0.242594, 4.413603, 0.792922, 2.425906);
        assert_eq!(m.p_alive(0.0, 0.0, 38.86), 1.0);
        assert!((m.p_alive(2.0, 30.43, 38.86) - 0.726_609_15).abs() < 1e-7);
        assert!((m.p_alive(2.0, 5.0, 38.86) - 0.123_745_73).abs() < 1e-7);
        assert!((m.p_alive(10.0, 37.0, 38.0) - 0.918_603_93).abs() < 1e-7);
        let expected = [
            ((2.0, 30.43, 38.86), 1.225_906_506_527_979_3),
            ((2.0, 5.0, 38.86), 0.208_778_943_760_203_1),
            ((0.0, 0.0, 38.86), 0.194_781_617_448_655_24),
            ((10.0, 37.0, 38.0), 6.794_445_893_315_589),
        ];
        for ((x, tx, t), value) in expected {
            let ours = m.expected_purchases(39.0, x, tx, t);
            assert!(
                (ours - value).abs() < 1e-9 * value,
                "{x} {tx} {t}: {ours} vs {value}"
            );
        }
        assert!((m.expected_purchases_new(39.0) - 1.195_007_416_800_409).abs() < 1e-9);
        let p_n = [
            0.574_307_882_208_032_9,
            0.199_192_277_479_247_45,
            0.085_322_778_877_134_52,
        ];
        for (n, value) in p_n.iter().enumerate() {
            assert!((m.purchase_probability(n as f64, 39.0) - value).abs() < 1e-9);
        }
        // recency > T is not valid input.
        assert!(m.p_alive(1.0, 40.0, 38.86).is_nan());
        assert!(m.expected_purchases(39.0, 1.0, 50.0, 20.0).is_nan());
        assert!(m.p_alive(1.5, 10.0, 38.86).is_nan());
        // The series stays finite for very frequent buyers.
        let heavy = m.expected_purchases(52.0, 400.0, 77.0, 78.0);
        assert!(heavy.is_finite() && heavy > 100.0, "{heavy}");
    }

    #[test]
    fn purchase_probabilities_sum_to_one() {
        let m = model(0.242594, 4.413603, 0.792922, 2.425906);
        let total: f64 = (0..2000)
            .map(|n| m.purchase_probability(n as f64, 39.0))
            .sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        // And their mean is E[X(t)].
        let mean: f64 = (0..2000)
            .map(|n| n as f64 * m.purchase_probability(n as f64, 39.0))
            .sum();
        assert!((mean - m.expected_purchases_new(39.0)).abs() < 1e-6);
    }
}
