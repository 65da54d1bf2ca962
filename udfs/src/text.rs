//! Functions of KIND text_encoder models: `embed_text(model, text)`,
//! `text_similarity(model, a, b)` and the table function
//! `semantic_search(model, query_text, 'SELECT id, text ...', k)`.
//!
//! Each call embeds one Arrow batch of texts at once: the encoder tokenises the batch,
//! orders it by length and runs it in buckets (see tenure_models::text_encoder). Vectors are
//! unit length, so a similarity is a dot product.

use std::collections::BinaryHeap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;
use tenure_models::text_encoder::TextEncoder;
use tenure_models::{Kind, Model};

use crate::docs::DOC_SECTION;
use crate::features::{float4_list, float4_lists, is_text, sql_type_name};
use crate::model_arg::ModelArg;
use crate::registry::{LoadedModel, ModelRegistry};
use crate::table_args::{call_schema, plan_read_only, session_state, stream_read_only};

/// The most rows one semantic_search returns.
const MAX_K: i64 = 10_000;

/// The encoder inside `model`, whose kind was checked.
fn as_encoder(model: &LoadedModel) -> &TextEncoder {
    match &model.model {
        Model::TextEncoder(m) => m,
        _ => unreachable!("the model argument admits only text encoders"),
    }
}

/// Planning checks shared by the scalar functions: the argument count, and text after the
/// model.
fn check_text_arguments(function: &str, usage: &str, arg_types: &[DataType]) -> Result<()> {
    let expected = usage.matches(',').count() + 1;
    if arg_types.len() != expected {
        return plan_err!(
            "{function} expects {expected} arguments ({usage}), got {}",
            arg_types.len()
        );
    }
    for (i, data_type) in arg_types.iter().enumerate().skip(1) {
        if !is_text(data_type) {
            return plan_err!(
                "{function}: argument {} must be text, got {}",
                i + 1,
                sql_type_name(data_type)
            );
        }
    }
    Ok(())
}

/// A column of text as `&str` per row (None for NULL), whatever Arrow string type it is.
fn text_values(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    let strings = cast(array, &DataType::Utf8)?;
    Ok(strings
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}

/// The texts of a text argument, and whether it is one constant for every row.
fn side_texts(value: &ColumnarValue) -> Result<(Vec<Option<String>>, bool)> {
    match value {
        ColumnarValue::Scalar(text) => Ok((text_values(&text.to_array_of_size(1)?)?, true)),
        ColumnarValue::Array(array) => Ok((text_values(array)?, false)),
    }
}

/// Embeds `texts` with the encoder, as an execution error naming `function` on failure.
fn embed(
    function: &str,
    model: &LoadedModel,
    texts: &[Option<&str>],
) -> Result<Vec<Option<Vec<f32>>>> {
    as_encoder(model)
        .embed(texts)
        .map_err(|e| DataFusionError::Execution(format!("{function}: {e}")))
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

macro_rules! registry_udf_eq {
    ($type:ident, $name:literal) => {
        impl PartialEq for $type {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.registry, &other.registry)
            }
        }
        impl Eq for $type {}
        impl Hash for $type {
            fn hash<H: Hasher>(&self, state: &mut H) {
                $name.hash(state);
            }
        }
    };
}

#[derive(Debug)]
pub struct EmbedText {
    registry: Arc<dyn ModelRegistry>,
    model: ModelArg,
    signature: Signature,
    documentation: Documentation,
}

registry_udf_eq!(EmbedText, "embed_text");

pub fn embed_text(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let documentation = Documentation::builder(
        DOC_SECTION,
        "The text's embedding from a text_encoder model: float4[] of the model's dimension, \
         pooled as the model's configuration says and scaled to unit length. NULL for NULL; a \
         text longer than the model's max_tokens is truncated.",
        "embed_text(model, text)",
    )
    .with_argument(
        "model",
        "text literal: a text_encoder model, or name@version",
    )
    .with_argument("text", "the text to embed")
    .with_sql_example(
        "SELECT review_id, embed_text('reviews_encoder', body) AS embedding FROM reviews",
    )
    .build();
    ScalarUDF::new_from_impl(EmbedText {
        registry,
        model: ModelArg::new("embed_text", &[Kind::TextEncoder]),
        signature: Signature::variadic_any(Volatility::Stable),
        documentation,
    })
}

impl ScalarUDFImpl for EmbedText {
    fn name(&self) -> &str {
        "embed_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(float4_list())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        check_text_arguments("embed_text", "model, text", &types)?;
        self.model
            .resolve_literal(self.registry.as_ref(), args.scalar_arguments[0])?;
        Ok(Arc::new(Field::new("embed_text", float4_list(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let Some(model) = self
            .model
            .resolve_value(self.registry.as_ref(), &args.args[0])?
        else {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from(float4_list())?));
        };
        let texts = text_values(&args.args[1].to_array(rows)?)?;
        let texts: Vec<Option<&str>> = texts.iter().map(Option::as_deref).collect();
        let vectors = embed("embed_text", &model, &texts)?;
        Ok(ColumnarValue::Array(float4_lists(vectors)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.documentation)
    }
}

#[derive(Debug)]
pub struct TextSimilarity {
    registry: Arc<dyn ModelRegistry>,
    model: ModelArg,
    signature: Signature,
    documentation: Documentation,
}

registry_udf_eq!(TextSimilarity, "text_similarity");

pub fn text_similarity(registry: Arc<dyn ModelRegistry>) -> ScalarUDF {
    let documentation = Documentation::builder(
        DOC_SECTION,
        "The cosine similarity (-1 to 1) of two texts' embeddings from a text_encoder model. \
         NULL when either text is NULL.",
        "text_similarity(model, a, b)",
    )
    .with_argument(
        "model",
        "text literal: a text_encoder model, or name@version",
    )
    .with_argument("a", "a text")
    .with_argument("b", "another text")
    .with_sql_example(
        "SELECT review_id FROM reviews \
         WHERE text_similarity('reviews_encoder', body, 'the parcel arrived late') > 0.5",
    )
    .build();
    ScalarUDF::new_from_impl(TextSimilarity {
        registry,
        model: ModelArg::new("text_similarity", &[Kind::TextEncoder]),
        signature: Signature::variadic_any(Volatility::Stable),
        documentation,
    })
}

impl ScalarUDFImpl for TextSimilarity {
    fn name(&self) -> &str {
        "text_similarity"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        check_text_arguments("text_similarity", "model, a, b", &types)?;
        self.model
            .resolve_literal(self.registry.as_ref(), args.scalar_arguments[0])?;
        Ok(Arc::new(Field::new(
            "text_similarity",
            DataType::Float64,
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let Some(model) = self
            .model
            .resolve_value(self.registry.as_ref(), &args.args[0])?
        else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Float64(None)));
        };
        // One call for both sides, so that their texts share the length buckets; a constant
        // side (the usual `text_similarity(m, body, 'a phrase')`) is embedded once.
        let (a, a_constant) = side_texts(&args.args[1])?;
        let (b, b_constant) = side_texts(&args.args[2])?;
        let texts: Vec<Option<&str>> = a.iter().chain(&b).map(Option::as_deref).collect();
        let vectors = embed("text_similarity", &model, &texts)?;
        let (left, right) = vectors.split_at(a.len());
        let similarities: Float64Array = (0..rows)
            .map(|row| {
                let x = left[if a_constant { 0 } else { row }].as_deref()?;
                let y = right[if b_constant { 0 } else { row }].as_deref()?;
                Some(dot(x, y))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(similarities)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.documentation)
    }
}

const SEARCH: &str = "semantic_search";

/// `semantic_search(model, query_text, 'SELECT id, text ...', k)`: the k rows of the query
/// whose text is most similar to `query_text`, best first, as (id, text, score).
#[derive(Debug)]
pub struct SemanticSearch {
    pub registry: Arc<dyn ModelRegistry>,
}

impl TableFunctionImpl for SemanticSearch {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let usage = "model, query_text, 'SELECT id, text ...', k";
        if exprs.len() != 4 {
            return plan_err!(
                "{SEARCH} expects 4 arguments ({usage}), got {}",
                exprs.len()
            );
        }
        let literal = |i: usize, name: &str| match &exprs[i] {
            Expr::Literal(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)),
                _,
            ) => Ok(s.clone()),
            _ => plan_err!(
                "{SEARCH}: argument {} ({name}) must be a text literal",
                i + 1
            ),
        };
        let reference = literal(0, "model")?;
        let query_text = literal(1, "query_text")?;
        let sql = literal(2, "the rows to search, as a query")?;
        let k = match &exprs[3] {
            Expr::Literal(value, _) => match value.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(k))) if (1..=MAX_K).contains(&k) => k as usize,
                _ => {
                    return plan_err!(
                        "{SEARCH}: argument 4 (k) must be an integer from 1 to {MAX_K}"
                    );
                }
            },
            _ => return plan_err!("{SEARCH}: argument 4 (k) must be an integer literal"),
        };
        crate::access::check_model(args.session(), &reference)?;
        let model = ModelArg::new(SEARCH, &[Kind::TextEncoder])
            .resolve_reference(self.registry.as_ref(), &reference)?;
        let state = session_state(SEARCH, args.session())?;
        let plan = plan_read_only(SEARCH, "the rows to search", state, &sql)?;
        let fields = plan.schema().fields();
        if fields.len() < 2 || !is_text(fields[1].data_type()) {
            return plan_err!(
                "{SEARCH}: the query must return an id and a text column, in that order; it \
                 returns {}",
                fields
                    .iter()
                    .map(|f| format!("{} {}", f.name(), sql_type_name(f.data_type())))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let schema = Schema::new(vec![
            Field::new(fields[0].name(), fields[0].data_type().clone(), true),
            Field::new(fields[1].name(), DataType::Utf8, false),
            Field::new("score", DataType::Float64, false),
        ]);
        let schema = call_schema(
            schema,
            format!("{SEARCH}({reference:?}, {query_text:?}, {sql:?}, {k})"),
        );
        Ok(Arc::new(Search {
            model,
            query_text,
            sql,
            k,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Search {
    model: Arc<LoadedModel>,
    query_text: String,
    sql: String,
    k: usize,
    /// The result's schema, marked with this call (`table_args::call_schema`).
    schema: SchemaRef,
}

/// A candidate row in the top-k heap: ordered so that the heap's top is the worst kept
/// (lowest score, then latest row), which the next better row replaces.
struct Candidate {
    score: f64,
    row: u64,
    id: ScalarValue,
    text: String,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.row.cmp(&other.row))
    }
}

impl Search {
    /// The best k rows, best first.
    async fn top(&self, state: &datafusion::execution::SessionState) -> Result<Vec<Candidate>> {
        let query = embed(SEARCH, &self.model, &[Some(&self.query_text)])?
            .pop()
            .flatten()
            .expect("a text has a vector");
        let (_, mut stream) = stream_read_only(state, &self.sql).await?;
        let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(self.k + 1);
        let mut row = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let texts = text_values(batch.column(1))?;
            let refs: Vec<Option<&str>> = texts.iter().map(Option::as_deref).collect();
            let vectors = embed(SEARCH, &self.model, &refs)?;
            for (i, (text, vector)) in texts.into_iter().zip(vectors).enumerate() {
                row += 1;
                let (Some(text), Some(vector)) = (text, vector) else {
                    continue;
                };
                let score = dot(&query, &vector);
                let worst_kept = heap.peek().map(|c| c.score);
                if heap.len() < self.k || worst_kept.is_some_and(|worst| score > worst) {
                    let id = ScalarValue::try_from_array(batch.column(0), i)?;
                    heap.push(Candidate {
                        score,
                        row,
                        id,
                        text,
                    });
                    if heap.len() > self.k {
                        heap.pop();
                    }
                }
            }
        }
        // Ascending by the heap's order is best first.
        Ok(heap.into_sorted_vec())
    }
}

#[async_trait]
impl TableProvider for Search {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let top = self.top(session_state(SEARCH, state)?).await?;
        let id_type = self.schema.field(0).data_type().clone();
        let ids = if top.is_empty() {
            datafusion::arrow::array::new_empty_array(&id_type)
        } else {
            ScalarValue::iter_to_array(top.iter().map(|c| c.id.clone()))?
        };
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                ids,
                Arc::new(StringArray::from_iter_values(
                    top.iter().map(|c| c.text.as_str()),
                )),
                Arc::new(Float64Array::from_iter_values(top.iter().map(|c| c.score))),
            ],
        )?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
