//! Training a dense ReLU network with a logistic output on the CPU, by hand: forward pass,
//! backward pass and AdamW over feature-major mini-batches in preallocated buffers.
//!
//! candle's autograd spends most of a mini-batch of this small network on bookkeeping: each of
//! its ~30 operations allocates its output, and the bias's backward is a reduction over rows.
//! Written out, a step is three matrix products a layer (forward, weight gradient, input
//! gradient) plus element-wise passes, and an epoch over 1M rows takes a fraction of the time.
//! The arithmetic is the same as candle's (the same AdamW, the same loss), and a unit test
//! holds one step of each to the same weights. Other devices train with candle.

use candle_core::{Device, Tensor};
use candle_nn::ParamsAdamW;
use gemm::Parallelism;
use rand::Rng;
use rand::rngs::StdRng;

use super::dense::{DenseLayer, Kernel};
use crate::error::Result;
use crate::preprocess::Matrix;

/// A layer's gradients and AdamW moments, shaped like its weight and bias.
#[derive(Debug, Clone)]
struct LayerState {
    grad_weight: Vec<f32>,
    grad_bias: Vec<f32>,
    m_weight: Vec<f32>,
    v_weight: Vec<f32>,
    m_bias: Vec<f32>,
    v_bias: Vec<f32>,
}

impl LayerState {
    fn new(layer: &DenseLayer) -> LayerState {
        let (w, b) = (layer.weight.len(), layer.bias.len());
        LayerState {
            grad_weight: vec![0.0; w],
            grad_bias: vec![0.0; b],
            m_weight: vec![0.0; w],
            v_weight: vec![0.0; w],
            m_bias: vec![0.0; b],
            v_bias: vec![0.0; b],
        }
    }
}

/// A network being trained on the CPU with AdamW.
pub(crate) struct CpuTrainer {
    layers: Vec<DenseLayer>,
    state: Vec<LayerState>,
    params: ParamsAdamW,
    steps: i32,
    kernel: Kernel,
    /// The mini-batch, `[inputs, width]`.
    x: Vec<f32>,
    /// Each layer's output, `[outputs, width]`: after ReLU and dropout for hidden layers, the
    /// logits for the last.
    activations: Vec<Vec<f32>>,
    /// The gradient of the loss by the current layer's pre-activation, and by its input.
    d_output: Vec<f32>,
    d_input: Vec<f32>,
}

impl CpuTrainer {
    /// Starts from `layers` (weight `[out, in]` row-major, bias `[out]`).
    pub(crate) fn new(layers: Vec<(Vec<f32>, Vec<f32>)>, params: ParamsAdamW) -> CpuTrainer {
        let layers: Vec<DenseLayer> = layers
            .into_iter()
            .map(|(weight, bias)| DenseLayer {
                inputs: weight.len() / bias.len(),
                outputs: bias.len(),
                weight,
                bias,
            })
            .collect();
        let state = layers.iter().map(LayerState::new).collect();
        CpuTrainer {
            activations: vec![Vec::new(); layers.len()],
            layers,
            state,
            params,
            steps: 0,
            kernel: Kernel::best(),
            x: Vec::new(),
            d_output: Vec::new(),
            d_input: Vec::new(),
        }
    }

    /// One AdamW step on the rows `batch` of `x` with labels `y` and row weights `w` (each
    /// indexed like `batch`), minimising Σ w·BCE / Σ w; returns that loss before the step.
    /// Hidden activations are dropped with probability `dropout`, drawn from `rng`.
    pub(crate) fn step(
        &mut self,
        x: &Matrix,
        batch: &[usize],
        y: &[f32],
        w: &[f32],
        dropout: f64,
        rng: &mut StdRng,
    ) -> f64 {
        let n = batch.len();
        // Padding rows are zeros in x and get no gradient, so they change nothing.
        let width = n.next_multiple_of(self.kernel.row_multiple());
        self.x.clear();
        self.x.resize(x.cols * width, 0.0);
        for (c, out) in self.x.chunks_exact_mut(width).enumerate() {
            let column = x.column(c);
            for (o, &i) in out.iter_mut().zip(batch) {
                *o = column[i];
            }
        }

        // Forward, keeping every layer's output.
        let keep = 1.0 - dropout as f32;
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, rest) = self.activations.split_at_mut(l);
            let input = if l == 0 { &self.x } else { &before[l - 1] };
            let output = &mut rest[0];
            output.resize(layer.outputs * width, 0.0);
            self.kernel
                .layer(layer, input, width, width, output, l < last);
            if l < last && dropout > 0.0 {
                for row in output.chunks_exact_mut(width) {
                    for v in &mut row[..n] {
                        *v = if rng.random::<f32>() < keep {
                            *v / keep
                        } else {
                            0.0
                        };
                    }
                }
            }
        }

        // The loss and its gradient by the logits: softplus(z) − y·z, and σ(z) − y, weighted.
        let total_weight: f32 = w.iter().sum();
        let logits = &self.activations[last][..n];
        self.d_output.clear();
        self.d_output.resize(width, 0.0);
        let mut loss = 0.0f64;
        for (((d, &z), &y), &w) in self.d_output.iter_mut().zip(logits).zip(y).zip(w) {
            let softplus = z.max(0.0) + (-z.abs()).exp().ln_1p();
            loss += f64::from(w * (softplus - y * z));
            *d = (1.0 / (1.0 + (-z).exp()) - y) * w / total_weight;
        }

        // Backward: each layer's gradients, then the gradient by its input (a hidden layer's
        // output), through ReLU and dropout: an output that is > 0 passed with factor 1/keep.
        let pass = 1.0 / keep;
        for l in (0..=last).rev() {
            let layer = &self.layers[l];
            let state = &mut self.state[l];
            let input = if l == 0 {
                &self.x
            } else {
                &self.activations[l - 1]
            };
            weight_gradient(layer, &self.d_output, input, width, &mut state.grad_weight);
            for (g, row) in state
                .grad_bias
                .iter_mut()
                .zip(self.d_output.chunks_exact(width))
            {
                *g = row.iter().sum();
            }
            if l > 0 {
                self.d_input.resize(layer.inputs * width, 0.0);
                input_gradient(layer, &self.d_output, width, &mut self.d_input);
                for (d, &a) in self.d_input.iter_mut().zip(input.iter()) {
                    *d = if a > 0.0 { *d * pass } else { 0.0 };
                }
                std::mem::swap(&mut self.d_output, &mut self.d_input);
            }
        }

        self.adamw_update();
        loss / f64::from(total_weight)
    }

    /// AdamW as candle-nn's `AdamW::step` computes it: decoupled weight decay, then the
    /// bias-corrected Adam step.
    fn adamw_update(&mut self) {
        self.steps += 1;
        let p = &self.params;
        let scale_m = (1.0 / (1.0 - p.beta1.powi(self.steps))) as f32;
        let scale_v = (1.0 / (1.0 - p.beta2.powi(self.steps))) as f32;
        let (beta1, beta2) = (p.beta1 as f32, p.beta2 as f32);
        let decay = (1.0 - p.lr * p.weight_decay) as f32;
        let (lr, eps) = (p.lr as f32, p.eps as f32);
        let update = |theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
            for (((theta, &g), m), v) in theta.iter_mut().zip(g).zip(m).zip(v) {
                *m = *m * beta1 + g * (1.0 - beta1);
                *v = *v * beta2 + g * g * (1.0 - beta2);
                let step = (*m * scale_m) / ((*v * scale_v).sqrt() + eps);
                *theta = *theta * decay - step * lr;
            }
        };
        for (layer, state) in self.layers.iter_mut().zip(&mut self.state) {
            update(
                &mut layer.weight,
                &state.grad_weight,
                &mut state.m_weight,
                &mut state.v_weight,
            );
            update(
                &mut layer.bias,
                &state.grad_bias,
                &mut state.m_bias,
                &mut state.v_bias,
            );
        }
    }

    /// The current weights as (weight `[out, in]`, bias `[out]`) tensors on the CPU.
    pub(crate) fn layers(&self) -> Result<Vec<(Tensor, Tensor)>> {
        self.layers
            .iter()
            .map(|l| {
                Ok((
                    Tensor::from_slice(&l.weight, (l.outputs, l.inputs), &Device::Cpu)?,
                    Tensor::from_slice(&l.bias, l.outputs, &Device::Cpu)?,
                ))
            })
            .collect()
    }
}

/// `grad = d_output · inputᵀ`: `[outputs, width]` times `[width, inputs]`.
fn weight_gradient(
    layer: &DenseLayer,
    d_output: &[f32],
    input: &[f32],
    width: usize,
    grad: &mut [f32],
) {
    assert!(d_output.len() >= layer.outputs * width);
    assert!(input.len() >= layer.inputs * width);
    assert_eq!(grad.len(), layer.outputs * layer.inputs);
    // rhs is input (`inputs x width` row-major) read transposed: element (k, j) at
    // j * width + k.
    // SAFETY: the extents of all three operands are asserted above.
    unsafe {
        product(
            (layer.outputs, layer.inputs, width),
            grad,
            (d_output, 1, width),
            (input, width, 1),
        );
    }
}

/// `d_input = Wᵀ · d_output`: `[inputs, outputs]` times `[outputs, width]`.
fn input_gradient(layer: &DenseLayer, d_output: &[f32], width: usize, d_input: &mut [f32]) {
    assert!(d_output.len() >= layer.outputs * width);
    assert_eq!(d_input.len(), layer.inputs * width);
    // lhs is the weight (`outputs x inputs` row-major) read transposed: element (i, k) at
    // k * inputs + i.
    // SAFETY: the extents of all three operands are asserted above.
    unsafe {
        product(
            (layer.inputs, width, layer.outputs),
            d_input,
            (&layer.weight, layer.inputs, 1),
            (d_output, 1, width),
        );
    }
}

/// `dst = lhs · rhs` for `(m, n, k)`: dst `m x n` row-major; each operand is given as
/// (values, column stride, row stride).
///
/// # Safety
/// Every element the strides address must lie inside its slice, and dst alias neither.
unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (lhs, lhs_cs, lhs_rs): (&[f32], usize, usize),
    (rhs, rhs_cs, rhs_rs): (&[f32], usize, usize),
) {
    debug_assert!(dst.len() >= m * n);
    // SAFETY: as the caller promises; read_dst = false with alpha 0 overwrites dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
