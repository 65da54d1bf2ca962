//! The CPU scoring path for dense networks: the whole forward pass fused over blocks of rows.
//!
//! Scoring is the hot path of `churn_score()`: a 24-64-32-1 MLP is about 7,200 floating-point
//! operations a row, so at tens of millions of rows a second the cost is in the memory traffic
//! between operations, not in the arithmetic. Run as separate tensor operations (matmul, then
//! a broadcast bias add, then ReLU, each over the whole batch), every step reads and writes
//! the full activation matrix. Here each block of rows goes through every layer while its
//! activations stay in cache: the bias is written into the output first and the matrix
//! product accumulated onto it (`gemm` with `dst = dst + W·X`, the kernel candle itself
//! uses), then ReLU runs in place. Training and other devices use candle's tensors; the
//! weights are the same, and a unit test holds the two paths to the same answers.

use candle_core::Tensor;
use gemm::Parallelism;

use crate::error::Result;
use crate::preprocess::Matrix;

/// Rows per block: a 64-wide activation block of 512 rows is 128 KiB, inside L2.
const BLOCK: usize = 512;

#[derive(Debug, Clone)]
struct DenseLayer {
    inputs: usize,
    outputs: usize,
    /// `[outputs, inputs]`, row-major.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// A dense ReLU network with a logistic output, ready to score on the CPU.
#[derive(Debug, Clone)]
pub struct DenseNetwork {
    layers: Vec<DenseLayer>,
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
        Ok(DenseNetwork { layers })
    }

    /// The probability of the positive class for each row of a feature-major matrix.
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        assert_eq!(
            x.cols,
            self.layers.first().map_or(0, |l| l.inputs),
            "the matrix has the network's input width (checked by the preprocessor)"
        );
        let widest = self.layers.iter().map(|l| l.outputs).max().unwrap_or(1);
        let mut current = vec![0f32; widest * BLOCK];
        let mut next = vec![0f32; widest * BLOCK];
        let mut out = Vec::with_capacity(x.rows);
        for start in (0..x.rows).step_by(BLOCK) {
            let n = BLOCK.min(x.rows - start);
            for (i, layer) in self.layers.iter().enumerate() {
                let dst = &mut next[..layer.outputs * n];
                for (row, bias) in dst.chunks_exact_mut(n).zip(&layer.bias) {
                    row.fill(*bias);
                }
                // The first layer reads the block straight from the feature-major matrix
                // (row stride: all rows); later ones read the previous layer's block.
                let (input, input_row_stride) = if i == 0 {
                    (&x.data[start..], x.rows)
                } else {
                    (&current[..layer.inputs * n], n)
                };
                debug_assert!(input.len() >= (layer.inputs - 1) * input_row_stride + n);
                // SAFETY: dst is `outputs x n` row-major (row stride n), lhs `outputs x inputs`
                // row-major, rhs `inputs x n` with row stride `input_row_stride`; the slices
                // cover those extents (asserted above for rhs) and dst aliases neither.
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
                        input_row_stride as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
                if i + 1 < self.layers.len() {
                    for v in dst.iter_mut() {
                        *v = v.max(0.0);
                    }
                }
                std::mem::swap(&mut current, &mut next);
            }
            out.extend(
                current[..n]
                    .iter()
                    .map(|&z| f64::from(1.0 / (1.0 + (-z).exp()))),
            );
        }
        out
    }
}
