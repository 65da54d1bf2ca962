//! Logistic regression (`model = 'logistic'`) fitted to convergence by Newton's method
//! (iteratively reweighted least squares) with an L2 penalty of ½‖w‖² on the weights, not the
//! intercept: the objective scikit-learn's `LogisticRegression()` minimises by default
//! (C = 1), so the two agree on the same encoded features. Mini-batch gradient descent with
//! early stopping, which the MLP needs, stops short of this optimum.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::linalg::cholesky_solve;
use crate::preprocess::Matrix;
use crate::train::EpochReport;

/// The L2 penalty (scikit-learn's 1 / C with C = 1).
const L2: f64 = 1.0;
const MAX_ITERATIONS: usize = 100;
/// Converged when no parameter moves by more than this in a step.
const TOLERANCE: f64 = 1e-8;

/// Fits on the feature-major `x`; returns the iterations run, the (weight `[1, d]`, bias
/// `[1]`) layer and one report per iteration.
pub(super) fn fit(
    x: &Matrix,
    y: &[bool],
    positive_weight: f64,
    device: &Device,
    on_iteration: &mut dyn FnMut(&EpochReport),
    cancel: &AtomicBool,
) -> Result<super::Fitted> {
    let (n, d) = (x.rows, x.cols);
    let weight: Vec<f64> = y
        .iter()
        .map(|&y| if y { positive_weight } else { 1.0 })
        .collect();
    // θ = (w₀ … w_{d-1}, b).
    let mut theta = vec![0.0; d + 1];
    let mut history = Vec::new();
    let mut loss = objective(x, y, &weight, &theta);
    for iteration in 1..=MAX_ITERATIONS {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let started = Instant::now();
        let z = margins(x, &theta);
        // Gradient and Hessian of Σ wᵢ·logloss + ½‖w‖².
        let mut gradient = vec![0.0; d + 1];
        let mut curvature = vec![0.0; n];
        let mut residual = vec![0.0; n];
        for i in 0..n {
            let p = sigmoid(z[i]);
            residual[i] = weight[i] * (p - f64::from(u8::from(y[i])));
            curvature[i] = weight[i] * (p * (1.0 - p)).max(1e-12);
        }
        let mut hessian = vec![0.0; (d + 1) * (d + 1)];
        for a in 0..d {
            let xa = x.column(a);
            gradient[a] = dot(xa, &residual) + L2 * theta[a];
            for b in 0..=a {
                let xb = x.column(b);
                let h: f64 = (0..n)
                    .map(|i| curvature[i] * xa[i] as f64 * xb[i] as f64)
                    .sum();
                hessian[a * (d + 1) + b] = h;
                hessian[b * (d + 1) + a] = h;
            }
            hessian[a * (d + 1) + a] += L2;
            let with_bias = dot(xa, &curvature);
            hessian[a * (d + 1) + d] = with_bias;
            hessian[d * (d + 1) + a] = with_bias;
        }
        gradient[d] = residual.iter().sum();
        hessian[d * (d + 1) + d] = curvature.iter().sum::<f64>() + 1e-12;
        let mut step = gradient;
        if !cholesky_solve(&mut hessian, &mut step, d + 1) {
            return Err(Error::data(
                "logistic regression's Newton step is singular (are some features constant \
                 or perfectly collinear?)",
            ));
        }

        // Newton's step, halved while it does not lower the objective; none that does means
        // the optimum is reached (to rounding).
        let mut scale = 1.0;
        let accepted = loop {
            let candidate: Vec<f64> = theta
                .iter()
                .zip(&step)
                .map(|(t, s)| t - scale * s)
                .collect();
            let candidate_loss = objective(x, y, &weight, &candidate);
            if candidate_loss <= loss {
                break Some((candidate, candidate_loss));
            }
            if scale < 1e-6 {
                break None;
            }
            scale /= 2.0;
        };
        let moved = match accepted {
            Some((candidate, candidate_loss)) => {
                theta = candidate;
                loss = candidate_loss;
                step.iter().map(|s| (scale * s).abs()).fold(0.0, f64::max)
            }
            None => 0.0,
        };
        let total_weight: f64 = weight.iter().sum();
        let report = EpochReport {
            epoch: iteration,
            epochs: MAX_ITERATIONS,
            train_loss: loss / total_weight,
            validation_loss: loss / total_weight,
            validation_auc: None,
            seconds: started.elapsed().as_secs_f64(),
        };
        on_iteration(&report);
        history.push(report);
        if moved < TOLERANCE {
            break;
        }
    }
    let w: Vec<f32> = theta[..d].iter().map(|&v| v as f32).collect();
    let b = vec![theta[d] as f32];
    let layer = (
        Tensor::from_vec(w, (1, d), device)?,
        Tensor::from_vec(b, 1, device)?,
    );
    Ok((history.len(), vec![layer], history))
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn dot(a: &[f32], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| *a as f64 * b).sum()
}

fn margins(x: &Matrix, theta: &[f64]) -> Vec<f64> {
    let d = x.cols;
    let mut z = vec![theta[d]; x.rows];
    for (c, &w) in theta[..d].iter().enumerate() {
        for (z, &v) in z.iter_mut().zip(x.column(c)) {
            *z += w * v as f64;
        }
    }
    z
}

/// Σ wᵢ·logloss(zᵢ) + ½‖w‖², computed stably from the margins.
fn objective(x: &Matrix, y: &[bool], weight: &[f64], theta: &[f64]) -> f64 {
    let z = margins(x, theta);
    let loss: f64 = z
        .iter()
        .zip(y)
        .zip(weight)
        .map(|((&z, &y), &w)| {
            let signed = if y { -z } else { z };
            w * (signed.max(0.0) + (-signed.abs()).exp().ln_1p())
        })
        .sum();
    let penalty: f64 = theta[..x.cols].iter().map(|w| w * w).sum::<f64>() * L2 / 2.0;
    loss + penalty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_optimum_has_zero_gradient() {
        // One feature; the fitted (w, b) must satisfy Σ(p - y)x + w = 0 and Σ(p - y) = 0.
        let xs: Vec<f32> = (0..200).map(|i| (i as f32 / 50.0) - 2.0).collect();
        let y: Vec<bool> = xs
            .iter()
            .enumerate()
            .map(|(i, x)| (*x > 0.3) ^ (i % 7 == 0))
            .collect();
        let x = Matrix {
            rows: 200,
            cols: 1,
            data: xs.clone(),
        };
        let (_, layers, _) = fit(
            &x,
            &y,
            1.0,
            &Device::Cpu,
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        let w = layers[0].0.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0] as f64;
        let b = layers[0].1.to_vec1::<f32>().unwrap()[0] as f64;
        let (mut gw, mut gb) = (w, 0.0);
        for (x, y) in xs.iter().zip(&y) {
            let r = sigmoid(w * *x as f64 + b) - f64::from(u8::from(*y));
            gw += r * *x as f64;
            gb += r;
        }
        // f32 storage of the weights limits how close to zero the gradient comes back.
        assert!(gw.abs() < 1e-3 && gb.abs() < 1e-3, "gradient ({gw}, {gb})");
    }
}
