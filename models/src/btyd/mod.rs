//! The "buy till you die" (BTYD) models of the customer base: BG/NBD for purchase counts and
//! drop-out, Gamma-Gamma for spend, and customer lifetime value from the two.
//!
//! They are small parametric models fitted by maximum likelihood in f64 on the CPU (a handful
//! of parameters, sums over customers), so they use no tensors; their "weights" are the
//! parameters in the model card.
//!
//! Checks are written `!(x >= 0.0)` on purpose: they must also reject NaN.
//!
//! - [`special`]: ln Γ, digamma and the hypergeometric function the likelihoods need.
//! - [`optimize`]: BFGS, which fits both models.
//! - `fit.rs`: what fitting either model shares: [`TimeUnit`], [`Fit`], the checks of the
//!   training rows and of convergence.
//! - [`bgnbd`] and [`gamma_gamma`]: the two models.
//! - `clv.rs`: [`clv`], customer lifetime value from the two.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod bgnbd;
mod clv;
mod fit;
pub mod gamma_gamma;
pub mod optimize;
pub mod special;

pub use bgnbd::{BgNbd, BgNbdParams};
pub use clv::clv;
pub use fit::{Fit, TimeUnit};
pub use gamma_gamma::{GammaGamma, GammaGammaParams};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_units_parse_and_convert_as_lifetimes_does() {
        assert_eq!(TimeUnit::parse("Weeks").unwrap(), TimeUnit::Week);
        assert_eq!(TimeUnit::Week.per_month(), 4.345);
        assert_eq!(TimeUnit::Day.per_month(), 30.0);
        let err = TimeUnit::parse("fortnight").unwrap_err().to_string();
        assert!(err.contains("'day', 'week' or 'month'"), "{err}");
    }

    #[test]
    fn clv_is_the_discounted_sum_of_monthly_expected_spend() {
        let bg = BgNbd {
            params: BgNbdParams {
                r: 0.242594,
                alpha: 4.413603,
                a: 0.792922,
                b: 2.425906,
            },
            time_unit: TimeUnit::Week,
            fit: Fit::default(),
            repeat_customers: 0,
        };
        let gg = GammaGamma {
            params: GammaGammaParams {
                p: 6.25,
                q: 3.74,
                gamma: 15.44,
            },
            fit: Fit::default(),
            skipped_without_repeat: 0,
            frequency_monetary_correlation: 0.0,
        };
        let (x, tx, t, m) = (3.0, 30.0, 38.0, 40.0);
        // By hand over three months, discount 1% a month.
        let spend = gg.expected_spend(x, m);
        let e = |months: f64| bg.expected_purchases(months * 4.345, x, tx, t);
        let by_hand = spend
            * (e(1.0) / 1.01
                + (e(2.0) - e(1.0)) / 1.01f64.powi(2)
                + (e(3.0) - e(2.0)) / 1.01f64.powi(3));
        let value = clv(&bg, &gg, x, tx, t, m, 3.0, 0.01);
        assert!((value - by_hand).abs() < 1e-9, "{value} vs {by_hand}");
        // No discount and one month: spend × E[purchases in a month].
        assert!((clv(&bg, &gg, x, tx, t, m, 1.0, 0.0) - spend * e(1.0)).abs() < 1e-12);
        assert_eq!(clv(&bg, &gg, x, tx, t, m, 0.0, 0.01), 0.0);
        // Invalid input is NULL (NaN) whatever the horizon.
        assert!(clv(&bg, &gg, -1.0, tx, t, m, 0.0, 0.01).is_nan());
        assert!(clv(&bg, &gg, x, tx, t, m, 1.5, 0.01).is_nan());
        // lifetimes 0.11.3: GammaGammaFitter.customer_lifetime_value(time=12,
        // discount_rate=0.01, freq='W') with the same parameters.
        for ((x, tx, t, m), value) in [
            ((3.0, 30.0, 38.0, 40.0), 84.989_265_460_306_31),
            ((0.0, 0.0, 38.86, 0.0), 8.355_508_834_165_308),
            ((10.0, 37.0, 38.0, 25.0), 204.869_217_539_871_98),
        ] {
            let ours = clv(&bg, &gg, x, tx, t, m, 12.0, 0.01);
            assert!((ours - value).abs() < 1e-6, "{ours} vs {value}");
        }
        assert!(clv(&bg, &gg, x, 50.0, t, m, 12.0, 0.01).is_nan());
    }
}

/// Fits on the CDNOW sample shipped in tests/data, against the published estimates.
#[cfg(test)]
mod cdnow {
    use std::collections::BTreeMap;

    use super::*;

    /// Days since 1970-01-01 of an ISO date (Howard Hinnant's days_from_civil).
    fn day_number(date: &str) -> i64 {
        let mut parts = date.split('-').map(|p| p.parse::<i64>().unwrap());
        let (y, m, d) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// (frequency, recency, T, monetary) per customer in weeks, calibration to 1997-09-30,
    /// same-day purchases merged.
    fn calibration_summary() -> Vec<(f64, f64, f64, f64)> {
        // The directory at run time (cargo sets it for tests): a test binary cargo reuses
        // from a build in another checkout would carry that checkout's path.
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let path = format!("{dir}/../tests/data/cdnow/cdnow_sample.csv");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let end = day_number("1997-09-30");
        let mut days: BTreeMap<u32, BTreeMap<i64, f64>> = BTreeMap::new();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            let day = day_number(fields[2]);
            if day <= end {
                let customer = fields[1].parse().unwrap();
                *days.entry(customer).or_default().entry(day).or_default() +=
                    fields[4].parse::<f64>().unwrap();
            }
        }
        days.values()
            .map(|spend| {
                let first = *spend.keys().next().unwrap();
                let last = *spend.keys().last().unwrap();
                let repeat: Vec<f64> = spend.values().skip(1).copied().collect();
                let monetary = if repeat.is_empty() {
                    0.0
                } else {
                    repeat.iter().sum::<f64>() / repeat.len() as f64
                };
                let weeks = |days: i64| days as f64 / 7.0;
                (
                    repeat.len() as f64,
                    weeks(last - first),
                    weeks(end - first),
                    monetary,
                )
            })
            .collect()
    }

    fn within_one_percent(name: &str, fitted: f64, published: f64) {
        assert!(
            (fitted / published - 1.0).abs() < 0.01,
            "{name}: fitted {fitted}, published {published}"
        );
    }

    #[test]
    fn bgnbd_reproduces_fader_hardie_lee() {
        let summary = calibration_summary();
        assert_eq!(summary.len(), 2357);
        let column =
            |f: fn(&(f64, f64, f64, f64)) -> f64| summary.iter().map(f).collect::<Vec<_>>();
        let model = BgNbd::fit(
            &column(|s| s.0),
            &column(|s| s.1),
            &column(|s| s.2),
            TimeUnit::Week,
            0.0,
            &|| false,
        )
        .unwrap();
        let p = model.params;
        within_one_percent("r", p.r, 0.243);
        within_one_percent("alpha", p.alpha, 4.414);
        within_one_percent("a", p.a, 0.793);
        within_one_percent("b", p.b, 2.426);
        assert!(
            (model.fit.log_likelihood + 9582.4).abs() < 0.5,
            "log-likelihood {}",
            model.fit.log_likelihood
        );
    }

    #[test]
    fn gamma_gamma_reproduces_fader_hardie_lee() {
        let summary = calibration_summary();
        let x: Vec<f64> = summary.iter().map(|s| s.0).collect();
        let m: Vec<f64> = summary.iter().map(|s| s.3).collect();
        let model = GammaGamma::fit(&x, &m, 0.0, &|| false).unwrap();
        assert_eq!(model.fit.customers, 946);
        assert_eq!(model.skipped_without_repeat, 2357 - 946);
        within_one_percent("p", model.params.p, 6.25);
        within_one_percent("q", model.params.q, 3.74);
        within_one_percent("gamma", model.params.gamma, 15.44);
    }

    #[test]
    fn bad_input_is_counted_and_named() {
        let err = BgNbd::fit(
            &[1.0, 2.0, f64::NAN, 0.0],
            &[5.0, 12.0, 1.0, 0.0],
            &[10.0, 11.0, 3.0, 4.0],
            TimeUnit::Day,
            0.0,
            &|| false,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "bgnbd: 2 of 4 rows are not valid input (1 with NULL or NaN, 1 with recency greater \
             than t); filter or fix them before training"
        );
        let err = BgNbd::fit(
            &[0.0, 0.0],
            &[0.0, 0.0],
            &[3.0, 4.0],
            TimeUnit::Day,
            0.0,
            &|| false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("none of the 2 customers has a repeat purchase"),
            "{err}"
        );
        let err = GammaGamma::fit(&[1.0, 2.0, 3.0], &[10.0, 0.0, 5.0], 0.0, &|| false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 with frequency > 0 but monetary value not > 0"),
            "{err}"
        );
    }
}
