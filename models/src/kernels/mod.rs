//! Hand-written CPU kernels the model kinds run instead of candle's tensor operations where
//! those spend more time on bookkeeping than on arithmetic. Each computes what candle computes
//! (unit tests hold the two paths to the same answers) and leaves other devices to candle.
//!
//! They know no model kind: the kinds call them, never the other way round.
//!
//! - [`dense`]: the fused forward pass that scores dense networks block by block.
//! - [`dense_training`]: the dense network's forward and backward passes and AdamW, by hand.
//! - [`fused`]: linear layers and layer norms as candle custom ops with backward passes.
//! - [`attention`]: multi-head attention with a padding mask as one custom op per sequence.
//! - [`lstm_cpu`]: the LSTM's scoring path, all layers a step at a time.
//! - [`cross_entropy`]: softmax cross-entropy over many classes (next-item training).

pub(crate) mod attention;
pub(crate) mod cross_entropy;
pub mod dense;
pub(crate) mod dense_training;
pub(crate) mod fused;
pub(crate) mod lstm_cpu;
