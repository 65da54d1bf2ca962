//! KIND text_encoder: a pretrained sentence encoder of the BERT family (BERT, MiniLM, BGE,
//! ...), imported from a sentence-transformers directory, not trained.
//!
//! # Import
//!
//! [`TextEncoder::import`] reads, through a function the caller gives (which decides what
//! may be read), the files of a sentence-transformers or Hugging Face directory:
//!
//! - `config.json`: the architecture; `model_type` must be `bert`.
//! - `tokenizer.json`: the `tokenizers` crate's format. Its own truncation and padding are
//!   replaced: texts are cut at `max_tokens` and padded per bucket (below).
//! - `model.safetensors`: the weights, f32, f16 or bf16, with or without the `bert.` prefix.
//!   The pooler and any masked-language-model head are left out: sentence embeddings do not
//!   use them.
//! - `modules.json` (optional): the sentence-transformers pipeline. Transformer, Pooling and
//!   Normalize modules are supported; anything else (a Dense projection) is refused by name.
//! - the Pooling module's `config.json` (optional): `mean` (the default when there is none),
//!   `cls` or `max` pooling.
//! - `sentence_bert_config.json` (optional): `max_seq_length`, the default for `max_tokens`.
//!
//! The weights are stored in f32, and the tokenizer travels inside the same safetensors file
//! as a u8 tensor ([`TOKENIZER_TENSOR`]), so that the one checksummed weights file holds
//! everything the encoder needs and a version can never pair a tokenizer with other weights.
//!
//! # Embedding
//!
//! [`TextEncoder::embed`] takes a batch of texts (one Arrow batch): tokenises them at once,
//! orders them by token count, cuts the order into buckets of `batch_size` texts, pads each
//! bucket only to its own longest text, runs the encoder once per bucket and puts the vectors
//! back in row order. Every vector is pooled as the model says and then scaled to unit length,
//! so that a dot product is the cosine similarity. A text longer than `max_tokens` tokens
//! (special tokens included) is truncated; so that a megabyte of text is not tokenised only to
//! be cut, texts are first cut to [`BYTES_PER_TOKEN`] bytes per token allowed.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, Result};
use crate::options::Options;

mod network;
pub mod projection;

use network::FusedBert;

/// The tensor of the weights file that holds `tokenizer.json`'s bytes.
pub const TOKENIZER_TENSOR: &str = "tokenizer.json";

/// Texts are cut to this many bytes per token allowed before tokenising. A WordPiece token
/// covers at least one character, so this cut never changes the tokens kept unless a text has
/// long runs of whitespace or characters the tokenizer drops.
pub const BYTES_PER_TOKEN: usize = 64;

/// The most tokens a text may keep (`max_tokens`).
const MAX_TOKENS: usize = 8192;

/// The most tokens (texts times the bucket's width) one forward pass takes, so that a long
/// `max_tokens` with a large `batch_size` cannot ask for more memory than a bucket of 32
/// texts of 512 tokens does.
const MAX_BUCKET_TOKENS: usize = 16_384;

/// The model types whose weights this build can run.
const SUPPORTED: &str = "bert (BERT, MiniLM, BGE, E5 and other BERT-architecture encoders)";

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The mean of the non-padding tokens' final states.
    Mean,
    /// The final state of the first ([CLS]) token.
    Cls,
    /// The element-wise maximum over the non-padding tokens.
    Max,
}

/// The card's part for KIND text_encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextEncoderSpec {
    /// `config.json`'s `model_type`.
    pub architecture: String,
    /// Length of every vector.
    pub dimension: usize,
    pub layers: usize,
    pub parameters: u64,
    /// Tokenizer vocabulary, added tokens included.
    pub vocabulary: usize,
    pub pooling: Pooling,
    /// Tokens kept per text, [CLS] and [SEP] included.
    pub max_tokens: usize,
    /// Texts per forward pass.
    pub batch_size: usize,
    /// The directory imported, as the statement named it.
    pub source: String,
    /// `config.json` as imported.
    pub config: serde_json::Value,
    pub seconds: f64,
}

/// OPTIONS of KIND text_encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct TextEncoderOptions {
    /// Overrides `max_seq_length`; at most the model's position embeddings.
    pub max_tokens: Option<usize>,
    pub batch_size: usize,
    pub device: String,
}

impl TextEncoderOptions {
    pub fn from_options(options: &mut Options, kind: &str) -> Result<TextEncoderOptions> {
        let max_tokens = if options.contains("max_tokens") {
            Some(options.number("max_tokens", 512, 2..=MAX_TOKENS)?)
        } else {
            None
        };
        let batch_size = options.number("batch_size", 32, 1..=4096)?;
        let device = options.parse("device", "cpu".to_string(), "a device name")?;
        options.finish(kind)?;
        Ok(TextEncoderOptions {
            max_tokens,
            batch_size,
            device,
        })
    }
}

/// A loaded encoder: the network, its tokenizer and the spec.
#[derive(Clone)]
pub struct TextEncoder {
    pub spec: TextEncoderSpec,
    bert: Arc<BertModel>,
    /// The same network through tenure's fused CPU kernels, where they run.
    fused: Option<Arc<FusedBert>>,
    tokenizer: Arc<Tokenizer>,
    /// Every stored tensor (the tokenizer's bytes included), for saving.
    tensors: Vec<(String, Tensor)>,
    device: Device,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Reads one file of the directory being imported by its relative name: `Ok(None)` when it
/// does not exist, an error (already worded for the user) when it cannot be read.
pub type ReadFile<'a> = dyn FnMut(&str) -> std::result::Result<Option<Vec<u8>>, String> + 'a;

impl TextEncoder {
    /// Imports the encoder in a sentence-transformers directory (see the module docs), on
    /// `device`. Nothing is kept unless every file is present, parses and agrees.
    pub fn import(
        source: &str,
        options: &TextEncoderOptions,
        device: &Device,
        read: &mut ReadFile<'_>,
    ) -> Result<TextEncoder> {
        let started = std::time::Instant::now();
        let config_bytes = required(read, source, "config.json")?;
        let tokenizer_bytes = required(read, source, "tokenizer.json")?;
        let weights = required(read, source, "model.safetensors")?;

        let config_json: serde_json::Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::data(format!("config.json does not parse: {e}")))?;
        let architecture = config_json
            .get("model_type")
            .and_then(|t| t.as_str())
            .unwrap_or("(none)")
            .to_string();
        if architecture != "bert" {
            return Err(Error::data(format!(
                "config.json names model_type '{architecture}'; supported: {SUPPORTED}"
            )));
        }
        let config: BertConfig = serde_json::from_value(config_json.clone())
            .map_err(|e| Error::data(format!("config.json is not a BERT configuration: {e}")))?;
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(Error::data(format!(
                "config.json: hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            )));
        }

        let pipeline = match read("modules.json").map_err(Error::data)? {
            Some(bytes) => Pipeline::parse(&bytes)?,
            None => Pipeline::default(),
        };
        let pooling = match &pipeline.pooling_dir {
            Some(dir) => {
                let name = format!("{dir}/config.json");
                match read(&name).map_err(Error::data)? {
                    Some(bytes) => parse_pooling(&bytes, &name)?,
                    None => Pooling::Mean,
                }
            }
            None => Pooling::Mean,
        };
        let max_seq_length = match read("sentence_bert_config.json").map_err(Error::data)? {
            Some(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| Error::data(format!("sentence_bert_config.json does not parse: {e}")))?
                .get("max_seq_length")
                .and_then(serde_json::Value::as_u64)
                .map(|n| n as usize),
            None => None,
        };
        let (max_tokens, from) = match (options.max_tokens, max_seq_length) {
            (Some(n), _) => (n, "max_tokens"),
            (None, Some(n)) => (n, "sentence_bert_config.json's max_seq_length"),
            (None, None) => (
                config.max_position_embeddings.min(MAX_TOKENS),
                "config.json's max_position_embeddings",
            ),
        };
        if !(2..=MAX_TOKENS).contains(&max_tokens) {
            return Err(Error::data(format!(
                "{from} is {max_tokens}; it must be from 2 to {MAX_TOKENS}"
            )));
        }
        if max_tokens > config.max_position_embeddings {
            return Err(Error::option(format!(
                "{from} {max_tokens} is more than the model's {} position embeddings",
                config.max_position_embeddings
            )));
        }

        let tokenizer = Tokenizer::from_bytes(&tokenizer_bytes)
            .map_err(|e| Error::data(format!("tokenizer.json does not parse: {e}")))?;
        let vocabulary = tokenizer.get_vocab_size(true);
        let largest_id = tokenizer.get_vocab(true).into_values().max().unwrap_or(0) as usize;
        if vocabulary > config.vocab_size || largest_id >= config.vocab_size {
            return Err(Error::data(format!(
                "the tokenizer does not match the weights: tokenizer.json has {vocabulary} \
                 tokens with ids up to {largest_id}, config.json's vocab_size is {}",
                config.vocab_size
            )));
        }

        let tensors = encoder_tensors(&weights)?;
        drop(weights);
        let parameters = tensors.values().map(|t| t.elem_count() as u64).sum();
        let spec = TextEncoderSpec {
            architecture,
            dimension: config.hidden_size,
            layers: config.num_hidden_layers,
            parameters,
            vocabulary,
            pooling,
            max_tokens,
            batch_size: options.batch_size,
            source: source.to_string(),
            config: config_json,
            seconds: 0.0,
        };
        let mut tensors = tensors;
        let bytes = Tensor::from_vec(tokenizer_bytes.clone(), tokenizer_bytes.len(), &Device::Cpu)?;
        tensors.insert(TOKENIZER_TENSOR.to_string(), bytes);
        let mut encoder = TextEncoder::from_parts(spec, tensors, device)?;
        encoder.spec.seconds = started.elapsed().as_secs_f64();
        Ok(encoder)
    }

    /// Rebuilds an encoder from its card section and stored tensors.
    pub fn from_parts(
        spec: TextEncoderSpec,
        mut tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<TextEncoder> {
        let config: BertConfig = serde_json::from_value(spec.config.clone())
            .map_err(|e| Error::CorruptArtifact(format!("the card's BERT config: {e}")))?;
        if spec.batch_size == 0
            || spec.dimension != config.hidden_size
            || spec.max_tokens > config.max_position_embeddings
        {
            return Err(Error::CorruptArtifact(
                "the card's batch size, dimension or max_tokens disagree with its BERT config"
                    .into(),
            ));
        }
        let tokenizer_bytes = tensors
            .get(TOKENIZER_TENSOR)
            .ok_or_else(|| Error::CorruptArtifact("weights lack the tokenizer".into()))?
            .to_vec1::<u8>()?;
        let mut tokenizer = Tokenizer::from_bytes(&tokenizer_bytes)
            .map_err(|e| Error::CorruptArtifact(format!("the stored tokenizer: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: spec.max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| Error::CorruptArtifact(format!("tokenizer truncation: {e}")))?;
        tokenizer.with_padding(None);

        let mut saved: Vec<(String, Tensor)> = Vec::with_capacity(tensors.len());
        let mut network = HashMap::with_capacity(tensors.len());
        for (name, tensor) in tensors.drain() {
            if name != TOKENIZER_TENSOR {
                network.insert(
                    name.clone(),
                    tensor.to_dtype(DType::F32)?.to_device(device)?,
                );
            }
            saved.push((name, tensor));
        }
        saved.sort_by(|a, b| a.0.cmp(&b.0));
        // Tensors share their storage: the clone costs nothing.
        let builder = VarBuilder::from_tensors(network.clone(), DType::F32, device);
        let bert = BertModel::load(builder, &config).map_err(|e| {
            Error::data(format!(
                "the weights do not fit config.json: {}",
                without_backtrace(e)
            ))
        })?;
        let fused = FusedBert::new(&network, &config)?.map(Arc::new);
        Ok(TextEncoder {
            spec,
            bert: Arc::new(bert),
            fused,
            tokenizer: Arc::new(tokenizer),
            tensors: saved,
            device: device.clone(),
        })
    }

    /// What is saved: the network's tensors and the tokenizer's bytes.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.tensors.clone()
    }

    /// The card's metrics: the encoder's shape.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        vec![
            ("dimension".to_string(), self.spec.dimension as f64),
            ("layers".to_string(), self.spec.layers as f64),
            ("parameters".to_string(), self.spec.parameters as f64),
            ("max_tokens".to_string(), self.spec.max_tokens as f64),
        ]
    }

    /// Unit-length embeddings of `texts`, in their order; None for a None text.
    pub fn embed(&self, texts: &[Option<&str>]) -> Result<Vec<Option<Vec<f32>>>> {
        let byte_limit = self.spec.max_tokens * BYTES_PER_TOKEN;
        let present: Vec<(usize, &str)> = texts
            .iter()
            .enumerate()
            .filter_map(|(row, text)| text.map(|t| (row, cut_at_char(t.trim_start(), byte_limit))))
            .collect();
        let mut out = vec![None; texts.len()];
        if present.is_empty() {
            return Ok(out);
        }
        let encodings = self
            .tokenizer
            .encode_batch(present.iter().map(|(_, t)| *t).collect::<Vec<_>>(), true)
            .map_err(|e| Error::input(format!("cannot tokenise: {e}")))?;
        // Buckets of similar length: each pads only to its own longest text. A text without
        // tokens (possible with a tokenizer that adds no [CLS] and [SEP]) has no vector: NULL.
        let mut order: Vec<usize> = (0..encodings.len())
            .filter(|&i| !encodings[i].is_empty())
            .collect();
        order.sort_by_key(|&i| encodings[i].len());
        for bucket in buckets(&order, |i| encodings[i].len(), self.spec.batch_size) {
            let width = bucket
                .iter()
                .map(|&i| encodings[i].len())
                .max()
                .unwrap_or(0);
            let mut ids = vec![0u32; bucket.len() * width];
            let mut mask = vec![0u32; bucket.len() * width];
            for (slot, &i) in bucket.iter().enumerate() {
                let tokens = encodings[i].get_ids();
                ids[slot * width..slot * width + tokens.len()].copy_from_slice(tokens);
                mask[slot * width..slot * width + tokens.len()].fill(1);
            }
            let vectors = self.encode_bucket(ids, mask, bucket.len(), width)?;
            for (vector, &i) in vectors.into_iter().zip(bucket) {
                out[present[i].0] = Some(vector);
            }
        }
        Ok(out)
    }

    /// One forward pass over `rows` padded texts of `width` tokens; pooled, unit vectors.
    fn encode_bucket(
        &self,
        ids: Vec<u32>,
        mask: Vec<u32>,
        rows: usize,
        width: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let ids_tensor = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let states = match &self.fused {
            Some(fused) => fused.forward(&ids_tensor, &mask, rows, width)?,
            None => {
                let mask = Tensor::from_vec(mask.clone(), (rows, width), &self.device)?;
                let types = ids_tensor.zeros_like()?;
                self.bert
                    .forward(&ids_tensor, &types, Some(&mask))?
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .to_vec1::<f32>()?
            }
        };
        let hidden = self.spec.dimension;
        Ok((0..rows)
            .map(|row| {
                let tokens = states[row * width * hidden..(row + 1) * width * hidden]
                    .chunks_exact(hidden)
                    .zip(&mask[row * width..(row + 1) * width])
                    .filter(|(_, real)| **real == 1)
                    .map(|(state, _)| state);
                unit(pool(tokens, self.spec.pooling, hidden))
            })
            .collect())
    }
}

/// `order` (texts sorted by token count) cut into runs of at most `batch_size` texts and
/// [`MAX_BUCKET_TOKENS`] padded tokens (always at least one text).
fn buckets(order: &[usize], tokens: impl Fn(usize) -> usize, batch_size: usize) -> Vec<&[usize]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        // Sorted ascending, so the bucket's width is its last text's token count.
        while end < order.len()
            && end - start < batch_size
            && (end - start + 1) * tokens(order[end]) <= MAX_BUCKET_TOKENS
        {
            end += 1;
        }
        out.push(&order[start..end]);
        start = end;
    }
    out
}

/// One text's vector from its real tokens' final states.
fn pool<'a>(tokens: impl Iterator<Item = &'a [f32]>, pooling: Pooling, hidden: usize) -> Vec<f32> {
    let mut pooled = vec![0f32; hidden];
    let mut count = 0usize;
    for (i, state) in tokens.enumerate() {
        count += 1;
        match pooling {
            Pooling::Mean => pooled.iter_mut().zip(state).for_each(|(p, s)| *p += s),
            Pooling::Cls if i == 0 => pooled.copy_from_slice(state),
            Pooling::Cls => break,
            Pooling::Max if i == 0 => pooled.copy_from_slice(state),
            Pooling::Max => pooled
                .iter_mut()
                .zip(state)
                .for_each(|(p, s)| *p = p.max(*s)),
        }
    }
    if pooling == Pooling::Mean && count > 0 {
        pooled.iter_mut().for_each(|p| *p /= count as f32);
    }
    pooled
}

/// `v` scaled to unit length (a zero vector stays zero).
fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// The sentence-transformers pipeline of `modules.json`.
#[derive(Debug, Default)]
struct Pipeline {
    /// The Pooling module's directory, relative to the model's.
    pooling_dir: Option<String>,
}

impl Pipeline {
    fn parse(bytes: &[u8]) -> Result<Pipeline> {
        #[derive(Deserialize)]
        struct Module {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            path: String,
        }
        let modules: Vec<Module> = serde_json::from_slice(bytes)
            .map_err(|e| Error::data(format!("modules.json does not parse: {e}")))?;
        let mut pipeline = Pipeline::default();
        for module in modules {
            let short = module.kind.rsplit('.').next().unwrap_or_default();
            match short {
                "Transformer" | "Normalize" => {}
                "Pooling" => {
                    let dir = module.path.trim_matches('/');
                    let safe = !dir.is_empty()
                        && dir
                            .split('/')
                            .all(|part| !part.is_empty() && part != "." && part != "..");
                    if !safe {
                        return Err(Error::data(format!(
                            "modules.json: the Pooling module's path '{}' is not a \
                             subdirectory of the model's",
                            module.path
                        )));
                    }
                    pipeline.pooling_dir = Some(dir.to_string());
                }
                _ => {
                    return Err(Error::data(format!(
                        "modules.json: module {} is not supported (supported: Transformer, \
                         Pooling, Normalize)",
                        module.kind
                    )));
                }
            }
        }
        Ok(pipeline)
    }
}

/// A file every encoder directory has; its absence says what the directory is missing.
fn required(read: &mut ReadFile<'_>, source: &str, name: &str) -> Result<Vec<u8>> {
    read(name).map_err(Error::data)?.ok_or_else(|| {
        Error::data(format!(
            "{source} is not a supported text encoder: it has no {name} (a \
             sentence-transformers or Hugging Face directory has config.json, tokenizer.json \
             and model.safetensors)"
        ))
    })
}

/// The pooling a sentence-transformers Pooling config asks for.
fn parse_pooling(bytes: &[u8], name: &str) -> Result<Pooling> {
    let config: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::data(format!("{name} does not parse: {e}")))?;
    let on = |key: &str| config.get(key).and_then(serde_json::Value::as_bool) == Some(true);
    let modes: Vec<Pooling> = [
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_cls_token", Pooling::Cls),
        ("pooling_mode_max_tokens", Pooling::Max),
    ]
    .into_iter()
    .filter(|(key, _)| on(key))
    .map(|(_, mode)| mode)
    .collect();
    let unsupported = [
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ]
    .into_iter()
    .find(|key| on(key));
    match (modes.as_slice(), unsupported) {
        ([mode], None) => Ok(*mode),
        ([], None) => Ok(Pooling::Mean),
        (_, Some(key)) => Err(Error::data(format!(
            "{name}: {key} is not supported (supported: mean, cls or max pooling)"
        ))),
        _ => Err(Error::data(format!(
            "{name} turns on several pooling modes; one of mean, cls or max is supported"
        ))),
    }
}

/// The encoder's tensors from a safetensors file, named without the `bert.` prefix and
/// without what sentence embeddings do not use (the pooler, a language-model head, the
/// position ids buffer).
fn encoder_tensors(weights: &[u8]) -> Result<HashMap<String, Tensor>> {
    let loaded = candle_core::safetensors::load_buffer(weights, &Device::Cpu).map_err(|e| {
        Error::data(format!(
            "model.safetensors does not parse: {}",
            without_backtrace(e)
        ))
    })?;
    let mut tensors = HashMap::new();
    for (name, tensor) in loaded {
        let name = name.strip_prefix("bert.").unwrap_or(&name).to_string();
        if !(name.starts_with("embeddings.") || name.starts_with("encoder."))
            || name == "embeddings.position_ids"
        {
            continue;
        }
        let tensor = match tensor.dtype() {
            DType::F32 => tensor,
            DType::F16 | DType::BF16 | DType::F64 => tensor.to_dtype(DType::F32)?,
            other => {
                return Err(Error::data(format!(
                    "model.safetensors: tensor {name} is {other:?}; weights must be float"
                )));
            }
        };
        tensors.insert(name, tensor);
    }
    if tensors.is_empty() {
        return Err(Error::data(
            "model.safetensors holds no BERT encoder weights (embeddings.* and encoder.*)",
        ));
    }
    Ok(tensors)
}

/// `text` cut to at most `limit` bytes, at a character boundary.
fn cut_at_char(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// candle's error without the backtrace it attaches under RUST_BACKTRACE.
fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => *inner,
        e => e,
    }
}

#[cfg(test)]
mod tests;
