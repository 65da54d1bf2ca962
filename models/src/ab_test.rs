//! The statistics of an A/B test: each arm against the control arm.
//!
//! The formulas are the ones data scientists check against, so that `ab_test`'s figures
//! equal theirs (tests/clients/ab_test_reference.py compares them with scipy and
//! statsmodels):
//!
//! - A binary outcome (converted, retained): the two-proportion z-test with the pooled
//!   proportion (statsmodels' `proportions_ztest`), the Wald interval of the difference
//!   (`confint_proportions_2indep(method='wald')`), and the probability that the arm's rate
//!   beats control's under uniform Beta(1, 1) priors, exact (Evan Miller's sum, a term at a
//!   time by its recurrence) while the smaller posterior has at most [`EXACT_BETA_TERMS`]
//!   successes, and by the normal approximation of both posteriors beyond (within 1e-3 of
//!   the exact sum there).
//! - A numeric outcome (revenue, orders): Welch's t-test and its interval (scipy's
//!   `ttest_ind(equal_var=False)`), and the probability to beat control under flat priors,
//!   the normal approximation Φ(difference / standard error).
//! - [`sample_size_per_arm`]: the units per arm a two-sided test of two proportions needs
//!   (statsmodels' `NormalIndPower` on Cohen's h).

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};
use statrs::function::beta::ln_beta;

/// The exact Beta comparison sums this many terms at most (a few milliseconds).
pub const EXACT_BETA_TERMS: f64 = 1_000_000.0;

/// The confidence level of the intervals.
pub const CONFIDENCE: f64 = 0.95;

/// One arm's outcomes, accumulated one value at a time: the sum (exact for counts, so a
/// rate is conversions / n to the last bit) and Welford's running mean and squared
/// deviations, so the variance of large values keeps its digits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ArmStats {
    pub n: u64,
    sum: f64,
    running_mean: f64,
    /// The sum of squared deviations from the mean.
    m2: f64,
}

impl ArmStats {
    pub fn push(&mut self, value: f64) {
        self.n += 1;
        self.sum += value;
        let delta = value - self.running_mean;
        self.running_mean += delta / self.n as f64;
        self.m2 += delta * (value - self.running_mean);
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }

    /// The sample variance (n - 1 in the denominator); NaN below two values.
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            f64::NAN
        } else {
            self.m2 / (self.n - 1) as f64
        }
    }

    /// The number of ones, for a binary outcome.
    fn successes(&self) -> f64 {
        self.sum
    }
}

/// Whether the outcome is binary (a rate) or a number (a mean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Binary,
    Numeric,
}

impl Outcome {
    pub fn test_name(self) -> &'static str {
        match self {
            Outcome::Binary => "two-proportion z-test",
            Outcome::Numeric => "Welch t-test",
        }
    }
}

/// An arm against control. Figures that cannot be computed (an arm of one unit for a
/// t-test, a variance of zero in both arms) are NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// The arm's mean minus control's.
    pub difference: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// The difference relative to control's mean (NaN when control's mean is 0).
    pub relative_lift: f64,
    /// Two-sided.
    pub p_value: f64,
    /// The posterior probability that the arm's true mean is above control's.
    pub p_beat_control: f64,
}

fn standard_normal() -> Normal {
    Normal::new(0.0, 1.0).expect("valid parameters")
}

/// The two-sided critical value of the normal distribution at [`CONFIDENCE`].
fn z_critical() -> f64 {
    standard_normal().inverse_cdf(1.0 - (1.0 - CONFIDENCE) / 2.0)
}

/// Compares `arm` with `control`.
pub fn compare(outcome: Outcome, arm: &ArmStats, control: &ArmStats) -> Comparison {
    let difference = arm.mean() - control.mean();
    let relative_lift = if control.mean() == 0.0 {
        f64::NAN
    } else {
        difference / control.mean()
    };
    let normal = standard_normal();
    let (n1, n0) = (arm.n as f64, control.n as f64);
    match outcome {
        Outcome::Binary => {
            let (p1, p0) = (arm.mean(), control.mean());
            let pooled = (arm.successes() + control.successes()) / (n1 + n0);
            let pooled_se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n0)).sqrt();
            let z = difference / pooled_se;
            let se = (p1 * (1.0 - p1) / n1 + p0 * (1.0 - p0) / n0).sqrt();
            let margin = z_critical() * se;
            Comparison {
                difference,
                ci_low: difference - margin,
                ci_high: difference + margin,
                relative_lift,
                p_value: 2.0 * normal.cdf(-z.abs()),
                p_beat_control: beta_beats(
                    1.0 + arm.successes(),
                    1.0 + n1 - arm.successes(),
                    1.0 + control.successes(),
                    1.0 + n0 - control.successes(),
                ),
            }
        }
        Outcome::Numeric => {
            let (v1, v0) = (arm.variance() / n1, control.variance() / n0);
            let se = (v1 + v0).sqrt();
            let df = (v1 + v0).powi(2) / (v1 * v1 / (n1 - 1.0) + v0 * v0 / (n0 - 1.0));
            let t = difference / se;
            let (p_value, margin) = match StudentsT::new(0.0, 1.0, df) {
                Ok(student) if se > 0.0 => (
                    2.0 * student.cdf(-t.abs()),
                    student.inverse_cdf(1.0 - (1.0 - CONFIDENCE) / 2.0) * se,
                ),
                _ => (f64::NAN, f64::NAN),
            };
            Comparison {
                difference,
                ci_low: difference - margin,
                ci_high: difference + margin,
                relative_lift,
                p_value,
                p_beat_control: if se > 0.0 { normal.cdf(t) } else { f64::NAN },
            }
        }
    }
}

/// P(X > Y) for X ~ Beta(a1, b1) and Y ~ Beta(a0, b0).
fn beta_beats(a1: f64, b1: f64, a0: f64, b0: f64) -> f64 {
    if a1.min(a0) - 1.0 > EXACT_BETA_TERMS {
        return normal_beta_beats(a1, b1, a0, b0);
    }
    // Evan Miller's closed form sums over the first argument's successes; with fewer on the
    // other side, sum there and take the complement (ties have probability zero).
    if a1 <= a0 {
        exact_beta_beats(a1, b1, a0, b0)
    } else {
        1.0 - exact_beta_beats(a0, b0, a1, b1)
    }
}

/// P(X > Y) with both Beta posteriors taken as normal with their means and variances.
fn normal_beta_beats(a1: f64, b1: f64, a0: f64, b0: f64) -> f64 {
    let moments = |a: f64, b: f64| (a / (a + b), a * b / ((a + b).powi(2) * (a + b + 1.0)));
    let ((m1, v1), (m0, v0)) = (moments(a1, b1), moments(a0, b0));
    standard_normal().cdf((m1 - m0) / (v1 + v0).sqrt())
}

/// Σ_{i<a1} t_i with t_i = B(a0+i, b0+b1) / ((b1+i) B(1+i, b1) B(a0, b0)), for whole a1 (a
/// count plus one). Each term follows from the last, t_{i+1} = t_i (a0+i)(b1+i) /
/// ((a0+b0+b1+i)(i+1)), in logarithms (the first terms of large counts underflow), summed
/// as a running log-sum-exp.
fn exact_beta_beats(a1: f64, b1: f64, a0: f64, b0: f64) -> f64 {
    let mut log_term = ln_beta(a0, b0 + b1) - ln_beta(a0, b0);
    // The sum is exp(max) * scaled.
    let (mut max, mut scaled) = (log_term, 0.0_f64);
    for i in 0..a1 as u64 {
        if log_term > max {
            scaled *= (max - log_term).exp();
            max = log_term;
        }
        scaled += (log_term - max).exp();
        let i = i as f64;
        log_term += ((a0 + i) * (b1 + i)).ln() - ((a0 + b0 + b1 + i) * (i + 1.0)).ln();
    }
    (max.exp() * scaled).clamp(0.0, 1.0)
}

/// The units each of two equal arms needs for a two-sided test of proportions at `alpha`
/// to detect a change from `baseline` to `baseline + minimum_effect` with probability
/// `power`: statsmodels' `NormalIndPower().solve_power` on Cohen's effect size h. The
/// result is fractional; round it up.
pub fn sample_size_per_arm(
    baseline: f64,
    minimum_effect: f64,
    alpha: f64,
    power: f64,
) -> Result<f64, String> {
    let target = baseline + minimum_effect;
    if !(baseline > 0.0 && baseline < 1.0) {
        return Err(format!("baseline {baseline} is not a rate in (0, 1)"));
    }
    if !(target > 0.0 && target < 1.0) || minimum_effect == 0.0 {
        return Err(format!(
            "minimum_effect {minimum_effect} must be a non-zero change that keeps the rate \
             in (0, 1) (baseline {baseline} + effect = {target})"
        ));
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(format!("alpha {alpha} is not in (0, 1)"));
    }
    // With no units a two-sided test rejects with probability alpha: power starts there.
    if !(power > alpha && power < 1.0) {
        return Err(format!("power {power} must be in (alpha, 1)"));
    }
    let h = (2.0 * target.sqrt().asin() - 2.0 * baseline.sqrt().asin()).abs();
    let normal = standard_normal();
    // From the lower tail, which keeps its digits for tiny alpha.
    let critical = -normal.inverse_cdf(alpha / 2.0);
    // Two equal arms of n: the effective sample size is n / 2. Both tails count.
    let power_at = |n: f64| {
        let shift = h * (n / 2.0).sqrt();
        normal.sf(critical - shift) + normal.cdf(-critical - shift)
    };
    // Power rises with n; bracket the root, then bisect to the last bit.
    let (mut low, mut high) = (0.0_f64, 1.0_f64);
    while power_at(high) < power {
        low = high;
        high *= 2.0;
        if high > 1e15 {
            return Err("the effect is too small to detect with any sample".into());
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if mid <= low || mid >= high {
            break;
        }
        if power_at(mid) < power {
            low = mid;
        } else {
            high = mid;
        }
    }
    Ok(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(values: &[f64]) -> ArmStats {
        let mut stats = ArmStats::default();
        values.iter().for_each(|v| stats.push(*v));
        stats
    }

    #[test]
    fn welford_matches_the_two_pass_variance() {
        let values: Vec<f64> = (0..1000).map(|i| 1e6 + f64::from(i % 7)).collect();
        let stats = arm(&values);
        let mean = values.iter().sum::<f64>() / 1000.0;
        let two_pass = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 999.0;
        assert!((stats.variance() - two_pass).abs() < 1e-9 * two_pass);
    }

    #[test]
    fn the_exact_beta_comparison_agrees_with_its_mirror_and_the_normal_limit() {
        // P(X > Y) + P(Y > X) = 1, whichever side the sum runs over.
        let forward = exact_beta_beats(31.0, 71.0, 41.0, 61.0);
        let backward = exact_beta_beats(41.0, 61.0, 31.0, 71.0);
        assert!(
            (forward + backward - 1.0).abs() < 1e-12,
            "{forward} {backward}"
        );
        // Equal posteriors: one half.
        assert!((beta_beats(11.0, 21.0, 11.0, 21.0) - 0.5).abs() < 1e-12);
        // Large counts, whose first terms underflow on their own: the complement agrees.
        let (a1, b1, a0, b0) = (150_001.0, 850_001.0, 149_001.0, 851_001.0);
        let large = exact_beta_beats(a1, b1, a0, b0);
        // (ln Γ of millions keeps about eight digits of the first term.)
        assert!(
            (large + exact_beta_beats(a0, b0, a1, b1) - 1.0).abs() < 1e-7,
            "{large}"
        );
        // Across the switch to the approximation (unequal arms, a low rate: the skewed case)
        // the answer moves by less than 1e-3.
        let at = |successes: f64| {
            // Rates 0.1 and 0.0999 on arms of 10 and 13 times the successes.
            let (a1, b1) = (successes + 1.0, 9.0 * successes + 1.0);
            let n0 = 13.0 * successes;
            let c0 = (0.0999 * n0).round();
            let (a0, b0) = (c0 + 1.0, n0 - c0 + 1.0);
            (beta_beats(a1, b1, a0, b0), exact_beta_beats(a1, b1, a0, b0))
        };
        let (below, exact_below) = at(EXACT_BETA_TERMS - 1.0);
        assert_eq!(below, exact_below, "the exact sum below the switch");
        let (above, exact_above) = at(EXACT_BETA_TERMS + 1.0);
        assert_ne!(above, exact_above, "the approximation above it");
        assert!((above - exact_above).abs() < 1e-3, "{above} {exact_above}");
        assert!(
            above > 0.6 && above < 0.99,
            "a case between the extremes: {above}"
        );
    }

    #[test]
    fn degenerate_arms_give_nan_not_panics() {
        let constant = arm(&[2.0, 2.0, 2.0]);
        let c = compare(Outcome::Numeric, &constant, &constant);
        assert!(c.p_value.is_nan() && c.p_beat_control.is_nan());
        let single = arm(&[1.0]);
        assert!(
            compare(Outcome::Numeric, &single, &arm(&[1.0, 2.0]))
                .p_value
                .is_nan()
        );
        let zeros = arm(&[0.0; 10]);
        let b = compare(Outcome::Binary, &zeros, &zeros);
        assert!(b.relative_lift.is_nan());
        assert!((b.p_beat_control - 0.5).abs() < 1e-12);
    }

    #[test]
    fn sample_sizes_refuse_impossible_plans() {
        assert!(sample_size_per_arm(0.1, 0.0, 0.05, 0.8).is_err());
        assert!(sample_size_per_arm(0.95, 0.1, 0.05, 0.8).is_err());
        assert!(sample_size_per_arm(1.5, 0.1, 0.05, 0.8).is_err());
        assert!(sample_size_per_arm(0.1, 0.02, 0.0, 0.8).is_err());
        assert!(sample_size_per_arm(0.1, 0.02, 0.05, 1.0).is_err());
        // Power at or below alpha needs no units at all: refused, not answered with 0.
        assert!(sample_size_per_arm(0.1, 0.02, 0.05, 0.04).is_err());
        // A tiny alpha still plans (the critical value is read from the lower tail).
        assert!(sample_size_per_arm(0.1, 0.02, 1e-20, 0.8).unwrap() > 20_000.0);
        let up = sample_size_per_arm(0.1, 0.02, 0.05, 0.8).unwrap();
        let more_power = sample_size_per_arm(0.1, 0.02, 0.05, 0.9).unwrap();
        assert!(more_power > up && up > 1000.0);
    }
}
