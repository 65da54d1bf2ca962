//! The forward pass over named weights, for training and scoring alike: the event
//! embeddings, then the Transformer encoder or the LSTM (candle's, or [`CpuLstm`] when scoring
//! on the CPU), then a linear head.

use std::collections::HashMap;

use candle_core::{D, DType, IndexOp, Tensor};
use rand::Rng;
use rand::rngs::StdRng;

use super::batch::Batch;
use super::spec::{Architecture, SequenceSpec, Task};
use crate::error::{Error, Result};
use crate::kernels::attention::PaddedAttention;
use crate::kernels::fused;
use crate::kernels::lstm_cpu::{CpuLstm, Steps};

/// Dropout with masks from the model's seeded generator; None when scoring.
pub(super) struct Noise<'a> {
    pub(super) rng: &'a mut StdRng,
    pub(super) rate: f32,
}

impl Noise<'_> {
    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        if self.rate <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.rate;
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                if self.rng.random::<f32>() < keep {
                    1.0 / keep
                } else {
                    0.0
                }
            })
            .collect();
        Ok((x * Tensor::from_vec(mask, x.shape(), x.device())?)?)
    }
}

pub(super) fn dropout(x: &Tensor, noise: &mut Option<Noise<'_>>) -> Result<Tensor> {
    match noise {
        Some(noise) => noise.apply(x),
        None => Ok(x.clone()),
    }
}

/// The network's forward pass over named weights (training variables or loaded tensors).
pub(super) struct Network<'a> {
    pub(super) spec: &'a SequenceSpec,
    pub(super) weights: &'a HashMap<String, Tensor>,
    /// Set when scoring an LSTM on the CPU.
    pub(super) cpu_lstm: Option<&'a CpuLstm>,
    /// Whether linear layers, layer norms and attention run as the fused CPU ops of
    /// [`crate::kernels::fused`] and [`crate::kernels::attention`] where those apply (training and scoring);
    /// false only to check them against candle.
    pub(super) fused: bool,
}

impl Network<'_> {
    pub(super) fn w(&self, name: &str) -> Result<&Tensor> {
        let name = if self.spec.tied && name == "head.weight" {
            "token"
        } else {
            name
        };
        self.weights
            .get(name)
            .ok_or_else(|| Error::CorruptArtifact(format!("weights lack {name}")))
    }

    /// `x [n, in] · Wᵀ + b`.
    fn linear(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        self.dense(x, name, false)
    }

    /// `max(0, x [n, in] · Wᵀ + b)`.
    fn linear_relu(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        self.dense(x, name, true)
    }

    fn dense(&self, x: &Tensor, name: &str, relu: bool) -> Result<Tensor> {
        let w = self.w(&format!("{name}.weight"))?;
        let b = self.w(&format!("{name}.bias"))?;
        if self.fused
            && let Some(y) = fused::linear(x, w, b, relu)?
        {
            return Ok(y);
        }
        let y = x.matmul(&w.t()?)?.broadcast_add(b)?;
        Ok(if relu { y.relu()? } else { y })
    }

    /// Layer norm over the last dimension.
    fn layer_norm(&self, x: &Tensor, name: &str, training: bool) -> Result<Tensor> {
        let w = self.w(&format!("{name}.weight"))?;
        let b = self.w(&format!("{name}.bias"))?;
        if self.fused
            && let Some(y) = fused::layer_norm(x, w, b, 1e-5)?
        {
            return Ok(y);
        }
        // candle's fused layer norm has no backward pass.
        if !training {
            return Ok(candle_nn::ops::layer_norm(&x.contiguous()?, w, b, 1e-5)?);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(variance + 1e-5)?.sqrt()?)?;
        Ok(normed.broadcast_mul(w)?.broadcast_add(b)?)
    }

    /// Sum of the token, age and gap embeddings (and position, for the Transformer): [B, L, D].
    fn embed_events(&self, batch: &Batch) -> Result<Tensor> {
        let (b, l, d) = (batch.rows, batch.length, self.spec.d_model);
        let lookup = |table: &str, ids: &Tensor| -> Result<Tensor> {
            Ok(self.w(table)?.index_select(&ids.flatten_all()?, 0)?)
        };
        let mut x = (lookup("token", &batch.tokens)? + lookup("age", &batch.ages)?)?;
        x = (x + lookup("gap", &batch.gaps)?)?;
        if self.spec.architecture == Architecture::Transformer {
            x = (x + lookup("position", &batch.positions)?)?;
        }
        Ok(x.reshape((b, l, d))?)
    }

    /// The final state of every step, [B, L, D] (Transformer only); with `summary_only`, of
    /// the summary token alone, [B, 1, D]: the last block then attends from that one query
    /// and runs its feed-forward on that one row, which is all a churn or next-event head
    /// reads (a third less work, training and scoring alike).
    pub(super) fn encode(
        &self,
        batch: &Batch,
        noise: &mut Option<Noise<'_>>,
        summary_only: bool,
    ) -> Result<Tensor> {
        let training = noise.is_some();
        let (b, l, d) = (batch.rows, batch.length, self.spec.d_model);
        let heads = self.spec.heads;
        let head_dim = d / heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut x = dropout(&self.embed_events(batch)?, noise)?.reshape((b * l, d))?;
        let mut queries = l;
        for i in 0..self.spec.layers {
            let p = format!("blocks.{i}");
            if summary_only && i + 1 == self.spec.layers {
                queries = 1;
            }
            let h = self.layer_norm(&x, &format!("{p}.ln1"), training)?;
            let qkv = self.linear(&h, &format!("{p}.qkv"))?;
            let mixed = if self.fused && qkv.device().is_cpu() {
                PaddedAttention {
                    bias: batch.key_bias.clone(),
                    scale: scale as f32,
                    heads,
                    keys: l,
                    queries,
                    causal: self.spec.causal,
                }
                .apply(&qkv.contiguous()?)?
            } else {
                let qkv = qkv
                    .reshape((b, l, 3, heads, head_dim))?
                    .permute((2, 0, 3, 1, 4))?;
                let q = qkv.i(0)?.narrow(2, l - queries, queries)?.contiguous()?;
                let k = qkv.i(1)?.contiguous()?;
                let v = qkv.i(2)?.contiguous()?;
                let bias = Tensor::from_vec(batch.key_bias.clone(), (b, 1, 1, l), q.device())?;
                let mut scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
                if self.spec.causal {
                    // Query i (of the last `queries`) sees keys up to l - queries + i.
                    let mask: Vec<f32> = (0..queries * l)
                        .map(|c| {
                            if c % l > l - queries + c / l {
                                -1e9
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let mask = Tensor::from_vec(mask, (1, 1, queries, l), q.device())?;
                    scores = scores.broadcast_add(&mask)?;
                }
                let attention = if training {
                    candle_nn::ops::softmax(&scores, D::Minus1)?
                } else {
                    candle_nn::ops::softmax_last_dim(&scores)?
                };
                attention
                    .matmul(&v)?
                    .transpose(1, 2)?
                    .contiguous()?
                    .reshape((b * queries, d))?
            };
            let projected = self.linear(&mixed, &format!("{p}.out"))?;
            if queries < l {
                // Only the last `queries` positions go on.
                x = x
                    .reshape((b, l, d))?
                    .narrow(1, l - queries, queries)?
                    .contiguous()?
                    .reshape((b * queries, d))?;
            }
            x = (x + dropout(&projected, noise)?)?;
            let h = self.layer_norm(&x, &format!("{p}.ln2"), training)?;
            let h = self.linear_relu(&h, &format!("{p}.ff1"))?;
            let h = self.linear(&h, &format!("{p}.ff2"))?;
            x = (x + dropout(&h, noise)?)?;
        }
        let x = self.layer_norm(&x, "final_ln", training)?;
        Ok(x.reshape((b, queries, d))?)
    }

    /// The LSTM's state after the summary token, [B, D]; padded steps keep the state.
    pub(super) fn recur(&self, batch: &Batch, noise: &mut Option<Noise<'_>>) -> Result<Tensor> {
        let (b, l, d) = (batch.rows, batch.length, self.spec.d_model);
        let device = batch.tokens.device();
        // Time-major copies, so that each step reads contiguous rows.
        let real = Tensor::from_vec(batch.real.clone(), (b, l), device)?
            .t()?
            .contiguous()?
            .reshape((l, b, 1))?;
        let mut inputs = dropout(&self.embed_events(batch)?, noise)?;
        let mut last = None;
        for layer in 0..self.spec.layers {
            let p = format!("lstm.{layer}");
            let w_hh = self.w(&format!("{p}.w_hh"))?.t()?;
            // Input projections for every step in one product.
            let projected = inputs
                .reshape((b * l, d))?
                .matmul(&self.w(&format!("{p}.w_ih"))?.t()?)?
                .broadcast_add(self.w(&format!("{p}.bias"))?)?
                .reshape((b, l, 4 * d))?
                .transpose(0, 1)?
                .contiguous()?;
            let mut h = Tensor::zeros((b, d), DType::F32, device)?;
            let mut c = Tensor::zeros((b, d), DType::F32, device)?;
            let mut outputs = Vec::with_capacity(l);
            for t in 0..l {
                // [b, 4d] -> [4, b, d]: each gate contiguous.
                let gates = (projected.i(t)? + h.matmul(&w_hh)?)?
                    .reshape((b, 4, d))?
                    .transpose(0, 1)?
                    .contiguous()?;
                let input = candle_nn::ops::sigmoid(&gates.i(0)?)?;
                let forget = candle_nn::ops::sigmoid(&gates.i(1)?)?;
                let cell = gates.i(2)?.tanh()?;
                let output = candle_nn::ops::sigmoid(&gates.i(3)?)?;
                let c_new = ((forget * &c)? + (input * cell)?)?;
                let h_new = (output * c_new.tanh()?)?;
                let step = real.i(t)?;
                c = (&c + (c_new - &c)?.broadcast_mul(&step)?)?;
                h = (&h + (h_new - &h)?.broadcast_mul(&step)?)?;
                outputs.push(h.clone());
            }
            last = Some(h);
            if layer + 1 < self.spec.layers {
                inputs = dropout(&Tensor::stack(&outputs, 1)?, noise)?;
            }
        }
        last.ok_or_else(|| Error::input("an LSTM needs at least one layer"))
    }

    /// The state the heads read: the summary token's, [B, D].
    pub(super) fn summary(&self, batch: &Batch, noise: &mut Option<Noise<'_>>) -> Result<Tensor> {
        match self.spec.architecture {
            Architecture::Transformer => Ok(self.encode(batch, noise, true)?.squeeze(1)?),
            Architecture::Lstm => match self.cpu_lstm {
                Some(lstm) if noise.is_none() => recur_cpu(lstm, batch),
                _ => self.recur(batch, noise),
            },
        }
    }

    /// Head outputs for the summary state: [B, 1] churn logits or [B, V] token logits.
    pub(super) fn head(&self, state: &Tensor, noise: &mut Option<Noise<'_>>) -> Result<Tensor> {
        self.linear(&dropout(state, noise)?, "head")
    }

    /// A fixed-length vector per row: the mean final state of the events (the summary state
    /// for an empty history) for the embedding task, the summary state otherwise.
    pub(super) fn embedding(&self, batch: &Batch) -> Result<Tensor> {
        if self.spec.task != Task::Embedding || self.spec.architecture != Architecture::Transformer
        {
            return self.summary(batch, &mut None);
        }
        let states = self.encode(batch, &mut None, false)?;
        let (b, l) = (batch.rows, batch.length);
        // Events only: the summary step counts only when there is nothing else.
        let mut weights = batch.real.clone();
        for r in 0..b {
            let events = weights[r * l..(r + 1) * l - 1].iter().sum::<f32>();
            if events > 0.0 {
                weights[r * l + l - 1] = 0.0;
                for w in &mut weights[r * l..(r + 1) * l - 1] {
                    *w /= events;
                }
            }
        }
        let weights = Tensor::from_vec(weights, (b, 1, l), states.device())?;
        Ok(weights.matmul(&states)?.squeeze(1)?)
    }
}

/// The LSTM's weights as [`CpuLstm`] wants them.
pub(super) fn cpu_lstm(spec: &SequenceSpec, weights: &HashMap<String, Tensor>) -> Result<CpuLstm> {
    let values = |name: &str| -> Result<Vec<f32>> {
        let tensor = weights
            .get(name)
            .ok_or_else(|| Error::CorruptArtifact(format!("weights lack {name}")))?;
        Ok(tensor.flatten_all()?.to_vec1::<f32>()?)
    };
    let layers = (0..spec.layers)
        .map(|i| {
            Ok((
                values(&format!("lstm.{i}.w_ih"))?,
                values(&format!("lstm.{i}.w_hh"))?,
                values(&format!("lstm.{i}.bias"))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let tables = [values("token")?, values("age")?, values("gap")?];
    Ok(CpuLstm::new(spec.d_model, tables, layers))
}

/// [`Network::recur`] through [`CpuLstm`]: the state after the summary token, [B, D].
fn recur_cpu(lstm: &CpuLstm, batch: &Batch) -> Result<Tensor> {
    let ids = |t: &Tensor| -> Result<Vec<u32>> { Ok(t.flatten_all()?.to_vec1::<u32>()?) };
    let (tokens, ages, gaps) = (ids(&batch.tokens)?, ids(&batch.ages)?, ids(&batch.gaps)?);
    let states = lstm.final_states(&Steps {
        rows: batch.rows,
        length: batch.length,
        ids: [&tokens, &ages, &gaps],
        real: &batch.real,
    });
    Ok(Tensor::from_vec(
        states,
        (batch.rows, lstm.width()),
        batch.tokens.device(),
    )?)
}
