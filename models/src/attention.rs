//! Multi-head scaled dot-product attention with a key padding mask, fused for the CPU as a
//! candle custom op with its own backward pass.
//!
//! Why: candle multiplies batched matrices one batch entry after another, each a separate
//! (multi-threaded) gemm call, so attention over 1,024 sequences x 4 heads is 4,096 tiny
//! products with thread dispatch around each, twice per layer and more in the backward pass.
//! Splitting the heads out of the projection and merging them back are strided copies, and
//! their gradients strided additions, on one thread. Here the op reads the packed `[q | k | v]`
//! projection rows as the linear layer wrote them and writes the heads side by side, as the
//! output projection reads them; every sequence is one task on the model thread pool, and
//! each head's scores, softmax and weighted sum of values are one pass over L x L numbers
//! that never leave the cache. The backward pass recomputes the probabilities instead of
//! storing them (as flash attention does). Other devices use candle's own operations
//! (`sequence.rs`).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The op: for each sequence `b` and head, `softmax(q kᵀ · scale + bias_b) v`, where
/// `bias[b][j]` is added to every query's score for key `j` (0, or a large negative number for
/// padding). Input: the projections `[B·L, 3·D]`, each row `[q | k | v]` with the heads side by
/// side in each part; output `[B·queries, D]`, heads side by side, for the last `queries`
/// positions of each sequence (a head that reads only the summary token needs its row alone).
pub(crate) struct PaddedAttention {
    pub(crate) bias: Vec<f32>,
    pub(crate) scale: f32,
    pub(crate) heads: usize,
    /// L: the keys of each sequence.
    pub(crate) keys: usize,
    pub(crate) queries: usize,
}

impl PaddedAttention {
    /// Applies the op to contiguous projections `[B·L, 3·D]`.
    pub(crate) fn apply(self, qkv: &Tensor) -> candle_core::Result<Tensor> {
        // Recorded for the backward pass only when the input tracks gradients.
        qkv.apply_op1(self)
    }

    fn dims(&self, shape: &Shape) -> candle_core::Result<Dims> {
        let (rows, width) = shape.dims2()?;
        let (keys, queries, heads) = (self.keys, self.queries, self.heads);
        if width % 3 != 0 || (width / 3) % heads != 0 || keys == 0 || rows % keys != 0 {
            candle_core::bail!("padded attention: projections of {rows} x {width}");
        }
        if queries > keys || self.bias.len() != rows {
            candle_core::bail!("padded attention: {queries} queries, {keys} keys");
        }
        Ok(Dims {
            sequences: rows / keys,
            heads,
            queries,
            keys,
            model: width / 3,
            head_dim: width / 3 / heads,
        })
    }
}

/// The sizes of one (sequence, head) block: `queries` rows of q and the output, `keys` rows of
/// k and v, each `head_dim` wide.
struct Dims {
    sequences: usize,
    heads: usize,
    queries: usize,
    keys: usize,
    /// D: the heads side by side.
    model: usize,
    head_dim: usize,
}

impl Dims {
    /// One sequence's projection rows.
    fn sequence_block(&self) -> usize {
        self.keys * 3 * self.model
    }

    /// One sequence's output rows.
    fn output_block(&self) -> usize {
        self.queries * self.model
    }
}

/// One head's q, k and v of one sequence, copied out of the packed rows, contiguous.
struct Head {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Head {
    fn new(dims: &Dims) -> Head {
        let (lq, lk, d) = (dims.queries, dims.keys, dims.head_dim);
        Head {
            q: vec![0f32; lq * d],
            k: vec![0f32; lk * d],
            v: vec![0f32; lk * d],
        }
    }

    /// Reads head `h` from a sequence's projection rows `[L, 3·D]`.
    fn read(&mut self, rows: &[f32], h: usize, dims: &Dims) {
        let (d, model) = (dims.head_dim, dims.model);
        let first_query = dims.keys - dims.queries;
        for (j, row) in rows.chunks_exact(3 * model).enumerate() {
            let at = |part: usize| &row[part * model + h * d..part * model + (h + 1) * d];
            self.k[j * d..(j + 1) * d].copy_from_slice(at(1));
            self.v[j * d..(j + 1) * d].copy_from_slice(at(2));
            if j >= first_query {
                let i = j - first_query;
                self.q[i * d..(i + 1) * d].copy_from_slice(at(0));
            }
        }
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

impl CustomOp1 for PaddedAttention {
    fn name(&self) -> &'static str {
        "padded-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.dims(layout.shape())?;
        let qkv = contiguous(storage, layout)?;
        let (lq, lk, d, model) = (dims.queries, dims.keys, dims.head_dim, dims.model);
        let mut out = vec![0f32; dims.sequences * dims.output_block()];
        out.par_chunks_mut(dims.output_block())
            .zip(qkv.par_chunks(dims.sequence_block()))
            .enumerate()
            .for_each_init(
                || (Head::new(&dims), vec![0f32; lq * lk]),
                |(head, p), (b, (out, rows))| {
                    let bias = &self.bias[b * lk..(b + 1) * lk];
                    for h in 0..dims.heads {
                        head.read(rows, h, &dims);
                        probabilities(&head.q, &head.k, bias, self.scale, &dims, p);
                        for i in 0..lq {
                            let row = &mut out[i * model + h * d..i * model + (h + 1) * d];
                            for j in 0..lk {
                                let weight = p[i * lk + j];
                                for (o, x) in row.iter_mut().zip(&head.v[j * d..(j + 1) * d]) {
                                    *o += weight * x;
                                }
                            }
                        }
                    }
                },
            );
        let shape = Shape::from((dims.sequences * lq, model));
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dims = self.dims(qkv.shape())?;
        let read = |t: &Tensor| t.contiguous()?.flatten_all()?.to_vec1::<f32>();
        let (qkv_data, grad) = (read(qkv)?, read(grad_res)?);
        let (lq, lk, d, model) = (dims.queries, dims.keys, dims.head_dim, dims.model);
        let first_query = lk - lq;
        let mut dqkv = vec![0f32; qkv_data.len()];
        dqkv.par_chunks_mut(dims.sequence_block())
            .zip(qkv_data.par_chunks(dims.sequence_block()))
            .zip(grad.par_chunks(dims.output_block()))
            .enumerate()
            .for_each_init(
                || {
                    let blocks = (lq * d, lk * d, lk * d);
                    let scratch = (vec![0f32; lq * lk], vec![0f32; lq * lk]);
                    let gradients = (
                        vec![0f32; blocks.0],
                        vec![0f32; blocks.1],
                        vec![0f32; blocks.2],
                    );
                    (Head::new(&dims), scratch, gradients)
                },
                |(head, (p, ds), (dq, dk, dv)), (b, ((dqkv, rows), g))| {
                    let bias = &self.bias[b * lk..(b + 1) * lk];
                    for h in 0..dims.heads {
                        head.read(rows, h, &dims);
                        let (q, k, v) = (&head.q, &head.k, &head.v);
                        probabilities(q, k, bias, self.scale, &dims, p);
                        dq.fill(0.0);
                        dk.fill(0.0);
                        dv.fill(0.0);
                        for i in 0..lq {
                            let g_i = &g[i * model + h * d..i * model + (h + 1) * d];
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
                        // Into this head's columns of the packed gradient rows.
                        for (j, row) in dqkv.chunks_exact_mut(3 * model).enumerate() {
                            let cols =
                                |part: usize| part * model + h * d..part * model + (h + 1) * d;
                            row[cols(1)].copy_from_slice(&dk[j * d..(j + 1) * d]);
                            row[cols(2)].copy_from_slice(&dv[j * d..(j + 1) * d]);
                            if j >= first_query {
                                let i = j - first_query;
                                row[cols(0)].copy_from_slice(&dq[i * d..(i + 1) * d]);
                            }
                        }
                    }
                },
            );
        Ok(Some(Tensor::from_vec(dqkv, qkv.shape(), qkv.device())?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{D, Device, IndexOp, Var};

    use super::*;

    /// The reference: candle's own operations, differentiable, on the packed projections
    /// `[B·L, 3·D]`, for the last `queries` positions.
    fn reference(
        qkv: &Tensor,
        bias: &Tensor,
        dims: (usize, usize, usize),
        queries: usize,
    ) -> Tensor {
        let (b, l, h) = dims;
        let head_dim = qkv.dim(1).unwrap() / 3 / h;
        let parts = qkv
            .reshape((b, l, 3, h, head_dim))
            .unwrap()
            .permute((2, 0, 3, 1, 4))
            .unwrap();
        let q = parts
            .i(0)
            .unwrap()
            .narrow(2, l - queries, queries)
            .unwrap()
            .contiguous()
            .unwrap();
        let (k, v) = (
            parts.i(1).unwrap().contiguous().unwrap(),
            parts.i(2).unwrap().contiguous().unwrap(),
        );
        let scale = 1.0 / (head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale)
            .unwrap()
            .broadcast_add(bias)
            .unwrap();
        candle_nn::ops::softmax(&scores, D::Minus1)
            .unwrap()
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((b * queries, h * head_dim))
            .unwrap()
    }

    #[test]
    fn forward_and_gradients_match_candle() {
        let device = Device::Cpu;
        let (b, h, l, d) = (3, 2, 5, 4);
        let var = |rows: usize, cols: usize, seed: u64| {
            let values: Vec<f32> = (0..rows * cols)
                .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0) - 1.0)
                .collect();
            Var::from_vec(values, (rows, cols), &device).unwrap()
        };
        let qkv = var(b * l, 3 * h * d, 1);
        // Sequence 1 has two padded keys.
        let mut bias = vec![0f32; b * l];
        bias[l] = -1e9;
        bias[l + 1] = -1e9;
        let bias_tensor = Tensor::from_vec(bias.clone(), (b, 1, 1, l), &device).unwrap();
        let close = |a: &Tensor, b: &Tensor| {
            let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
            diff.to_scalar::<f32>().unwrap()
        };
        // Every position, then the last one alone.
        for queries in [l, 1] {
            let expected = reference(qkv.as_tensor(), &bias_tensor, (b, l, h), queries);
            let fused = PaddedAttention {
                bias: bias.clone(),
                scale: 1.0 / (d as f32).sqrt(),
                heads: h,
                keys: l,
                queries,
            }
            .apply(qkv.as_tensor())
            .unwrap();
            assert_eq!(fused.dims(), &[b * queries, h * d]);
            assert!(close(&expected, &fused) < 1e-5);
            // The same weighted loss through both; the gradients must agree.
            let weights = var(b * queries, h * d, 4);
            let loss = |y: Tensor| (y * weights.as_tensor()).unwrap().sum_all().unwrap();
            let g_expected = loss(expected).backward().unwrap();
            let g_fused = loss(fused).backward().unwrap();
            let (a, b) = (
                g_expected.get(qkv.as_tensor()).unwrap(),
                g_fused.get(qkv.as_tensor()).unwrap(),
            );
            assert!(close(a, b) < 1e-4, "gradient differs by {}", close(a, b));
        }
    }
}
