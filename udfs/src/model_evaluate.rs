//! `model_evaluate(model, query)`: runs `query` (which must return the model's features, by
//! name, and its target; for KIND uplift also its treatment), scores it, and returns one row
//! per metric: the binary metrics of a classifier, the Qini coefficient, AUUC and uplift at
//! the top 10/20/30 % of an uplift model.
//!
//! The query runs when the table function is scanned, inside the caller's session; it may
//! only read (`table_args::collect_read_only`), so evaluating cannot change anything.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use tenure_models::metrics::{BinaryMetrics, UpliftMetrics};
use tenure_models::{Model, ModelSpec};

use crate::features::{FeatureBatch, check_arguments};
use crate::model_arg::resolve;
use crate::registry::{LoadedModel, ModelRegistry};
use crate::table_args::{call_schema, collect_read_only, session_state, text_arguments};
use crate::training::target_labels;

const FUNCTION: &str = "model_evaluate";

#[derive(Debug)]
pub struct ModelEvaluate {
    pub registry: Arc<dyn ModelRegistry>,
}

impl TableFunctionImpl for ModelEvaluate {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [reference, query] = text_arguments::<2>(FUNCTION, &["model", "query"], args.exprs())?;
        crate::access::check_model(args.session(), &reference)?;
        let model = resolve(FUNCTION, self.registry.as_ref(), &reference)?;
        if model.card.target.is_none() {
            return plan_err!(
                "{FUNCTION}: model '{}' has no target to evaluate against",
                model.card.name
            );
        }
        let schema = call_schema(
            result_schema(),
            format!("{FUNCTION}({reference:?}, {query:?})"),
        );
        Ok(Arc::new(Evaluation {
            model,
            registry: self.registry.clone(),
            query,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Evaluation {
    model: Arc<LoadedModel>,
    /// Where a text feature's encoder is found.
    registry: Arc<dyn ModelRegistry>,
    query: String,
    /// The result's schema, marked with this call (`table_args::call_schema`).
    schema: SchemaRef,
}

fn result_schema() -> Schema {
    Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
    ])
}

impl Evaluation {
    /// (metric, value) in display order: the binary metrics for a classifier, the uplift
    /// metrics for KIND uplift.
    async fn metrics(&self, state: &SessionState) -> Result<Vec<(&'static str, f64)>> {
        let (schema, batches) = collect_read_only(state, &self.query).await?;

        let card = &self.model.card;
        let target = card.target.as_deref().unwrap_or_default();
        let treatment = match &card.spec {
            ModelSpec::Uplift(spec) => Some(spec.treatment.as_str()),
            _ => None,
        };
        let mut wanted: Vec<&str> = card.features.iter().map(|f| f.name.as_str()).collect();
        wanted.push(target);
        wanted.extend(treatment);
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|name| schema.column_with_name(name).is_none())
            .collect();
        if !missing.is_empty() {
            return plan_err!(
                "{FUNCTION}: the query must return the columns {} (the features and the {} of \
                 '{}'); missing: {}",
                wanted.join(", "),
                if treatment.is_some() {
                    "target and the treatment"
                } else {
                    "target"
                },
                card.name,
                missing.join(", ")
            );
        }
        // The feature columns' types, as the scoring functions check their arguments.
        let types: Vec<DataType> = card
            .features
            .iter()
            .map(|f| {
                schema
                    .field_with_name(&f.name)
                    .map(|f| f.data_type().clone())
            })
            .collect::<std::result::Result<_, _>>()?;
        check_arguments(FUNCTION, card, &types)?;
        let (mut scores, mut labels, mut treated) = (Vec::new(), Vec::new(), Vec::new());
        for batch in &batches {
            let column = |name: &str| -> ArrayRef {
                batch
                    .column(schema.index_of(name).expect("checked above"))
                    .clone()
            };
            let arrays: Vec<ArrayRef> = card.features.iter().map(|f| column(&f.name)).collect();
            let feature_batch = FeatureBatch::new(FUNCTION, card, self.registry.as_ref(), &arrays)?;
            let batch_scores = feature_batch
                .with_values(|values| self.model.model.predict(values))
                .map_err(|e| DataFusionError::Execution(format!("{FUNCTION}: {e}")))?;
            let batch_treated = match treatment {
                Some(name) => target_labels(name, &column(name)).map_err(|_| {
                    DataFusionError::Plan(format!(
                        "{FUNCTION}: the treatment {name} must be a boolean or 0/1 column"
                    ))
                })?,
                None => vec![Some(false); batch.num_rows()],
            };
            for ((score, label), was_treated) in batch_scores
                .into_iter()
                .zip(target_labels(target, &column(target))?)
                .zip(batch_treated)
            {
                // A row without a label (or not known to be treated or not) cannot be scored
                // against; it is left out.
                if let (Some(label), Some(was_treated)) = (label, was_treated) {
                    scores.push(score);
                    labels.push(label);
                    treated.push(was_treated);
                }
            }
        }
        Ok(match (&self.model.model, &card.spec) {
            (Model::Uplift(_), _) => UpliftMetrics::compute(&scores, &treated, &labels).named(),
            (Model::Classifier(_), ModelSpec::Classifier(spec)) => {
                BinaryMetrics::compute(&scores, &labels, spec.threshold).named()
            }
            _ => BinaryMetrics::compute(&scores, &labels, 0.5).named(),
        })
    }
}

#[async_trait]
impl TableProvider for Evaluation {
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
        let named = self.metrics(session_state(FUNCTION, state)?).await?;
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(named.iter().map(|(n, _)| *n))),
                Arc::new(Float64Array::from_iter(
                    named.iter().map(|(_, v)| (!v.is_nan()).then_some(*v)),
                )),
            ],
        )?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
