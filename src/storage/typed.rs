//! Column types Delta Lake stores as text but PostgreSQL names otherwise (`json`, `jsonb`):
//! the type is kept in the Delta schema's field metadata ([`crate::pg::types::PG_TYPE_KEY`]),
//! which delta-rs writes but drops when it gives the schema back in Arrow terms. A table
//! with such columns is read through [`TypedColumns`], which puts the metadata back on its
//! schema and on the batches its scans produce.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DFResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use deltalake::DeltaTable;
use futures::StreamExt;

use crate::error::Result;
use crate::pg::types::PG_TYPE_KEY;

/// The Arrow provider of `table`'s current version, with its typed columns marked.
pub(super) async fn provider(table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
    let inner = table.table_provider().await?;
    let types: Vec<(String, String)> = match table.snapshot() {
        Ok(snapshot) => snapshot
            .schema()
            .fields()
            .filter_map(|field| match field.metadata().get(PG_TYPE_KEY) {
                Some(deltalake::kernel::MetadataValue::String(pg_type)) => {
                    Some((field.name().clone(), pg_type.clone()))
                }
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if types.is_empty() {
        return Ok(inner);
    }
    let schema = marked(&inner.schema(), &types);
    Ok(Arc::new(TypedColumns {
        inner,
        schema,
        types,
    }))
}

/// `schema` with the PostgreSQL type of each column in `types`.
fn marked(schema: &Schema, types: &[(String, String)]) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(
            |field| match types.iter().find(|(name, _)| name == field.name()) {
                Some((_, pg_type)) => {
                    let mut metadata = field.metadata().clone();
                    metadata.insert(PG_TYPE_KEY.to_string(), pg_type.clone());
                    Arc::new(field.as_ref().clone().with_metadata(metadata))
                }
                None => field.clone(),
            },
        )
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A Delta provider whose schema and scans carry the columns' PostgreSQL types.
#[derive(Debug)]
struct TypedColumns {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    types: Vec<(String, String)>,
}

#[async_trait]
impl TableProvider for TypedColumns {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let scan = self.inner.scan(state, projection, filters, limit).await?;
        let schema = marked(&scan.schema(), &self.types);
        Ok(Arc::new(Marked::new(scan, schema)))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<datafusion::common::Statistics> {
        self.inner.statistics()
    }
}

/// Its input's batches under a schema that differs only in field metadata.
#[derive(Debug)]
struct Marked {
    input: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl Marked {
    fn new(input: Arc<dyn ExecutionPlan>, schema: SchemaRef) -> Marked {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            input.properties().partitioning.clone(),
            input.properties().emission_type,
            input.properties().boundedness,
        ));
        Marked {
            input,
            schema,
            properties,
        }
    }
}

impl DisplayAs for Marked {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypedColumns")
    }
}

impl ExecutionPlan for Marked {
    fn name(&self) -> &str {
        "TypedColumns"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let schema = marked(&children[0].schema(), &TypedColumns::types_of(&self.schema));
        Ok(Arc::new(Marked::new(children[0].clone(), schema)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let schema = self.schema.clone();
        let batches = self.input.execute(partition, context)?.map({
            let schema = schema.clone();
            move |batch| Ok(batch?.with_schema(schema.clone())?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

impl TypedColumns {
    /// The (column, type) marks of a marked schema.
    fn types_of(schema: &Schema) -> Vec<(String, String)> {
        schema
            .fields()
            .iter()
            .filter_map(|f| {
                f.metadata()
                    .get(PG_TYPE_KEY)
                    .map(|t| (f.name().clone(), t.clone()))
            })
            .collect()
    }
}
