//! Managed tables: Delta Lake tables in the data directory, exposed to DataFusion.
//!
//! A Delta table provider from the `deltalake` crate is a snapshot of one table version.
//! [`ManagedTable`] holds the latest snapshot and is refreshed by the engine after every write
//! it makes, so queries and views always see committed data and never half of a write.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder};
use url::Url;

use crate::error::Result;

/// A Delta Lake table owned by tenure.
#[derive(Debug)]
pub struct ManagedTable {
    url: Url,
    state: RwLock<Snapshot>,
    /// Re-read the Delta log before each scan: for external Delta tables, which other
    /// programs write. Tables tenure owns are refreshed after its own writes instead.
    refresh_on_scan: bool,
    /// Column defaults (`DEFAULT expr` of CREATE TABLE), which DataFusion's INSERT planning
    /// asks for; set once when the table is registered under its name.
    defaults: OnceLock<HashMap<String, Expr>>,
}

/// One committed version of the table and the DataFusion provider that reads it.
#[derive(Debug, Clone)]
struct Snapshot {
    table: DeltaTable,
    provider: Arc<dyn TableProvider>,
}

impl ManagedTable {
    /// Sets the column defaults; the first call wins (a table directory belongs to one
    /// table, whose defaults do not change).
    pub fn set_defaults(&self, defaults: HashMap<String, Expr>) {
        let _ = self.defaults.set(defaults);
    }

    /// Opens the Delta table at `url` (which must exist).
    pub async fn open(url: Url) -> Result<Arc<ManagedTable>> {
        let mut table = DeltaTable::try_from_url(url.clone()).await?;
        table.load().await?;
        Self::from_loaded(url, table, false).await
    }

    /// Wraps a loaded Delta table.
    pub async fn from_loaded(
        url: Url,
        table: DeltaTable,
        refresh_on_scan: bool,
    ) -> Result<Arc<ManagedTable>> {
        let provider = table.table_provider().await?;
        Ok(Arc::new(ManagedTable {
            url,
            state: RwLock::new(Snapshot { table, provider }),
            refresh_on_scan,
            defaults: OnceLock::new(),
        }))
    }

    /// Writes the result of `plan` as a new Delta table at `url`, in one commit: either the
    /// whole result becomes version 0 or (after a crash) there is no table at all.
    pub async fn create_from_plan(
        url: Url,
        plan: LogicalPlan,
        session: Arc<dyn Session>,
    ) -> Result<(Arc<ManagedTable>, usize)> {
        // A column Delta Lake has no type for (an interval) is refused by name before
        // anything is written, rather than by the writer's schema conversion.
        for field in plan.schema().fields() {
            use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
            if deltalake::kernel::StructField::try_from_arrow(field.as_ref()).is_err() {
                return Err(crate::Error::unsupported(format!(
                    "column {} of type {} is not supported in tables (Delta Lake cannot store \
                     it); cast it to a supported type, such as text",
                    field.name(),
                    field.data_type()
                )));
            }
        }
        // Not loaded: there is no table yet, and the write creates version 0.
        let table = DeltaTableBuilder::from_url(url.clone())?.build()?;
        let table = table
            .write(Vec::new())
            .with_input_plan(plan)
            .with_session_state(session)
            .with_save_mode(SaveMode::ErrorIfExists)
            .await?;
        let rows = row_count(&table).unwrap_or(0);
        Ok((Self::from_loaded(url, table, false).await?, rows))
    }

    /// The latest committed Delta table (cheap clone of its snapshot).
    pub fn table(&self) -> DeltaTable {
        self.state
            .read()
            .expect("lock poisoned by a panic")
            .table
            .clone()
    }

    /// Location of the table.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Re-reads the Delta log so that commits made since the last refresh become visible.
    pub async fn refresh(&self) -> Result<()> {
        let mut table = self.table();
        table.update_state().await?;
        self.install(table).await
    }

    /// Makes `table` (returned by a Delta operation) the current version.
    pub async fn install(&self, table: DeltaTable) -> Result<()> {
        let provider = table.table_provider().await?;
        *self.state.write().expect("lock poisoned by a panic") = Snapshot { table, provider };
        Ok(())
    }

    /// The current Delta version and the provider that reads exactly it.
    pub fn current(&self) -> (Option<u64>, Arc<dyn TableProvider>) {
        let snapshot = self.state.read().expect("lock poisoned by a panic");
        (snapshot.table.version(), snapshot.provider.clone())
    }

    /// The provider of the current snapshot, unless the table re-reads its log at each
    /// scan. Every commit installs a new provider, so a physical plan made while this
    /// returned the same provider still reads the table's current data.
    pub fn stable_snapshot(&self) -> Option<Arc<dyn TableProvider>> {
        (!self.refresh_on_scan).then(|| self.provider())
    }

    fn provider(&self) -> Arc<dyn TableProvider> {
        self.state
            .read()
            .expect("lock poisoned by a panic")
            .provider
            .clone()
    }
}

/// The number of rows in the table's current version, from the per-file statistics in the
/// Delta log (no data is read); `None` when a file has no statistics.
pub fn row_count(table: &DeltaTable) -> Option<usize> {
    let snapshot = table.snapshot().ok()?;
    snapshot
        .log_data()
        .iter()
        .map(|file| file.num_records())
        .sum()
}

#[async_trait]
impl TableProvider for ManagedTable {
    fn schema(&self) -> SchemaRef {
        self.provider().schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        None
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults.get()?.get(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if self.refresh_on_scan {
            self.refresh().await?;
        }
        self.provider()
            .scan(state, projection, filters, limit)
            .await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        self.provider().supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<datafusion::common::Statistics> {
        self.provider().statistics()
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        // The Delta sink commits once when the whole input has been written; the engine
        // refreshes this table after the statement.
        self.provider().insert_into(state, input, insert_op).await
    }
}
