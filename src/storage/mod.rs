//! Managed tables: Delta Lake tables in the data directory, exposed to DataFusion.
//!
//! A Delta table provider from the `deltalake` crate is a snapshot of one table version.
//! [`ManagedTable`] holds the latest snapshot and is refreshed by the engine after every write
//! it makes, so queries and views always see committed data and never half of a write.

//! Managed tables: Delta Lake tables in the data directory, exposed to DataFusion.
//!
//! A Delta table provider from the `deltalake` crate is a snapshot of one table version.
//! [`ManagedTable`] holds the latest snapshot and installs a new one after every commit, so
//! queries and views always see committed data and never half of a write.
//!
//! Writes (see DESIGN.md, "Storage"): one process owns the data directory, so a table's
//! commits are ordered here rather than retried against each other. Every commit this process
//! makes to a table holds its commit lock: appends therefore never conflict, and UPDATE,
//! DELETE and TRUNCATE run one at a time. A small append is not a commit of its own: it goes
//! to the table's write-ahead log ([`wal`]) with a shared `fdatasync`, is acknowledged and
//! visible from memory, and reaches Delta Lake with the other buffered rows as one file in
//! one commit ([`maintenance`], which also compacts small files and vacuums old ones).

pub mod maintenance;
mod typed;
pub mod wal;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder};
use futures::StreamExt;
use tokio::sync::Mutex as AsyncMutex;
use url::Url;

use crate::error::{Error, Result};
use crate::pg::sqlstate::SqlState;
use wal::{WAL_APP_ID, Wal};

/// An append up to this many bytes (in Arrow memory) goes through the write-ahead log and
/// the write buffer; a larger one is written as Parquet files and committed directly.
pub const BUFFERED_APPEND_LIMIT: usize = 8 << 20;

/// Appends are refused while the write buffer holds this much (in Arrow memory): flushing
/// it to Delta Lake is failing (a full disk, say), and memory must not grow without bound.
pub const WRITE_BUFFER_HARD_LIMIT: usize = 1 << 30;

/// A Delta Lake table owned by tenure.
pub struct ManagedTable {
    url: Url,
    state: RwLock<State>,
    /// Re-read the Delta log before each scan: for external Delta tables, which other
    /// programs write. Tables tenure owns are refreshed after its own writes instead.
    refresh_on_scan: bool,
    /// Column defaults (`DEFAULT expr` of CREATE TABLE), which DataFusion's INSERT planning
    /// asks for; set once when the table is registered under its name.
    defaults: OnceLock<HashMap<String, Expr>>,
    /// Held by every commit this process makes to the table (buffer flushes, appends written
    /// as files, UPDATE, DELETE, TRUNCATE, compaction, VACUUM), so they never race.
    commits: AsyncMutex<()>,
    /// The write-ahead log of buffered appends; `None` for external Delta tables, which
    /// tenure does not write.
    wal: Option<Wal>,
    /// This table, for the append sinks its INSERT plans hold.
    this: Weak<ManagedTable>,
}

impl fmt::Debug for ManagedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedTable")
            .field("url", &self.url.as_str())
            .finish()
    }
}

/// What readers see: one committed Delta version and the acknowledged appends not yet in it.
struct State {
    table: DeltaTable,
    provider: Arc<dyn TableProvider>,
    buffer: WriteBuffer,
}

/// Appends that are durable in the write-ahead log but not yet in Delta Lake.
#[derive(Default)]
struct WriteBuffer {
    /// (log sequence number, rows), oldest first; every batch has the table's schema.
    entries: Vec<(u64, RecordBatch)>,
    rows: usize,
    bytes: usize,
    /// When the oldest entry arrived.
    oldest: Option<Instant>,
    /// Sequence number of the last append applied; with the Delta version, it says whether
    /// the table changed.
    last_seq: u64,
}

impl WriteBuffer {
    fn push(&mut self, seq: u64, batch: RecordBatch) {
        self.rows += batch.num_rows();
        self.bytes += batch.get_array_memory_size();
        self.oldest.get_or_insert_with(Instant::now);
        self.last_seq = self.last_seq.max(seq);
        self.entries.push((seq, batch));
    }

    /// Drops the entries at or below `seq` (now in Delta Lake).
    fn drop_through(&mut self, seq: u64) {
        self.entries.retain(|(s, _)| *s > seq);
        self.rows = self.entries.iter().map(|(_, b)| b.num_rows()).sum();
        self.bytes = self
            .entries
            .iter()
            .map(|(_, b)| b.get_array_memory_size())
            .sum();
        if self.entries.is_empty() {
            self.oldest = None;
        }
    }
}

impl ManagedTable {
    /// Sets the column defaults; the first call wins (a table directory belongs to one
    /// table, whose defaults do not change).
    pub fn set_defaults(&self, defaults: HashMap<String, Expr>) {
        let _ = self.defaults.set(defaults);
    }

    /// Opens the Delta table at `url` (which must exist), and buffers again the appends its
    /// write-ahead log holds that its Delta log does not.
    pub async fn open(url: Url) -> Result<Arc<ManagedTable>> {
        let mut table = DeltaTable::try_from_url(url.clone()).await?;
        table.load().await?;
        let flushed = table
            .snapshot()?
            .transaction_version(table.log_store().as_ref(), WAL_APP_ID)
            .await?
            .unwrap_or(0)
            .max(0) as u64;
        let dir = local_dir(&url)?;
        let (wal, replayed) = tokio::task::spawn_blocking(move || Wal::open(&dir, flushed))
            .await
            .map_err(|e| Error::Internal(format!("write-ahead log recovery panicked: {e}")))??;
        if !replayed.is_empty() {
            tracing::info!(
                table = %url,
                appends = replayed.len(),
                "replayed appends from the write-ahead log"
            );
        }
        let managed = Self::new(url, table, false, Some(wal)).await?;
        {
            let mut state = managed.state.write().expect("lock poisoned by a panic");
            state.buffer.last_seq = flushed;
            for (seq, batches) in replayed {
                for batch in batches {
                    state.buffer.push(seq, batch);
                }
            }
        }
        Ok(managed)
    }

    /// Wraps a loaded Delta table that tenure reads but does not write (an external Delta
    /// table).
    pub async fn from_loaded(
        url: Url,
        table: DeltaTable,
        refresh_on_scan: bool,
    ) -> Result<Arc<ManagedTable>> {
        Self::new(url, table, refresh_on_scan, None).await
    }

    async fn new(
        url: Url,
        table: DeltaTable,
        refresh_on_scan: bool,
        wal: Option<Wal>,
    ) -> Result<Arc<ManagedTable>> {
        let provider = typed::provider(&table).await?;
        Ok(Arc::new_cyclic(|this| ManagedTable {
            url,
            state: RwLock::new(State {
                table,
                provider,
                buffer: WriteBuffer::default(),
            }),
            refresh_on_scan,
            defaults: OnceLock::new(),
            commits: AsyncMutex::new(()),
            wal,
            this: this.clone(),
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
        let dir = local_dir(&url)?;
        let (wal, _) = tokio::task::spawn_blocking(move || Wal::open(&dir, 0))
            .await
            .map_err(|e| Error::Internal(format!("write-ahead log creation panicked: {e}")))??;
        Ok((Self::new(url, table, false, Some(wal)).await?, rows))
    }

    /// The latest committed Delta table (cheap clone of its snapshot). It does not hold the
    /// appends still in the write buffer.
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

    /// Re-reads the Delta log so that commits other programs made become visible (external
    /// Delta tables).
    pub async fn refresh(&self) -> Result<()> {
        let mut table = self.table();
        table.update_state().await?;
        self.install(table).await
    }

    /// Makes `table` (returned by a Delta operation) the current version; the write buffer
    /// stays as it is.
    async fn install(&self, table: DeltaTable) -> Result<()> {
        let provider = typed::provider(&table).await?;
        let mut state = self.state.write().expect("lock poisoned by a panic");
        state.table = table;
        state.provider = provider;
        Ok(())
    }

    /// The current Delta version and the provider that reads exactly it (without the write
    /// buffer: for its schema).
    pub fn current(&self) -> (Option<u64>, Arc<dyn TableProvider>) {
        let state = self.state.read().expect("lock poisoned by a panic");
        (state.table.version(), state.provider.clone())
    }

    /// Changes when anything is committed to the table: its Delta version and the sequence
    /// number of the last buffered append.
    pub fn change_marker(&self) -> (Option<u64>, u64) {
        let state = self.state.read().expect("lock poisoned by a panic");
        (state.table.version(), state.buffer.last_seq)
    }

    /// The provider of the current snapshot, when it reads everything the table holds (no
    /// appends are buffered) and the table does not re-read its log at each scan. Every
    /// commit installs a new provider and every append fills the buffer, so a physical plan
    /// made while this returned the same provider still reads the table's current data.
    pub fn stable_snapshot(&self) -> Option<Arc<dyn TableProvider>> {
        let state = self.state.read().expect("lock poisoned by a panic");
        (!self.refresh_on_scan && state.buffer.entries.is_empty()).then(|| state.provider.clone())
    }

    fn provider(&self) -> Arc<dyn TableProvider> {
        self.state
            .read()
            .expect("lock poisoned by a panic")
            .provider
            .clone()
    }

    /// Rows and Arrow bytes in the write buffer.
    pub fn buffered(&self) -> (usize, usize) {
        let state = self.state.read().expect("lock poisoned by a panic");
        (state.buffer.rows, state.buffer.bytes)
    }

    /// Runs `operation` (an UPDATE, DELETE or TRUNCATE of Delta Lake's) on the table's
    /// latest version with the table's commits held, after flushing the write buffer so that
    /// it sees every acknowledged append; installs the version it returns. Waiting for the
    /// lock ends with the statement (its timeout or a cancel drops this future).
    pub async fn rewrite<T, F, Fut>(&self, operation: F) -> Result<T>
    where
        F: FnOnce(DeltaTable) -> Fut,
        Fut: Future<Output = Result<(DeltaTable, T)>>,
    {
        let _commits = self.commits.lock().await;
        self.flush_locked().await?;
        let (table, result) = operation(self.table()).await?;
        self.install(table).await?;
        Ok(result)
    }

    /// Appends `batch` (the table's columns in order, types castable to its own) through the
    /// write-ahead log when it is small and valid for the table: returns the rows appended,
    /// or `None` when it must go the planned way instead (too large, or a value the table's
    /// schema refuses, such as a NULL in a NOT NULL column, which that way reports).
    pub async fn append_small(&self, batch: RecordBatch) -> Result<Option<u64>> {
        if self.wal.is_none() || batch.get_array_memory_size() > BUFFERED_APPEND_LIMIT {
            return Ok(None);
        }
        let schema = self.schema();
        if batch.num_columns() != schema.fields().len() {
            return Ok(None);
        }
        let Ok(batch) = conform(batch, &schema) else {
            return Ok(None);
        };
        if batch.num_rows() == 0 {
            return Ok(Some(0));
        }
        self.append_buffered(vec![batch]).await.map(Some)
    }

    /// Appends small `batches` through the write-ahead log: returns once they are durable
    /// and visible.
    async fn append_buffered(&self, batches: Vec<RecordBatch>) -> Result<u64> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let (_, buffered_bytes) = self.buffered();
        if buffered_bytes > WRITE_BUFFER_HARD_LIMIT {
            return Err(Error::state(
                SqlState::OutOfMemory,
                format!(
                    "the write buffer of table {} is full because writing it to storage is \
                     failing (see the server log); try again later",
                    self.url
                ),
            ));
        }
        let this = self
            .this
            .upgrade()
            .ok_or_else(|| Error::Internal("table closed during an append".into()))?;
        tokio::task::spawn_blocking(move || {
            let wal = this
                .wal
                .as_ref()
                .ok_or_else(|| Error::invalid("this table is read-only in tenure"))?;
            wal.append(batches, &|seq, batches| {
                let mut state = this.state.write().expect("lock poisoned by a panic");
                for batch in batches {
                    state.buffer.push(seq, batch);
                }
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("write-ahead log append panicked: {e}")))??;
        Ok(rows as u64)
    }

    /// Appends a large input as Parquet files written while it streams in, then commits them
    /// in one Delta commit with the table's commits held.
    async fn append_files(
        &self,
        first: Vec<RecordBatch>,
        mut rest: SendableRecordBatchStream,
        schema: &SchemaRef,
    ) -> Result<u64> {
        let mut writer = RecordBatchWriter::for_table(&self.table())?;
        // The writer takes the types of the Delta schema (`Utf8` where scans give
        // `Utf8View`).
        let stored = writer.arrow_schema();
        let mut rows = 0u64;
        for batch in first {
            rows += batch.num_rows() as u64;
            writer.write(conform(batch, &stored)?).await?;
        }
        while let Some(batch) = rest.next().await {
            let batch = conform(conform(batch?, schema)?, &stored)?;
            rows += batch.num_rows() as u64;
            writer.write(batch).await?;
        }
        let _commits = self.commits.lock().await;
        let mut latest = self.table();
        writer.flush_and_commit(&mut latest).await?;
        self.install(latest).await?;
        Ok(rows)
    }

    /// Writes the write buffer to Delta Lake as one commit that records the last log sequence
    /// number it holds; the caller holds the table's commits.
    async fn flush_locked(&self) -> Result<()> {
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        let (through, batches) = wal.rotate(|| {
            let state = self.state.read().expect("lock poisoned by a panic");
            state
                .buffer
                .entries
                .iter()
                .map(|(_, b)| b.clone())
                .collect::<Vec<_>>()
        })?;
        if batches.is_empty() {
            wal.release(through);
            return Ok(());
        }
        let properties = CommitProperties::default().with_application_transaction(
            deltalake::kernel::Transaction::new(WAL_APP_ID, through as i64),
        );
        let written = self
            .table()
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(properties)
            .await?;
        let provider = typed::provider(&written).await?;
        {
            let mut state = self.state.write().expect("lock poisoned by a panic");
            state.table = written;
            state.provider = provider;
            state.buffer.drop_through(through);
        }
        wal.release(through);
        Ok(())
    }

    /// Writes the write buffer to Delta Lake now.
    pub async fn flush(&self) -> Result<()> {
        let _commits = self.commits.lock().await;
        self.flush_locked().await
    }
}

/// The local directory of a table URL.
fn local_dir(url: &Url) -> Result<std::path::PathBuf> {
    url.to_file_path()
        .map_err(|()| Error::Internal(format!("table {url} is not in a local directory")))
}

/// `batch` with exactly `schema` (names, nullability): DataFusion's INSERT planning has
/// already cast the values to the table's types, so only a type that still differs is cast.
/// A `json` or `jsonb` column's values are checked (and jsonb's normalised) here, on the
/// way into the table, and a `varchar(n)` column's lengths.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let typed = schema
        .fields()
        .iter()
        .any(|f| f.metadata().contains_key(crate::pg::types::PG_TYPE_KEY));
    if batch.schema() == *schema && !typed {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            let column = if column.data_type() == field.data_type() {
                column.clone()
            } else {
                arrow::compute::cast(column, field.data_type())?
            };
            match crate::pg::json::JsonKind::of(field) {
                Some(kind) => {
                    let stored = crate::pg::json::stored(&column, kind, field.name())
                        .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?;
                    arrow::compute::cast(&stored, field.data_type())
                }
                None => {
                    if let Some(length) = crate::pg::types::declared_length(field) {
                        crate::pg::types::check_length(&column, length, field.name())
                            .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?;
                    }
                    Ok(column)
                }
            }
        })
        .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

/// The buffered rows as one batch of the scan's `schema`, with `projection` applied.
fn buffered_batch(
    entries: &[RecordBatch],
    projection: Option<&Vec<usize>>,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let rows = entries.iter().map(|b| b.num_rows()).sum();
    let projected: Vec<RecordBatch> = match projection {
        Some(indices) => entries
            .iter()
            .map(|b| b.project(indices))
            .collect::<std::result::Result<_, _>>()?,
        None => entries.to_vec(),
    };
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (index, field) in schema.fields().iter().enumerate() {
        let parts: Vec<&dyn arrow::array::Array> =
            projected.iter().map(|b| b.column(index).as_ref()).collect();
        let column = arrow::compute::concat(&parts)?;
        columns.push(if column.data_type() == field.data_type() {
            column
        } else {
            arrow::compute::cast(&column, field.data_type())?
        });
    }
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}

/// Where INSERT and COPY send a managed table's rows: a small input to the write-ahead log
/// and the write buffer, a large one to Parquet files committed at the end.
#[derive(Debug)]
struct AppendSink {
    table: Arc<ManagedTable>,
    schema: SchemaRef,
}

impl DisplayAs for AppendSink {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppendSink: {}", self.table.url)
    }
}

#[async_trait]
impl DataSink for AppendSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let mut batches = Vec::new();
        let mut bytes = 0;
        while let Some(batch) = data.next().await {
            let batch = conform(batch?, &self.schema)?;
            if batch.num_rows() == 0 {
                continue;
            }
            bytes += batch.get_array_memory_size();
            batches.push(batch);
            if bytes > BUFFERED_APPEND_LIMIT {
                return Ok(self.table.append_files(batches, data, &self.schema).await?);
            }
        }
        if batches.is_empty() {
            return Ok(0);
        }
        Ok(self.table.append_buffered(batches).await?)
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
        // The committed version and the buffered appends, read together.
        let (provider, buffered) = {
            let state = self.state.read().expect("lock poisoned by a panic");
            let buffered: Vec<RecordBatch> = state
                .buffer
                .entries
                .iter()
                .map(|(_, b)| b.clone())
                .collect();
            (state.provider.clone(), buffered)
        };
        let committed = provider.scan(state, projection, filters, limit).await?;
        if buffered.is_empty() {
            return Ok(committed);
        }
        let schema = committed.schema();
        let batch = buffered_batch(&buffered, projection, &schema)?;
        let memory = MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None)?;
        Ok(UnionExec::try_new(vec![committed, memory])?)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // Never Exact: the buffered rows are not filtered by the scan, so DataFusion keeps
        // its own filter above it.
        Ok(self
            .provider()
            .supports_filters_pushdown(filters)?
            .into_iter()
            .map(|pushdown| match pushdown {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }

    fn statistics(&self) -> Option<datafusion::common::Statistics> {
        let state = self.state.read().expect("lock poisoned by a panic");
        if state.buffer.entries.is_empty() {
            state.provider.statistics()
        } else {
            None
        }
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if self.wal.is_none() {
            return self.provider().insert_into(state, input, insert_op).await;
        }
        if insert_op != InsertOp::Append {
            return Err(Error::unsupported(format!(
                "INSERT {insert_op} is not supported; use TRUNCATE, then INSERT"
            ))
            .into());
        }
        let table = self
            .this
            .upgrade()
            .ok_or_else(|| DataFusionError::Internal("table closed".into()))?;
        let sink = AppendSink {
            table,
            schema: self.schema(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}
