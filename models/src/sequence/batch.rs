//! Histories as the network reads them: token ids with their ages, cut to `max_len` and
//! left-padded into batches of ids, position and time buckets and the attention mask.

use candle_core::{Device, Tensor};

use super::spec::{NO_PREVIOUS, PAD, SUMMARY, TIME_BUCKETS, TIME_UNKNOWN};
use crate::error::{Error, Result};

/// One customer's history as ids, oldest first, with ages in days (NaN where unknown).
#[derive(Debug, Clone, Default)]
pub(super) struct History {
    pub(super) tokens: Vec<u32>,
    pub(super) ages: Option<Vec<f32>>,
}

impl History {
    pub(super) fn len(&self) -> usize {
        self.tokens.len()
    }
}

/// One row of a batch: a history (already cut), ages measured from `reference` days.
pub(super) struct Sample<'a> {
    pub(super) tokens: &'a [u32],
    pub(super) ages: Option<&'a [f32]>,
    pub(super) reference: f32,
}

/// A batch as tensors: left-padded ids and buckets, the attention mask, which steps are real.
pub(super) struct Batch {
    pub(super) rows: usize,
    pub(super) length: usize,
    pub(super) tokens: Tensor,
    pub(super) positions: Tensor,
    pub(super) ages: Tensor,
    pub(super) gaps: Tensor,
    /// [rows, length]: 0 for real keys, a large negative number for padding; added to every
    /// attention score.
    pub(super) key_bias: Vec<f32>,
    /// [rows, length]: 1 for real steps (events and the summary), 0 for padding.
    pub(super) real: Vec<f32>,
    /// Tokens in the batch, summary tokens included (for throughput).
    pub(super) token_count: usize,
}

fn time_bucket(days: f32) -> u32 {
    if !days.is_finite() || days < 0.0 {
        return TIME_UNKNOWN;
    }
    let minutes = days * 1440.0;
    ((2.0 * (1.0 + minutes).log2()).floor() as u32).min(TIME_BUCKETS as u32 - 1)
}

impl Batch {
    pub(super) fn new(samples: &[Sample<'_>], max_len: usize, device: &Device) -> Result<Batch> {
        let rows = samples.len();
        let length = samples
            .iter()
            .map(|s| s.tokens.len().min(max_len))
            .max()
            .unwrap_or(0)
            + 1;
        let cells = rows * length;
        let mut tokens = vec![PAD; cells];
        let mut positions = vec![0u32; cells];
        let mut ages = vec![TIME_UNKNOWN; cells];
        let mut gaps = vec![TIME_UNKNOWN; cells];
        let mut bias = vec![-1e9f32; cells];
        let mut real = vec![0f32; cells];
        let mut token_count = 0;
        for (r, sample) in samples.iter().enumerate() {
            let n = sample.tokens.len().min(max_len);
            let skip = sample.tokens.len() - n;
            let row = r * length;
            let start = row + length - 1 - n;
            let mut previous_age: Option<f32> = None;
            for k in 0..=n {
                let cell = start + k;
                let (token, age) = if k < n {
                    let age = sample
                        .ages
                        .map_or(f32::NAN, |a| a[skip + k] - sample.reference);
                    (sample.tokens[skip + k], age)
                } else {
                    let age = if sample.ages.is_some() { 0.0 } else { f32::NAN };
                    (SUMMARY, age)
                };
                tokens[cell] = token;
                positions[cell] = (n - k) as u32;
                ages[cell] = time_bucket(age);
                gaps[cell] = match previous_age {
                    _ if sample.ages.is_none() => TIME_UNKNOWN,
                    None => NO_PREVIOUS,
                    Some(before) => time_bucket(before - age),
                };
                previous_age = Some(age);
                bias[cell] = 0.0;
                real[cell] = 1.0;
            }
            token_count += n + 1;
        }
        let ids = |v: Vec<u32>| Tensor::from_vec(v, (rows, length), device);
        Ok(Batch {
            rows,
            length,
            tokens: ids(tokens)?,
            positions: ids(positions)?,
            ages: ids(ages)?,
            gaps: ids(gaps)?,
            key_bias: bias,
            real,
            token_count,
        })
    }
}

/// A row's ages as f32 days, NaN for NULL or unknown; an error when its length differs from the
/// event list's.
pub(super) fn row_ages<A: AsRef<[f64]>>(
    ages: Option<Option<A>>,
    events: usize,
    row: usize,
) -> Result<Option<Vec<f32>>> {
    let Some(ages) = ages else {
        return Ok(None);
    };
    match ages {
        None => Ok(Some(vec![f32::NAN; events])),
        Some(ages) => {
            let ages = ages.as_ref();
            if ages.len() != events {
                return Err(Error::input(format!(
                    "row {}: the age list has {} elements and the event list {}; they must \
                     pair up, one age per event",
                    row + 1,
                    ages.len(),
                    events
                )));
            }
            Ok(Some(ages.iter().map(|&a| a as f32).collect()))
        }
    }
}
