//! Special functions the BTYD models need, in f64: log-gamma (from libm), digamma and the
//! Gauss hypergeometric series.

/// ln Γ(x) for x > 0.
pub fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// ψ(x) = d/dx ln Γ(x) for x > 0: the recurrence ψ(x) = ψ(x + 1) - 1/x up to x ≥ 10, then the
/// asymptotic series, accurate to about 1e-13.
pub fn digamma(mut x: f64) -> f64 {
    let mut result = 0.0;
    while x < 10.0 {
        result -= 1.0 / x;
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    // Bernoulli-number coefficients B_2k / (2k).
    let series = inv2
        * (1.0 / 12.0
            - inv2
                * (1.0 / 120.0
                    - inv2 * (1.0 / 252.0 - inv2 * (1.0 / 240.0 - inv2 * (1.0 / 132.0)))));
    result + x.ln() - 0.5 * inv - series
}

/// ₂F₁(a, b; c; z) by its power series, for 0 ≤ z < 1 and c > 0. Returns None when the
/// series has not converged to relative precision 1e-15 after `max_terms` terms.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64, max_terms: usize) -> Option<f64> {
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 0..max_terms {
        let k = k as f64;
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        if term.abs() <= 1e-15 * sum.abs() {
            return Some(sum);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digamma_matches_known_values() {
        // ψ(1) = -γ (Euler–Mascheroni), ψ(1/2) = -γ - 2 ln 2, ψ(10) from tables.
        let euler = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + euler).abs() < 1e-13);
        assert!((digamma(0.5) + euler + 2.0 * 2f64.ln()).abs() < 1e-13);
        assert!((digamma(10.0) - 2.251_752_589_066_721).abs() < 1e-13);
        // And it is the derivative of ln Γ.
        for x in [0.3, 2.5, 17.0] {
            let h = 1e-6;
            let numeric = (ln_gamma(x + h) - ln_gamma(x - h)) / (2.0 * h);
            assert!((digamma(x) - numeric).abs() < 1e-7, "{x}");
        }
    }

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // ₂F₁(1, 1; 2; z) = -ln(1 - z) / z.
        let z = 0.7;
        let expected = -(1.0f64 - z).ln() / z;
        assert!((hyp2f1(1.0, 1.0, 2.0, z, 10_000).unwrap() - expected).abs() < 1e-12);
        // ₂F₁(a, b; b; z) = (1 - z)^-a.
        let value = hyp2f1(0.4, 2.5, 2.5, 0.3, 10_000).unwrap();
        assert!((value - 0.7f64.powf(-0.4)).abs() < 1e-13);
        assert!(hyp2f1(1.0, 1.0, 2.0, 0.999_999, 10).is_none());
    }
}
