//! A tiny random BERT built here (config, WordPiece tokenizer, weights): what import accepts
//! and refuses, and that bucketing, padding and truncation never change a text's vector.
//! The real all-MiniLM-L6-v2 against sentence-transformers' vectors is tested in
//! tests/text_encoder.rs.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::weights::{deserialize_weights, fnv1a_hex, serialize_weights};

/// Widths of multiples of 16, so that the fused kernels run where the CPU has them and the
/// padding test holds them to candle-transformers' unpadded forward pass.
const HIDDEN: usize = 16;
const INTERMEDIATE: usize = 32;
const LAYERS: usize = 2;
const POSITIONS: usize = 32;

const WORDS: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "parcel", "was", "late", "great", "product", "slow",
    "delivery", "love", "it", "##s", "broken", "box",
];

fn config(model_type: &str, vocab_size: usize) -> String {
    format!(
        r#"{{"model_type": "{model_type}", "vocab_size": {vocab_size}, "hidden_size": {HIDDEN},
        "num_hidden_layers": {LAYERS}, "num_attention_heads": 2, "intermediate_size": {INTERMEDIATE},
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "max_position_embeddings": {POSITIONS},
        "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
        "pad_token_id": 0}}"#
    )
}

fn tokenizer(words: &[&str]) -> String {
    let vocab: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| format!("{w:?}: {i}"))
        .collect();
    format!(
        r###"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {{"type": "BertNormalizer", "clean_text": true,
            "handle_chinese_chars": true, "strip_accents": null, "lowercase": true}},
        "pre_tokenizer": {{"type": "BertPreTokenizer"}},
        "post_processor": {{"type": "TemplateProcessing",
            "single": [{{"SpecialToken": {{"id": "[CLS]", "type_id": 0}}}},
                       {{"Sequence": {{"id": "A", "type_id": 0}}}},
                       {{"SpecialToken": {{"id": "[SEP]", "type_id": 0}}}}],
            "pair": [{{"Sequence": {{"id": "A", "type_id": 0}}}},
                     {{"Sequence": {{"id": "B", "type_id": 1}}}}],
            "special_tokens": {{
                "[CLS]": {{"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}},
                "[SEP]": {{"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}}}}},
        "decoder": null,
        "model": {{"type": "WordPiece", "unk_token": "[UNK]",
            "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
            "vocab": {{{}}}}}}}"###,
        vocab.join(", ")
    )
}

/// Seeded random weights of the tiny BERT, named as a Hugging Face checkpoint does (with the
/// `bert.` prefix, a pooler and the position ids buffer, which import leaves out).
fn weights(layers: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut add = |name: String, shape: &[usize]| {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count).map(|_| rng.random_range(-0.5..0.5)).collect();
        tensors.push((
            format!("bert.{name}"),
            Tensor::from_vec(values, shape, &Device::Cpu).unwrap(),
        ));
    };
    add(
        "embeddings.word_embeddings.weight".into(),
        &[WORDS.len(), HIDDEN],
    );
    add(
        "embeddings.position_embeddings.weight".into(),
        &[POSITIONS, HIDDEN],
    );
    add(
        "embeddings.token_type_embeddings.weight".into(),
        &[2, HIDDEN],
    );
    add("embeddings.LayerNorm.weight".into(), &[HIDDEN]);
    add("embeddings.LayerNorm.bias".into(), &[HIDDEN]);
    add("pooler.dense.weight".into(), &[HIDDEN, HIDDEN]);
    for layer in 0..layers {
        let p = format!("encoder.layer.{layer}");
        for part in ["query", "key", "value"] {
            add(
                format!("{p}.attention.self.{part}.weight"),
                &[HIDDEN, HIDDEN],
            );
            add(format!("{p}.attention.self.{part}.bias"), &[HIDDEN]);
        }
        add(
            format!("{p}.attention.output.dense.weight"),
            &[HIDDEN, HIDDEN],
        );
        add(format!("{p}.attention.output.dense.bias"), &[HIDDEN]);
        add(format!("{p}.attention.output.LayerNorm.weight"), &[HIDDEN]);
        add(format!("{p}.attention.output.LayerNorm.bias"), &[HIDDEN]);
        add(
            format!("{p}.intermediate.dense.weight"),
            &[INTERMEDIATE, HIDDEN],
        );
        add(format!("{p}.intermediate.dense.bias"), &[INTERMEDIATE]);
        add(format!("{p}.output.dense.weight"), &[HIDDEN, INTERMEDIATE]);
        add(format!("{p}.output.dense.bias"), &[HIDDEN]);
        add(format!("{p}.output.LayerNorm.weight"), &[HIDDEN]);
        add(format!("{p}.output.LayerNorm.bias"), &[HIDDEN]);
    }
    let ids = Tensor::arange(0i64, POSITIONS as i64, &Device::Cpu)
        .unwrap()
        .reshape((1, POSITIONS))
        .unwrap();
    tensors.push(("bert.embeddings.position_ids".into(), ids));
    serialize_weights(&tensors).unwrap()
}

fn pooling(mode: &str) -> String {
    format!(r#"{{"word_embedding_dimension": {HIDDEN}, "pooling_mode_{mode}": true}}"#)
}

const MODULES: &str = r#"[
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
]"#;

/// A sentence-transformers directory of the tiny BERT, as name -> bytes.
fn directory(pooling_mode: &str) -> HashMap<String, Vec<u8>> {
    HashMap::from([
        (
            "config.json".into(),
            config("bert", WORDS.len()).into_bytes(),
        ),
        ("tokenizer.json".into(), tokenizer(WORDS).into_bytes()),
        ("model.safetensors".into(), weights(LAYERS)),
        ("modules.json".into(), MODULES.as_bytes().to_vec()),
        (
            "1_Pooling/config.json".into(),
            pooling(pooling_mode).into_bytes(),
        ),
        (
            "sentence_bert_config.json".into(),
            br#"{"max_seq_length": 12}"#.to_vec(),
        ),
    ])
}

fn import(files: &HashMap<String, Vec<u8>>, options: &[(&str, &str)]) -> Result<TextEncoder> {
    let mut options = Options::new(options.iter().copied());
    let options = TextEncoderOptions::from_options(&mut options, "text_encoder")?;
    TextEncoder::import("tiny", &options, &Device::Cpu, &mut |name: &str| {
        Ok(files.get(name).cloned())
    })
}

fn error(files: &HashMap<String, Vec<u8>>) -> String {
    import(files, &[]).unwrap_err().to_string()
}

/// One text through the network alone, without padding, pooled by hand.
fn reference(encoder: &TextEncoder, text: &str) -> Vec<f32> {
    let encoding = encoder.tokenizer.encode(text, true).unwrap();
    let ids = encoding.get_ids();
    let ids = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &Device::Cpu).unwrap();
    let types = ids.zeros_like().unwrap();
    let states = encoder.bert.forward(&ids, &types, None).unwrap();
    let states = states.squeeze(0).unwrap().to_dtype(DType::F32).unwrap();
    let pooled = match encoder.spec.pooling {
        Pooling::Mean => states.mean(0).unwrap(),
        Pooling::Cls => states.get(0).unwrap(),
        Pooling::Max => states.max(0).unwrap(),
    };
    let pooled = pooled.to_vec1::<f32>().unwrap();
    let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt();
    pooled.iter().map(|v| v / norm).collect()
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "{a:?}\n!=\n{b:?}");
    }
}

#[test]
fn padding_and_buckets_never_change_a_texts_vector_in_any_pooling() {
    let texts = [
        Some("the parcel was late"),
        None,
        Some("great product"),
        Some(""),
        Some("slow delivery the box was broken"),
        Some("Love it! 😀 包裹"),
        Some("love it"),
    ];
    for mode in ["mean_tokens", "cls_token", "max_tokens"] {
        // A bucket of 3 mixes lengths and pads; every text must come out as it does alone.
        let encoder = import(&directory(mode), &[("batch_size", "3")]).unwrap();
        let vectors = encoder.embed(&texts).unwrap();
        assert_eq!(vectors.len(), texts.len());
        assert!(vectors[1].is_none(), "NULL text gives NULL");
        for (text, vector) in texts.iter().zip(&vectors) {
            let Some(text) = text else { continue };
            let vector = vector.as_ref().unwrap();
            assert_eq!(vector.len(), HIDDEN);
            let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{mode}: norm {norm}");
            assert_close(vector, &reference(&encoder, text));
        }
        // Different texts are different vectors.
        assert_ne!(vectors[0], vectors[2]);
    }
}

#[test]
fn long_texts_are_truncated_to_max_tokens() {
    let encoder = import(&directory("mean_tokens"), &[]).unwrap();
    assert_eq!(
        encoder.spec.max_tokens, 12,
        "from sentence_bert_config.json"
    );
    // [CLS] + 10 words + [SEP] = 12 tokens; anything after the tenth word is cut.
    let kept = "the parcel was late the box was broken slow delivery";
    let long = format!("{kept} {}", "great product ".repeat(10_000));
    let vectors = encoder.embed(&[Some(kept), Some(&long)]).unwrap();
    assert_close(vectors[0].as_ref().unwrap(), vectors[1].as_ref().unwrap());

    let wider = import(&directory("mean_tokens"), &[("max_tokens", "30")]).unwrap();
    let vectors = wider.embed(&[Some(kept), Some(&long)]).unwrap();
    assert_ne!(
        vectors[0], vectors[1],
        "max_tokens = 30 keeps more of the text"
    );
    let too_many = import(&directory("mean_tokens"), &[("max_tokens", "33")]);
    assert!(
        too_many
            .unwrap_err()
            .to_string()
            .contains("more than the model's 32 position embeddings")
    );
}

#[test]
fn a_saved_encoder_reloads_with_the_same_vectors() {
    let encoder = import(&directory("mean_tokens"), &[]).unwrap();
    assert_eq!(encoder.spec.architecture, "bert");
    assert_eq!(encoder.spec.dimension, HIDDEN);
    assert_eq!(encoder.spec.layers, LAYERS);
    assert_eq!(encoder.spec.vocabulary, WORDS.len());
    let names: Vec<String> = encoder.tensors().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&TOKENIZER_TENSOR.to_string()));
    assert!(
        names.iter().all(|n| !n.starts_with("bert.")
            && !n.starts_with("pooler.")
            && n != "embeddings.position_ids"),
        "{names:?}"
    );
    let bytes = serialize_weights(&encoder.tensors()).unwrap();
    let tensors = deserialize_weights(&bytes, &fnv1a_hex(&bytes), &Device::Cpu).unwrap();
    let reloaded = TextEncoder::from_parts(encoder.spec.clone(), tensors, &Device::Cpu).unwrap();
    let texts = [Some("the parcel was late"), Some("great product")];
    assert_eq!(
        encoder.embed(&texts).unwrap(),
        reloaded.embed(&texts).unwrap()
    );
}

#[test]
fn directories_that_are_not_a_supported_encoder_are_refused_by_what_is_wrong() {
    let mut files = directory("mean_tokens");
    files.remove("tokenizer.json");
    assert!(
        error(&files).contains("it has no tokenizer.json"),
        "{}",
        error(&files)
    );

    let mut files = directory("mean_tokens");
    files.insert(
        "config.json".into(),
        config("roberta", WORDS.len()).into_bytes(),
    );
    assert!(error(&files).contains("model_type 'roberta'; supported: bert"));

    let mut files = directory("mean_tokens");
    files.insert("config.json".into(), b"{not json".to_vec());
    assert!(error(&files).contains("config.json does not parse"));

    // A tokenizer of another model: more tokens than the embedding table has rows.
    let mut files = directory("mean_tokens");
    let mut more = WORDS.to_vec();
    more.extend(["extra", "words", "here"]);
    files.insert("tokenizer.json".into(), tokenizer(&more).into_bytes());
    assert!(error(&files).contains("the tokenizer does not match the weights"));

    // Weights of a shallower model than config.json describes.
    let mut files = directory("mean_tokens");
    files.insert("model.safetensors".into(), weights(1));
    let message = error(&files);
    assert!(
        message.contains("the weights do not fit config.json") && message.contains("layer.1"),
        "{message}"
    );

    let mut files = directory("mean_tokens");
    files.insert(
        "model.safetensors".into(),
        b"\x08\0\0\0\0\0\0\0garbage!".to_vec(),
    );
    assert!(error(&files).contains("model.safetensors does not parse"));

    let mut files = directory("mean_tokens");
    let dense = MODULES.replace("models.Normalize", "models.Dense");
    files.insert("modules.json".into(), dense.into_bytes());
    assert!(error(&files).contains("module sentence_transformers.models.Dense is not supported"));

    let mut files = directory("mean_tokens");
    files.insert(
        "modules.json".into(),
        MODULES.replace("1_Pooling", "../../etc").into_bytes(),
    );
    assert!(error(&files).contains("is not a subdirectory of the model's"));

    // A tokenizer whose ids skip past the embedding table, with no more tokens than it has.
    let mut files = directory("mean_tokens");
    let gapped = tokenizer(WORDS).replace("\"box\": 16", "\"box\": 99");
    files.insert("tokenizer.json".into(), gapped.into_bytes());
    assert!(
        error(&files).contains("with ids up to 99"),
        "{}",
        error(&files)
    );

    let mut files = directory("mean_tokens");
    files.insert(
        "sentence_bert_config.json".into(),
        br#"{"max_seq_length": 1}"#.to_vec(),
    );
    assert!(
        error(&files).contains("sentence_bert_config.json's max_seq_length is 1"),
        "{}",
        error(&files)
    );

    let files = directory("mean_sqrt_len_tokens");
    assert!(error(&files).contains("pooling_mode_mean_sqrt_len_tokens is not supported"));

    let files = directory("mean_tokens");
    let unknown = import(&files, &[("pooling", "mean")])
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("pooling"), "{unknown}");
}

#[test]
fn without_modules_json_an_encoder_pools_by_the_mean() {
    let mut files = directory("cls_token");
    files.remove("modules.json");
    files.remove("sentence_bert_config.json");
    let encoder = import(&files, &[]).unwrap();
    assert_eq!(encoder.spec.pooling, Pooling::Mean);
    assert_eq!(encoder.spec.max_tokens, POSITIONS);
}

#[test]
fn buckets_hold_at_most_batch_size_texts_and_a_token_budget() {
    let order: Vec<usize> = (0..10).collect();
    let lengths = [1, 1, 2, 2, 3, 3, 4000, 5000, 9000, 20_000];
    let cut: Vec<Vec<usize>> = buckets(&order, |i| lengths[i], 4)
        .into_iter()
        .map(<[usize]>::to_vec)
        .collect();
    // Four short texts (batch_size); then three, as a fourth would pad four texts to 5,000
    // tokens, past the budget of 16,384; then one text a bucket.
    assert_eq!(
        cut,
        vec![vec![0, 1, 2, 3], vec![4, 5, 6], vec![7], vec![8], vec![9]]
    );
}
