//! The engine: one DataFusion [`SessionContext`] over the data directory's catalog.
//!
//! DataFusion parses and plans every statement. Statements that change what is stored are
//! intercepted here ([`statements`]) and carried out against Delta Lake and the persistent
//! catalog; everything else (queries, EXPLAIN, SET, SHOW, ...) DataFusion runs as is.
//! External data sources and the rules on which paths a client may name live in [`external`].

mod access;
mod comments;
mod cooperative;
mod dml;
mod external;
mod keys;
mod merge;
mod model_import;
mod model_statements;
mod names;
mod paths;
pub mod plan_cache;
mod privilege_check;
mod role_tables;
mod row_security;
mod secrets;
pub mod session_memory;
mod statements;
mod system_tables;
mod temporary;
mod transaction;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use deltalake::delta_datafusion::planner::DeltaPlanner;
use futures::TryStreamExt;
use tokio::sync::Mutex;
use url::Url;

pub use access::{Identity, session_role};
pub use paths::PathAccess;
pub use system_tables::{RESERVED_SCHEMAS, SYSTEM_SCHEMA};
pub use temporary::TemporaryTables;

use crate::catalog::{CatalogState, CatalogStore, QualifiedName, Relation};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::error::{Error, Result};
use crate::model_store::ModelStore;
use crate::pg::sqlstate::SqlState;
use crate::sql::Statement;
use crate::storage::ManagedTable;
use transaction::CatalogGuard;

pub use crate::catalog::{CATALOG_NAME, DEFAULT_SCHEMA};

/// What one statement produced.
pub enum Output {
    /// A query result, streamed batch by batch.
    Rows(SendableRecordBatchStream),
    /// A command's completion: a tag such as `CREATE TABLE` or `INSERT` and, for statements
    /// that touch rows, how many.
    Command {
        tag: &'static str,
        rows: Option<u64>,
    },
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Rows(_) => write!(f, "Rows(..)"),
            Output::Command { tag, rows } => write!(f, "Command({tag}, {rows:?})"),
        }
    }
}

impl Output {
    fn command(tag: &'static str) -> Output {
        Output::Command { tag, rows: None }
    }
}

/// Progress of a long statement (training), for a progress bar or NOTICE messages.
#[derive(Debug, Clone)]
pub enum Progress {
    Epoch {
        model: String,
        report: tenure_models::EpochReport,
    },
    Message(String),
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Progress::Epoch { model, report } => {
                write!(
                    f,
                    "{model}: epoch {}/{}: train loss {:.4}, validation loss {:.4}",
                    report.epoch, report.epochs, report.train_loss, report.validation_loss,
                )?;
                if let Some(auc) = report.validation_auc {
                    write!(f, ", validation auc {auc:.4}")?;
                }
                write!(f, " ({:.2} s)", report.seconds)?;
                // After the first epoch, how long the rest may take at this pace.
                if report.epoch == 1 && report.epochs > 1 {
                    let rest = report.seconds * (report.epochs - 1) as f64;
                    write!(
                        f,
                        "; the other {} epochs take at most about {} at this pace (early \
                         stopping may end sooner)",
                        report.epochs - 1,
                        human_duration(rest)
                    )?;
                }
                Ok(())
            }
            Progress::Message(message) => f.write_str(message),
        }
    }
}

/// `seconds` as people say it: "40 s", "3 min", "1.5 h".
fn human_duration(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// The background task vacuums a table at most this often.
const VACUUM_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Where a statement sends its [`Progress`].
pub type ProgressSender = tokio::sync::mpsc::UnboundedSender<Progress>;

/// An open data directory with its SQL engine.
pub struct Engine {
    ctx: SessionContext,
    data_dir: DataDir,
    store: CatalogStore,
    /// The persistent catalog; the lock also serialises DDL, and a transaction block that
    /// writes holds it until it ends.
    catalog: Arc<Mutex<CatalogState>>,
    access: PathAccess,
    config: Config,
    /// Open managed tables by directory name (stable across renames).
    /// The background maintenance task (see [`crate::storage::maintenance`]) holds it weakly.
    managed: system_tables::OpenTables,
    /// Trained models, shared with the scoring functions.
    models: Arc<ModelStore>,
    /// Sessions started so far, which number their temporary schemas (`pg_temp_N`).
    sessions: std::sync::atomic::AtomicU64,
    /// Every session's temporary tables, for the background maintenance task.
    temporary: temporary::OpenTemporaryTables,
    /// The built-in superusers: tenure.toml's users, or without any the trusted local user
    /// (see [`crate::access`]).
    builtin_roles: Arc<[String]>,
    /// The key that seals secrets (see `secrets.rs`).
    secrets: secrets::SecretKeeper,
}

impl Engine {
    /// Opens (creating if needed) the data directory named by `config`, takes its lock and
    /// registers everything in its catalog. `access` says which local paths statements may
    /// name: [`PathAccess::Unrestricted`] for the local shell, roots for server clients.
    pub async fn open(config: &Config, access: PathAccess) -> Result<Engine> {
        let data_dir = DataDir::open(&config.data_dir)?;
        // Temporary tables of the sessions of a process that ended (see `temporary`).
        match std::fs::remove_dir_all(data_dir.temp_tables_dir()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let ctx = build_context(config, &data_dir, &access)?;
        let roles = if config.users.is_empty() {
            vec![crate::pg::DEFAULT_USER.to_string()]
        } else {
            config.users.iter().map(|u| u.name.clone()).collect()
        };
        let store = CatalogStore::new(&data_dir.catalog_path());
        let state = store.load()?;
        let device = tenure_models::device(&config.device)
            .map_err(|e| Error::Config(format!("device: {e}")))?;
        let models = Arc::new(ModelStore::open(&data_dir.models_dir(), device)?);
        // Before pg_catalog, whose key tables are views over tenure.keys.
        let managed = system_tables::OpenTables::default();
        register_system_tables(
            &ctx,
            models.clone(),
            store.saved(),
            data_dir.tables_dir(),
            managed.clone(),
            &roles,
        )?;
        let builtin_roles: Arc<[String]> = roles.clone().into();
        crate::pg::catalog::install(&ctx, roles, store.saved(), RESERVED_SCHEMAS).await?;
        tenure_models::set_compute_threads(config.threads);
        tenure_udfs::register_all(&ctx, models.clone());
        let engine = Engine {
            ctx,
            data_dir,
            store,
            catalog: Arc::new(Mutex::new(state)),
            access,
            config: config.clone(),
            managed,
            models,
            sessions: Default::default(),
            temporary: Default::default(),
            builtin_roles,
            secrets: secrets::SecretKeeper::new(config.secret_key.clone(), config.data_dir.clone()),
        };
        engine.restore().await?;
        let tables = Arc::downgrade(&engine.managed);
        let temporary = Arc::downgrade(&engine.temporary);
        tokio::spawn(crate::storage::maintenance::run(
            move || {
                let tables = tables.upgrade()?;
                let mut open: Vec<Arc<ManagedTable>> = tables
                    .lock()
                    .expect("lock poisoned by a panic")
                    .values()
                    .cloned()
                    .collect();
                if let Some(temporary) = temporary.upgrade() {
                    let mut temporary = temporary.lock().expect("lock poisoned by a panic");
                    temporary.retain(|table| table.strong_count() > 0);
                    open.extend(temporary.iter().filter_map(std::sync::Weak::upgrade));
                }
                Some(open)
            },
            config.vacuum_retention,
            VACUUM_EVERY,
        ));
        Ok(engine)
    }

    /// Writes every table's write buffer to Delta Lake (at shutdown: the write-ahead log
    /// would replay them at the next start anyway, but other readers of the Delta tables see
    /// them now). Failures are logged.
    pub async fn flush_all(&self) {
        let tables: Vec<Arc<ManagedTable>> = self
            .managed
            .lock()
            .expect("lock poisoned by a panic")
            .values()
            .cloned()
            .collect();
        for table in tables {
            if let Err(e) = table.flush().await {
                tracing::error!(table = %table.url(), "cannot flush the write buffer: {e}");
            }
        }
    }

    /// The DataFusion session; also for registering functions.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The configuration this engine was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    /// Parses `sql` into statements (several may be separated by `;`).
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        crate::sql::parse(sql)
    }

    /// Executes one parsed statement.
    pub async fn execute(&self, statement: Statement) -> Result<Output> {
        self.execute_with_progress(statement, None).await
    }

    /// Executes one parsed statement, sending progress of long work to `progress`.
    pub async fn execute_with_progress(
        &self,
        statement: Statement,
        progress: Option<&ProgressSender>,
    ) -> Result<Output> {
        self.execute_in(&self.ctx, statement, progress).await
    }

    /// The catalog as last saved: a new value after every change to it (tables, views,
    /// schemas, keys), so that a plan made before can tell it may be out of date.
    pub fn catalog_version(&self) -> Arc<crate::catalog::CatalogState> {
        self.store.saved().get()
    }

    /// A session of its own for one client: settings (`SET datafusion...`), session-level
    /// functions and temporary tables apply to it alone, while the catalog, the functions
    /// registered at open and the memory pool are shared with the engine.
    pub fn new_session(&self) -> SessionContext {
        self.session_for(None)
    }

    /// [`Engine::new_session`] for a client logged in as `role`, whose statements are
    /// checked against the role's privileges (see [`crate::access`]).
    pub fn new_session_as(&self, role: &str) -> SessionContext {
        self.session_for(Some(role))
    }

    fn session_for(&self, role: Option<&str>) -> SessionContext {
        let base = self.ctx.state();
        let (catalogs, temporary) =
            self.temporary_tables_for_new_session(base.catalog_list().clone());
        let mut config = base.config().clone().with_extension(temporary);
        if let Some(role) = role {
            let (identity, authorizer) = self.identity_extensions(role);
            config = config.with_extension(identity).with_extension(authorizer);
        }
        // A pool of the session's own, for its memory_limit (see session_memory.rs).
        let runtime = session_memory::with_session_pool(base.runtime_env());
        let session = SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(base)
                .with_config(config)
                .with_catalog_list(catalogs)
                .with_runtime_env(runtime)
                .build(),
        );
        if let Some(role) = role {
            // has_table_privilege and has_schema_privilege answer for the session's role.
            crate::pg::privileges::register(
                &session,
                &crate::pg::privileges::Oracle {
                    catalog: self.store.saved(),
                    builtin: self.builtin_roles.clone(),
                    role: Some(role.to_string()),
                    system_schemas: RESERVED_SCHEMAS,
                },
            );
        }
        session
    }

    /// Executes one parsed statement in `session` (one from [`Engine::new_session`]):
    /// queries are planned and run with the session's settings; changes to stored state go
    /// through the engine as from any session.
    pub async fn execute_in(
        &self,
        session: &SessionContext,
        statement: Statement,
        progress: Option<&ProgressSender>,
    ) -> Result<Output> {
        match statement {
            Statement::DataFusion(statement) => self.execute_datafusion(session, statement).await,
            Statement::CreateModel(create) => {
                let (query, encoder) = match &create.source {
                    crate::sql::ModelSource::Query(query) => (Some(query.as_str()), None),
                    crate::sql::ModelSource::Files(_) => (None, None),
                };
                let encoder = encoder.or_else(|| {
                    create
                        .options
                        .iter()
                        .find(|(k, _)| k == "text_encoder")
                        .map(|(_, v)| v.as_str())
                });
                self.authorize_model(session, &create.name, true, query, encoder)
                    .await?;
                let name = create.name.clone();
                let output = self.create_model(session, create, progress).await?;
                self.record_model_owner(session, &name).await?;
                Ok(output)
            }
            Statement::DropModel(drop) => {
                self.authorize_model(session, &drop.name, false, None, None)
                    .await?;
                let name = drop.name.clone();
                let output = self.drop_model(drop).await?;
                if !self.models.contains(&name) {
                    self.forget_object(session, crate::access::Object::Model(name), None)
                        .await?;
                }
                Ok(output)
            }
            Statement::Maintain(maintain) => {
                self.authorize_maintenance(session, &maintain.tables)
                    .await?;
                self.maintain(session, maintain).await
            }
            Statement::Access(statement) => self.execute_access(session, statement).await,
            Statement::CopyStream(_) => Err(Error::unsupported(
                "COPY ... FROM STDIN and TO STDOUT are not supported here: they stream through \
                 a client connection (tenure serve with psql's \\copy or a driver's copy API); \
                 use COPY (query) TO 'file' or CREATE EXTERNAL TABLE",
            )),
            Statement::Fetch(_) => Err(Error::invalid(
                "FETCH and MOVE need a cursor, and cursors live in client sessions of tenure \
                 serve",
            )),
        }
    }

    /// Runs every statement in `sql`, collecting each result. Convenient for tests and
    /// one-shot commands; servers stream with [`Engine::execute`].
    pub async fn run(&self, sql: &str) -> Result<Vec<(Output, Vec<RecordBatch>)>> {
        let mut results = Vec::new();
        for statement in self.parse(sql)? {
            match self.execute(statement).await? {
                Output::Rows(stream) => {
                    let schema = stream.schema();
                    let batches: Vec<RecordBatch> = stream.try_collect().await?;
                    let batches = if batches.is_empty() {
                        vec![RecordBatch::new_empty(schema)]
                    } else {
                        batches
                    };
                    let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
                    results.push((
                        Output::Command {
                            tag: "SELECT",
                            rows: Some(rows),
                        },
                        batches,
                    ));
                }
                command => results.push((command, Vec::new())),
            }
        }
        Ok(results)
    }

    /// Runs `sql` (one query) and returns its batches.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut results = self.run(sql).await?;
        match results.pop() {
            Some((_, batches)) if results.is_empty() => Ok(batches),
            _ => Err(Error::invalid("expected exactly one statement")),
        }
    }

    /// Resolves a possibly partial name against the default catalog and schema.
    fn qualify(&self, reference: &TableReference) -> Result<QualifiedName> {
        let resolved = reference.clone().resolve(CATALOG_NAME, DEFAULT_SCHEMA);
        if resolved.catalog.as_ref() != CATALOG_NAME {
            return Err(Error::state(
                SqlState::UndefinedObject,
                format!(
                    "catalog {} does not exist; the only catalog is {CATALOG_NAME}",
                    resolved.catalog
                ),
            ));
        }
        Ok(QualifiedName::new(
            resolved.schema.as_ref(),
            resolved.table.as_ref(),
        ))
    }

    fn table_reference(name: &QualifiedName) -> TableReference {
        TableReference::full(CATALOG_NAME, name.schema.as_str(), name.name.as_str())
    }

    /// Registers `provider` as `name` with every session.
    fn register(&self, name: &QualifiedName, provider: Arc<dyn TableProvider>) -> Result<()> {
        Self::register_in(&self.ctx, name, provider)
    }

    /// Registers `provider` as `name` in the catalog of `ctx`: the shared one, or a
    /// transaction block's.
    fn register_in(
        ctx: &SessionContext,
        name: &QualifiedName,
        provider: Arc<dyn TableProvider>,
    ) -> Result<()> {
        let reference = Self::table_reference(name);
        ctx.deregister_table(reference.clone())?;
        ctx.register_table(reference, provider)?;
        Ok(())
    }

    fn deregister(&self, name: &QualifiedName) -> Result<()> {
        Self::deregister_in(&self.ctx, name)
    }

    fn deregister_in(ctx: &SessionContext, name: &QualifiedName) -> Result<()> {
        ctx.deregister_table(Self::table_reference(name))?;
        Ok(())
    }

    fn managed_url(&self, dir: &str) -> Result<Url> {
        let path = self.data_dir.tables_dir().join(dir);
        Url::from_directory_path(&path)
            .map_err(|()| Error::invalid(format!("cannot form a URL for {}", path.display())))
    }

    /// The open managed Delta table stored in `tables/<dir>`.
    fn managed_table(&self, dir: &str) -> Option<Arc<ManagedTable>> {
        self.managed
            .lock()
            .expect("lock poisoned by a panic")
            .get(dir)
            .cloned()
    }

    /// The open managed table in `tables/<dir>` as statements under `catalog` see it: a
    /// transaction block's own tables first.
    fn open_table(&self, catalog: &mut CatalogGuard, dir: &str) -> Option<Arc<ManagedTable>> {
        if let Some(block) = catalog.block()
            && let Some(table) = block.tables.get(dir)
        {
            return Some(table.clone());
        }
        self.managed_table(dir)
    }

    /// Registers a managed table under `name` and remembers it by its directory: for every
    /// session, or for a transaction block until it commits.
    fn register_managed(
        &self,
        catalog: &mut CatalogGuard,
        name: &QualifiedName,
        dir: &str,
        table: Arc<ManagedTable>,
    ) -> Result<()> {
        let defaults = catalog
            .defaults
            .iter()
            .filter(|d| d.table == *name)
            .filter_map(|d| match keys::plan_default(catalog.ctx(), &d.sql) {
                Ok(expr) => Some((d.column.clone(), expr)),
                Err(e) => {
                    // A default that no longer plans must not keep the table closed.
                    tracing::warn!(table = %name, column = %d.column, "DEFAULT {}: {e}", d.sql);
                    None
                }
            })
            .collect();
        table.set_defaults(defaults);
        match catalog.block() {
            Some(block) => {
                block.tables.insert(dir.to_string(), table.clone());
            }
            None => {
                self.managed
                    .lock()
                    .expect("lock poisoned by a panic")
                    .insert(dir.to_string(), table.clone());
            }
        }
        Self::register_in(catalog.ctx(), name, table)
    }

    /// Registers every schema, table and view of the persisted catalog, and removes table
    /// directories that no catalog entry references (left by a crash before a commit).
    async fn restore(&self) -> Result<()> {
        let mut catalog = self.lock_catalog(&self.ctx).await?;
        self.seal_clear_credentials(&mut catalog);
        let state = catalog.clone();
        for schema in &state.schemas {
            Self::ensure_schema_registered(&self.ctx, schema)?;
        }
        for (name, relation) in &state.relations {
            match relation {
                Relation::Managed { dir } => {
                    let table = ManagedTable::open(self.managed_url(dir)?)
                        .await
                        .map_err(|e| {
                            Error::Catalog(format!("cannot open table {name} (tables/{dir}): {e}"))
                        })?;
                    self.register_managed(&mut catalog, name, dir, table)?;
                }
                Relation::External(external) => {
                    // A source that went away (a deleted file, an unreachable bucket) must not
                    // keep the rest of the database from opening; its entry stays.
                    if let Err(e) = self
                        .register_external(&self.ctx, name, external, &state.secrets)
                        .await
                    {
                        tracing::warn!("external table {name} is unavailable: {e}");
                    }
                }
                Relation::View { .. } => {}
            }
        }
        self.rebuild_views(&self.ctx, &state).await;
        self.remove_orphan_table_dirs(&state)?;
        Ok(())
    }

    /// Registers `schema` in the catalog of `ctx` (the shared one or a block's) if missing.
    fn ensure_schema_registered(ctx: &SessionContext, schema: &str) -> Result<()> {
        let catalog = ctx
            .catalog(CATALOG_NAME)
            .ok_or_else(|| Error::Catalog("the tenure catalog is not registered".into()))?;
        if catalog.schema(schema).is_none() {
            catalog.register_schema(
                schema,
                Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
            )?;
        }
        Ok(())
    }

    /// (Re-)creates every view from its definition in the catalog of `ctx` (the shared one
    /// or a block's), in catalog order, retrying those whose dependencies come later. Each
    /// view is replaced in place, so a query planned meanwhile never finds it missing. A
    /// view whose tables are gone stays in the catalog, unregistered (as do the views that
    /// read it), and is logged; it comes back when they do.
    async fn rebuild_views(&self, ctx: &SessionContext, state: &CatalogState) {
        let views: Vec<(&QualifiedName, &str)> = state
            .relations
            .iter()
            .filter_map(|(name, relation)| match relation {
                Relation::View { sql } => Some((name, sql.as_str())),
                _ => None,
            })
            .collect();
        let mut unavailable: HashMap<QualifiedName, Error> = HashMap::new();
        loop {
            let mut pending: Vec<(&QualifiedName, &str)> = views
                .iter()
                .filter(|(name, _)| !unavailable.contains_key(*name))
                .copied()
                .collect();
            let mut errors = HashMap::new();
            loop {
                let before = pending.len();
                let mut failed = Vec::new();
                for (name, sql) in pending {
                    if let Err(e) = Self::replace_view(ctx, sql).await {
                        errors.insert(name.clone(), e);
                        failed.push((name, sql));
                    }
                }
                if failed.is_empty() || failed.len() == before {
                    pending = failed;
                    break;
                }
                pending = failed;
            }
            if pending.is_empty() {
                break;
            }
            // Unregister what cannot be planned now, then plan the rest again: a view that
            // read one of these held its old plan.
            for (name, _) in pending {
                let _ = Self::deregister_in(ctx, name);
                if let Some(e) = errors.remove(name) {
                    unavailable.insert(name.clone(), e);
                }
            }
        }
        for (name, e) in unavailable {
            tracing::warn!("view {name} is unavailable: {e}");
        }
    }

    /// Plans a stored `CREATE VIEW` as `CREATE OR REPLACE VIEW` and runs it in `ctx`.
    async fn replace_view(ctx: &SessionContext, sql: &str) -> Result<()> {
        let mut statements = crate::sql::parse(sql)?;
        let (Some(Statement::DataFusion(DFStatement::Statement(inner))), true) =
            (statements.pop(), statements.is_empty())
        else {
            return Err(Error::Catalog(format!("not a view definition: {sql}")));
        };
        let SqlStatement::CreateView(mut create) = *inner else {
            return Err(Error::Catalog(format!("not a view definition: {sql}")));
        };
        create.or_replace = true;
        let statement = DFStatement::Statement(Box::new(SqlStatement::CreateView(create)));
        let plan = ctx.state().statement_to_plan(statement).await?;
        ctx.execute_logical_plan(plan).await?;
        Ok(())
    }

    fn remove_orphan_table_dirs(&self, state: &CatalogState) -> Result<()> {
        let referenced = state.managed_dirs();
        for entry in std::fs::read_dir(self.data_dir.tables_dir())? {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            let ours = name.starts_with('t') && name[1..].chars().all(|c| c.is_ascii_digit());
            if ours && !referenced.contains_key(name) {
                tracing::info!("removing table directory tables/{name}, which no table uses");
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(())
    }
}

fn build_context(
    config: &Config,
    data_dir: &DataDir,
    access: &PathAccess,
) -> Result<SessionContext> {
    let session_config = SessionConfig::new()
        .with_target_partitions(config.threads)
        .with_batch_size(config.batch_size)
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(true)
        .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_SCHEMA)
        .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
        // `timestamptz` is a time stamp in UTC (Delta's `timestamp`), as in PostgreSQL; without
        // a zone DataFusion reads it as a plain `timestamp` and drops the offset.
        .set_str("datafusion.execution.time_zone", "UTC")
        // As delta-rs's own sessions do: hash-join IN-list pushdown can panic on the
        // dictionary-encoded partition columns of Delta scans.
        .set_usize("datafusion.optimizer.hash_join_inlist_pushdown_max_size", 0)
        .set_usize(
            "datafusion.optimizer.hash_join_inlist_pushdown_max_distinct_values",
            0,
        );
    let disk = DiskManagerBuilder::default()
        .with_mode(DiskManagerMode::Directories(vec![data_dir.tmp_dir()]));
    let mut runtime = RuntimeEnvBuilder::new().with_disk_manager_builder(disk);
    if let Some(limit) = config.memory_limit {
        runtime = runtime.with_memory_limit(limit, 1.0);
    }
    let runtime = Arc::new(runtime.build()?);
    if let PathAccess::Roots(_) = access {
        // Every local read, listing and write of a server's clients (listing tables, COPY
        // TO) goes through the store that checks each file against the roots.
        let file = url::Url::parse("file://").map_err(|e| Error::Internal(e.to_string()))?;
        let confined = paths::ConfinedFiles::new(
            access.clone(),
            vec![data_dir.tables_dir(), data_dir.temp_tables_dir()],
        );
        runtime.register_object_store(&file, Arc::new(confined));
    }
    // Delta writes (CREATE TABLE AS, INSERT, UPDATE, DELETE) plan custom nodes that only
    // delta-rs's planner knows; it plans everything else like DataFusion's default planner.
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(session_config)
        .with_runtime_env(runtime)
        .with_physical_optimizer_rules({
            let mut rules =
                datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
            rules.push(Arc::new(cooperative::YieldingJoins));
            rules
        })
        .with_query_planner(DeltaPlanner::new())
        .build();
    Ok(SessionContext::new_with_state(state))
}

/// The `tenure` schema's tables: `tenure.models`, `tenure.keys`, `tenure.comments`,
/// `tenure.defaults`, `tenure.table_sizes`, `tenure.table_storage` and
/// `tenure.column_types`.
fn register_system_tables(
    ctx: &SessionContext,
    models: Arc<ModelStore>,
    saved: crate::catalog::SavedCatalog,
    tables_dir: std::path::PathBuf,
    open_tables: system_tables::OpenTables,
    builtin_roles: &[String],
) -> Result<()> {
    use datafusion::catalog::SchemaProvider;
    use system_tables::SystemTable;
    let catalog = ctx
        .catalog(CATALOG_NAME)
        .ok_or_else(|| Error::Catalog("the tenure catalog is not registered".into()))?;
    let schema = Arc::new(datafusion::catalog::MemorySchemaProvider::new());
    schema.register_table(
        "models".to_string(),
        Arc::new(SystemTable(system_tables::ModelsTable { store: models })),
    )?;
    let builtin: Arc<[String]> = builtin_roles.into();
    schema.register_table(
        "roles".to_string(),
        Arc::new(SystemTable(role_tables::RolesTable {
            catalog: saved.clone(),
            builtin: builtin.clone(),
        })),
    )?;
    schema.register_table(
        "role_members".to_string(),
        Arc::new(SystemTable(role_tables::RoleMembersTable {
            catalog: saved.clone(),
            builtin: builtin.clone(),
        })),
    )?;
    schema.register_table(
        "role_passwords".to_string(),
        Arc::new(SystemTable(role_tables::RolePasswordsTable {
            catalog: saved.clone(),
            builtin: builtin.clone(),
        })),
    )?;
    schema.register_table(
        "policies".to_string(),
        Arc::new(SystemTable(role_tables::PoliciesTable {
            catalog: saved.clone(),
            builtin: builtin.clone(),
        })),
    )?;
    schema.register_table(
        "default_privileges".to_string(),
        Arc::new(SystemTable(role_tables::DefaultPrivilegesTable {
            catalog: saved.clone(),
            builtin: builtin.clone(),
        })),
    )?;
    schema.register_table(
        "table_grants".to_string(),
        Arc::new(SystemTable(role_tables::TableGrantsTable {
            catalog: saved.clone(),
            builtin,
        })),
    )?;
    schema.register_table(
        "secrets".to_string(),
        Arc::new(SystemTable(secrets::SecretsTable {
            catalog: saved.clone(),
        })),
    )?;
    schema.register_table(
        "keys".to_string(),
        Arc::new(SystemTable(system_tables::KeysTable {
            catalog: saved.clone(),
        })),
    )?;
    schema.register_table(
        "comments".to_string(),
        Arc::new(SystemTable(system_tables::CommentsTable {
            catalog: saved.clone(),
        })),
    )?;
    schema.register_table(
        "defaults".to_string(),
        Arc::new(SystemTable(system_tables::DefaultsTable {
            catalog: saved.clone(),
        })),
    )?;
    schema.register_table(
        "table_sizes".to_string(),
        Arc::new(SystemTable(system_tables::TableSizesTable {
            catalog: saved.clone(),
            tables_dir,
        })),
    )?;
    schema.register_table(
        "table_storage".to_string(),
        Arc::new(SystemTable(system_tables::TableStorageTable {
            catalog: saved.clone(),
            tables: open_tables.clone(),
        })),
    )?;
    schema.register_table(
        "temporary_columns".to_string(),
        Arc::new(SystemTable(temporary::TemporaryColumnsTable)),
    )?;
    schema.register_table(
        "column_types".to_string(),
        Arc::new(SystemTable(system_tables::ColumnTypesTable {
            catalog: saved,
            tables: open_tables,
        })),
    )?;
    catalog.register_schema(SYSTEM_SCHEMA, schema)?;
    Ok(())
}
