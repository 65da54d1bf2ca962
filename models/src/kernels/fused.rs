//! The sequence networks' linear layers and layer norms, fused for the CPU as candle custom
//! ops with their own backward passes.
//!
//! Why: through candle's tensors a linear layer is a matmul of `x` with a transposed view of
//! `W` and a broadcast bias add, and its backward pass is two more matmuls, a transpose copy
//! of the weight gradient, a strided reduction for the bias gradient and element-wise adds to
//! accumulate them; a training layer norm is about ten element-wise operations each way.
//! Those element-wise operations run on one thread and allocate a fresh tensor each, and
//! together they took more of a training epoch than the products did. Here a linear layer is
//! one product in the AVX-512 kernel of [`super::dense`] forward (bias and ReLU added on the
//! way out) and two backward, split across the model thread pool; a layer norm is one pass
//! over the rows each way. Where the kernel does not run (another device, no AVX-512, widths
//! that are not a multiple of 16) the callers use candle's operations, and unit tests hold the
//! two to the same values and gradients.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::dense::{Kernel, matmul, matmul_transposed};

/// Rows per parallel task of the row-wise passes.
const ROWS_PER_TASK: usize = 64;

/// `x · Wᵀ + b` (then ReLU when `relu`) for `x` `[rows, in]`, `W` `[out, in]`, `b` `[out]`;
/// None where the fused op does not apply.
pub(crate) fn linear(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    relu: bool,
) -> candle_core::Result<Option<Tensor>> {
    let Ok((_, inputs)) = x.dims2() else {
        return Ok(None);
    };
    let (outputs, _) = w.dims2()?;
    // The forward product has `out` columns, the input gradient's `in`.
    if !runs_fused(x) || outputs % 16 != 0 || inputs % 16 != 0 {
        return Ok(None);
    }
    Ok(Some(x.contiguous()?.apply_op3(w, b, Linear { relu })?))
}

/// Layer norm over the last dimension of a 2-d `x`, with weight and bias; None where the
/// fused op does not apply.
pub(crate) fn layer_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
) -> candle_core::Result<Option<Tensor>> {
    if x.rank() != 2 || !runs_fused(x) {
        return Ok(None);
    }
    Ok(Some(x.contiguous()?.apply_op3(
        weight,
        bias,
        LayerNorm { eps },
    )?))
}

fn runs_fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && Kernel::best() == Kernel::Avx512
}

/// The f32 values of a custom op's contiguous input.
pub(crate) fn contiguous<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data,
        _ => candle_core::bail!("the fused CPU ops run on f32"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("the fused CPU ops need contiguous inputs"),
    }
}

/// Calls `f` with a tensor's values, in place when the tensor is contiguous.
fn read<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("fused ops run on the CPU");
    };
    Ok(f(contiguous(cpu, layout)?))
}

fn tensor(data: Vec<f32>, like: &Tensor) -> candle_core::Result<Tensor> {
    Tensor::from_vec(data, like.shape(), like.device())
}

/// `[rows, cols]` row-major to `[cols, rows]`.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    super::dense::transpose_into(values, rows, cols, &mut out, rows);
    out
}

/// Sums of each column of `[rows, cols]` values.
fn column_sums(values: &[f32], cols: usize) -> Vec<f32> {
    let partial = values
        .par_chunks(ROWS_PER_TASK * cols)
        .map(|block| {
            let mut sums = vec![0f32; cols];
            for row in block.chunks_exact(cols) {
                for (s, v) in sums.iter_mut().zip(row) {
                    *s += v;
                }
            }
            sums
        })
        .collect();
    sum_in_order(partial, cols)
}

/// The element-wise sum of per-task partial sums, added in task order: rayon's `reduce`
/// pairs them as the work was stolen, and float addition is not associative, so the same
/// seed would not always give the same model.
fn sum_in_order(partial: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut sum = vec![0f32; len];
    for part in partial {
        for (s, p) in sum.iter_mut().zip(part) {
            *s += p;
        }
    }
    sum
}

/// The linear layer op: inputs x `[rows, in]`, W `[out, in]`, b `[out]`.
struct Linear {
    relu: bool,
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, inputs) = x_layout.shape().dims2()?;
        let (outputs, _) = w_layout.shape().dims2()?;
        let (x, w, b) = (
            contiguous(x, x_layout)?,
            contiguous(w, w_layout)?,
            contiguous(b, b_layout)?,
        );
        let Some(mut y) = matmul_transposed(x, w, inputs, outputs) else {
            candle_core::bail!("the fused linear layer needs AVX-512 and widths of 16s");
        };
        let relu = self.relu;
        y.par_chunks_mut(ROWS_PER_TASK * outputs).for_each(|block| {
            for row in block.chunks_exact_mut(outputs) {
                for (v, b) in row.iter_mut().zip(b) {
                    *v += b;
                    if relu {
                        *v = v.max(0.0);
                    }
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((rows, outputs))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, inputs) = x.dims2()?;
        let (outputs, _) = w.dims2()?;
        let mut grad = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        if self.relu {
            read(res, |y| {
                grad.par_iter_mut().zip(y).for_each(|(g, &y)| {
                    if y <= 0.0 {
                        *g = 0.0;
                    }
                });
            })?;
        }
        // dx = g · W ([rows, out] · [out, in]); dW = gᵀ · x; db = Σ_rows g.
        let dx = read(w, |w| matmul(&grad, w, outputs, inputs))?;
        let grad_t = transpose(&grad, rows, outputs);
        let dw = read(x, |x| matmul(&grad_t, x, rows, inputs))?;
        let (Some(dx), Some(dw)) = (dx, dw) else {
            candle_core::bail!("the fused linear layer needs AVX-512 and widths of 16s");
        };
        let db = column_sums(&grad, outputs);
        Ok((
            Some(tensor(dx, x)?),
            Some(tensor(dw, w)?),
            Some(tensor(db, b)?),
        ))
    }
}

/// The layer norm op: inputs x `[rows, d]`, weight and bias `[d]`; the variance is the
/// biased one, with `eps` added under the root (as candle's and PyTorch's).
struct LayerNorm {
    eps: f32,
}

impl LayerNorm {
    /// The row's mean and 1 / standard deviation.
    fn moments(&self, row: &[f32]) -> (f32, f32) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let variance = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        (mean, 1.0 / (variance + self.eps).sqrt())
    }
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, d) = x_layout.shape().dims2()?;
        let (x, w, b) = (
            contiguous(x, x_layout)?,
            contiguous(w, w_layout)?,
            contiguous(b, b_layout)?,
        );
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(ROWS_PER_TASK * d)
            .zip(x.par_chunks(ROWS_PER_TASK * d))
            .for_each(|(y, x)| {
                for (y, x) in y.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                    let (mean, scale) = self.moments(x);
                    for (((y, x), w), b) in y.iter_mut().zip(x).zip(w).zip(b) {
                        *y = (x - mean) * scale * w + b;
                    }
                }
            });
        Ok((CpuStorage::F32(y), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, d) = x.dims2()?;
        let weight = w.to_vec1::<f32>()?;
        let grad = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut dx = vec![0f32; grad.len()];
        // With x̂ = (x - mean) · s and h = g · w: dx = s · (h - mean(h) - x̂ · mean(h · x̂)),
        // dw = Σ_rows g · x̂, db = Σ_rows g.
        let (dw, db): (Vec<Vec<f32>>, Vec<Vec<f32>>) = read(x, |x| {
            dx.par_chunks_mut(ROWS_PER_TASK * d)
                .zip(x.par_chunks(ROWS_PER_TASK * d))
                .zip(grad.par_chunks(ROWS_PER_TASK * d))
                .map(|((dx, x), g)| {
                    let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
                    let mut normed = vec![0f32; d];
                    for ((dx, x), g) in dx
                        .chunks_exact_mut(d)
                        .zip(x.chunks_exact(d))
                        .zip(g.chunks_exact(d))
                    {
                        let (mean, scale) = self.moments(x);
                        for (n, x) in normed.iter_mut().zip(x) {
                            *n = (x - mean) * scale;
                        }
                        let (mut h_sum, mut hn_sum) = (0f32, 0f32);
                        for ((g, w), n) in g.iter().zip(&weight).zip(&normed) {
                            h_sum += g * w;
                            hn_sum += g * w * n;
                        }
                        let (h_mean, hn_mean) = (h_sum / d as f32, hn_sum / d as f32);
                        for i in 0..d {
                            dx[i] = scale * (g[i] * weight[i] - h_mean - normed[i] * hn_mean);
                            dw[i] += g[i] * normed[i];
                            db[i] += g[i];
                        }
                    }
                    (dw, db)
                })
                .unzip()
        })?;
        let (dw, db) = (sum_in_order(dw, d), sum_in_order(db, d));
        Ok((
            Some(tensor(dx, x)?),
            Some(tensor(dw, w)?),
            Some(tensor(db, b)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{D, Device, Var};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn var(shape: &[usize], rng: &mut StdRng) -> Var {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Var::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// `f` and `reference` give the same values, and the same gradients of a weighted sum of
    /// them with respect to every input.
    fn same_values_and_gradients(
        inputs: &[&Var],
        fused: Tensor,
        reference: Tensor,
        rng: &mut StdRng,
    ) {
        assert!(max_difference(&fused, &reference) < 1e-4);
        let weights = var(fused.dims(), rng);
        let loss = |y: &Tensor| (y * weights.as_tensor()).unwrap().sum_all().unwrap();
        let (g_fused, g_reference) = (
            loss(&fused).backward().unwrap(),
            loss(&reference).backward().unwrap(),
        );
        for x in inputs {
            let (a, b) = (
                g_fused.get(x.as_tensor()).unwrap(),
                g_reference.get(x.as_tensor()).unwrap(),
            );
            assert!(
                max_difference(a, b) < 1e-3,
                "gradient differs by {}",
                max_difference(a, b)
            );
        }
    }

    #[test]
    fn linear_matches_candle_forward_and_backward() {
        if Kernel::best() != Kernel::Avx512 {
            eprintln!("no AVX-512 on this CPU: the fused ops do not run here");
            return;
        }
        let mut rng = StdRng::seed_from_u64(3);
        // More rows than one task and not a multiple of it.
        for (rows, inputs, outputs, relu) in [(201, 32, 48, false), (67, 64, 16, true)] {
            let (x, w, b) = (
                var(&[rows, inputs], &mut rng),
                var(&[outputs, inputs], &mut rng),
                var(&[outputs], &mut rng),
            );
            let fused = linear(x.as_tensor(), w.as_tensor(), b.as_tensor(), relu)
                .unwrap()
                .expect("the fused op applies");
            let mut reference = x
                .as_tensor()
                .matmul(&w.as_tensor().t().unwrap())
                .unwrap()
                .broadcast_add(b.as_tensor())
                .unwrap();
            if relu {
                reference = reference.relu().unwrap();
            }
            same_values_and_gradients(&[&x, &w, &b], fused, reference, &mut rng);
        }
        let (x, w, b) = (
            var(&[4, 32], &mut rng),
            var(&[20, 32], &mut rng),
            var(&[20], &mut rng),
        );
        let outputs_not_16s = linear(x.as_tensor(), w.as_tensor(), b.as_tensor(), false);
        assert!(outputs_not_16s.unwrap().is_none());
    }

    #[test]
    fn layer_norm_matches_candle_forward_and_backward() {
        if Kernel::best() != Kernel::Avx512 {
            eprintln!("no AVX-512 on this CPU: the fused ops do not run here");
            return;
        }
        let mut rng = StdRng::seed_from_u64(4);
        let (x, w, b) = (
            var(&[150, 24], &mut rng),
            var(&[24], &mut rng),
            var(&[24], &mut rng),
        );
        let fused = layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5)
            .unwrap()
            .expect("the fused op applies");
        let x_ = x.as_tensor();
        let centred = x_
            .broadcast_sub(&x_.mean_keepdim(D::Minus1).unwrap())
            .unwrap();
        let variance = centred.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let reference = centred
            .broadcast_div(&(variance + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(w.as_tensor())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap();
        same_values_and_gradients(&[&x, &w, &b], fused, reference, &mut rng);
    }
}
