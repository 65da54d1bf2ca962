//! From function arguments to model input: type checks at planning against the model card,
//! and at execution Arrow arrays to [`FeatureValues`] without per-row model calls.
//!
//! Numeric features accept any number or boolean; NULL becomes NaN, which the model's
//! preprocessing treats as missing. Categorical features accept anything castable to text;
//! NULL stays missing.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Builder, Float64Array, ListArray, ListBuilder, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::{Result, exec_err, plan_err};
use tenure_models::{FeatureKind, FeatureSpec, FeatureValues, ModelCard};

use crate::registry::ModelRegistry;
use crate::text_features::project_argument;

/// PostgreSQL's name for an Arrow type, for error messages.
pub fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Null => "unknown".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "int2".into(),
        DataType::Int32 | DataType::UInt16 => "int4".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "int8".into(),
        DataType::Float16 | DataType::Float32 => "float4".into(),
        DataType::Float64 => "float8".into(),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "numeric".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Dictionary(_, value) => sql_type_name(value),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            format!("{}[]", sql_type_name(item.data_type()))
        }
        other => other.to_string().to_lowercase(),
    }
}

/// Whether a column of this type can be a numeric feature.
pub fn is_numeric_input(data_type: &DataType) -> bool {
    data_type.is_numeric() || matches!(data_type, DataType::Boolean | DataType::Null)
}

/// Whether a column of this type can be a categorical feature (anything castable to text).
pub fn is_categorical_input(data_type: &DataType) -> bool {
    !data_type.is_nested() && datafusion::arrow::compute::can_cast_types(data_type, &DataType::Utf8)
}

/// The element type of a list type (List, LargeList, FixedSizeList), or None.
pub fn list_item(data_type: &DataType) -> Option<&DataType> {
    match data_type {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            Some(item.data_type())
        }
        _ => None,
    }
}

/// Whether a column of this type can be a list of tokens (a list of anything castable to
/// text).
pub fn is_text_list_input(data_type: &DataType) -> bool {
    data_type.is_null() || list_item(data_type).is_some_and(is_categorical_input)
}

/// Whether a column of this type can be a list of numbers.
pub fn is_number_list_input(data_type: &DataType) -> bool {
    data_type.is_null() || list_item(data_type).is_some_and(is_numeric_input)
}

/// The training feature kind for a column type, or None if it cannot be a feature.
pub fn feature_kind_for(data_type: &DataType) -> Option<FeatureKind> {
    if is_numeric_input(data_type) {
        Some(FeatureKind::Numeric)
    } else if is_categorical_input(data_type) {
        Some(FeatureKind::Categorical)
    } else if list_item(data_type).is_some_and(is_numeric_input) {
        Some(FeatureKind::NumberList)
    } else if list_item(data_type).is_some_and(is_categorical_input) {
        Some(FeatureKind::TextList)
    } else {
        None
    }
}

/// Checks `feature_types` (the arguments after the model) against `card`, with errors that
/// name `function`, the argument position (1-based, counting the model) and the feature.
pub fn check_arguments(function: &str, card: &ModelCard, feature_types: &[DataType]) -> Result<()> {
    if feature_types.len() != card.features.len() {
        return plan_err!(
            "{function}: model '{}' expects {} feature{}, got {} (expected: {})",
            card.name,
            card.features.len(),
            if card.features.len() == 1 { "" } else { "s" },
            feature_types.len(),
            card.feature_list()
        );
    }
    for (i, (feature, data_type)) in card.features.iter().zip(feature_types).enumerate() {
        let ok = match feature.kind {
            FeatureKind::Numeric => is_numeric_input(data_type),
            FeatureKind::Categorical => is_categorical_input(data_type),
            FeatureKind::TextList => is_text_list_input(data_type),
            FeatureKind::NumberList => is_number_list_input(data_type),
            // Text to embed must be text: a number's digits would embed without complaint.
            FeatureKind::Text => match data_type {
                DataType::Dictionary(_, value) => is_text(value),
                other => is_text(other),
            },
        };
        if !ok {
            let expected = match feature.kind {
                FeatureKind::Numeric => "numeric",
                FeatureKind::Categorical => "text (or castable to text)",
                FeatureKind::TextList => {
                    "a list of text, e.g. array_agg(event_type ORDER BY event_time)"
                }
                FeatureKind::NumberList => "a list of numbers",
                FeatureKind::Text => "text",
            };
            return plan_err!(
                "{function}: argument {} ({}) must be {expected}, got {}",
                i + 2,
                feature.name,
                sql_type_name(data_type)
            );
        }
    }
    Ok(())
}

/// One argument array prepared for the model.
pub enum FeatureArray {
    /// Numbers without NULLs: read in place from the Arrow buffer.
    Floats(Float64Array),
    /// Numbers with NULLs, copied with NaN in their place.
    FloatsWithNan(Vec<f64>),
    Text(StringArray),
    /// Lists with their elements cast to text.
    TextList(ListArray),
    /// Lists of numbers, copied with NaN for NULL elements; None for a NULL list.
    NumberList(Vec<Option<Vec<f64>>>),
    /// A text feature's components: one column per component, NaN for a missing text.
    Projected(Vec<Vec<f64>>),
}

impl FeatureArray {
    /// Converts `array` for `feature`; a text feature's encoder is found in `registry`.
    /// `function` is for errors.
    pub fn new(
        function: &str,
        feature: &FeatureSpec,
        registry: &dyn ModelRegistry,
        array: &ArrayRef,
    ) -> Result<Self> {
        let name = &feature.name;
        match feature.kind {
            FeatureKind::Numeric => {
                let floats = cast(array, &DataType::Float64).or_else(|e| {
                    exec_err!("{function}: feature {name} cannot be read as a number: {e}")
                })?;
                let floats = floats.as_primitive::<Float64Type>().clone();
                if floats.null_count() == 0 {
                    Ok(FeatureArray::Floats(floats))
                } else {
                    Ok(FeatureArray::FloatsWithNan(
                        floats.iter().map(|v| v.unwrap_or(f64::NAN)).collect(),
                    ))
                }
            }
            FeatureKind::Categorical => {
                let text = cast(array, &DataType::Utf8).or_else(|e| {
                    exec_err!("{function}: feature {name} cannot be read as text: {e}")
                })?;
                Ok(FeatureArray::Text(text.as_string::<i32>().clone()))
            }
            FeatureKind::TextList => {
                let lists = as_list(function, name, array, DataType::Utf8)?;
                Ok(FeatureArray::TextList(lists))
            }
            FeatureKind::NumberList => {
                let lists = as_list(function, name, array, DataType::Float64)?;
                Ok(FeatureArray::NumberList(number_lists(&lists)))
            }
            FeatureKind::Text => {
                let Some(projection) = &feature.text else {
                    return exec_err!("{function}: text feature {name} has no projection");
                };
                Ok(FeatureArray::Projected(project_argument(
                    function, name, projection, registry, array,
                )?))
            }
        }
    }
}

/// `array` (a list of any list type, or NULL) as a `List` of `item`.
pub fn as_list(function: &str, name: &str, array: &ArrayRef, item: DataType) -> Result<ListArray> {
    let target = DataType::List(Arc::new(Field::new("item", item, true)));
    let cast_list = cast(array, &target)
        .or_else(|e| exec_err!("{function}: feature {name} cannot be read as {target}: {e}"))?;
    Ok(cast_list.as_list::<i32>().clone())
}

/// The rows of a `List<Utf8>` as token lists, borrowed: None for a NULL list, None inside for
/// a NULL element.
pub fn text_lists(lists: &ListArray) -> Vec<Option<Vec<Option<&str>>>> {
    let tokens = lists.values().as_string::<i32>();
    let offsets = lists.value_offsets();
    (0..lists.len())
        .map(|row| {
            lists.is_valid(row).then(|| {
                (offsets[row] as usize..offsets[row + 1] as usize)
                    .map(|i| tokens.is_valid(i).then(|| tokens.value(i)))
                    .collect()
            })
        })
        .collect()
}

/// The rows of a `List<Float64>` as number lists: None for a NULL list, NaN for a NULL element.
pub fn number_lists(lists: &ListArray) -> Vec<Option<Vec<f64>>> {
    let numbers = lists.values().as_primitive::<Float64Type>();
    let offsets = lists.value_offsets();
    (0..lists.len())
        .map(|row| {
            lists.is_valid(row).then(|| {
                (offsets[row] as usize..offsets[row + 1] as usize)
                    .map(|i| {
                        if numbers.is_valid(i) {
                            numbers.value(i)
                        } else {
                            f64::NAN
                        }
                    })
                    .collect()
            })
        })
        .collect()
}

/// Every feature argument of one batch, prepared for the model.
pub struct FeatureBatch {
    arrays: Vec<FeatureArray>,
}

impl FeatureBatch {
    /// Prepares the feature arguments (`arrays`, in the card's feature order); text
    /// features are embedded by their encoders, found in `registry`.
    pub fn new(
        function: &str,
        card: &ModelCard,
        registry: &dyn ModelRegistry,
        arrays: &[ArrayRef],
    ) -> Result<Self> {
        let arrays = card
            .features
            .iter()
            .zip(arrays)
            .map(|(feature, array)| FeatureArray::new(function, feature, registry, array))
            .collect::<Result<Vec<_>>>()?;
        Ok(FeatureBatch { arrays })
    }

    /// Calls `f` with the model's view of the batch: a text feature gives one numeric column
    /// per component.
    pub fn with_values<T>(&self, f: impl FnOnce(&[FeatureValues<'_>]) -> T) -> T {
        // Categorical labels are borrowed from the string arrays; one vector per feature.
        let labels: Vec<Vec<Option<&str>>> = self
            .arrays
            .iter()
            .map(|a| match a {
                FeatureArray::Text(text) => text.iter().collect(),
                _ => Vec::new(),
            })
            .collect();
        // Token lists likewise borrow from the list's string values.
        let token_lists: Vec<Vec<Option<Vec<Option<&str>>>>> = self
            .arrays
            .iter()
            .map(|a| match a {
                FeatureArray::TextList(lists) => text_lists(lists),
                _ => Vec::new(),
            })
            .collect();
        let mut views: Vec<FeatureValues<'_>> = Vec::with_capacity(self.arrays.len());
        for (a, (labels, token_lists)) in self.arrays.iter().zip(labels.iter().zip(&token_lists)) {
            match a {
                FeatureArray::Floats(floats) => views.push(FeatureValues::Numeric(floats.values())),
                FeatureArray::FloatsWithNan(values) => views.push(FeatureValues::Numeric(values)),
                FeatureArray::Text(_) => views.push(FeatureValues::Categorical(labels)),
                FeatureArray::TextList(_) => views.push(FeatureValues::TextList(token_lists)),
                FeatureArray::NumberList(lists) => views.push(FeatureValues::NumberList(lists)),
                FeatureArray::Projected(columns) => {
                    views.extend(columns.iter().map(|c| FeatureValues::Numeric(c)));
                }
            }
        }
        f(&views)
    }
}

/// The model's input columns of `feature`: a text feature gives one per component
/// (`review__pc1`, ...), any other feature itself.
pub fn model_columns(feature: &FeatureSpec) -> Vec<String> {
    match &feature.text {
        Some(projection) => projection.column_names(&feature.name),
        None => vec![feature.name.clone()],
    }
}

/// Whether a function argument of `data_type` reads as text (NULL included).
pub fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

/// The SQL type float4[] of embeddings.
pub fn float4_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
}

/// A float4[] column of `vectors`, NULL where a vector is None.
pub fn float4_lists(vectors: Vec<Option<Vec<f32>>>) -> ArrayRef {
    let mut builder = ListBuilder::new(Float32Builder::new()).with_field(Arc::new(Field::new(
        "item",
        DataType::Float32,
        true,
    )));
    for vector in vectors {
        match vector {
            Some(v) => {
                builder.values().append_slice(&v);
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    Arc::new(builder.finish())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int32Array;

    use super::*;

    /// Numeric features need no model: a registry that has none.
    #[derive(Debug)]
    struct NoModels;

    impl ModelRegistry for NoModels {
        fn model(
            &self,
            reference: &str,
        ) -> std::result::Result<Arc<crate::registry::LoadedModel>, crate::registry::ModelError>
        {
            Err(crate::registry::ModelError::NotFound(reference.to_string()))
        }

        fn cards(&self) -> Vec<ModelCard> {
            Vec::new()
        }
    }

    fn numeric(name: &str) -> FeatureSpec {
        FeatureSpec {
            name: name.to_string(),
            kind: FeatureKind::Numeric,
            sql_type: "float8".to_string(),
            text: None,
        }
    }

    #[test]
    fn numeric_nulls_become_nan_and_sliced_arrays_keep_their_offset() {
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), None, Some(3), Some(4)]));
        let sliced = ints.slice(1, 3);
        let a = FeatureArray::new("f", &numeric("x"), &NoModels, &sliced).unwrap();
        let FeatureArray::FloatsWithNan(values) = a else {
            panic!("nulls need a copy")
        };
        assert!(values[0].is_nan());
        assert_eq!(&values[1..], &[3.0, 4.0]);

        let floats: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0]));
        let sliced = floats.slice(1, 2);
        let a = FeatureArray::new("f", &numeric("x"), &NoModels, &sliced).unwrap();
        let FeatureArray::Floats(kept) = a else {
            panic!("no nulls: no copy")
        };
        assert_eq!(kept.values().as_ref(), &[2.0, 3.0]);
    }
}
