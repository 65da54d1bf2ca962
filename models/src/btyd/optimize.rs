//! BFGS with a backtracking (Armijo) line search, for the small smooth maximum-likelihood
//! problems of the BTYD models. Parameters are optimised on the log scale by the callers, so
//! the problem is unconstrained and every parameter stays positive.

use crate::linalg::dot;

/// Where a minimisation ended.
#[derive(Debug, Clone)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    /// Largest absolute gradient component at `x`.
    pub gradient_norm: f64,
    pub converged: bool,
}

/// An objective: the value and the gradient at a point.
pub type Objective<'a> = dyn FnMut(&[f64]) -> (f64, Vec<f64>) + 'a;

/// Minimises `f` (which returns the value and the gradient) from `start`. Converged when the
/// largest gradient component is below `tolerance`, or when steps no longer improve the value
/// (no decrease, or five in a row below 1e-15 relative) and the gradient is small
/// (`1e3 * tolerance`): the best a finite-precision objective allows.
pub fn bfgs(
    f: &mut Objective<'_>,
    start: &[f64],
    tolerance: f64,
    max_iterations: usize,
    cancelled: &dyn Fn() -> bool,
) -> Minimum {
    let n = start.len();
    let mut x = start.to_vec();
    let (mut value, mut gradient) = f(&x);
    let mut inverse_hessian = identity(n);
    let mut first_step = true;
    let mut stalled = 0;
    for iteration in 0..max_iterations {
        let gradient_norm = max_abs(&gradient);
        if gradient_norm < tolerance || cancelled() {
            return Minimum {
                x,
                value,
                iterations: iteration,
                gradient_norm,
                converged: gradient_norm < tolerance,
            };
        }
        // Search direction d = -H g; if it does not descend, restart from steepest descent.
        let mut direction: Vec<f64> = (0..n)
            .map(|i| -dot(&inverse_hessian[i], &gradient))
            .collect();
        let mut slope = dot(&direction, &gradient);
        if !(slope < 0.0) {
            inverse_hessian = identity(n);
            direction = gradient.iter().map(|g| -g).collect();
            slope = dot(&direction, &gradient);
        }
        // The first step of steepest descent has no scale: keep it to a unit move.
        let mut step = if first_step {
            (1.0 / max_abs(&direction)).min(1.0)
        } else {
            1.0
        };
        let mut accepted = None;
        for _ in 0..60 {
            let candidate: Vec<f64> = x
                .iter()
                .zip(&direction)
                .map(|(x, d)| x + step * d)
                .collect();
            let (candidate_value, candidate_gradient) = f(&candidate);
            if candidate_value.is_finite() && candidate_value <= value + 1e-4 * step * slope {
                accepted = Some((candidate, candidate_value, candidate_gradient));
                break;
            }
            step *= 0.5;
        }
        let Some((next, next_value, next_gradient)) = accepted else {
            // No decrease is possible along the direction: a minimum to working precision
            // if the gradient is small.
            return Minimum {
                converged: gradient_norm < 1e3 * tolerance,
                x,
                value,
                iterations: iteration,
                gradient_norm,
            };
        };
        let s: Vec<f64> = next.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = next_gradient
            .iter()
            .zip(&gradient)
            .map(|(a, b)| a - b)
            .collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() {
            if first_step {
                // Scale the initial inverse Hessian to the curvature just seen.
                let scale = sy / dot(&y, &y);
                inverse_hessian = identity(n);
                for (i, row) in inverse_hessian.iter_mut().enumerate() {
                    row[i] = scale;
                }
            }
            update_inverse_hessian(&mut inverse_hessian, &s, &y, sy);
            first_step = false;
        }
        let decrease = value - next_value;
        x = next;
        value = next_value;
        gradient = next_gradient;
        stalled = if decrease <= 1e-15 * value.abs().max(1.0) {
            stalled + 1
        } else {
            0
        };
        if stalled >= 5 {
            let gradient_norm = max_abs(&gradient);
            return Minimum {
                converged: gradient_norm < 1e3 * tolerance,
                x,
                value,
                iterations: iteration + 1,
                gradient_norm,
            };
        }
    }
    let gradient_norm = max_abs(&gradient);
    Minimum {
        converged: gradient_norm < tolerance,
        x,
        value,
        iterations: max_iterations,
        gradient_norm,
    }
}

/// H ← (I - ρ s yᵀ) H (I - ρ y sᵀ) + ρ s sᵀ with ρ = 1 / (yᵀ s).
fn update_inverse_hessian(h: &mut [Vec<f64>], s: &[f64], y: &[f64], sy: f64) {
    let n = s.len();
    let rho = 1.0 / sy;
    let hy: Vec<f64> = (0..n).map(|i| dot(&h[i], y)).collect();
    let yhy = dot(y, &hy);
    for i in 0..n {
        for j in 0..n {
            h[i][j] += -rho * (hy[i] * s[j] + s[i] * hy[j]) + (rho * rho * yhy + rho) * s[i] * s[j];
        }
    }
}

fn identity(n: usize) -> Vec<Vec<f64>> {
    (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_the_rosenbrock_function() {
        let mut rosenbrock = |x: &[f64]| {
            let (a, b) = (x[0], x[1]);
            let value = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            let gradient = vec![
                -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
                200.0 * (b - a * a),
            ];
            (value, gradient)
        };
        let min = bfgs(&mut rosenbrock, &[-1.2, 1.0], 1e-10, 500, &|| false);
        assert!(min.converged, "{min:?}");
        assert!(
            (min.x[0] - 1.0).abs() < 1e-8 && (min.x[1] - 1.0).abs() < 1e-8,
            "{min:?}"
        );
    }
}
