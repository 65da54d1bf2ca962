//! Arrow record batches to [`TrainingData`]: what CREATE MODEL and model_evaluate read.
//!
//! Every column except the target is a feature, in query order. Numbers and booleans are
//! numeric features; text is categorical; lists (for KIND sequence) are lists of numbers or
//! of text tokens. The target must be boolean or 0/1; rows whose
//! target is NULL are left out (and counted), as a row without a label cannot teach anything.
//! Kinds without a target (bgnbd, gamma_gamma, ...) take every column as a feature.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, plan_err};
use tenure_models::{FeatureColumn, FeatureKind, FeatureSpec, TrainingData};

use crate::features::{
    as_list, feature_kind_for, list_item, number_lists, sql_type_name, text_lists,
};

/// The feature kind a training column of this type becomes, or why it cannot be a feature.
pub fn training_kind(name: &str, data_type: &DataType) -> Result<FeatureKind> {
    match data_type {
        t if t.is_numeric() || *t == DataType::Boolean => Ok(FeatureKind::Numeric),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(FeatureKind::Categorical),
        DataType::Dictionary(_, value) if value.is_string() => Ok(FeatureKind::Categorical),
        t if list_item(t).is_some() => match feature_kind_for(t) {
            Some(kind) => Ok(kind),
            None => plan_err!(
                "column {name} is {}; list features must hold numbers or text",
                sql_type_name(t)
            ),
        },
        // The suggested expressions are run by a test (tests/cli.rs), so they stay true.
        DataType::Date32 | DataType::Date64 => plan_err!(
            "column {name} is {}; use a number derived from it, such as days since it: \
             current_date - {name}",
            sql_type_name(data_type)
        ),
        DataType::Timestamp(..) => plan_err!(
            "column {name} is {}; use a number derived from it, such as days since it: \
             (extract(epoch FROM now()) - extract(epoch FROM {name})) / 86400",
            sql_type_name(data_type)
        ),
        other => plan_err!(
            "column {name} is {}; features must be numbers, booleans or text",
            sql_type_name(other)
        ),
    }
}

/// Training rows from `batches`, with `target` as the label if the kind has one. Returns the
/// data, the feature specs for the card, and how many rows were left out for a NULL target.
pub fn training_data(
    batches: &[RecordBatch],
    schema: &datafusion::arrow::datatypes::Schema,
    target: Option<&str>,
) -> Result<(TrainingData, Vec<FeatureSpec>, u64)> {
    let target_index = match target {
        None => None,
        Some(target) => match schema.column_with_name(target) {
            Some((index, _)) => Some(index),
            None => {
                let columns: Vec<&str> =
                    schema.fields().iter().map(|f| f.name().as_str()).collect();
                return plan_err!(
                    "the training query has no column {target} (the TARGET); its columns: {}",
                    columns.join(", ")
                );
            }
        },
    };
    let mut specs = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        if Some(i) == target_index {
            continue;
        }
        specs.push(FeatureSpec {
            name: field.name().clone(),
            kind: training_kind(field.name(), field.data_type())?,
            sql_type: sql_type_name(field.data_type()),
            text: None,
        });
    }
    // Labels first, to know which rows to keep.
    let mut keep = Vec::new();
    let mut labels = Vec::new();
    let mut dropped = 0;
    if let (Some(target), Some(target_index)) = (target, target_index) {
        for batch in batches {
            for label in target_labels(target, batch.column(target_index))? {
                keep.push(label.is_some());
                if let Some(y) = label {
                    labels.push(y);
                }
            }
        }
        dropped = (keep.len() - labels.len()) as u64;
        if !keep.is_empty() && labels.is_empty() {
            return plan_err!("the target {target} is NULL in every row");
        }
    } else {
        keep = vec![true; batches.iter().map(RecordBatch::num_rows).sum()];
    }
    let kept_rows = keep.iter().filter(|k| **k).count();
    let mut features = Vec::new();
    let mut feature_index = 0;
    for (i, field) in schema.fields().iter().enumerate() {
        if Some(i) == target_index {
            continue;
        }
        let column = match specs[feature_index].kind {
            FeatureKind::Numeric => {
                let mut values = Vec::with_capacity(kept_rows);
                let mut row = 0;
                for batch in batches {
                    let floats = cast(batch.column(i), &DataType::Float64)?;
                    for v in floats.as_primitive::<Float64Type>() {
                        if keep[row] {
                            values.push(v.unwrap_or(f64::NAN));
                        }
                        row += 1;
                    }
                }
                FeatureColumn::Numeric(values)
            }
            // Text features are read as text; TextFeatures::encode embeds them after.
            FeatureKind::Categorical | FeatureKind::Text => {
                let mut values = Vec::with_capacity(kept_rows);
                let mut row = 0;
                for batch in batches {
                    let text = cast(batch.column(i), &DataType::Utf8)?;
                    for v in text.as_string::<i32>() {
                        if keep[row] {
                            values.push(v.map(str::to_string));
                        }
                        row += 1;
                    }
                }
                FeatureColumn::Categorical(values)
            }
            FeatureKind::TextList => {
                let mut values = Vec::with_capacity(kept_rows);
                let mut row = 0;
                for batch in batches {
                    let lists = as_list(TRAINING, field.name(), batch.column(i), DataType::Utf8)?;
                    for list in text_lists(&lists) {
                        if keep[row] {
                            values.push(
                                list.map(|l| {
                                    l.into_iter().map(|t| t.map(str::to_string)).collect()
                                }),
                            );
                        }
                        row += 1;
                    }
                }
                FeatureColumn::TextList(values)
            }
            FeatureKind::NumberList => {
                let mut values = Vec::with_capacity(kept_rows);
                let mut row = 0;
                for batch in batches {
                    let lists =
                        as_list(TRAINING, field.name(), batch.column(i), DataType::Float64)?;
                    for list in number_lists(&lists) {
                        if keep[row] {
                            values.push(list);
                        }
                        row += 1;
                    }
                }
                FeatureColumn::NumberList(values)
            }
        };
        features.push((field.name().clone(), column));
        feature_index += 1;
    }
    Ok((
        TrainingData {
            features,
            target: labels,
        },
        specs,
        dropped,
    ))
}

/// How list-reading errors name the reader.
const TRAINING: &str = "training data";

/// 0/1 or boolean labels; NULL stays None. Any other value is an error naming it.
pub fn target_labels(target: &str, array: &ArrayRef) -> Result<Vec<Option<bool>>> {
    match array.data_type() {
        DataType::Boolean => Ok(array.as_boolean().iter().collect()),
        DataType::Null => Ok(vec![None; array.len()]),
        t if t.is_numeric() => {
            let floats = cast(array, &DataType::Float64)?;
            floats
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| match v {
                    None => Ok(None),
                    Some(0.0) => Ok(Some(false)),
                    Some(1.0) => Ok(Some(true)),
                    Some(other) => plan_err!(
                        "the target {target} must be boolean or 0/1, found the value {other}"
                    ),
                })
                .collect()
        }
        other => plan_err!(
            "the target {target} must be boolean or 0/1, got {}",
            sql_type_name(other)
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{BooleanArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn null_targets_are_dropped_with_their_feature_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("spend", DataType::Int64, true),
            Field::new("plan", DataType::Utf8, true),
            Field::new("churned", DataType::Boolean, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), None])),
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            ],
        )
        .unwrap();
        let (data, specs, dropped) = training_data(&[batch], &schema, Some("churned")).unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(data.target, vec![true, false]);
        assert_eq!(specs.len(), 2);
        let FeatureColumn::Numeric(spend) = &data.features[0].1 else {
            panic!()
        };
        assert_eq!(spend, &vec![1.0, 3.0]);
        let FeatureColumn::Categorical(plan) = &data.features[1].1 else {
            panic!()
        };
        assert_eq!(plan, &vec![Some("a".to_string()), None]);
    }

    #[test]
    fn bad_targets_and_feature_types_are_named() {
        let labels: ArrayRef = Arc::new(Int64Array::from(vec![0, 1, 2]));
        let err = target_labels("churned", &labels).unwrap_err().to_string();
        assert!(
            err.contains("the target churned must be boolean or 0/1, found the value 2"),
            "{err}"
        );
        let err = training_kind("signup", &DataType::Date32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("column signup is date"), "{err}");
        let schema = Schema::new(vec![Field::new("x", DataType::Int64, true)]);
        let err = training_data(&[], &schema, Some("y"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no column y"), "{err}");
    }
}
