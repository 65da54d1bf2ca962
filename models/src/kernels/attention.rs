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
//! (`sequence/network.rs`).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::fused::contiguous;

/// The op: for each sequence `b` and head, `softmax(q kᵀ · scale + bias_b) v`, where
/// `bias[b][j]` is added to every query's score for key `j` (0, or a large negative number for
/// padding); a causal op lets each query see only the keys up to its own position. Input: the projections `[B·L, 3·D]`, each row `[q | k | v]` with the heads side by
/// side in each part; output `[B·queries, D]`, heads side by side, for the last `queries`
/// positions of each sequence (a head that reads only the summary token needs its row alone).
pub(crate) struct PaddedAttention {
    pub(crate) bias: Vec<f32>,
    pub(crate) scale: f32,
    pub(crate) heads: usize,
    /// L: the keys of each sequence.
    pub(crate) keys: usize,
    pub(crate) queries: usize,
    /// Each position attends only to itself and the positions before it (next-item models
    /// learn from every position at once, as SASRec does).
    pub(crate) causal: bool,
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
            causal: self.causal,
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
    causal: bool,
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

/// One head's q, k and v of one sequence, copied out of the packed rows: q, k and v row by
/// row, k and v also transposed (`[head_dim, keys]`), so that every inner loop below runs
/// along contiguous numbers without a reduction and vectorises.
struct Head {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    k_t: Vec<f32>,
    v_t: Vec<f32>,
}

impl Head {
    fn new(dims: &Dims) -> Head {
        let (lq, lk, d) = (dims.queries, dims.keys, dims.head_dim);
        Head {
            q: vec![0f32; lq * d],
            k: vec![0f32; lk * d],
            v: vec![0f32; lk * d],
            k_t: vec![0f32; lk * d],
            v_t: vec![0f32; lk * d],
        }
    }

    /// Reads head `h` from a sequence's projection rows `[L, 3·D]`.
    fn read(&mut self, rows: &[f32], h: usize, dims: &Dims) {
        let (d, lk, model) = (dims.head_dim, dims.keys, dims.model);
        let first_query = lk - dims.queries;
        for (j, row) in rows.chunks_exact(3 * model).enumerate() {
            let at = |part: usize| &row[part * model + h * d..part * model + (h + 1) * d];
            self.k[j * d..(j + 1) * d].copy_from_slice(at(1));
            self.v[j * d..(j + 1) * d].copy_from_slice(at(2));
            for (c, (&k, &v)) in at(1).iter().zip(at(2)).enumerate() {
                self.k_t[c * lk + j] = k;
                self.v_t[c * lk + j] = v;
            }
            if j >= first_query {
                let i = j - first_query;
                self.q[i * d..(i + 1) * d].copy_from_slice(at(0));
            }
        }
    }
}

/// `y += a · x`.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `row[j] = Σ_c x[c] · m_t[c][j]` for `m_t` `[x.len(), row.len()]`: the dot products of `x`
/// with every row of `m`, from its transpose.
#[inline(always)]
fn dots(row: &mut [f32], x: &[f32], m_t: &[f32]) {
    let n = row.len();
    row.fill(0.0);
    for (&xc, column) in x.iter().zip(m_t.chunks_exact(n)) {
        axpy(row, xc, column);
    }
}

/// Softmax probabilities of one block's scores, row by row, into `p` ([queries, keys]); a
/// causal block's keys after the query get probability 0 (and so no gradient either).
#[inline(always)]
fn probabilities(head: &Head, bias: &[f32], scale: f32, dims: &Dims, p: &mut [f32]) {
    let (lk, d) = (dims.keys, dims.head_dim);
    let first_query = lk - dims.queries;
    for (i, (query, row)) in head
        .q
        .chunks_exact(d)
        .zip(p.chunks_exact_mut(lk))
        .enumerate()
    {
        dots(row, query, &head.k_t);
        let visible = if dims.causal { first_query + i + 1 } else { lk };
        let (row, hidden) = row.split_at_mut(visible);
        hidden.fill(0.0);
        for (x, b) in row.iter_mut().zip(bias) {
            *x = *x * scale + b;
        }
        let max = lanes(row, f32::NEG_INFINITY, f32::max);
        for x in row.iter_mut() {
            *x = super::lstm_cpu::exp(*x - max);
        }
        let inverse = 1.0 / lanes(row, 0.0, |a, b| a + b);
        for x in row.iter_mut() {
            *x *= inverse;
        }
    }
}

/// `values` folded by `f` in 16 independent lanes, then across them: a float reduction in one
/// accumulator is a chain the compiler must keep in order, and would not vectorise.
#[inline(always)]
fn lanes(values: &[f32], start: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [start; 16];
    let chunks = values.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = f(*a, v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a = f(*a, v);
    }
    acc.into_iter().fold(start, f)
}

/// Scratch space of one task.
struct Scratch {
    head: Head,
    /// Probabilities and score gradients, `[queries, keys]`.
    p: Vec<f32>,
    ds: Vec<f32>,
    /// One head's gradients of q, k and v, row by row.
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

impl Scratch {
    fn new(dims: &Dims) -> Scratch {
        let (lq, lk, d) = (dims.queries, dims.keys, dims.head_dim);
        Scratch {
            head: Head::new(dims),
            p: vec![0f32; lq * lk],
            ds: vec![0f32; lq * lk],
            dq: vec![0f32; lq * d],
            dk: vec![0f32; lk * d],
            dv: vec![0f32; lk * d],
        }
    }
}

impl PaddedAttention {
    /// One sequence's output rows `[queries, D]` from its projection rows `[L, 3·D]`.
    #[inline(always)]
    fn forward_sequence(
        &self,
        b: usize,
        rows: &[f32],
        out: &mut [f32],
        dims: &Dims,
        s: &mut Scratch,
    ) {
        let (lk, d, model) = (dims.keys, dims.head_dim, dims.model);
        let bias = &self.bias[b * lk..(b + 1) * lk];
        for h in 0..dims.heads {
            s.head.read(rows, h, dims);
            probabilities(&s.head, bias, self.scale, dims, &mut s.p);
            for (i, p_i) in s.p.chunks_exact(lk).enumerate() {
                let o = &mut out[i * model + h * d..i * model + (h + 1) * d];
                for (&p_ij, v_j) in p_i.iter().zip(s.head.v.chunks_exact(d)) {
                    axpy(o, p_ij, v_j);
                }
            }
        }
    }

    /// One sequence's projection-row gradients `[L, 3·D]` from its output gradients.
    #[inline(always)]
    fn backward_sequence(
        &self,
        b: usize,
        rows: &[f32],
        grad: &[f32],
        dqkv: &mut [f32],
        dims: &Dims,
        s: &mut Scratch,
    ) {
        let (lk, d, model) = (dims.keys, dims.head_dim, dims.model);
        let first_query = lk - dims.queries;
        let bias = &self.bias[b * lk..(b + 1) * lk];
        for h in 0..dims.heads {
            s.head.read(rows, h, dims);
            probabilities(&s.head, bias, self.scale, dims, &mut s.p);
            let head = &s.head;
            s.dq.fill(0.0);
            s.dk.fill(0.0);
            s.dv.fill(0.0);
            for (i, (p_i, ds_i)) in
                s.p.chunks_exact(lk)
                    .zip(s.ds.chunks_exact_mut(lk))
                    .enumerate()
            {
                let g_i = &grad[i * model + h * d..i * model + (h + 1) * d];
                // dV_j += P_ij dO_i; dP_ij = dO_i · v_j.
                for (&p_ij, dv_j) in p_i.iter().zip(s.dv.chunks_exact_mut(d)) {
                    axpy(dv_j, p_ij, g_i);
                }
                dots(ds_i, g_i, &head.v_t);
                let weighted = p_i
                    .iter()
                    .zip(ds_i.iter())
                    .map(|(p, dp)| p * dp)
                    .sum::<f32>();
                // dS_ij = P_ij (dP_ij - Σ_j' P_ij' dP_ij'), then the scale.
                for (ds, &p) in ds_i.iter_mut().zip(p_i) {
                    *ds = p * (*ds - weighted) * self.scale;
                }
                let (q_i, dq_i) = (&head.q[i * d..(i + 1) * d], &mut s.dq[i * d..(i + 1) * d]);
                for ((&s_ij, k_j), dk_j) in ds_i
                    .iter()
                    .zip(head.k.chunks_exact(d))
                    .zip(s.dk.chunks_exact_mut(d))
                {
                    axpy(dq_i, s_ij, k_j);
                    axpy(dk_j, s_ij, q_i);
                }
            }
            // Into this head's columns of the packed gradient rows.
            for (j, row) in dqkv.chunks_exact_mut(3 * model).enumerate() {
                let cols = |part: usize| part * model + h * d..part * model + (h + 1) * d;
                row[cols(1)].copy_from_slice(&s.dk[j * d..(j + 1) * d]);
                row[cols(2)].copy_from_slice(&s.dv[j * d..(j + 1) * d]);
                if j >= first_query {
                    let i = j - first_query;
                    row[cols(0)].copy_from_slice(&s.dq[i * d..(i + 1) * d]);
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn forward_sequence_avx512(
        &self,
        b: usize,
        rows: &[f32],
        out: &mut [f32],
        dims: &Dims,
        s: &mut Scratch,
    ) {
        self.forward_sequence(b, rows, out, dims, s);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn backward_sequence_avx512(
        &self,
        b: usize,
        rows: &[f32],
        grad: &[f32],
        dqkv: &mut [f32],
        dims: &Dims,
        s: &mut Scratch,
    ) {
        self.backward_sequence(b, rows, grad, dqkv, dims, s);
    }
}

/// Whether the loops above run compiled for AVX-512 (16 lanes) rather than the baseline's
/// SSE2 (4 lanes).
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
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
        let wide = avx512();
        let mut out = vec![0f32; dims.sequences * dims.output_block()];
        out.par_chunks_mut(dims.output_block())
            .zip(qkv.par_chunks(dims.sequence_block()))
            .enumerate()
            .for_each_init(
                || Scratch::new(&dims),
                |scratch, (b, (out, rows))| {
                    #[cfg(target_arch = "x86_64")]
                    if wide {
                        // SAFETY: the CPU has AVX-512F (checked above).
                        return unsafe {
                            self.forward_sequence_avx512(b, rows, out, &dims, scratch);
                        };
                    }
                    let _ = wide;
                    self.forward_sequence(b, rows, out, &dims, scratch);
                },
            );
        let shape = Shape::from((dims.sequences * dims.queries, dims.model));
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
        let wide = avx512();
        let mut dqkv = vec![0f32; qkv_data.len()];
        dqkv.par_chunks_mut(dims.sequence_block())
            .zip(qkv_data.par_chunks(dims.sequence_block()))
            .zip(grad.par_chunks(dims.output_block()))
            .enumerate()
            .for_each_init(
                || Scratch::new(&dims),
                |scratch, (b, ((dqkv, rows), grad))| {
                    #[cfg(target_arch = "x86_64")]
                    if wide {
                        // SAFETY: the CPU has AVX-512F (checked above).
                        return unsafe {
                            self.backward_sequence_avx512(b, rows, grad, dqkv, &dims, scratch);
                        };
                    }
                    let _ = wide;
                    self.backward_sequence(b, rows, grad, dqkv, &dims, scratch);
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
        causal: bool,
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
        let mut scores = (q.matmul(&k.t().unwrap()).unwrap() * scale)
            .unwrap()
            .broadcast_add(bias)
            .unwrap();
        if causal {
            let mask: Vec<f32> = (0..queries * l)
                .map(|c| {
                    if c % l > l - queries + c / l {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            let mask = Tensor::from_vec(mask, (1, 1, queries, l), qkv.device()).unwrap();
            scores = scores.broadcast_add(&mask).unwrap();
        }
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
        // Every position, then the last one alone; bidirectional and causal.
        for (queries, causal) in [(l, false), (1, false), (l, true), (2, true)] {
            let expected = reference(qkv.as_tensor(), &bias_tensor, (b, l, h), queries, causal);
            let fused = PaddedAttention {
                bias: bias.clone(),
                scale: 1.0 / (d as f32).sqrt(),
                heads: h,
                keys: l,
                queries,
                causal,
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
