//! The BERT encoder's forward pass on the CPU through tenure's fused kernels.
//!
//! Why: candle-transformers' BERT runs every linear layer of a `[texts, tokens, hidden]`
//! batch as one small matrix product per text (candle's batched matmul), each dispatched to
//! the thread pool on its own, and attention as one product per (text, head); on 2 cores that
//! ran MiniLM at about a tenth of PyTorch's speed. Here the texts of a bucket are one
//! `[texts · tokens, hidden]` matrix: each linear layer is one product in the AVX-512 kernel
//! (`kernels::fused`), q, k and v come from one product with the three weights stacked, and
//! attention is the fused padded attention of the sequence models (`kernels::attention`).
//! Where those kernels do not run (another device, no AVX-512, widths that are not multiples
//! of 16) the encoder uses candle-transformers' model, and the unit tests hold the two to
//! the same vectors.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use candle_transformers::models::bert::{Config as BertConfig, HiddenAct};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::attention::PaddedAttention;
use crate::kernels::fused;
use crate::kernels::lstm_cpu::exp;

/// Added to the attention score of a padding key: its weight after the softmax is zero.
const PADDING_BIAS: f32 = -1e9;

/// One transformer layer's weights, q, k and v stacked into one projection.
struct Layer {
    qkv: (Tensor, Tensor),
    attention_out: (Tensor, Tensor),
    attention_norm: (Tensor, Tensor),
    up: (Tensor, Tensor),
    down: (Tensor, Tensor),
    output_norm: (Tensor, Tensor),
}

/// BERT's weights as the fused kernels read them.
pub(super) struct FusedBert {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embedding_norm: (Tensor, Tensor),
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    eps: f32,
    activation: HiddenAct,
}

impl FusedBert {
    /// The fused encoder over `tensors` (named as stored), or None where the fused kernels do
    /// not apply to this model on this machine.
    pub(super) fn new(
        tensors: &HashMap<String, Tensor>,
        config: &BertConfig,
    ) -> Result<Option<FusedBert>> {
        let get = |name: &str| -> Result<Tensor> {
            tensors.get(name).cloned().ok_or_else(|| {
                Error::data(format!("the weights do not fit config.json: no {name}"))
            })
        };
        let pair = |prefix: &str| -> Result<(Tensor, Tensor)> {
            Ok((
                get(&format!("{prefix}.weight"))?,
                get(&format!("{prefix}.bias"))?,
            ))
        };
        let word = get("embeddings.word_embeddings.weight")?;
        // The fused ops apply only to f32 on a CPU with AVX-512 and widths of multiples of 16;
        // a probe product says whether they run here.
        let probe = Tensor::zeros((1, 16), DType::F32, word.device())?;
        let probe_w = Tensor::zeros((16, 16), DType::F32, word.device())?;
        let probe_b = Tensor::zeros(16, DType::F32, word.device())?;
        let widths_fit =
            config.hidden_size.is_multiple_of(16) && config.intermediate_size.is_multiple_of(16);
        if !widths_fit || fused::linear(&probe, &probe_w, &probe_b, false)?.is_none() {
            return Ok(None);
        }
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let (qw, qb) = pair(&format!("{p}.attention.self.query"))?;
            let (kw, kb) = pair(&format!("{p}.attention.self.key"))?;
            let (vw, vb) = pair(&format!("{p}.attention.self.value"))?;
            layers.push(Layer {
                qkv: (
                    Tensor::cat(&[qw, kw, vw], 0)?,
                    Tensor::cat(&[qb, kb, vb], 0)?,
                ),
                attention_out: pair(&format!("{p}.attention.output.dense"))?,
                attention_norm: pair(&format!("{p}.attention.output.LayerNorm"))?,
                up: pair(&format!("{p}.intermediate.dense"))?,
                down: pair(&format!("{p}.output.dense"))?,
                output_norm: pair(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Some(FusedBert {
            word,
            position: get("embeddings.position_embeddings.weight")?,
            token_type: get("embeddings.token_type_embeddings.weight")?.narrow(0, 0, 1)?,
            embedding_norm: pair("embeddings.LayerNorm")?,
            layers,
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps as f32,
            activation: config.hidden_act,
        }))
    }

    /// Final token states `[rows · width, hidden]` of `rows` texts padded to `width` tokens
    /// (`mask` 1 for real tokens), every token of token type 0.
    pub(super) fn forward(
        &self,
        ids: &Tensor,
        mask: &[u32],
        rows: usize,
        width: usize,
    ) -> Result<Vec<f32>> {
        let tokens = ids.flatten_all()?;
        let positions = self.position.narrow(0, 0, width)?.repeat((rows, 1))?;
        let x = self
            .word
            .index_select(&tokens, 0)?
            .add(&positions)?
            .broadcast_add(&self.token_type)?;
        let mut x = self.norm(&x, &self.embedding_norm)?;
        let bias: Vec<f32> = mask
            .iter()
            .map(|&real| if real == 1 { 0.0 } else { PADDING_BIAS })
            .collect();
        let scale = 1.0 / ((self.hidden / self.heads) as f32).sqrt();
        for layer in &self.layers {
            let qkv = self.linear(&x, &layer.qkv)?;
            let mixed = PaddedAttention {
                bias: bias.clone(),
                scale,
                heads: self.heads,
                keys: width,
                queries: width,
                causal: false,
            }
            .apply(&qkv)?;
            let attended = self.linear(&mixed, &layer.attention_out)?;
            x = self.norm(&attended.add(&x)?, &layer.attention_norm)?;
            let up = activate(self.linear(&x, &layer.up)?, self.activation)?;
            let down = self.linear(&up, &layer.down)?;
            x = self.norm(&down.add(&x)?, &layer.output_norm)?;
        }
        Ok(x.flatten_all()?.to_vec1::<f32>()?)
    }

    fn linear(&self, x: &Tensor, (w, b): &(Tensor, Tensor)) -> Result<Tensor> {
        fused::linear(x, w, b, false)?
            .ok_or_else(|| Error::input("the fused linear kernel does not apply"))
    }

    fn norm(&self, x: &Tensor, (w, b): &(Tensor, Tensor)) -> Result<Tensor> {
        fused::layer_norm(x, w, b, self.eps)?
            .ok_or_else(|| Error::input("the fused layer norm does not apply"))
    }
}

/// erf(x) to about 2e-7 (Abramowitz and Stegun 7.1.26, with the kernels' branch-free exp):
/// libm's erff took a tenth of MiniLM's time.
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// BERT's activation, element-wise on all cores.
fn activate(x: Tensor, activation: HiddenAct) -> Result<Tensor> {
    let shape = x.shape().clone();
    let mut values = x.flatten_all()?.to_vec1::<f32>()?;
    let f: fn(f32) -> f32 = match activation {
        HiddenAct::Gelu => |v| 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2)),
        HiddenAct::GeluApproximate => |v| {
            let inner = 0.797_884_6 * (v + 0.044_715 * v * v * v);
            0.5 * v * (1.0 + inner.tanh())
        },
        HiddenAct::Relu => |v| v.max(0.0),
    };
    values
        .par_chunks_mut(4096)
        .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = f(*v)));
    Ok(Tensor::from_vec(values, shape, x.device())?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_agrees_with_libm() {
        for i in -4000..=4000 {
            let x = i as f32 / 1000.0;
            let error = (super::erf(x) - libm::erff(x)).abs();
            assert!(error < 5e-7, "erf({x}): off by {error}");
        }
    }
}
