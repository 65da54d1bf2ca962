//! Multi-head scaled dot-product attention with a key padding mask, fused for the CPU as a
//! candle custom op with its own backward pass.
//!
//! Why: candle multiplies batched matrices one batch entry after another, each a separate
//! (multi-threaded) gemm call, so attention over 1,024 sequences x 4 heads is 4,096 tiny
//! products with thread dispatch around each, twice per layer and more in the backward pass.
//! Here every (sequence, head) pair is one task on the model thread pool: scores, softmax and
//! the weighted sum of values in one pass over L x L numbers that never leave the cache. The
//! backward pass recomputes the probabilities instead of storing them (as flash attention
//! does). Other devices use candle's own operations (`sequence.rs`).

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The op: `softmax(q kᵀ · scale + bias) v` per (sequence, head), where `bias[b][j]` is added
/// to every query's score for key `j` of sequence `b` (0, or a large negative number for
/// padding).
pub(crate) struct PaddedAttention {
    pub(crate) bias: Vec<f32>,
    pub(crate) scale: f32,
}

impl PaddedAttention {
    /// Applies the op to contiguous `q`, `k`, `v` of shape [B, H, L, Dh].
    pub(crate) fn apply(self, q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
        // Recorded for the backward pass only when an input tracks gradients.
        q.apply_op3(k, v, self)
    }
}

/// The sizes of one (sequence, head) block: `queries` rows of q and the output, `keys` rows of
/// k and v (queries may be the last few positions only: a head that reads only the summary
/// token needs its row alone).
struct Dims {
    heads: usize,
    queries: usize,
    keys: usize,
    head_dim: usize,
}

impl Dims {
    fn of(q: &Shape, k: &Shape) -> candle_core::Result<Dims> {
        let (_, heads, queries, head_dim) = q.dims4()?;
        let (_, _, keys, _) = k.dims4()?;
        if queries > keys {
            candle_core::bail!("padded attention: {queries} queries over {keys} keys");
        }
        Ok(Dims {
            heads,
            queries,
            keys,
            head_dim,
        })
    }

    fn query_block(&self) -> usize {
        self.queries * self.head_dim
    }

    fn key_block(&self) -> usize {
        self.keys * self.head_dim
    }
}

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data,
        _ => candle_core::bail!("padded attention runs on f32"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("padded attention needs contiguous inputs"),
    }
}

/// Softmax probabilities of one block's scores, row by row, into `p` ([queries, keys]).
fn probabilities(q: &[f32], k: &[f32], bias: &[f32], scale: f32, dims: &Dims, p: &mut [f32]) {
    let (lk, d) = (dims.keys, dims.head_dim);
    for i in 0..dims.queries {
        let query = &q[i * d..(i + 1) * d];
        let row = &mut p[i * lk..(i + 1) * lk];
        let mut max = f32::NEG_INFINITY;
        for j in 0..lk {
            let key = &k[j * d..(j + 1) * d];
            let dot: f32 = query.iter().zip(key).map(|(a, b)| a * b).sum();
            row[j] = dot * scale + bias[j];
            max = max.max(row[j]);
        }
        let mut sum = 0.0;
        for x in row.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        let inverse = 1.0 / sum;
        for x in row.iter_mut() {
            *x *= inverse;
        }
    }
}

impl CustomOp3 for PaddedAttention {
    fn name(&self) -> &'static str {
        "padded-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = Dims::of(q_layout.shape(), k_layout.shape())?;
        let (q, k, v) = (
            contiguous(q, q_layout)?,
            contiguous(k, k_layout)?,
            contiguous(v, v_layout)?,
        );
        let (lq, lk, d) = (dims.queries, dims.keys, dims.head_dim);
        let (qb, kb) = (dims.query_block(), dims.key_block());
        let mut out = vec![0f32; q.len()];
        out.par_chunks_mut(qb).enumerate().for_each_init(
            || vec![0f32; lq * lk],
            |p, (bh, out)| {
                let b = bh / dims.heads;
                let bias = &self.bias[b * lk..(b + 1) * lk];
                let keys = bh * kb..(bh + 1) * kb;
                let q = &q[bh * qb..(bh + 1) * qb];
                probabilities(q, &k[keys.clone()], bias, self.scale, &dims, p);
                let v = &v[keys];
                for i in 0..lq {
                    let row = &mut out[i * d..(i + 1) * d];
                    for j in 0..lk {
                        let weight = p[i * lk + j];
                        for (o, x) in row.iter_mut().zip(&v[j * d..(j + 1) * d]) {
                            *o += weight * x;
                        }
                    }
                }
            },
        );
        Ok((CpuStorage::F32(out), q_layout.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = Dims::of(q.shape(), k.shape())?;
        let read = |t: &Tensor| t.contiguous()?.flatten_all()?.to_vec1::<f32>();
        let (q_data, k_data, v_data, grad) = (read(q)?, read(k)?, read(v)?, read(grad_res)?);
        let (lq, lk, d) = (dims.queries, dims.keys, dims.head_dim);
        let (qb, kb) = (dims.query_block(), dims.key_block());
        let mut dq = vec![0f32; q_data.len()];
        let mut dk = vec![0f32; k_data.len()];
        let mut dv = vec![0f32; v_data.len()];
        dq.par_chunks_mut(qb)
            .zip(dk.par_chunks_mut(kb))
            .zip(dv.par_chunks_mut(kb))
            .enumerate()
            .for_each_init(
                || (vec![0f32; lq * lk], vec![0f32; lq * lk]),
                |(p, ds), (bh, ((dq, dk), dv))| {
                    let b = bh / dims.heads;
                    let bias = &self.bias[b * lk..(b + 1) * lk];
                    let keys = bh * kb..(bh + 1) * kb;
                    let queries = bh * qb..(bh + 1) * qb;
                    let (q, k, v, g) = (
                        &q_data[queries.clone()],
                        &k_data[keys.clone()],
                        &v_data[keys],
                        &grad[queries],
                    );
                    probabilities(q, k, bias, self.scale, &dims, p);
                    for i in 0..lq {
                        let g_i = &g[i * d..(i + 1) * d];
                        // dV_j += P_ij dO_i; dP_ij = dO_i · v_j.
                        let mut weighted = 0.0;
                        for j in 0..lk {
                            let p_ij = p[i * lk + j];
                            let v_j = &v[j * d..(j + 1) * d];
                            for (x, y) in dv[j * d..(j + 1) * d].iter_mut().zip(g_i) {
                                *x += p_ij * y;
                            }
                            let dp: f32 = g_i.iter().zip(v_j).map(|(a, b)| a * b).sum();
                            ds[i * lk + j] = dp;
                            weighted += p_ij * dp;
                        }
                        // dS_ij = P_ij (dP_ij - Σ_j' P_ij' dP_ij'), then the scale.
                        for j in 0..lk {
                            ds[i * lk + j] =
                                p[i * lk + j] * (ds[i * lk + j] - weighted) * self.scale;
                        }
                    }
                    for i in 0..lq {
                        for j in 0..lk {
                            let s = ds[i * lk + j];
                            if s == 0.0 {
                                continue;
                            }
                            let (q_i, k_j) = (&q[i * d..(i + 1) * d], &k[j * d..(j + 1) * d]);
                            for (x, y) in dq[i * d..(i + 1) * d].iter_mut().zip(k_j) {
                                *x += s * y;
                            }
                            for (x, y) in dk[j * d..(j + 1) * d].iter_mut().zip(q_i) {
                                *x += s * y;
                            }
                        }
                    }
                },
            );
        let tensor =
            |data: Vec<f32>, like: &Tensor| Tensor::from_vec(data, like.shape(), like.device());
        Ok((
            Some(tensor(dq, q)?),
            Some(tensor(dk, k)?),
            Some(tensor(dv, v)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{D, Device, Var};

    use super::*;

    /// The reference: candle's own operations, differentiable.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, scale: f64) -> Tensor {
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale)
            .unwrap()
            .broadcast_add(bias)
            .unwrap();
        candle_nn::ops::softmax(&scores, D::Minus1)
            .unwrap()
            .matmul(v)
            .unwrap()
    }

    #[test]
    fn forward_and_gradients_match_candle() {
        let device = Device::Cpu;
        let (b, h, l, d) = (3, 2, 5, 4);
        let var = |seed: u64| {
            let values: Vec<f32> = (0..b * h * l * d)
                .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0) - 1.0)
                .collect();
            Var::from_vec(values, (b, h, l, d), &device).unwrap()
        };
        let (q, k, v) = (var(1), var(2), var(3));
        // Sequence 1 has two padded keys.
        let mut bias = vec![0f32; b * l];
        bias[l] = -1e9;
        bias[l + 1] = -1e9;
        let bias_tensor = Tensor::from_vec(bias.clone(), (b, 1, 1, l), &device).unwrap();
        let scale = 0.5;
        let expected = reference(
            q.as_tensor(),
            k.as_tensor(),
            v.as_tensor(),
            &bias_tensor,
            scale,
        );
        let fused = PaddedAttention {
            bias,
            scale: scale as f32,
        }
        .apply(q.as_tensor(), k.as_tensor(), v.as_tensor())
        .unwrap();
        let close = |a: &Tensor, b: &Tensor| {
            let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            diff.to_scalar::<f32>().unwrap()
        };
        assert!(close(&expected, &fused) < 1e-5);
        // The same weighted loss through both; the gradients must agree.
        let weights = var(4);
        let g_expected = (expected * weights.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_fused = (fused * weights.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for x in [&q, &k, &v] {
            let (a, b) = (
                g_expected.get(x.as_tensor()).unwrap(),
                g_fused.get(x.as_tensor()).unwrap(),
            );
            assert!(close(a, b) < 1e-4, "gradient differs by {}", close(a, b));
        }

        // The last query alone: the reference's last row, and its gradients.
        let q_last = q
            .as_tensor()
            .narrow(2, l - 1, 1)
            .unwrap()
            .contiguous()
            .unwrap();
        let expected = reference(&q_last, k.as_tensor(), v.as_tensor(), &bias_tensor, scale);
        let fused = PaddedAttention {
            bias: bias_tensor.flatten_all().unwrap().to_vec1().unwrap(),
            scale: scale as f32,
        }
        .apply(&q_last, k.as_tensor(), v.as_tensor())
        .unwrap();
        assert_eq!(fused.dims(), &[b, h, 1, d]);
        assert!(close(&expected, &fused) < 1e-5);
        let w = weights.as_tensor().narrow(2, 0, 1).unwrap();
        let g_expected = (expected * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_fused = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for x in [&q, &k, &v] {
            let (a, b) = (
                g_expected.get(x.as_tensor()).unwrap(),
                g_fused.get(x.as_tensor()).unwrap(),
            );
            assert!(close(a, b) < 1e-4, "gradient differs by {}", close(a, b));
        }
    }
}
