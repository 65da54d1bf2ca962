//! Training data as every kind receives it, and what kinds do with it before training: the
//! train/validation split and the preprocessing fit of the tabular kinds.

use std::borrow::Cow;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::preprocess::{FeatureColumn, FeatureValues, Matrix, PreprocessOptions, Preprocessor};

/// Training data: named feature columns and a 0/1 target, all the same length. Kinds
/// without a target leave it empty.
#[derive(Debug, Clone)]
pub struct TrainingData {
    pub features: Vec<(String, FeatureColumn)>,
    pub target: Vec<bool>,
}

impl TrainingData {
    /// Rows of training data.
    pub fn rows(&self) -> usize {
        self.features
            .first()
            .map_or(self.target.len(), |(_, column)| column.len())
    }

    /// The features of `rows`, with `target` (one value per row of `self`) as the target.
    pub(crate) fn subset(&self, rows: &[usize], target: &[bool]) -> TrainingData {
        TrainingData {
            features: self
                .features
                .iter()
                .map(|(name, column)| (name.clone(), column.select(rows)))
                .collect(),
            target: rows.iter().map(|&i| target[i]).collect(),
        }
    }

    /// `score` over every row (of tabular features).
    pub(crate) fn score(
        &self,
        score: impl FnOnce(&[FeatureValues<'_>]) -> Result<Vec<f64>>,
    ) -> Result<Vec<f64>> {
        self.with_values(score)
    }

    /// `f` of every row's feature values, as scoring reads them.
    pub(crate) fn with_values<R>(
        &self,
        f: impl FnOnce(&[FeatureValues<'_>]) -> Result<R>,
    ) -> Result<R> {
        let columns: Vec<Column<'_>> = self
            .features
            .iter()
            .map(|(_, c)| Column::borrow(c))
            .collect();
        let values: Vec<FeatureValues<'_>> = columns.iter().map(Column::view).collect();
        f(&values)
    }
}

impl FeatureColumn {
    /// The values of `rows`, in that order.
    pub(crate) fn select(&self, rows: &[usize]) -> FeatureColumn {
        match self {
            FeatureColumn::Numeric(v) => {
                FeatureColumn::Numeric(rows.iter().map(|&i| v[i]).collect())
            }
            FeatureColumn::Categorical(v) => {
                FeatureColumn::Categorical(rows.iter().map(|&i| v[i].clone()).collect())
            }
            FeatureColumn::TextList(v) => {
                FeatureColumn::TextList(rows.iter().map(|&i| v[i].clone()).collect())
            }
            FeatureColumn::NumberList(v) => {
                FeatureColumn::NumberList(rows.iter().map(|&i| v[i].clone()).collect())
            }
        }
    }
}

/// Training and validation row indices, stratified by class so both sets see both classes.
pub(crate) fn stratified_split(
    target: &[bool],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_5911_7000_0001);
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for class in [false, true] {
        let mut rows: Vec<usize> = (0..target.len()).filter(|&i| target[i] == class).collect();
        rows.shuffle(&mut rng);
        let take = ((rows.len() as f64 * fraction).round() as usize).clamp(1, rows.len() - 1);
        validation.extend_from_slice(&rows[..take]);
        train.extend_from_slice(&rows[take..]);
    }
    train.sort_unstable();
    validation.sort_unstable();
    (train, validation)
}

/// Training and validation row indices, `fraction` of the `rows` at random (at least
/// `min_each` in each set) drawn with `rng`; both sorted. For data without classes to
/// stratify by.
pub(crate) fn random_split(
    rows: usize,
    fraction: f64,
    min_each: usize,
    rng: &mut StdRng,
) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..rows).collect();
    order.shuffle(rng);
    let take = ((rows as f64 * fraction).round() as usize).clamp(min_each, rows - min_each);
    let mut validation = order[..take].to_vec();
    let mut train = order[take..].to_vec();
    validation.sort_unstable();
    train.sort_unstable();
    (train, validation)
}

/// Fits the preprocessing on the `train` rows of `data` only (so validation metrics stay
/// honest) and encodes every row.
pub(crate) fn fit_and_encode(
    data: &TrainingData,
    train: &[usize],
    max_categories: usize,
) -> Result<(Preprocessor, Matrix)> {
    let preprocessor = fit_preprocessor(data, train, max_categories)?;
    let matrix = encode(&preprocessor, data)?;
    Ok((preprocessor, matrix))
}

/// The preprocessing fitted on the `train` rows of `data`.
pub(crate) fn fit_preprocessor(
    data: &TrainingData,
    train: &[usize],
    max_categories: usize,
) -> Result<Preprocessor> {
    let columns: Vec<Column<'_>> = data
        .features
        .iter()
        .map(|(_, column)| Column::borrow(column))
        .collect();
    let train_columns: Vec<Column<'_>> = columns.par_iter().map(|c| c.select(train)).collect();
    let fit_views: Vec<(String, FeatureValues<'_>)> = data
        .features
        .iter()
        .zip(&train_columns)
        .map(|((name, _), column)| (name.clone(), column.view()))
        .collect();
    Preprocessor::fit(&fit_views, &PreprocessOptions { max_categories }).map_err(|e| match e {
        Error::InvalidInput(m) => Error::InvalidData(m),
        other => other,
    })
}

/// Every row of `data` encoded by `preprocessor`.
pub(crate) fn encode(preprocessor: &Preprocessor, data: &TrainingData) -> Result<Matrix> {
    let columns: Vec<Column<'_>> = data
        .features
        .iter()
        .map(|(_, column)| Column::borrow(column))
        .collect();
    let values: Vec<FeatureValues<'_>> = columns.iter().map(Column::view).collect();
    preprocessor.transform(&values)
}

/// A feature column borrowed from [`TrainingData`], in the shape [`FeatureValues`] needs.
pub(crate) enum Column<'a> {
    Numeric(Cow<'a, [f64]>),
    Categorical(Vec<Option<&'a str>>),
}

impl<'a> Column<'a> {
    pub(crate) fn borrow(column: &'a FeatureColumn) -> Self {
        match column {
            FeatureColumn::Numeric(v) => Column::Numeric(Cow::Borrowed(v)),
            FeatureColumn::Categorical(v) => {
                Column::Categorical(v.iter().map(|s| s.as_deref()).collect())
            }
            FeatureColumn::TextList(_) | FeatureColumn::NumberList(_) => {
                unreachable!("Model::train rejects list features for tabular kinds")
            }
        }
    }

    fn select(&self, rows: &[usize]) -> Column<'a> {
        match self {
            Column::Numeric(v) => Column::Numeric(Cow::Owned(rows.iter().map(|&i| v[i]).collect())),
            Column::Categorical(v) => Column::Categorical(rows.iter().map(|&i| v[i]).collect()),
        }
    }

    pub(crate) fn view(&self) -> FeatureValues<'_> {
        match self {
            Column::Numeric(v) => FeatureValues::Numeric(v),
            Column::Categorical(v) => FeatureValues::Categorical(v),
        }
    }
}
