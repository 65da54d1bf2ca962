//! Softmax cross-entropy over many classes, fused for the CPU as a candle custom op with its
//! own backward pass.
//!
//! Why: candle's `cross_entropy` is a log-softmax, a gather and a mean, about ten element-wise
//! passes forward and back over `[rows, classes]`, each on one thread into a fresh tensor. A
//! next-item model's rows x classes runs to millions of numbers per batch, and those passes
//! (and the kernel zeroing their fresh pages) took most of a training step. Here the forward
//! pass is one parallel pass per row for the log-sum-exp, and the backward pass writes
//! `softmax - one_hot` in one more.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::fused::contiguous;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 32;

/// The mean over rows of `-log softmax(logits)[target]`: logits `[rows, classes]` (f32),
/// targets `[rows]` (u32, each below `classes`). On the CPU the fused op, elsewhere candle's.
pub(crate) fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    if !logits.device().is_cpu() || logits.dtype() != candle_core::DType::F32 {
        return candle_nn::loss::cross_entropy(logits, targets);
    }
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?, CrossEntropy)
}

struct CrossEntropy;

/// The row's log-sum-exp.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln()
}

fn targets_of<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [u32]> {
    let CpuStorage::U32(data) = storage else {
        candle_core::bail!("cross entropy: targets must be u32");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("cross entropy: targets must be contiguous"),
    }
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        logits: &CpuStorage,
        logits_layout: &Layout,
        targets: &CpuStorage,
        targets_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, classes) = logits_layout.shape().dims2()?;
        let (logits, targets) = (
            contiguous(logits, logits_layout)?,
            targets_of(targets, targets_layout)?,
        );
        if targets.len() != rows || targets.iter().any(|&t| t as usize >= classes) {
            candle_core::bail!("cross entropy: {} targets for {rows} rows", targets.len());
        }
        // Per-task sums added in task order, so a seed gives the same loss every time.
        let partial: Vec<f64> = logits
            .par_chunks(ROWS_PER_TASK * classes)
            .zip(targets.par_chunks(ROWS_PER_TASK))
            .map(|(block, targets)| {
                block
                    .chunks_exact(classes)
                    .zip(targets)
                    .map(|(row, &t)| f64::from(log_sum_exp(row) - row[t as usize]))
                    .sum::<f64>()
            })
            .collect();
        let loss = partial.iter().sum::<f64>() / rows.max(1) as f64;
        Ok((CpuStorage::F32(vec![loss as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, classes) = logits.dims2()?;
        let scale = grad_res.to_scalar::<f32>()? / rows.max(1) as f32;
        let values = logits.flatten_all()?.to_vec1::<f32>()?;
        let targets = targets.to_vec1::<u32>()?;
        let mut grad = vec![0f32; values.len()];
        grad.par_chunks_mut(ROWS_PER_TASK * classes)
            .zip(values.par_chunks(ROWS_PER_TASK * classes))
            .zip(targets.par_chunks(ROWS_PER_TASK))
            .for_each(|((grad, block), targets)| {
                for ((g, row), &t) in grad
                    .chunks_exact_mut(classes)
                    .zip(block.chunks_exact(classes))
                    .zip(targets)
                {
                    let lse = log_sum_exp(row);
                    for (g, x) in g.iter_mut().zip(row) {
                        *g = (x - lse).exp() * scale;
                    }
                    g[t as usize] -= scale;
                }
            });
        let grad = Tensor::from_vec(grad, (rows, classes), logits.device())?;
        Ok((Some(grad), None))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn loss_and_gradient_match_candle() {
        let mut rng = StdRng::seed_from_u64(3);
        let (rows, classes) = (70, 37);
        let values: Vec<f32> = (0..rows * classes)
            .map(|_| rng.random_range(-4.0..4.0))
            .collect();
        let logits = Var::from_vec(values, (rows, classes), &Device::Cpu).unwrap();
        let targets: Vec<u32> = (0..rows)
            .map(|_| rng.random_range(0..classes as u32))
            .collect();
        let targets = Tensor::from_vec(targets, rows, &Device::Cpu).unwrap();

        let fused = cross_entropy(logits.as_tensor(), &targets).unwrap();
        let reference = candle_nn::loss::cross_entropy(logits.as_tensor(), &targets).unwrap();
        let (a, b) = (
            fused.to_scalar::<f32>().unwrap(),
            reference.to_scalar::<f32>().unwrap(),
        );
        assert!((a - b).abs() < 1e-5, "loss {a} against candle's {b}");

        let g_fused = (fused * 3.0).unwrap().backward().unwrap();
        let g_reference = (reference * 3.0).unwrap().backward().unwrap();
        let difference = (g_fused.get(logits.as_tensor()).unwrap()
            - g_reference.get(logits.as_tensor()).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
        assert!(difference < 1e-6, "gradients differ by {difference}");

        let bad = Tensor::from_vec(vec![classes as u32; rows], rows, &Device::Cpu).unwrap();
        assert!(cross_entropy(logits.as_tensor(), &bad).is_err());
    }
}
