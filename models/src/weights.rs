//! Model weights as safetensors bytes, and the checksums that tie an artifact together: the
//! card records a checksum of the weights, so a card paired with the wrong or a truncated
//! weights file is reported as corrupt instead of scoring garbage, and a fingerprint of the
//! training data, to tell retrains on new data apart.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::data::TrainingData;
use crate::error::{Error, Result};
use crate::preprocess::FeatureColumn;

/// Dense layers as named tensors, `layers.{i}.weight` ([out, in]) and `layers.{i}.bias`.
pub fn layer_tensors(layers: &[(Tensor, Tensor)]) -> Vec<(String, Tensor)> {
    layers
        .iter()
        .enumerate()
        .flat_map(|(i, (w, b))| {
            [
                (format!("layers.{i}.weight"), w.clone()),
                (format!("layers.{i}.bias"), b.clone()),
            ]
        })
        .collect()
}

/// The dense layers of widths `sizes` out of `tensors` (see [`layer_tensors`]), as f32 on
/// `device`; a missing tensor or a shape that disagrees with the card is a corrupt artifact.
pub fn take_layers(
    tensors: &mut HashMap<String, Tensor>,
    sizes: &[usize],
    device: &Device,
) -> Result<Vec<(Tensor, Tensor)>> {
    let mut take = |name: String, shape: &[usize]| -> Result<Tensor> {
        let tensor = tensors
            .remove(&name)
            .ok_or_else(|| Error::CorruptArtifact(format!("weights lack {name}")))?;
        if tensor.dims() != shape {
            return Err(Error::CorruptArtifact(format!(
                "{name} has shape {:?}, the card says {shape:?}",
                tensor.dims()
            )));
        }
        Ok(tensor.to_dtype(DType::F32)?.to_device(device)?)
    };
    sizes
        .windows(2)
        .enumerate()
        .map(|(i, pair)| {
            let weight = take(format!("layers.{i}.weight"), &[pair[1], pair[0]])?;
            let bias = take(format!("layers.{i}.bias"), &[pair[1]])?;
            Ok((weight, bias))
        })
        .collect()
}

/// Safetensors bytes for named tensors.
pub fn serialize_weights(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)
        .map_err(|e| Error::CorruptArtifact(format!("cannot serialise weights: {e}")))
}

/// Named tensors from safetensors bytes, checked against `checksum`.
pub fn deserialize_weights(
    bytes: &[u8],
    checksum: &str,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let actual = fnv1a_hex(bytes);
    if actual != checksum {
        return Err(Error::CorruptArtifact(format!(
            "weights checksum {actual} does not match the card's {checksum}"
        )));
    }
    candle_core::safetensors::load_buffer(bytes, device)
        .map_err(|e| Error::CorruptArtifact(format!("weights do not parse: {e}")))
}

/// FNV-1a 64 as 16 hex digits: stable across builds and platforms, unlike `DefaultHasher`.
pub fn fnv1a_hex(bytes: &[u8]) -> String {
    let mut hasher = Fnv1a::default();
    hasher.write(bytes);
    format!("{:016x}", hasher.0)
}

/// A fingerprint of training data: feature names and values, and the target.
pub fn fingerprint(data: &TrainingData) -> String {
    let mut hasher = Fnv1a::default();
    for (name, column) in &data.features {
        hasher.write(name.as_bytes());
        match column {
            FeatureColumn::Numeric(values) => values.iter().for_each(|&v| hasher.write_f64(v)),
            FeatureColumn::Categorical(values) => {
                values.iter().for_each(|v| hasher.write_label(v.as_deref()));
            }
            FeatureColumn::TextList(lists) => {
                for list in lists {
                    hasher.write_list_length(list.as_ref().map(Vec::len));
                    for token in list.iter().flatten() {
                        hasher.write_label(token.as_deref());
                    }
                }
            }
            FeatureColumn::NumberList(lists) => {
                for list in lists {
                    hasher.write_list_length(list.as_ref().map(Vec::len));
                    list.iter().flatten().for_each(|&v| hasher.write_f64(v));
                }
            }
        }
    }
    for &y in &data.target {
        hasher.write(&[u8::from(y)]);
    }
    format!("{:016x}", hasher.0)
}

struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_f64(&mut self, value: f64) {
        self.write(&value.to_bits().to_le_bytes());
    }

    /// A present label as 1 and its bytes, a missing one as 0.
    fn write_label(&mut self, label: Option<&str>) {
        match label {
            Some(s) => {
                self.write(&[1]);
                self.write(s.as_bytes());
            }
            None => self.write(&[0]),
        }
    }

    /// A list's length, or u64::MAX for a NULL list, so list boundaries count.
    fn write_list_length(&mut self, length: Option<usize>) {
        self.write(&length.map_or(u64::MAX, |n| n as u64).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_vectors() {
        assert_eq!(fnv1a_hex(b""), "cbf29ce484222325");
        assert_eq!(fnv1a_hex(b"a"), "af63dc4c8601ec8c");
    }

    #[test]
    fn weights_round_trip_and_detect_corruption() {
        let t = Tensor::new(&[1.5f32, -2.0], &Device::Cpu).unwrap();
        let bytes = serialize_weights(&[("w".to_string(), t)]).unwrap();
        let sum = fnv1a_hex(&bytes);
        let back = deserialize_weights(&bytes, &sum, &Device::Cpu).unwrap();
        assert_eq!(back["w"].to_vec1::<f32>().unwrap(), vec![1.5, -2.0]);
        let truncated = &bytes[..bytes.len() - 1];
        let err = deserialize_weights(truncated, &sum, &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }
}
