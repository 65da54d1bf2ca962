//! Text columns as features of the tabular kinds: `CREATE MODEL ... OPTIONS (text_encoder =
//! 'reviews_encoder' [, text_columns = 'review'] [, text_components = 16])`.
//!
//! At training each chosen text column is embedded by the encoder (each distinct text once)
//! and replaced by its coordinates on the first principal components of those embeddings
//! ([`TextProjection`]); the kind trains on the numbers and never sees the text. The card
//! keeps the projection and the encoder's pinned version (`name@version`) on the feature, so
//! the scoring functions ([`crate::features::FeatureBatch`]) encode a text argument exactly as
//! training did, and the engine refuses to drop an encoder that models use.
//!
//! A NULL text, or one without tokens, is missing: every component is NaN, which the kinds
//! impute as they do any missing number (and learn from, with a missing indicator).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, exec_err, plan_err};
use tenure_models::preprocess::component_name;
use tenure_models::text_encoder::projection::TextProjection;
use tenure_models::{FeatureColumn, FeatureKind, FeatureSpec, Kind, Model, TrainingData};

use crate::model_arg::resolve;
use crate::registry::{LoadedModel, ModelRegistry};

/// The kinds that take text features: those whose features go through the tabular
/// preprocessing.
pub const TEXT_FEATURE_KINDS: [Kind; 5] = [
    Kind::ChurnClassifier,
    Kind::RiskClassifier,
    Kind::Kmeans,
    Kind::Anomaly,
    Kind::Uplift,
];

/// Components per text feature unless `text_components` says otherwise.
pub const DEFAULT_COMPONENTS: usize = 16;

/// The projection is fitted on at most this many distinct texts (spread evenly over them).
const FIT_SAMPLE: usize = 10_000;

/// Texts embedded per call at training: cancellation is checked between calls, and only the
/// fitting sample's full embeddings are kept.
const EMBED_CHUNK: usize = 2048;

/// How errors about these options name them.
const OPTION: &str = "option text_encoder";

/// OPTIONS text_encoder, text_columns and text_components, taken out of a CREATE MODEL's
/// options: the kind itself never sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct TextFeatureOptions {
    /// The encoder model as given (`name` or `name@version`).
    pub encoder: String,
    /// The text columns to embed, lowercased; None: the query's only text column.
    pub columns: Option<Vec<String>>,
    pub components: usize,
    /// The options as given, for the card.
    pub given: Vec<(String, String)>,
}

impl TextFeatureOptions {
    /// Takes the text options out of `options`; None when there is no `text_encoder`.
    pub fn take(options: &mut Vec<(String, String)>) -> Result<Option<TextFeatureOptions>> {
        let is_text_option = |key: &str| {
            ["text_encoder", "text_columns", "text_components"]
                .iter()
                .any(|k| key.eq_ignore_ascii_case(k))
        };
        let (given, rest): (Vec<_>, Vec<_>) =
            options.drain(..).partition(|(key, _)| is_text_option(key));
        *options = rest;
        let value = |key: &str| {
            given
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.trim().to_string())
        };
        let Some(encoder) = value("text_encoder") else {
            if let Some((key, _)) = given.first() {
                return plan_err!(
                    "option {} needs text_encoder = 'an encoder model' (a KIND text_encoder \
                     model) to embed the text with",
                    key.to_ascii_lowercase()
                );
            }
            return Ok(None);
        };
        if encoder.is_empty() {
            return plan_err!("{OPTION} must name a KIND text_encoder model");
        }
        let columns = value("text_columns").map(|list| {
            list.split(',')
                .map(|c| c.trim().to_lowercase())
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        });
        if columns.as_ref().is_some_and(Vec::is_empty) {
            return plan_err!("option text_columns must name at least one text column");
        }
        let components = match value("text_components") {
            None => DEFAULT_COMPONENTS,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=256).contains(&n) => n,
                _ => {
                    return plan_err!(
                        "option text_components must be a number between 1 and 256, got \
                         '{text}'"
                    );
                }
            },
        };
        Ok(Some(TextFeatureOptions {
            encoder,
            columns,
            components,
            given,
        }))
    }
}

/// The encoder resolved and the text columns chosen, for one training.
#[derive(Debug)]
pub struct TextFeatures {
    options: TextFeatureOptions,
    encoder: Arc<LoadedModel>,
    /// `name@version`: what the card pins.
    reference: String,
    /// Chosen by [`TextFeatures::choose_columns`].
    columns: Vec<String>,
}

impl TextFeatures {
    /// Checks the options against the kind and resolves the encoder: before the training
    /// query runs.
    pub fn new(
        options: TextFeatureOptions,
        kind: Kind,
        registry: &dyn ModelRegistry,
    ) -> Result<TextFeatures> {
        if !TEXT_FEATURE_KINDS.contains(&kind) {
            let kinds: Vec<&str> = TEXT_FEATURE_KINDS.iter().map(|k| k.name()).collect();
            return plan_err!(
                "KIND {kind} takes no text features; {OPTION} is for {}",
                kinds.join(", ")
            );
        }
        let encoder = resolve(OPTION, registry, &options.encoder)?;
        if encoder.card.kind != Kind::TextEncoder {
            return plan_err!(
                "{OPTION}: model '{}' is of kind {}; it must name a text_encoder model (CREATE \
                 MODEL name KIND text_encoder FROM 'directory')",
                encoder.card.name,
                encoder.card.kind
            );
        }
        Ok(TextFeatures {
            reference: format!("{}@{}", encoder.card.name, encoder.card.version),
            encoder,
            options,
            columns: Vec::new(),
        })
    }

    /// The options as the card keeps them: `text_encoder` pinned to the version used.
    pub fn card_options(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.options.given.iter().map(|(key, value)| {
            let key = key.to_ascii_lowercase();
            let value = if key == "text_encoder" {
                self.reference.clone()
            } else {
                value.clone()
            };
            (key, value)
        })
    }

    /// Chooses the text columns among the training query's features (`specs`): those
    /// `text_columns` names, or its only text column.
    pub fn choose_columns(&mut self, specs: &[FeatureSpec]) -> Result<()> {
        let options = &self.options;
        let text_columns: Vec<&str> = specs
            .iter()
            .filter(|s| s.kind == FeatureKind::Categorical)
            .map(|s| s.name.as_str())
            .collect();
        let columns = match &options.columns {
            Some(named) => {
                for name in named {
                    let Some(spec) = specs.iter().find(|s| s.name.eq_ignore_ascii_case(name))
                    else {
                        return plan_err!(
                            "option text_columns names {name}, which is not a feature of the \
                             training query; its text columns: {}",
                            list(&text_columns)
                        );
                    };
                    if spec.kind != FeatureKind::Categorical {
                        return plan_err!(
                            "option text_columns names {name}, which is {}, not text",
                            spec.sql_type
                        );
                    }
                }
                specs
                    .iter()
                    .filter(|s| named.iter().any(|n| s.name.eq_ignore_ascii_case(n)))
                    .map(|s| s.name.clone())
                    .collect()
            }
            None => match text_columns.as_slice() {
                [only] => vec![only.to_string()],
                [] => {
                    return plan_err!(
                        "{OPTION} is given but the training query has no text column"
                    );
                }
                several => {
                    return plan_err!(
                        "the training query has several text columns ({}); name those to \
                         embed with OPTIONS text_columns = '{}' (the others stay categorical)",
                        several.join(", "),
                        several.last().expect("several")
                    );
                }
            },
        };
        // The components' names must not be taken already.
        for column in &columns {
            let names: Vec<String> = (1..=options.components)
                .map(|i| component_name(column, i))
                .collect();
            if let Some(taken) = specs.iter().find(|s| names.contains(&s.name)) {
                return plan_err!(
                    "the training query has a column {}, the name of a component of the text \
                     feature {column}; rename it",
                    taken.name
                );
            }
        }
        self.columns = columns;
        Ok(())
    }

    /// Replaces each chosen text column of `data` by the coordinates of its embeddings on
    /// their principal components (fitted here, on the column's distinct texts), and marks
    /// its spec as a text feature with that projection. Stops between chunks of texts when
    /// `cancel` is set.
    pub fn encode(
        &self,
        data: &mut TrainingData,
        specs: &mut [FeatureSpec],
        cancel: &AtomicBool,
    ) -> Result<()> {
        let encoder = encoder_of(&self.encoder);
        for name in &self.columns {
            let Some(index) = data.features.iter().position(|(n, _)| n == name) else {
                return exec_err!("{OPTION}: the training data lost column {name}");
            };
            let FeatureColumn::Categorical(texts) = &data.features[index].1 else {
                return exec_err!("{OPTION}: column {name} is not text");
            };
            let distinct = Distinct::new(texts.iter().map(Option::as_deref));
            let embed = |texts: &[Option<&str>]| -> Result<Vec<Option<Vec<f32>>>> {
                if cancel.load(Ordering::Relaxed) {
                    return Err(DataFusionError::External(Box::new(
                        tenure_models::Error::Cancelled,
                    )));
                }
                encoder.embed(texts).map_err(|e| {
                    DataFusionError::Execution(format!("{OPTION}: embedding column {name}: {e}"))
                })
            };
            // Fit on an even spread of the distinct texts in text order (so that the rows'
            // order changes nothing), keeping only their embeddings.
            let uniques = distinct.texts.len();
            let mut sorted: Vec<usize> = (0..uniques).collect();
            sorted.sort_unstable_by_key(|&u| distinct.texts[u]);
            let sample: Vec<usize> = if uniques <= FIT_SAMPLE {
                sorted
            } else {
                (0..FIT_SAMPLE)
                    .map(|i| sorted[i * uniques / FIT_SAMPLE])
                    .collect()
            };
            let mut sample_vectors: Vec<Option<Vec<f32>>> = Vec::with_capacity(sample.len());
            for chunk in sample.chunks(EMBED_CHUNK) {
                let texts: Vec<Option<&str>> =
                    chunk.iter().map(|&u| Some(distinct.texts[u])).collect();
                sample_vectors.extend(embed(&texts)?);
            }
            let fitted: Vec<Vec<f32>> = sample_vectors.iter().flatten().cloned().collect();
            let cancelled = || cancel.load(Ordering::Relaxed);
            let projection = TextProjection::fit(
                self.reference.clone(),
                &fitted,
                self.options.components,
                &cancelled,
            )
            .map_err(|e| match e {
                tenure_models::Error::Cancelled => DataFusionError::External(Box::new(e)),
                other => DataFusionError::Plan(format!("column {name}: {other}")),
            })?;
            let width = projection.width();
            let mut coordinates = vec![f64::NAN; uniques * width];
            let mut place = |u: usize, vector: &Option<Vec<f32>>| {
                if let Some(v) = vector {
                    projection.project(v, &mut coordinates[u * width..(u + 1) * width]);
                }
            };
            let mut in_sample = vec![false; uniques];
            for (&u, vector) in sample.iter().zip(&sample_vectors) {
                in_sample[u] = true;
                place(u, vector);
            }
            drop(sample_vectors);
            let rest: Vec<usize> = (0..uniques).filter(|&u| !in_sample[u]).collect();
            for chunk in rest.chunks(EMBED_CHUNK) {
                let texts: Vec<Option<&str>> =
                    chunk.iter().map(|&u| Some(distinct.texts[u])).collect();
                for (&u, vector) in chunk.iter().zip(&embed(&texts)?) {
                    place(u, vector);
                }
            }
            let columns = distinct.columns(&coordinates, width);
            let names = projection.column_names(name);
            let spec = specs
                .iter_mut()
                .find(|s| &s.name == name)
                .expect("plan chose the column among the specs");
            spec.kind = FeatureKind::Text;
            spec.text = Some(projection);
            data.features.splice(
                index..=index,
                names
                    .into_iter()
                    .zip(columns)
                    .map(|(n, c)| (n, FeatureColumn::Numeric(c))),
            );
        }
        Ok(())
    }
}

/// The encoder inside a model its kind was checked for.
fn encoder_of(model: &LoadedModel) -> &tenure_models::text_encoder::TextEncoder {
    match &model.model {
        Model::TextEncoder(encoder) => encoder,
        _ => unreachable!("the text encoder's kind was checked"),
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// A column's texts with each distinct text once: what is embedded.
struct Distinct<'a> {
    texts: Vec<&'a str>,
    /// Per row, the index of its text in `texts`; None for NULL.
    rows: Vec<Option<usize>>,
}

impl<'a> Distinct<'a> {
    fn new(values: impl Iterator<Item = Option<&'a str>>) -> Self {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut texts = Vec::new();
        let rows = values
            .map(|text| {
                text.map(|t| {
                    *index.entry(t).or_insert_with(|| {
                        texts.push(t);
                        texts.len() - 1
                    })
                })
            })
            .collect();
        Distinct { texts, rows }
    }

    /// One column of numbers per component, from `coordinates` (distinct text-major, `width`
    /// per text); NaN for a NULL row.
    fn columns(&self, coordinates: &[f64], width: usize) -> Vec<Vec<f64>> {
        (0..width)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|u| u.map_or(f64::NAN, |u| coordinates[u * width + c]))
                    .collect()
            })
            .collect()
    }
}

/// A text argument of a scoring function, as the model's components of it: one column per
/// component. `function` and `name` are for errors.
pub fn project_argument(
    function: &str,
    name: &str,
    projection: &TextProjection,
    registry: &dyn ModelRegistry,
    array: &ArrayRef,
) -> Result<Vec<Vec<f64>>> {
    let encoder = resolve(function, registry, &projection.encoder)?;
    if encoder.card.kind != Kind::TextEncoder {
        return exec_err!(
            "{function}: feature {name} was embedded by {}, which is now a {} model",
            projection.encoder,
            encoder.card.kind
        );
    }
    let text = cast(array, &DataType::Utf8)
        .or_else(|e| exec_err!("{function}: feature {name} cannot be read as text: {e}"))?;
    let distinct = Distinct::new(text.as_string::<i32>().iter());
    let texts: Vec<Option<&str>> = distinct.texts.iter().map(|t| Some(*t)).collect();
    let vectors = encoder_of(&encoder)
        .embed(&texts)
        .or_else(|e| exec_err!("{function}: feature {name}: {e}"))?;
    let width = projection.width();
    let mut coordinates = vec![f64::NAN; texts.len() * width];
    for (u, vector) in vectors.iter().enumerate() {
        if let Some(v) = vector {
            if v.len() != projection.dimension() {
                return exec_err!(
                    "{function}: feature {name}: the encoder {} gives {} numbers, the model \
                     was trained on {}",
                    projection.encoder,
                    v.len(),
                    projection.dimension()
                );
            }
            projection.project(v, &mut coordinates[u * width..(u + 1) * width]);
        }
    }
    Ok(distinct.columns(&coordinates, width))
}

/// The models (as `name@version`) whose text features an encoder named `encoder` embeds.
pub fn models_using(encoder: &str, cards: &[tenure_models::ModelCard]) -> Vec<String> {
    cards
        .iter()
        .filter(|card| {
            card.features.iter().any(|f| {
                f.text.as_ref().is_some_and(|t| {
                    t.encoder
                        .rsplit_once('@')
                        .is_some_and(|(name, _)| name.eq_ignore_ascii_case(encoder))
                })
            })
        })
        .map(|card| format!("{}@{}", card.name, card.version))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_text_options_are_taken_out_and_checked() {
        let mut given = options(&[
            ("model", "gbdt"),
            ("TEXT_ENCODER", "reviews"),
            ("text_columns", " Review , notes"),
        ]);
        let taken = TextFeatureOptions::take(&mut given).unwrap().unwrap();
        assert_eq!(given, options(&[("model", "gbdt")]));
        assert_eq!(taken.encoder, "reviews");
        assert_eq!(taken.columns, Some(vec!["review".into(), "notes".into()]));
        assert_eq!(taken.components, DEFAULT_COMPONENTS);
        assert_eq!(taken.given.len(), 2);

        let mut none = options(&[("model", "gbdt")]);
        assert_eq!(TextFeatureOptions::take(&mut none).unwrap(), None);

        let err = |pairs: &[(&str, &str)]| {
            TextFeatureOptions::take(&mut options(pairs))
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(&[("text_columns", "review")]).contains("option text_columns needs text_encoder")
        );
        assert!(
            err(&[("text_encoder", "e"), ("text_components", "0")]).contains("between 1 and 256")
        );
        assert!(err(&[("text_encoder", "e"), ("text_columns", " , ")]).contains("at least one"));
    }

    #[test]
    fn distinct_texts_are_embedded_once_and_nulls_stay_missing() {
        let distinct = Distinct::new([Some("a"), None, Some("b"), Some("a")].into_iter());
        assert_eq!(distinct.texts, ["a", "b"]);
        let columns = distinct.columns(&[1.0, 2.0, 3.0, 4.0], 2);
        assert_eq!(columns[0][0], 1.0);
        assert!(columns[0][1].is_nan());
        assert_eq!((columns[0][2], columns[0][3]), (3.0, 1.0));
        assert_eq!((columns[1][2], columns[1][3]), (4.0, 2.0));
    }
}
