//! The CPU scoring path for dense networks: the whole forward pass fused over blocks of rows.
//!
//! Scoring is the hot path of `churn_score()`: a 24-64-32-1 MLP is about 7,200 floating-point
//! operations a row, so at tens of millions of rows a second the cost is in how the arithmetic
//! is scheduled, not in its amount. Run as separate tensor operations (matmul, then a broadcast
//! bias add, then ReLU, each over the whole batch), every step reads and writes the full
//! activation matrix. Here each block of rows goes through every layer while its activations
//! stay in cache, with the bias as the starting value of the sums and ReLU applied on the way
//! out.
//!
//! Two kernels compute a layer. On CPUs with AVX-512 a register-blocked one ([`avx512`]) keeps
//! a tile of 8 outputs x 48 rows in 24 vector registers and streams the inputs through it:
//! these layers are too narrow (24 and 64 inputs) for a general matrix product to pay for
//! packing its operands. Elsewhere `gemm` (the kernel candle itself uses) computes
//! `dst = bias + W·X`. Training and other devices use candle's tensors; the weights are the
//! same, and unit tests hold the paths to the same answers.

use candle_core::Tensor;
use gemm::Parallelism;
use rayon::prelude::*;

use crate::error::Result;
use crate::preprocess::{Encoder, Matrix};

/// Rows per block: the 64-wide activations of 192 rows are 48 KiB, about one L1 data cache.
/// A multiple of the AVX-512 tile (48 rows).
const BLOCK: usize = 192;

/// Columns of `b` per pass of [`matmul`]: a `[k, 128]` panel (192 KiB for k = 384), packed
/// contiguous, stays in a core's L2 cache. (64 ran as fast on MiniLM's layers, 256 about 5%
/// slower.)
const PANEL: usize = 128;

/// Rows per AVX-512 vector of f32.
const LANES: usize = 16;

#[derive(Debug, Clone)]
pub(crate) struct DenseLayer {
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    /// `[outputs, inputs]`, row-major.
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

impl DenseLayer {
    fn as_ref(&self) -> LayerRef<'_> {
        LayerRef {
            inputs: self.inputs,
            outputs: self.outputs,
            weight: &self.weight,
            bias: &self.bias,
        }
    }
}

/// A layer's shape and borrowed values, as the kernels read them.
#[derive(Debug, Clone, Copy)]
struct LayerRef<'a> {
    inputs: usize,
    outputs: usize,
    /// `[outputs, inputs]`, row-major.
    weight: &'a [f32],
    bias: &'a [f32],
}

/// How a layer's matrix product is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// The register-blocked AVX-512 kernel (checked at run time).
    Avx512,
    /// `gemm`'s general matrix product, on any CPU.
    Gemm,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub(crate) fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Kernel::Avx512;
        }
        Kernel::Gemm
    }

    /// Rows are computed in groups of this many: `n` passed to [`Kernel::layer`] must be a
    /// multiple of it.
    pub(crate) fn row_multiple(self) -> usize {
        match self {
            Kernel::Avx512 => LANES,
            Kernel::Gemm => 1,
        }
    }

    /// `dst[o, r] = act(bias[o] + Σ_k W[o, k] · input[k, r])` for `n` rows (a multiple of
    /// [`Kernel::row_multiple`]); `dst` is `outputs x n` row-major and `input` has row stride
    /// `input_stride`; `act` is ReLU when `relu`, else the identity.
    pub(crate) fn layer(
        self,
        layer: &DenseLayer,
        input: &[f32],
        input_stride: usize,
        n: usize,
        dst: &mut [f32],
        relu: bool,
    ) {
        self.layer_ref(layer.as_ref(), input, input_stride, n, dst, relu);
    }

    /// [`Kernel::layer`] over borrowed values.
    fn layer_ref(
        self,
        layer: LayerRef<'_>,
        input: &[f32],
        input_stride: usize,
        n: usize,
        dst: &mut [f32],
        relu: bool,
    ) {
        assert_eq!(n % self.row_multiple(), 0);
        assert_eq!(layer.weight.len(), layer.outputs * layer.inputs);
        assert_eq!(layer.bias.len(), layer.outputs);
        assert!(input.len() >= (layer.inputs - 1) * input_stride + n);
        let dst = &mut dst[..layer.outputs * n];
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Kernel::Avx512 is chosen only where the CPU has AVX-512F; the extents of
            // input and dst are asserted above and by the slice.
            Kernel::Avx512 => unsafe { avx512::layer(layer, input, input_stride, n, dst, relu) },
            _ => gemm_layer(layer, input, input_stride, n, dst, relu),
        }
    }
}

/// A dense ReLU network with a logistic output, ready to score on the CPU.
#[derive(Debug, Clone)]
pub struct DenseNetwork {
    layers: Vec<DenseLayer>,
    kernel: Kernel,
}

impl DenseNetwork {
    /// Copies (weight `[out, in]`, bias `[out]`) pairs out of candle tensors.
    pub fn from_tensors(layers: &[(Tensor, Tensor)]) -> Result<DenseNetwork> {
        let layers = layers
            .iter()
            .map(|(w, b)| {
                let (outputs, inputs) = w.dims2()?;
                Ok(DenseLayer {
                    inputs,
                    outputs,
                    weight: w.flatten_all()?.to_vec1::<f32>()?,
                    bias: b.to_vec1::<f32>()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DenseNetwork {
            layers,
            kernel: Kernel::best(),
        })
    }

    /// The probability of the positive class for each row of a feature-major matrix.
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        let blocks = predict_blocks(&[self], x.rows, x.cols, |start, n, block, stride| {
            for (c, row) in block.chunks_exact_mut(stride).enumerate() {
                row[..n].copy_from_slice(&x.column(c)[start..start + n]);
            }
            Ok(())
        });
        let [out] = blocks
            .expect("copying an encoded matrix cannot fail")
            .try_into()
            .expect("one network, one output");
        out
    }

    /// The probability of the positive class for each row of `encoder`'s columns, encoded a
    /// block at a time. Fails as [`Encoder::encode`] does.
    pub fn predict_columns(&self, encoder: &Encoder<'_>) -> Result<Vec<f64>> {
        let [out] = DenseNetwork::predict_columns_with(&[self], encoder)?
            .try_into()
            .expect("one network, one output");
        Ok(out)
    }

    /// Each network's probabilities for `encoder`'s columns, each block encoded once for all
    /// of them (networks over the same preprocessing, such as an uplift model's two).
    pub fn predict_columns_with(
        networks: &[&DenseNetwork],
        encoder: &Encoder<'_>,
    ) -> Result<Vec<Vec<f64>>> {
        predict_blocks(
            networks,
            encoder.rows(),
            encoder.width(),
            |start, n, block, stride| encoder.encode(start, n, block, stride),
        )
    }
}

/// Runs `rows` rows through each network [`BLOCK`] rows at a time; `fill(start, n, block,
/// stride)` writes the `cols` encoded columns of rows `start..start + n` into `block`, one
/// row of `stride` per column, once for all the networks.
fn predict_blocks(
    networks: &[&DenseNetwork],
    rows: usize,
    cols: usize,
    mut fill: impl FnMut(usize, usize, &mut [f32], usize) -> Result<()>,
) -> Result<Vec<Vec<f64>>> {
    for network in networks {
        assert_eq!(
            cols,
            network.layers.first().map_or(0, |l| l.inputs),
            "the input has the network's width (checked by the preprocessor)"
        );
    }
    let widest = networks
        .iter()
        .flat_map(|n| n.layers.iter().map(|l| l.outputs))
        .max()
        .unwrap_or(1);
    // The AVX-512 kernel works on whole vectors of rows: a short last block is padded with
    // zero rows (their results are dropped) to the widest multiple any network needs.
    let multiple = networks
        .iter()
        .map(|n| n.kernel.row_multiple())
        .max()
        .unwrap_or(1);
    let mut input = vec![0f32; cols * BLOCK.next_multiple_of(multiple)];
    let mut current = vec![0f32; widest * BLOCK.next_multiple_of(multiple)];
    let mut next = vec![0f32; widest * BLOCK.next_multiple_of(multiple)];
    let mut outs: Vec<Vec<f64>> = networks.iter().map(|_| Vec::with_capacity(rows)).collect();
    for start in (0..rows).step_by(BLOCK) {
        let n = BLOCK.min(rows - start);
        let padded = n.next_multiple_of(multiple);
        let block = &mut input[..cols * padded];
        if padded != n {
            block.fill(0.0);
        }
        fill(start, n, block, padded)?;
        for (network, out) in networks.iter().zip(&mut outs) {
            for (i, layer) in network.layers.iter().enumerate() {
                let source: &[f32] = if i == 0 { block } else { &current };
                let relu = i + 1 < network.layers.len();
                network
                    .kernel
                    .layer(layer, source, padded, padded, &mut next, relu);
                std::mem::swap(&mut current, &mut next);
            }
            out.extend(
                current[..n]
                    .iter()
                    .map(|&z| f64::from(1.0 / (1.0 + (-z).exp()))),
            );
        }
    }
    Ok(outs)
}

/// `a · b` for row-major `a` (`[m, k]`) and `b` (`[k, n]`), as the sequence networks'
/// linear layers need it, forward and backward. The register-blocked kernel computes it with
/// the rows of `a` where a layer's weights stand and `b` where its input does, so the output
/// comes out row-major; the rows of `a` are split across the model thread pool. A `b` wider
/// than [`PANEL`] is first packed into panels (see [`packed_product`]). None where that kernel
/// does not run (no AVX-512, or `n` not a multiple of its 16 lanes): the caller uses candle.
pub(crate) fn matmul(a: &[f32], b: &[f32], k: usize, n: usize) -> Option<Vec<f32>> {
    if !product_runs(k, n) {
        return None;
    }
    assert_eq!(b.len(), k * n);
    if n <= PANEL {
        // One panel: `b` is laid out as it already is.
        return Some(packed_product(a, b, k, n));
    }
    let mut packed = vec![0f32; k * n];
    for (first, panel) in panels(&mut packed, k, n) {
        let width = panel.len() / k;
        for (row, out) in panel.chunks_exact_mut(width).enumerate() {
            out.copy_from_slice(&b[row * n + first..row * n + first + width]);
        }
    }
    Some(packed_product(a, &packed, k, n))
}

/// `a · wᵀ` for row-major `a` (`[m, k]`) and `w` (`[n, k]`, a linear layer's weights), as
/// [`matmul`] computes `a · b`, with `wᵀ` built panel by panel straight from `w` (no separate
/// transpose). None where the kernel does not run.
pub(crate) fn matmul_transposed(a: &[f32], w: &[f32], k: usize, n: usize) -> Option<Vec<f32>> {
    if !product_runs(k, n) {
        return None;
    }
    assert_eq!(w.len(), k * n);
    let mut packed = vec![0f32; k * n];
    for (first, panel) in panels(&mut packed, k, n) {
        let width = panel.len() / k;
        transpose_into(&w[first * k..(first + width) * k], width, k, panel, width);
    }
    Some(packed_product(a, &packed, k, n))
}

fn product_runs(k: usize, n: usize) -> bool {
    Kernel::best() == Kernel::Avx512 && n.is_multiple_of(LANES) && k > 0
}

/// The panels of a packed `[k, n]` `b`: (first column, the panel's `k` rows of its width,
/// contiguous).
fn panels(packed: &mut [f32], k: usize, n: usize) -> impl Iterator<Item = (usize, &mut [f32])> {
    let mut rest = packed;
    (0..n).step_by(PANEL).map(move |first| {
        let width = PANEL.min(n - first);
        let (panel, tail) = std::mem::take(&mut rest).split_at_mut(k * width);
        rest = tail;
        (first, panel)
    })
}

/// `a · b` for `b` packed in panels of [`PANEL`] columns, each panel's rows contiguous (a
/// `b` of at most one panel is plain row-major). Packed rows are `width` apart, not `n`: rows
/// `n` apart (6 KiB for n = 1,536) fall into a few cache sets and evict each other.
fn packed_product(a: &[f32], packed: &[f32], k: usize, n: usize) -> Vec<f32> {
    let kernel = Kernel::best();
    assert_eq!(a.len() % k, 0);
    let m = a.len() / k;
    // Whole 8-row tiles per task, about four tasks a thread, at most 256 rows.
    let per_task = m
        .div_ceil(4 * rayon::current_num_threads())
        .next_multiple_of(8)
        .clamp(8, 256);
    let zeros = vec![0f32; per_task];
    let mut out = vec![0f32; m * n];
    out.par_chunks_mut(per_task * n)
        .zip(a.par_chunks(per_task * k))
        .for_each(|(out, a)| {
            let rows = a.len() / k;
            let swapped = LayerRef {
                inputs: k,
                outputs: rows,
                weight: a,
                bias: &zeros[..rows],
            };
            if n <= PANEL {
                kernel.layer_ref(swapped, packed, n, n, out, false);
                return;
            }
            // A wide `b` is taken a panel of columns at a time, so that the panel stays in
            // the core's cache while every row tile of the task reads it (a whole [384, 1536]
            // `b` is 2.4 MB and would be streamed again for every 8 rows).
            let mut panel = vec![0f32; rows * PANEL];
            for first in (0..n).step_by(PANEL) {
                let width = PANEL.min(n - first);
                let panel = &mut panel[..rows * width];
                let b = &packed[k * first..k * (first + width)];
                kernel.layer_ref(swapped, b, width, width, panel, false);
                for (row, values) in panel.chunks_exact(width).enumerate() {
                    out[row * n + first..row * n + first + width].copy_from_slice(values);
                }
            }
        });
    out
}

/// `src` (`[rows, cols]` row-major) transposed into `dst`, whose rows (one per column of
/// `src`) are `dst_stride` apart; blocks of 16 x 16 keep both sides' cache lines in use.
pub(crate) fn transpose_into(
    src: &[f32],
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    assert!(src.len() >= rows * cols);
    assert!(cols == 0 || dst.len() >= (cols - 1) * dst_stride + rows);
    for r0 in (0..rows).step_by(16) {
        for c0 in (0..cols).step_by(16) {
            for r in r0..(r0 + 16).min(rows) {
                for c in c0..(c0 + 16).min(cols) {
                    dst[c * dst_stride + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// [`Kernel::layer`] with `gemm`.
fn gemm_layer(
    layer: LayerRef<'_>,
    input: &[f32],
    input_stride: usize,
    n: usize,
    dst: &mut [f32],
    relu: bool,
) {
    for (row, bias) in dst.chunks_exact_mut(n).zip(layer.bias) {
        row.fill(*bias);
    }
    // SAFETY: dst is `outputs x n` row-major (row stride n), lhs `outputs x inputs`
    // row-major, rhs `inputs x n` with row stride `input_stride`; Kernel::layer asserted
    // that input covers that extent and cut dst to it, and dst aliases neither.
    unsafe {
        gemm::gemm(
            layer.outputs,
            n,
            layer.inputs,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            layer.weight.as_ptr(),
            1,
            layer.inputs as isize,
            input.as_ptr(),
            1,
            input_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
    if relu {
        for v in dst.iter_mut() {
            *v = v.max(0.0);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{LANES, LayerRef};

    /// Outputs per tile.
    const TILE_OUTPUTS: usize = 8;
    /// Vectors of rows per tile: 8 x 3 accumulators, 3 inputs and a broadcast weight fit the
    /// 32 vector registers.
    const TILE_VECTORS: usize = 3;

    /// The layer over `n` rows (a multiple of [`LANES`]): `dst` is `outputs x n` row-major,
    /// `input` is `inputs` rows of stride `input_stride`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `input` must hold `(inputs - 1) * input_stride + n` values
    /// and `dst` `outputs * n`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn layer(
        layer: LayerRef<'_>,
        input: &[f32],
        input_stride: usize,
        n: usize,
        dst: &mut [f32],
        relu: bool,
    ) {
        debug_assert_eq!(n % LANES, 0);
        debug_assert!(input.len() >= (layer.inputs - 1) * input_stride + n);
        debug_assert!(dst.len() >= layer.outputs * n);
        let vectors = n / LANES;
        let mut o = 0;
        // SAFETY (all tiles): tile (o, r) reads weight rows o..o+O, input columns
        // r..r+V*LANES of every input row and writes the same part of dst's rows o..o+O,
        // all inside the extents checked above.
        unsafe {
            while o + TILE_OUTPUTS <= layer.outputs {
                rows::<TILE_OUTPUTS>(layer, o, input, input_stride, vectors, n, dst, relu);
                o += TILE_OUTPUTS;
            }
            while o < layer.outputs {
                rows::<1>(layer, o, input, input_stride, vectors, n, dst, relu);
                o += 1;
            }
        }
    }

    /// Outputs `o..o + O` for every row.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows<const O: usize>(
        layer: LayerRef<'_>,
        o: usize,
        input: &[f32],
        input_stride: usize,
        vectors: usize,
        n: usize,
        dst: &mut [f32],
        relu: bool,
    ) {
        let weight = unsafe { layer.weight.as_ptr().add(o * layer.inputs) };
        let bias = &layer.bias[o..o + O];
        let dst = unsafe { dst.as_mut_ptr().add(o * n) };
        let mut v = 0;
        while v < vectors {
            let r = v * LANES;
            // Whole tiles of TILE_VECTORS vectors, then single vectors for the rest.
            let step = if v + TILE_VECTORS <= vectors {
                TILE_VECTORS
            } else {
                1
            };
            let (input, dst) = unsafe { (input.as_ptr().add(r), dst.add(r)) };
            let (inputs, stride) = (layer.inputs, input_stride);
            unsafe {
                if step == TILE_VECTORS {
                    tile::<O, TILE_VECTORS>(weight, inputs, bias, input, stride, dst, n, relu);
                } else {
                    tile::<O, 1>(weight, inputs, bias, input, stride, dst, n, relu);
                }
            }
            v += step;
        }
    }

    /// One tile: `O` outputs x `V` vectors of rows, summed in registers over all inputs.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const O: usize, const V: usize>(
        weight: *const f32,
        inputs: usize,
        bias: &[f32],
        input: *const f32,
        input_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
        relu: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; O];
        for (sums, &b) in acc.iter_mut().zip(bias) {
            *sums = [_mm512_set1_ps(b); V];
        }
        for k in 0..inputs {
            let row = unsafe { input.add(k * input_stride) };
            let mut x = [_mm512_setzero_ps(); V];
            for (j, x) in x.iter_mut().enumerate() {
                *x = unsafe { _mm512_loadu_ps(row.add(j * LANES)) };
            }
            for (i, sums) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_ps(unsafe { *weight.add(i * inputs + k) });
                for (sum, x) in sums.iter_mut().zip(&x) {
                    *sum = _mm512_fmadd_ps(w, *x, *sum);
                }
            }
        }
        let zero = _mm512_setzero_ps();
        for (i, sums) in acc.iter().enumerate() {
            for (j, &sum) in sums.iter().enumerate() {
                let value = if relu { _mm512_max_ps(sum, zero) } else { sum };
                unsafe { _mm512_storeu_ps(dst.add(i * dst_stride + j * LANES), value) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A network of odd widths (no layer a multiple of the tile) with random weights.
    fn network(widths: &[usize], kernel: Kernel) -> DenseNetwork {
        let mut rng = StdRng::seed_from_u64(11);
        let layers = widths
            .windows(2)
            .map(|w| DenseLayer {
                inputs: w[0],
                outputs: w[1],
                weight: (0..w[0] * w[1])
                    .map(|_| rng.random_range(-0.5..0.5))
                    .collect(),
                bias: (0..w[1]).map(|_| rng.random_range(-0.5..0.5)).collect(),
            })
            .collect();
        DenseNetwork { layers, kernel }
    }

    #[test]
    fn matmul_is_a_times_b() {
        let mut rng = StdRng::seed_from_u64(2);
        // m spans several tasks and a part tile; k is odd; wide `b`s go a panel at a time,
        // the last panel narrower than the others.
        for (m, k, n) in [
            (37, 24, 48),
            (1043, 7, 16),
            (5, 300, 64),
            (37, 24, 272),
            (300, 5, 1536),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let Some(c) = matmul(&a, &b, k, n) else {
                assert_ne!(Kernel::best(), Kernel::Avx512, "AVX-512 runs the kernel");
                return;
            };
            // The same product with `b` given as the weights `w = bᵀ` of a linear layer.
            let mut w = vec![0f32; k * n];
            transpose_into(&b, k, n, &mut w, k);
            let c_transposed = matmul_transposed(&a, &w, k, n).expect("runs where matmul does");
            for r in 0..m {
                for j in 0..n {
                    let z: f32 = (0..k).map(|i| a[r * k + i] * b[i * n + j]).sum();
                    let tolerance = 1e-5 * (k as f32).sqrt();
                    for (product, c) in [("a · b", &c), ("a · wᵀ", &c_transposed)] {
                        assert!(
                            (c[r * n + j] - z).abs() < tolerance,
                            "{product} {m}x{k}x{n} ({r}, {j})"
                        );
                    }
                }
            }
        }
        assert!(
            matmul(&[1.0; 20], &[1.0; 20], 1, 20).is_none(),
            "20 columns"
        );
    }

    #[test]
    fn kernels_agree_on_odd_shapes() {
        if Kernel::best() != Kernel::Avx512 {
            eprintln!("no AVX-512 on this CPU: only the gemm kernel runs here");
            return;
        }
        let mut rng = StdRng::seed_from_u64(5);
        for rows in [1, 15, 16, 47, 48, 191, 192, 193, 1037] {
            let cols = 13;
            let x = Matrix {
                rows,
                cols,
                data: (0..rows * cols)
                    .map(|_| rng.random_range(-2.0..2.0))
                    .collect(),
            };
            let widths = [cols, 21, 9, 1];
            let fast = network(&widths, Kernel::Avx512).predict(&x);
            let general = network(&widths, Kernel::Gemm).predict(&x);
            assert_eq!(fast.len(), rows);
            for (a, b) in fast.iter().zip(&general) {
                assert!((a - b).abs() < 1e-6, "{rows} rows: {a} vs {b}");
            }
        }
    }
}
