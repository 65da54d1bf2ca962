//! Functions of KIND sequence models beyond `churn_score`: `embed(model, events [, ages])`, the
//! next-event form of `recommend(model, events [, ages], k)`, and `cosine_similarity(a, b)`
//! to find similar customers among stored embeddings.
//!
//! Each call scores one Arrow batch of list arrays: rows are grouped by length and each group
//! is one forward pass (see tenure_models::sequence).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, ListBuilder, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use tenure_models::sequence::SequenceModel;
use tenure_models::{Kind, Model};

use crate::docs::DOC_SECTION;
use crate::features::{
    FeatureBatch, check_arguments, float4_list, float4_lists, is_number_list_input, sql_type_name,
};
use crate::model_arg::ModelArg;
use crate::registry::{LoadedModel, ModelRegistry};

/// The most tokens one recommend call returns.
const MAX_K: i64 = 1000;

/// The sequence model inside `model`, whose kind was checked.
fn as_sequence(model: &LoadedModel) -> &SequenceModel {
    match &model.model {
        Model::Sequence(m) => m,
        _ => unreachable!("the model argument admits only sequence models"),
    }
}

fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

#[derive(Debug)]
pub struct Embed {
    registry: Arc<dyn ModelRegistry>,
    model: ModelArg,
    signature: Signature,
    documentation: Documentation,
}

impl PartialEq for Embed {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry)
    }
}

impl Eq for Embed {}

impl Hash for Embed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "embed".hash(state);
    }
}

pub fn embed(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let documentation = Documentation::builder(
        DOC_SECTION,
        "A fixed-length vector (float4[] of d_model values) describing an event history, from a \
         sequence model: the mean final state of the events for task embedding, the summary \
         state otherwise. NULL for a NULL event list.",
        "embed(model, events [, ages])",
    )
    .with_argument("model", "text literal: a sequence model, or name@version")
    .with_argument("events", "list of event tokens, oldest first")
    .with_argument("ages", "list of each event's age in days, if the model was trained with one")
    .with_sql_example(
        "CREATE TABLE customer_embeddings AS \
         SELECT customer_id, embed('behaviour', events, ages) AS embedding FROM customer_event_sequences",
    )
    .build();
    ScalarUDF::new_from_impl(Embed {
        registry,
        model: ModelArg::new("embed", &[Kind::Sequence]),
        signature: Signature::variadic_any(Volatility::Stable),
        documentation,
    })
}

impl ScalarUDFImpl for Embed {
    fn name(&self) -> &str {
        "embed"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(float4_list())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if args.arg_fields.is_empty() {
            return plan_err!("embed: expects a model name and an event list");
        }
        if let Some(model) = self
            .model
            .resolve_literal(self.registry.as_ref(), args.scalar_arguments[0])?
        {
            let types: Vec<DataType> = args.arg_fields[1..]
                .iter()
                .map(|f| f.data_type().clone())
                .collect();
            check_arguments("embed", &model.card, &types)?;
        }
        Ok(Arc::new(Field::new("embed", float4_list(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let Some(model) = self
            .model
            .resolve_value(self.registry.as_ref(), &args.args[0])?
        else {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from(float4_list())?));
        };
        let types: Vec<DataType> = args.args[1..].iter().map(|a| a.data_type()).collect();
        check_arguments("embed", &model.card, &types)?;
        let arrays: Vec<ArrayRef> = args.args[1..]
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let batch = FeatureBatch::new("embed", &model.card, self.registry.as_ref(), &arrays)?;
        let vectors = batch
            .with_values(|values| as_sequence(&model).embed(values))
            .or_else(|e| exec_err!("embed: {e}"))?;
        Ok(ColumnarValue::Array(float4_lists(vectors)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.documentation)
    }
}

/// `recommend(model, events [, ages], k)` for a next_item sequence model: the return field,
/// after checking the arguments against the card.
pub(crate) fn recommend_field(model: &LoadedModel, arg_types: &[DataType]) -> Result<FieldRef> {
    let Some((k_type, features)) = arg_types.split_last() else {
        return plan_err!("recommend: expects a model, an event list and k");
    };
    check_arguments("recommend", &model.card, features)?;
    if !(k_type.is_integer() || k_type.is_null()) {
        return plan_err!(
            "recommend: the last argument (k) must be an integer, got {}",
            sql_type_name(k_type)
        );
    }
    Ok(Arc::new(Field::new("recommend", text_list(), true)))
}

/// Executes `recommend(model, events [, ages], k)` for a next_item sequence model.
pub(crate) fn recommend_next(
    model: &LoadedModel,
    registry: &dyn ModelRegistry,
    args: &[ColumnarValue],
    rows: usize,
) -> Result<ColumnarValue> {
    let Some((k_arg, features)) = args.split_last() else {
        return exec_err!("recommend: expects a model, an event list and k");
    };
    let types: Vec<DataType> = features.iter().map(|a| a.data_type()).collect();
    check_arguments("recommend", &model.card, &types)?;
    let ks = cast(&k_arg.to_array(rows)?, &DataType::Int64)?;
    let ks = ks.as_primitive::<Int64Type>();
    let mut largest = 0;
    for k in ks.iter().flatten() {
        if !(0..=MAX_K).contains(&k) {
            return exec_err!("recommend: k must be from 0 to {MAX_K}, got {k}");
        }
        largest = largest.max(k as usize);
    }
    let arrays: Vec<ArrayRef> = features
        .iter()
        .map(|a| a.to_array(rows))
        .collect::<Result<_>>()?;
    let batch = FeatureBatch::new("recommend", &model.card, registry, &arrays)?;
    let sequence = as_sequence(model);
    let ranked = batch
        .with_values(|values| {
            sequence.next_tokens(values, largest).map(|rows| {
                let mut builder = ListBuilder::new(StringBuilder::new())
                    .with_field(Arc::new(Field::new("item", DataType::Utf8, true)));
                for (row, tokens) in rows.into_iter().enumerate() {
                    match (tokens, ks.is_valid(row)) {
                        (Some(tokens), true) => {
                            let k = ks.value(row) as usize;
                            for (token, _) in tokens.into_iter().take(k) {
                                builder.values().append_value(token);
                            }
                            builder.append(true);
                        }
                        _ => builder.append(false),
                    }
                }
                builder.finish()
            })
        })
        .or_else(|e| exec_err!("recommend: {e}"))?;
    Ok(ColumnarValue::Array(Arc::new(ranked)))
}

#[derive(Debug)]
pub struct CosineSimilarity {
    signature: Signature,
    documentation: Documentation,
}

impl PartialEq for CosineSimilarity {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for CosineSimilarity {}

impl Hash for CosineSimilarity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        "cosine_similarity".hash(state);
    }
}

pub fn cosine_similarity() -> ScalarUDF {
    let documentation = Documentation::builder(
        DOC_SECTION,
        "The cosine of the angle between two equally long lists of numbers, from -1 to 1: \
         with embed() vectors, how alike two customers' histories are. NULL when either list \
         is NULL, holds a NULL, or is all zeros; an error when the lengths differ.",
        "cosine_similarity(a, b)",
    )
    .with_argument("a", "a list of numbers, such as embed()'s float4[]")
    .with_argument("b", "a list of numbers of the same length")
    .with_sql_example(
        "SELECT e.customer_id FROM customer_embeddings e, \
         (SELECT embedding FROM customer_embeddings WHERE customer_id = 42) me \
         ORDER BY cosine_similarity(e.embedding, me.embedding) DESC LIMIT 10",
    )
    .build();
    ScalarUDF::new_from_impl(CosineSimilarity {
        signature: Signature::any(2, Volatility::Immutable),
        documentation,
    })
}

impl ScalarUDFImpl for CosineSimilarity {
    fn name(&self) -> &str {
        "cosine_similarity"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        for (i, t) in arg_types.iter().enumerate() {
            if !is_number_list_input(t) {
                return plan_err!(
                    "cosine_similarity: argument {} must be a list of numbers (such as embed()'s \
                     float4[]), got {}",
                    i + 1,
                    sql_type_name(t)
                );
            }
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let float8_list = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
        let lists: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| cast(&a.to_array(rows)?, &float8_list).map_err(Into::into))
            .collect::<Result<_>>()?;
        let (a, b) = (lists[0].as_list::<i32>(), lists[1].as_list::<i32>());
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            if a.is_null(row) || b.is_null(row) {
                out.push(None);
                continue;
            }
            let (x, y) = (a.value(row), b.value(row));
            if x.len() != y.len() {
                return exec_err!(
                    "cosine_similarity: the vectors have {} and {} elements; they must be equally long",
                    x.len(),
                    y.len()
                );
            }
            if x.null_count() > 0 || y.null_count() > 0 {
                out.push(None);
                continue;
            }
            let (x, y) = (
                x.as_primitive::<Float64Type>(),
                y.as_primitive::<Float64Type>(),
            );
            let (mut dot, mut xx, mut yy) = (0.0, 0.0, 0.0);
            for (u, v) in x.values().iter().zip(y.values().iter()) {
                dot += u * v;
                xx += u * u;
                yy += v * v;
            }
            // The zero vector has no direction.
            out.push((xx > 0.0 && yy > 0.0).then(|| dot / (xx.sqrt() * yy.sqrt())));
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.documentation)
    }
}
