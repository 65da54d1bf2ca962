//! Tabular preprocessing, fitted on the training data and saved with the model.
//!
//! Numeric features are standardised (mean 0, standard deviation 1). A missing value (SQL NULL,
//! or NaN) is imputed with the training mean, which is 0 after standardising, and when the
//! training data had missing values an indicator column (1 = missing) is added, so the model
//! can learn what missingness means. Categorical features are one-hot encoded over a
//! vocabulary of the most frequent training values, plus one column for values outside the
//! vocabulary and one for missing values.
//!
//! The output is a feature-major matrix: each encoded column is contiguous, which is how Arrow
//! delivers the inputs, so building it is one pass per column with no per-row work.

use std::collections::HashMap;
use std::ops::Range;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One input feature column as the models see it.
#[derive(Debug, Clone, Copy)]
pub enum FeatureValues<'a> {
    /// Numbers; NaN marks a missing value (the SQL layer turns NULL into NaN).
    Numeric(&'a [f64]),
    /// Category labels; `None` marks a missing value.
    Categorical(&'a [Option<&'a str>]),
    /// A list of text tokens per row (KIND sequence); `None` for a NULL list.
    TextList(&'a [Option<Vec<Option<&'a str>>>]),
    /// A list of numbers per row (KIND sequence's event ages); `None` for a NULL list, NaN for
    /// a NULL element.
    NumberList(&'a [Option<Vec<f64>>]),
}

impl FeatureValues<'_> {
    pub fn len(&self) -> usize {
        match self {
            FeatureValues::Numeric(v) => v.len(),
            FeatureValues::Categorical(v) => v.len(),
            FeatureValues::TextList(v) => v.len(),
            FeatureValues::NumberList(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> FeatureKind {
        match self {
            FeatureValues::Numeric(_) => FeatureKind::Numeric,
            FeatureValues::Categorical(_) => FeatureKind::Categorical,
            FeatureValues::TextList(_) => FeatureKind::TextList,
            FeatureValues::NumberList(_) => FeatureKind::NumberList,
        }
    }
}

/// An owned feature column, for training data.
#[derive(Debug, Clone)]
pub enum FeatureColumn {
    Numeric(Vec<f64>),
    Categorical(Vec<Option<String>>),
    TextList(Vec<Option<Vec<Option<String>>>>),
    NumberList(Vec<Option<Vec<f64>>>),
}

impl FeatureColumn {
    /// Borrowed view; categorical labels are collected into a vector of `&str`.
    pub fn with_values<T>(&self, f: impl FnOnce(FeatureValues<'_>) -> T) -> T {
        match self {
            FeatureColumn::Numeric(v) => f(FeatureValues::Numeric(v)),
            FeatureColumn::Categorical(v) => {
                let labels: Vec<Option<&str>> = v.iter().map(|s| s.as_deref()).collect();
                f(FeatureValues::Categorical(&labels))
            }
            FeatureColumn::TextList(v) => {
                let lists: Vec<Option<Vec<Option<&str>>>> = v
                    .iter()
                    .map(|l| l.as_ref().map(|l| l.iter().map(|t| t.as_deref()).collect()))
                    .collect();
                f(FeatureValues::TextList(&lists))
            }
            FeatureColumn::NumberList(v) => f(FeatureValues::NumberList(v)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            FeatureColumn::Numeric(v) => v.len(),
            FeatureColumn::Categorical(v) => v.len(),
            FeatureColumn::TextList(v) => v.len(),
            FeatureColumn::NumberList(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The name of component `i` (from 1) of a text feature `feature` (`review__pc1`): what the
/// kinds see in place of the text (see `text_encoder::projection`).
pub fn component_name(feature: &str, i: usize) -> String {
    format!("{feature}__pc{i}")
}

/// The runs of columns that are one text feature's components (`x__pc1`, `x__pc2`, ... in
/// order), by position in `names`: the kinds that weigh every column alike (k-means) scale
/// such a run as one feature, keeping the components' relative variances.
pub fn component_groups(names: &[String]) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < names.len() {
        let Some(feature) = names[i].strip_suffix("__pc1") else {
            i += 1;
            continue;
        };
        let mut end = i + 1;
        while end < names.len() && names[end] == component_name(feature, end - i + 1) {
            end += 1;
        }
        if end - i > 1 {
            groups.push(i..end);
        }
        i = end;
    }
    groups
}

/// Whether a feature is a number, a category, an embedded text, or (for KIND sequence) a list
/// of numbers or tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    Numeric,
    Categorical,
    TextList,
    NumberList,
    /// Text embedded by a text encoder (OPTIONS text_encoder): the model sees the numbers of
    /// its [`crate::text_encoder::projection::TextProjection`].
    Text,
}

impl std::fmt::Display for FeatureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FeatureKind::Numeric => "numeric",
            FeatureKind::Categorical => "categorical",
            FeatureKind::TextList => "text list",
            FeatureKind::NumberList => "number list",
            FeatureKind::Text => "text",
        })
    }
}

/// How one feature becomes encoded columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Encoding {
    Numeric {
        mean: f64,
        std: f64,
        /// Whether an indicator column follows the value column.
        missing_indicator: bool,
    },
    Categorical {
        /// One column per label, then one for unknown labels and one for missing values.
        vocabulary: Vec<String>,
    },
}

impl Encoding {
    fn width(&self) -> usize {
        match self {
            Encoding::Numeric {
                missing_indicator, ..
            } => 1 + usize::from(*missing_indicator),
            Encoding::Categorical { vocabulary } => vocabulary.len() + 2,
        }
    }
}

/// A fitted feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureEncoder {
    pub name: String,
    pub encoding: Encoding,
}

/// A matrix stored feature-major: column `c` is `data[c * rows..(c + 1) * rows]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn column(&self, c: usize) -> &[f32] {
        &self.data[c * self.rows..(c + 1) * self.rows]
    }

    /// Rows `indices` as a row-major buffer (for mini-batches).
    pub fn gather_rows(&self, indices: &[usize]) -> Vec<f32> {
        let mut out = vec![0f32; indices.len() * self.cols];
        for c in 0..self.cols {
            let column = self.column(c);
            for (r, &i) in indices.iter().enumerate() {
                out[r * self.cols + c] = column[i];
            }
        }
        out
    }

    /// Rows `indices` as a new feature-major matrix.
    pub fn select_rows(&self, indices: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(indices.len() * self.cols);
        for c in 0..self.cols {
            let column = self.column(c);
            data.extend(indices.iter().map(|&i| column[i]));
        }
        Matrix {
            rows: indices.len(),
            cols: self.cols,
            data,
        }
    }
}

/// Fitting choices.
#[derive(Debug, Clone)]
pub struct PreprocessOptions {
    /// At most this many labels per categorical feature get their own column.
    pub max_categories: usize,
}

impl Default for PreprocessOptions {
    fn default() -> Self {
        PreprocessOptions {
            max_categories: 100,
        }
    }
}

/// The fitted preprocessing of every feature, in feature order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub features: Vec<FeatureEncoder>,
}

impl Preprocessor {
    /// Fits on training columns. Fails on infinite numbers, naming the feature.
    pub fn fit(
        columns: &[(String, FeatureValues<'_>)],
        options: &PreprocessOptions,
    ) -> Result<Preprocessor> {
        // A feature per task; collected in column order, so an error names the first bad
        // column whatever the threads.
        let features = columns
            .par_iter()
            .map(|(name, values)| {
                let encoding = match values {
                    FeatureValues::Numeric(v) => fit_numeric(name, v)?,
                    FeatureValues::Categorical(v) => fit_categorical(v, options.max_categories),
                    FeatureValues::TextList(_) | FeatureValues::NumberList(_) => {
                        return Err(Error::data(format!(
                            "column {name} is a list; lists are features of KIND sequence only"
                        )));
                    }
                };
                Ok(FeatureEncoder {
                    name: name.clone(),
                    encoding,
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        Ok(Preprocessor { features })
    }

    /// Number of encoded columns.
    pub fn width(&self) -> usize {
        self.features.iter().map(|f| f.encoding.width()).sum()
    }

    /// The encoded columns that belong to each feature.
    pub fn column_ranges(&self) -> Vec<Range<usize>> {
        let mut start = 0;
        self.features
            .iter()
            .map(|f| {
                let range = start..start + f.encoding.width();
                start = range.end;
                range
            })
            .collect()
    }

    /// Names of the encoded columns (`plan=basic`, `spend__missing`, ...).
    pub fn column_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.width());
        for feature in &self.features {
            match &feature.encoding {
                Encoding::Numeric {
                    missing_indicator, ..
                } => {
                    names.push(feature.name.clone());
                    if *missing_indicator {
                        names.push(format!("{}__missing", feature.name));
                    }
                }
                Encoding::Categorical { vocabulary } => {
                    for label in vocabulary {
                        names.push(format!("{}={label}", feature.name));
                    }
                    names.push(format!("{}__unknown", feature.name));
                    names.push(format!("{}__missing", feature.name));
                }
            }
        }
        names
    }

    /// Encodes `columns` (one per feature, in order, all `rows` long) into a feature-major
    /// matrix. Fails on a wrong feature count or kind and on infinite numbers.
    pub fn transform(&self, columns: &[FeatureValues<'_>]) -> Result<Matrix> {
        let encoder = self.encoder(columns)?;
        let (rows, cols) = (encoder.rows(), encoder.width());
        let mut data = vec![0f32; rows * cols];
        encoder.encode(0, rows, &mut data, rows)?;
        Ok(Matrix { rows, cols, data })
    }

    /// Checks `columns` (one per feature, in order, all the same length) against the fitted
    /// features, for encoding a block of rows at a time. Fails on a wrong feature count or kind.
    pub fn encoder<'a>(&'a self, columns: &'a [FeatureValues<'a>]) -> Result<Encoder<'a>> {
        if columns.len() != self.features.len() {
            return Err(Error::input(format!(
                "expected {} features, got {}",
                self.features.len(),
                columns.len()
            )));
        }
        let rows = columns.first().map_or(0, |c| c.len());
        let features = self
            .features
            .iter()
            .zip(columns)
            .map(|(feature, values)| {
                if values.len() != rows {
                    return Err(Error::input("feature columns differ in length"));
                }
                Ok(match (&feature.encoding, values) {
                    (
                        Encoding::Numeric {
                            mean,
                            std,
                            missing_indicator,
                        },
                        FeatureValues::Numeric(values),
                    ) => ColumnEncoder::Numeric {
                        name: &feature.name,
                        values,
                        mean: *mean,
                        scale: 1.0 / std,
                        missing_indicator: *missing_indicator,
                    },
                    (Encoding::Categorical { vocabulary }, FeatureValues::Categorical(values)) => {
                        ColumnEncoder::Categorical {
                            values,
                            index: vocabulary
                                .iter()
                                .enumerate()
                                .map(|(i, s)| (s.as_str(), i))
                                .collect(),
                            width: feature.encoding.width(),
                        }
                    }
                    (encoding, values) => {
                        let expected = match encoding {
                            Encoding::Numeric { .. } => FeatureKind::Numeric,
                            Encoding::Categorical { .. } => FeatureKind::Categorical,
                        };
                        return Err(Error::input(format!(
                            "feature {} is {expected}, got {} values",
                            feature.name,
                            values.kind()
                        )));
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder {
            features,
            rows,
            width: self.width(),
        })
    }
}

/// Feature columns checked against a [`Preprocessor`], encoded a block of rows at a time: the
/// scoring path encodes a few hundred rows into a buffer that stays in cache and runs the
/// network on them, instead of writing and rereading a matrix of the whole batch.
pub struct Encoder<'a> {
    features: Vec<ColumnEncoder<'a>>,
    rows: usize,
    width: usize,
}

enum ColumnEncoder<'a> {
    Numeric {
        name: &'a str,
        values: &'a [f64],
        mean: f64,
        scale: f64,
        missing_indicator: bool,
    },
    Categorical {
        values: &'a [Option<&'a str>],
        index: HashMap<&'a str, usize>,
        /// The vocabulary, then the unknown and the missing column.
        width: usize,
    },
}

impl Encoder<'_> {
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Encoded columns per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Encodes rows `start..start + n` into `out`, feature-major: encoded column `c` goes to
    /// `out[c * stride..c * stride + n]`. Fails on infinite numbers.
    pub fn encode(&self, start: usize, n: usize, out: &mut [f32], stride: usize) -> Result<()> {
        assert!(n <= stride && start + n <= self.rows);
        assert!(out.len() >= self.width.saturating_sub(1) * stride + n);
        let mut column = 0;
        let slot = |c: usize| -> std::ops::Range<usize> { c * stride..c * stride + n };
        for feature in &self.features {
            match feature {
                ColumnEncoder::Numeric {
                    name,
                    values,
                    mean,
                    scale,
                    missing_indicator,
                } => {
                    let values = &values[start..start + n];
                    encode_numeric(name, values, *mean, *scale, &mut out[slot(column)])?;
                    column += 1;
                    if *missing_indicator {
                        for (o, x) in out[slot(column)].iter_mut().zip(values) {
                            *o = if x.is_nan() { 1.0 } else { 0.0 };
                        }
                        column += 1;
                    }
                }
                ColumnEncoder::Categorical {
                    values,
                    index,
                    width,
                } => {
                    for c in column..column + width {
                        out[slot(c)].fill(0.0);
                    }
                    let unknown = width - 2;
                    for (r, label) in values[start..start + n].iter().enumerate() {
                        let hot = match label {
                            Some(s) => index.get(s).copied().unwrap_or(unknown),
                            None => unknown + 1,
                        };
                        out[(column + hot) * stride + r] = 1.0;
                    }
                    column += width;
                }
            }
        }
        Ok(())
    }
}

fn fit_numeric(name: &str, values: &[f64]) -> Result<Encoding> {
    let (mut n, mut mean, mut m2) = (0usize, 0.0f64, 0.0f64);
    let mut missing = false;
    for &x in values {
        if x.is_nan() {
            missing = true;
            continue;
        }
        if x.is_infinite() {
            return Err(Error::data(format!(
                "feature {name} contains an infinite value; use NULL for unknown values"
            )));
        }
        // Welford's update: stable for large values.
        n += 1;
        let delta = x - mean;
        mean += delta / n as f64;
        m2 += delta * (x - mean);
    }
    let std = if n > 1 { (m2 / n as f64).sqrt() } else { 0.0 };
    Ok(Encoding::Numeric {
        mean: if n == 0 { 0.0 } else { mean },
        // A constant column carries no information; dividing by 1 keeps it at 0.
        std: if std > 1e-12 { std } else { 1.0 },
        missing_indicator: missing,
    })
}

fn fit_categorical(values: &[Option<&str>], max_categories: usize) -> Encoding {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for label in values.iter().flatten() {
        *counts.entry(label).or_default() += 1;
    }
    let mut labels: Vec<(&str, usize)> = counts.into_iter().collect();
    // Most frequent first; ties by label so the vocabulary is deterministic.
    labels.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    labels.truncate(max_categories);
    Encoding::Categorical {
        vocabulary: labels.into_iter().map(|(s, _)| s.to_string()).collect(),
    }
}

fn encode_numeric(
    name: &str,
    values: &[f64],
    mean: f64,
    scale: f64,
    out: &mut [f32],
) -> Result<()> {
    // This runs for every feature of every scored row: compiled for AVX-512 too, where the
    // CPU has it (the crate's baseline is SSE2).
    #[cfg(target_arch = "x86_64")]
    let infinite = if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        unsafe { standardise_avx512(values, mean, scale, out) }
    } else {
        standardise(values, mean, scale, out)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let infinite = standardise(values, mean, scale, out);
    if infinite {
        return Err(Error::input(format!(
            "feature {name} is infinite; use NULL for unknown values"
        )));
    }
    Ok(())
}

/// `out = (values - mean) * scale` as f32, NaN (missing) as 0 (the mean); whether any value
/// is infinite. Branch-free, so that it vectorises.
#[inline(always)]
fn standardise(values: &[f64], mean: f64, scale: f64, out: &mut [f32]) -> bool {
    let mut infinite = false;
    for (o, &x) in out.iter_mut().zip(values) {
        let standardised = ((x - mean) * scale) as f32;
        *o = if x.is_nan() { 0.0 } else { standardised };
        infinite |= x.is_infinite();
    }
    infinite
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn standardise_avx512(values: &[f64], mean: f64, scale: f64, out: &mut [f32]) -> bool {
    standardise(values, mean, scale, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_standardised_with_missing_indicator() {
        let spend = [1.0, 3.0, f64::NAN, 5.0];
        let columns = [("spend".to_string(), FeatureValues::Numeric(&spend))];
        let p = Preprocessor::fit(&columns, &PreprocessOptions::default()).unwrap();
        assert_eq!(p.width(), 2);
        let m = p.transform(&[FeatureValues::Numeric(&spend)]).unwrap();
        let std = (8.0f64 / 3.0).sqrt();
        let expected = [(-2.0 / std) as f32, 0.0_f32, 0.0, (2.0 / std) as f32];
        for (a, b) in m.column(0).iter().zip(expected) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(m.column(1), &[0.0, 0.0, 1.0, 0.0]);
        assert_eq!(p.column_names(), ["spend", "spend__missing"]);
    }

    #[test]
    fn categorical_one_hot_with_unknown_and_missing() {
        let plan = [Some("basic"), Some("pro"), Some("basic"), None];
        let p = Preprocessor::fit(
            &[("plan".to_string(), FeatureValues::Categorical(&plan))],
            &PreprocessOptions::default(),
        )
        .unwrap();
        let input = [Some("pro"), Some("gold"), None];
        let m = p.transform(&[FeatureValues::Categorical(&input)]).unwrap();
        assert_eq!(m.cols, 4);
        assert_eq!(m.column(0), &[0.0, 0.0, 0.0]); // basic
        assert_eq!(m.column(1), &[1.0, 0.0, 0.0]); // pro
        assert_eq!(m.column(2), &[0.0, 1.0, 0.0]); // unknown
        assert_eq!(m.column(3), &[0.0, 0.0, 1.0]); // missing
    }

    #[test]
    fn bad_inputs_are_named() {
        let x = [1.0, f64::INFINITY];
        let err = Preprocessor::fit(
            &[("spend".to_string(), FeatureValues::Numeric(&x))],
            &PreprocessOptions::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("feature spend contains an infinite value")
        );
        let ok = [1.0, 2.0];
        let p = Preprocessor::fit(
            &[("spend".to_string(), FeatureValues::Numeric(&ok))],
            &PreprocessOptions::default(),
        )
        .unwrap();
        let labels = [Some("a"), None];
        let err = p
            .transform(&[FeatureValues::Categorical(&labels)])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "feature spend is numeric, got categorical values"
        );
        assert!(p.transform(&[]).is_err());
    }

    #[test]
    fn a_text_features_components_are_found_as_one_run() {
        let names: Vec<String> = [
            "spend",
            "review__pc1",
            "review__pc2",
            "review__pc3",
            "x__pc1",
            "query__pc1",
            "query__pc2",
            "query__pc4",
        ]
        .map(String::from)
        .to_vec();
        // A lone first component is no group; a gap ends one.
        assert_eq!(component_groups(&names), vec![1..4, 5..7]);
    }

    #[test]
    fn gather_rows_is_row_major() {
        let m = Matrix {
            rows: 3,
            cols: 2,
            data: vec![1.0, 2.0, 3.0, 10.0, 20.0, 30.0],
        };
        assert_eq!(m.gather_rows(&[2, 0]), vec![3.0, 30.0, 1.0, 10.0]);
        assert_eq!(m.select_rows(&[2, 0]).data, vec![3.0, 1.0, 30.0, 10.0]);
    }
}
