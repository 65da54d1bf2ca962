//! Statement dispatch: what tenure does itself (anything that changes the catalog or stored
//! data; writes to tables are in `dml`) and what it hands to DataFusion, as the statement's
//! [`Route`] says.

use std::any::Any;
use std::sync::Arc;

use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::source_as_provider;

use datafusion::common::SchemaReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    CreateMemoryTable, CreateView, DdlStatement, DropCatalogSchema, DropTable, DropView,
    LogicalPlan, WriteOp,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{
    AlterTable, AlterTableOperation, Ident, ObjectName, ObjectType, RenameTableNameKind, SetExpr,
    Statement as SqlStatement,
};
use futures::TryStreamExt;

use super::keys::{self, Declarations};
use super::transaction::CatalogGuard;
use super::{Engine, Output};
use crate::access::Object;
use crate::catalog::{KeyKind, QualifiedName, Relation};
use crate::error::{Error, Result};
use crate::pg::sqlstate::SqlState;
use crate::sql::Route;
use crate::storage::ManagedTable;

impl Engine {
    /// Executes one statement that DataFusion parsed: from its syntax where
    /// [`Route::of_datafusion`] says so, else from its DataFusion plan.
    pub(super) async fn execute_datafusion(
        &self,
        session: &SessionContext,
        mut statement: DFStatement,
    ) -> Result<Output> {
        if let DFStatement::Statement(inner) = &mut statement {
            super::temporary::qualify_temporary_names(inner, session);
        }
        if Route::of_datafusion(&statement) == Route::Syntax {
            self.run_from_syntax(session, statement).await
        } else {
            self.run_with_datafusion(session, statement).await
        }
    }

    /// Carries out a statement of [`Route::Syntax`].
    async fn run_from_syntax(
        &self,
        session: &SessionContext,
        statement: DFStatement,
    ) -> Result<Output> {
        self.authorize_syntax(session, &statement).await?;
        match statement {
            DFStatement::CreateExternalTable(create) => {
                self.create_external_table(session, create).await
            }
            DFStatement::CopyTo(mut copy) => {
                copy.target = self.copy_target(&copy.target)?;
                self.run_with_datafusion(session, DFStatement::CopyTo(copy))
                    .await
            }
            DFStatement::Statement(inner) => match *inner {
                SqlStatement::Update(update) => self.update(session, update).await,
                SqlStatement::Delete(delete) => self.delete(session, delete).await,
                SqlStatement::Merge(merge) => self.merge(session, merge).await,
                SqlStatement::Truncate(truncate) => self.truncate(session, truncate).await,
                SqlStatement::AlterTable(alter)
                    if alter.operations.iter().any(|o| {
                        matches!(
                            o,
                            AlterTableOperation::EnableRowLevelSecurity
                                | AlterTableOperation::DisableRowLevelSecurity
                        )
                    }) =>
                {
                    self.alter_row_security(session, &alter).await
                }
                SqlStatement::AlterTable(alter) => self.alter_table(session, alter).await,
                SqlStatement::CreatePolicy(create) => self.create_policy(session, create).await,
                SqlStatement::DropPolicy(drop) => self.drop_policy(session, drop).await,
                SqlStatement::CreateIndex(create) => self.create_index(session, create).await,
                SqlStatement::Comment {
                    object_type,
                    object_name,
                    comment,
                    if_exists,
                } => {
                    self.comment_on(session, object_type, &object_name, comment, if_exists)
                        .await
                }
                SqlStatement::Drop {
                    object_type: ObjectType::Index,
                    names,
                    if_exists,
                    ..
                } => self.drop_indexes(session, &names, if_exists).await,
                SqlStatement::CreateTable(mut create) if create.temporary => {
                    if crate::sql::route::declares_keys_or_defaults(&create) {
                        return Err(Error::unsupported(
                            "keys, constraints and defaults on temporary tables are not \
                             supported",
                        ));
                    }
                    // DataFusion plans the table without the two clauses it refuses.
                    create.temporary = false;
                    let on_commit = create.on_commit.take();
                    let statement =
                        DFStatement::Statement(Box::new(SqlStatement::CreateTable(create)));
                    match session.state().statement_to_plan(statement).await? {
                        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                            let in_block = super::transaction::transaction_of(session).is_some();
                            self.create_temporary_table(session, create, on_commit, in_block)
                                .await
                        }
                        other => Err(Error::Internal(format!(
                            "CREATE TEMPORARY TABLE planned as {}",
                            other.display()
                        ))),
                    }
                }
                SqlStatement::CreateTable(mut create) => {
                    let declared = keys::take_declarations(&mut create)?;
                    let statement =
                        DFStatement::Statement(Box::new(SqlStatement::CreateTable(create)));
                    match session.state().statement_to_plan(statement).await? {
                        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                            let made = match self.relation_object(&create.name) {
                                Some(object) => self.to_be_created(session, object).await,
                                None => None,
                            };
                            let output = self.create_table(session, create, declared).await?;
                            self.record_created(session, made).await?;
                            Ok(output)
                        }
                        other => Err(Error::invalid(format!(
                            "keys and defaults are supported on tables tenure manages, not on {}",
                            other.display()
                        ))),
                    }
                }
                other => Err(Error::Internal(format!("no syntax route for {other}"))),
            },
            other => Err(Error::Internal(format!("no syntax route for {other}"))),
        }
    }

    /// Plans with DataFusion in `session`, then carries the plan out.
    async fn run_with_datafusion(
        &self,
        session: &SessionContext,
        statement: DFStatement,
    ) -> Result<Output> {
        let plan = self.statement_to_plan(session, statement).await?;
        self.execute_plan_in(session, plan).await
    }

    /// Plans `statement` with DataFusion in `session`, after filling in what DataFusion
    /// cannot plan itself (`DEFAULT` in INSERT, see `fill_insert_defaults`) and naming
    /// scalar subquery items as PostgreSQL does (see `names`).
    pub async fn statement_to_plan(
        &self,
        session: &SessionContext,
        mut statement: DFStatement,
    ) -> Result<LogicalPlan> {
        if let DFStatement::Statement(inner) = &mut statement {
            super::temporary::qualify_temporary_names(inner, session);
            self.fill_insert_defaults(session, inner).await?;
            super::names::name_subquery_items(inner);
            crate::pg::names::name_result_columns(inner);
            crate::pg::rewrite::nested_values_in_insert_sources(inner);
            crate::pg::rewrite::rewrite_json_syntax(inner);
        }
        // DataFusion refuses two items of one name; PostgreSQL allows them. The statement is
        // kept for a second try, except an INSERT's VALUES (large, and without select list).
        let again = match &statement {
            DFStatement::Statement(inner) if !inserts_values(inner) => Some(statement.clone()),
            _ => None,
        };
        let plan = match session.state().statement_to_plan(statement).await {
            Err(e)
                if e.to_string()
                    .contains("Projections require unique expression names") =>
            {
                let Some(DFStatement::Statement(mut inner)) = again else {
                    return Err(e.into());
                };
                super::names::alias_duplicate_items(&mut inner);
                session
                    .state()
                    .statement_to_plan(DFStatement::Statement(inner))
                    .await?
            }
            planned => planned?,
        };
        self.authorize_plan(session, &plan).await?;
        self.secure_plan(session, plan).await
    }

    /// Carries out a plan made in `session` (with any parameters already bound): plans that
    /// change stored state go to Delta Lake and the catalog; others (queries, SET, EXPLAIN)
    /// run in the session.
    pub async fn execute_plan_in(
        &self,
        session: &SessionContext,
        plan: LogicalPlan,
    ) -> Result<Output> {
        // Checked when planned too; here again for plans made elsewhere (COPY FROM STDIN's).
        self.authorize_plan(session, &plan).await?;
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                let made = match self.relation_object(&create.name) {
                    Some(object) => self.to_be_created(session, object).await,
                    None => None,
                };
                let output = self
                    .create_table(session, create, Declarations::default())
                    .await?;
                self.record_created(session, made).await?;
                Ok(output)
            }
            LogicalPlan::Ddl(DdlStatement::CreateView(create)) => {
                let made = match self.relation_object(&create.name) {
                    Some(object) => self.to_be_created(session, object).await,
                    None => None,
                };
                let output = self.create_view(session, create).await?;
                self.record_created(session, made).await?;
                Ok(output)
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(drop)) => {
                let object = self.relation_object(&drop.name);
                let output = self.drop_table(session, drop).await?;
                if let Some(object) = object {
                    self.forget_object(session, object, None).await?;
                }
                Ok(output)
            }
            LogicalPlan::Ddl(DdlStatement::DropView(drop)) => {
                let object = self.relation_object(&drop.name);
                let output = self.drop_view(session, drop).await?;
                if let Some(object) = object {
                    self.forget_object(session, object, None).await?;
                }
                Ok(output)
            }
            LogicalPlan::Ddl(DdlStatement::CreateCatalogSchema(create)) => {
                let schema = create.schema_name.rsplit('.').next().unwrap_or_default();
                let made = self
                    .to_be_created(session, Object::Schema(schema.to_string()))
                    .await;
                let output = self
                    .create_schema(session, &create.schema_name, create.if_not_exists)
                    .await?;
                self.record_created(session, made).await?;
                Ok(output)
            }
            LogicalPlan::Ddl(DdlStatement::DropCatalogSchema(drop)) => {
                let schema = Object::Schema(drop.name.schema_name().to_string());
                let output = self.drop_schema(session, drop).await?;
                self.forget_object(session, schema, None).await?;
                Ok(output)
            }
            LogicalPlan::Ddl(DdlStatement::CreateCatalog(_)) => Err(Error::unsupported(
                "CREATE DATABASE is not supported; use CREATE SCHEMA",
            )),
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(_)) => Err(Error::invalid(
                "CREATE EXTERNAL TABLE must be written as a statement",
            )),
            LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::Insert(_)) => {
                self.insert(session, dml).await
            }
            LogicalPlan::Dml(dml) => Err(Error::unsupported(format!(
                "{} is not supported on {}",
                dml.op.name(),
                dml.table_name
            ))),
            plan => {
                let sources = self.external_sources(&plan);
                let names = crate::pg::names::postgres_schema(&plan);
                let frame = session.execute_logical_plan(plan).await?;
                let stream = frame
                    .execute_stream()
                    .await
                    .map_err(|e| with_sources(e, &sources))?;
                let named = renamed_schema(&stream.schema(), &names);
                if sources.is_empty() && named == stream.schema() {
                    return Ok(Output::Rows(stream));
                }
                // Result columns carry PostgreSQL's names (`round`, not DataFusion's
                // `round(avg(t.x),Int64(2))`). Errors from parsing files (a malformed CSV
                // line, a corrupt Parquet file) name the line but not the table; add which
                // external data the query was reading.
                let renamed = named.clone();
                let stream =
                    stream
                        .map_err(move |e| with_sources(e, &sources))
                        .and_then(move |batch| {
                            let renamed = renamed.clone();
                            async move {
                                datafusion::arrow::record_batch::RecordBatch::try_new(
                                    renamed,
                                    batch.columns().to_vec(),
                                )
                                .map_err(Into::into)
                            }
                        });
                Ok(Output::Rows(Box::pin(RecordBatchStreamAdapter::new(
                    named, stream,
                ))))
            }
        }
    }

    /// Plans a query (not DDL or DML) physically in `session`, with the task context it
    /// runs in: for a caller that keeps the plan and runs it again after
    /// `reset_plan_states` (see [`super::plan_cache`]).
    pub async fn physical_plan_in(
        &self,
        session: &SessionContext,
        plan: &LogicalPlan,
    ) -> Result<(Arc<dyn ExecutionPlan>, Arc<TaskContext>)> {
        self.authorize_plan(session, plan).await?;
        let state = session.state();
        let physical = state.create_physical_plan(plan).await?;
        Ok((physical, Arc::new(TaskContext::from(&state))))
    }

    /// Runs a physical plan from [`Engine::physical_plan_in`].
    pub fn execute_physical(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
    ) -> Result<Output> {
        Ok(Output::Rows(execute_stream(plan, task)?))
    }

    /// "external table NAME at LOCATION" for each file-backed table `plan` scans. Read from
    /// the scanned providers, so queries never wait for the catalog lock that DDL holds.
    fn external_sources(&self, plan: &LogicalPlan) -> Vec<String> {
        let mut sources = Vec::new();
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                let provider = source_as_provider(&scan.source)?;
                let provider: &dyn Any = provider.as_ref();
                if let Some(listing) = provider.downcast_ref::<ListingTable>() {
                    let name = self
                        .qualify(&scan.table_name)
                        .map_or_else(|_| scan.table_name.to_string(), |n| n.to_string());
                    let paths: Vec<String> = listing
                        .table_paths()
                        .iter()
                        .map(|p| p.to_string())
                        .collect();
                    sources.push(format!("external table {name} at {}", paths.join(", ")));
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        sources
    }

    async fn create_table(
        &self,
        session: &SessionContext,
        create: CreateMemoryTable,
        declared: Declarations,
    ) -> Result<Output> {
        if create.temporary {
            return Err(Error::Internal(
                "CREATE TEMPORARY TABLE must run as a statement (Engine::execute_in)".into(),
            ));
        }
        if !create.column_defaults.is_empty() {
            // Defaults are taken from the statement (see keys.rs) before DataFusion plans it.
            return Err(Error::Catalog(
                "a CREATE TABLE with defaults must run as a statement (Engine::execute_in)".into(),
            ));
        }
        if !create.constraints.is_empty() {
            // Keys are taken from the statement (see keys.rs) before DataFusion plans it.
            return Err(Error::Catalog(
                "a CREATE TABLE with keys must run as a statement (Engine::execute_in)".into(),
            ));
        }
        let name = self.qualify(&create.name)?;
        let is_query = !matches!(create.input.as_ref(), LogicalPlan::EmptyRelation(_));
        let input = Arc::unwrap_or_clone(create.input);
        let (tag, rows) = if is_query {
            ("SELECT", true)
        } else {
            ("CREATE TABLE", false)
        };
        let written = self
            .create_managed_table(
                session,
                &name,
                input,
                create.if_not_exists,
                create.or_replace,
                declared,
            )
            .await?;
        Ok(Output::Command {
            tag,
            rows: if rows {
                written.map(|n| n as u64)
            } else {
                None
            },
        })
    }

    /// Writes `input` as a new managed table `name` with the keys and column defaults it
    /// `declared`. Returns the number of rows written, or `None` when the table existed and
    /// `if_not_exists` was given.
    pub async fn create_managed_table(
        &self,
        session: &SessionContext,
        name: &QualifiedName,
        input: LogicalPlan,
        if_not_exists: bool,
        or_replace: bool,
        declared: Declarations,
    ) -> Result<Option<usize>> {
        let mut catalog = self.lock_catalog(session).await?;
        catalog.require_schema(&name.schema)?;
        let previous = catalog.get(name).cloned();
        match &previous {
            Some(_) if if_not_exists => return Ok(None),
            Some(existing @ Relation::View { .. }) => return Err(existing.already_exists(name)),
            Some(existing) if !or_replace => return Err(existing.already_exists(name)),
            _ => {}
        }
        let schema = input.schema().as_arrow().clone();
        let keys = self.resolve_keys(&mut catalog, name, &schema, declared.keys)?;
        let defaults = self.check_defaults(session, name, &schema, declared.defaults)?;
        let (dir, table, rows) = self.write_new_table(&mut catalog, session, input).await?;
        let mut next = catalog.clone();
        next.put(name.clone(), Relation::Managed { dir: dir.clone() });
        // A replaced table's keys go; foreign keys that reference it stay if the new table
        // has the key they reference.
        next.keys.retain(|k| match &k.kind {
            _ if k.table == *name => false,
            KeyKind::ForeignKey {
                references,
                columns,
                ..
            } if references == name => keys
                .iter()
                .any(|new| new.kind.is_unique() && new.columns == *columns),
            _ => true,
        });
        next.keys.extend(keys);
        next.comments.retain(|c| c.relation != *name);
        next.defaults.retain(|d| d.table != *name);
        next.defaults.extend(defaults);
        if let Err(e) = self.replace_catalog(&mut catalog, next) {
            let _ = std::fs::remove_dir_all(self.data_dir.tables_dir().join(&dir));
            return Err(e);
        }
        self.register_managed(&mut catalog, name, &dir, table)?;
        if let Some(Relation::Managed { dir: old }) = &previous {
            self.retire_dir(&mut catalog, old);
        }
        if previous.is_some() {
            self.rebuild_views(&catalog.ctx().clone(), &catalog).await;
        }
        Ok(Some(rows))
    }

    /// Writes the result of `input` (planned in `session`) as a new Delta table in a fresh
    /// directory; returns the directory, the table and its row count. The data is committed
    /// before any catalog names it: a crash in between leaves an orphan directory that the
    /// next start removes, never a half-written table.
    pub(super) async fn write_new_table(
        &self,
        catalog: &mut CatalogGuard,
        session: &SessionContext,
        input: LogicalPlan,
    ) -> Result<(String, Arc<ManagedTable>, usize)> {
        let dir = catalog.allocate_table_dir();
        let path = self.data_dir.tables_dir().join(&dir);
        std::fs::create_dir_all(&path)?;
        if let Some(block) = catalog.block() {
            // Noted before writing, so a cancelled write is removed with the block.
            block.created.push(dir.clone());
        }
        let url = self.managed_url(&dir)?;
        match ManagedTable::create_from_plan(url, input, Arc::new(session.state())).await {
            Ok((table, rows)) => Ok((dir, table, rows)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                if let Some(block) = catalog.block() {
                    block.created.retain(|d| *d != dir);
                }
                Err(e)
            }
        }
    }

    /// Deletes the table directory `dir`, which the catalog no longer names: at once, or
    /// for a directory the saved catalog still names, when the transaction block commits.
    fn retire_dir(&self, catalog: &mut CatalogGuard, dir: &str) {
        let Some(block) = catalog.block() else {
            self.forget_managed_dir(dir);
            return;
        };
        if !block.owns(dir) {
            block.retired.push(dir.to_string());
            return;
        }
        block.created.retain(|d| d != dir);
        block.tables.remove(dir);
        let path = self.data_dir.tables_dir().join(dir);
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!("could not remove {}: {e}", path.display());
        }
    }

    /// Drops the in-memory handle of a managed table and deletes its files. Only called after
    /// the saved catalog no longer names it.
    pub(super) fn forget_managed_dir(&self, dir: &str) {
        self.managed
            .lock()
            .expect("lock poisoned by a panic")
            .remove(dir);
        let path = self.data_dir.tables_dir().join(dir);
        if let Err(e) = std::fs::remove_dir_all(&path) {
            // Harmless: the next start removes directories no table uses.
            tracing::warn!("could not remove {}: {e}", path.display());
        }
    }

    async fn create_view(&self, session: &SessionContext, create: CreateView) -> Result<Output> {
        if create.temporary {
            return Err(Error::unsupported("CREATE TEMPORARY VIEW is not supported"));
        }
        let name = self.qualify(&create.name)?;
        let Some(sql) = create.definition.clone() else {
            return Err(Error::invalid("a view needs its SQL definition"));
        };
        let mut catalog = self.lock_catalog(session).await?;
        catalog.require_schema(&name.schema)?;
        match catalog.get(&name) {
            Some(Relation::View { .. }) if create.or_replace => {}
            Some(existing) => return Err(existing.already_exists(&name)),
            None => {}
        }
        let mut next = catalog.clone();
        next.put(name.clone(), Relation::View { sql });
        self.replace_catalog(&mut catalog, next)?;
        let ctx = catalog.ctx().clone();
        // Replaced in place: a query planned meanwhile never finds the view missing.
        let create = CreateView {
            or_replace: true,
            ..create
        };
        ctx.execute_logical_plan(LogicalPlan::Ddl(DdlStatement::CreateView(create)))
            .await?;
        // Views that read this one hold its old plan; re-create them.
        self.rebuild_views(&ctx, &catalog).await;
        Ok(Output::command("CREATE VIEW"))
    }

    async fn drop_table(&self, session: &SessionContext, drop: DropTable) -> Result<Output> {
        let name = self.qualify(&drop.name)?;
        if let Some(dropped) = self.drop_temporary_table(session, &name, drop.if_exists) {
            return dropped;
        }
        let mut catalog = self.lock_catalog(session).await?;
        match catalog.get(&name) {
            None if drop.if_exists => return Ok(Output::command("DROP TABLE")),
            None => {
                return Err(Error::NotFound {
                    kind: "table",
                    name: name.to_string(),
                });
            }
            Some(Relation::View { .. }) => {
                return Err(Error::invalid(format!("{name} is a view; use DROP VIEW")));
            }
            Some(_) => {}
        }
        let mut next = catalog.clone();
        let removed = next.remove(&name);
        next.forget(&name);
        self.replace_catalog(&mut catalog, next)?;
        let ctx = catalog.ctx().clone();
        Self::deregister_in(&ctx, &name)?;
        if let Some(Relation::Managed { dir }) = removed {
            self.retire_dir(&mut catalog, &dir);
        }
        self.rebuild_views(&ctx, &catalog).await;
        Ok(Output::command("DROP TABLE"))
    }

    async fn drop_view(&self, session: &SessionContext, drop: DropView) -> Result<Output> {
        let name = self.qualify(&drop.name)?;
        let mut catalog = self.lock_catalog(session).await?;
        match catalog.get(&name) {
            None if drop.if_exists => return Ok(Output::command("DROP VIEW")),
            None => {
                return Err(Error::NotFound {
                    kind: "view",
                    name: name.to_string(),
                });
            }
            Some(Relation::View { .. }) => {}
            Some(_) => return Err(Error::invalid(format!("{name} is a table; use DROP TABLE"))),
        }
        let mut next = catalog.clone();
        next.remove(&name);
        next.forget(&name);
        self.replace_catalog(&mut catalog, next)?;
        let ctx = catalog.ctx().clone();
        Self::deregister_in(&ctx, &name)?;
        self.rebuild_views(&ctx, &catalog).await;
        Ok(Output::command("DROP VIEW"))
    }

    async fn create_schema(
        &self,
        session: &SessionContext,
        schema_name: &str,
        if_not_exists: bool,
    ) -> Result<Output> {
        let schema = match schema_name.split_once('.') {
            Some((catalog, schema)) if catalog == super::CATALOG_NAME => schema,
            Some((catalog, _)) => {
                return Err(Error::state(
                    SqlState::UndefinedObject,
                    format!("catalog {catalog} does not exist"),
                ));
            }
            None => schema_name,
        };
        if super::RESERVED_SCHEMAS.contains(&schema) {
            return Err(Error::invalid(format!(
                "schema {schema} is reserved for system tables"
            )));
        }
        // As in PostgreSQL; the sessions' temporary schemas are pg_temp_N.
        if schema.starts_with("pg_") {
            return Err(Error::state(
                SqlState::ReservedName,
                format!(
                    "unacceptable schema name \"{schema}\": the prefix \"pg_\" is reserved \
                     for system schemas"
                ),
            ));
        }
        let mut catalog = self.lock_catalog(session).await?;
        if catalog.contains_schema(schema) {
            if if_not_exists {
                return Ok(Output::command("CREATE SCHEMA"));
            }
            return Err(Error::AlreadyExists {
                kind: "schema",
                name: schema.to_string(),
            });
        }
        let mut next = catalog.clone();
        next.schemas.push(schema.to_string());
        self.replace_catalog(&mut catalog, next)?;
        Self::ensure_schema_registered(catalog.ctx(), schema)?;
        Ok(Output::command("CREATE SCHEMA"))
    }

    async fn drop_schema(
        &self,
        session: &SessionContext,
        drop: DropCatalogSchema,
    ) -> Result<Output> {
        let schema = match &drop.name {
            SchemaReference::Bare { schema } => schema.to_string(),
            SchemaReference::Full { schema, catalog }
                if catalog.as_ref() == super::CATALOG_NAME =>
            {
                schema.to_string()
            }
            SchemaReference::Full { catalog, .. } => {
                return Err(Error::state(
                    SqlState::UndefinedObject,
                    format!("catalog {catalog} does not exist"),
                ));
            }
        };
        if schema == super::DEFAULT_SCHEMA {
            return Err(Error::invalid("schema public cannot be dropped"));
        }
        let mut catalog = self.lock_catalog(session).await?;
        if !catalog.contains_schema(&schema) {
            if drop.if_exists {
                return Ok(Output::command("DROP SCHEMA"));
            }
            return Err(Error::NotFound {
                kind: "schema",
                name: schema,
            });
        }
        let members: Vec<QualifiedName> = catalog.in_schema(&schema).cloned().collect();
        if !members.is_empty() && !drop.cascade {
            return Err(Error::invalid(format!(
                "schema {schema} is not empty ({} relations); use DROP SCHEMA {schema} CASCADE",
                members.len()
            )));
        }
        let mut next = catalog.clone();
        let mut dirs = Vec::new();
        for member in &members {
            if let Some(Relation::Managed { dir }) = next.remove(member) {
                dirs.push(dir);
            }
            next.forget(member);
        }
        next.schemas.retain(|s| *s != schema);
        self.replace_catalog(&mut catalog, next)?;
        let ctx = catalog.ctx().clone();
        for member in &members {
            Self::deregister_in(&ctx, member)?;
        }
        if let Some(tenure) = ctx.catalog(super::CATALOG_NAME) {
            tenure.deregister_schema(&schema, true)?;
        }
        for dir in dirs {
            self.retire_dir(&mut catalog, &dir);
        }
        self.rebuild_views(&ctx, &catalog).await;
        Ok(Output::command("DROP SCHEMA"))
    }

    async fn alter_table(&self, session: &SessionContext, alter: AlterTable) -> Result<Output> {
        let [AlterTableOperation::RenameTable { table_name }] = alter.operations.as_slice() else {
            return Err(Error::invalid("ALTER TABLE supports only RENAME TO so far"));
        };
        let (RenameTableNameKind::To(new_name) | RenameTableNameKind::As(new_name)) = table_name;
        let old = self.qualify_object(&alter.name)?;
        let mut new = self.qualify_object(new_name)?;
        if new_name.0.len() == 1 {
            // PostgreSQL semantics: an unqualified new name stays in the table's schema.
            new.schema = old.schema.clone();
        }
        let mut catalog = self.lock_catalog(session).await?;
        let relation = match catalog.get(&old) {
            None if alter.if_exists => return Ok(Output::command("ALTER TABLE")),
            None => {
                return Err(Error::NotFound {
                    kind: "table",
                    name: old.to_string(),
                });
            }
            // As in PostgreSQL, ALTER TABLE ... RENAME also renames a view (dbt does this).
            Some(Relation::View { sql }) => Relation::View {
                sql: self.renamed_view_sql(sql, &new)?,
            },
            Some(relation) => relation.clone(),
        };
        if catalog.get(&new).is_some() {
            return Err(Error::AlreadyExists {
                kind: "relation",
                name: new.to_string(),
            });
        }
        catalog.require_schema(&new.schema)?;
        let ctx = catalog.ctx().clone();
        let provider = match relation {
            Relation::View { .. } => None,
            _ => Some(ctx.table_provider(Self::table_reference(&old)).await?),
        };
        let mut next = catalog.clone();
        let position = next.relations.iter().position(|(n, _)| *n == old);
        next.remove(&old);
        // The renamed relation keeps its place, so views are still re-created after the
        // tables they read.
        match position {
            Some(at) => next.relations.insert(at, (new.clone(), relation)),
            None => next.put(new.clone(), relation),
        }
        next.rename_metadata(&old, &new);
        self.replace_catalog(&mut catalog, next)?;
        Self::deregister_in(&ctx, &old)?;
        if let Some(provider) = provider {
            Self::register_in(&ctx, &new, provider)?;
        }
        self.rebuild_views(&ctx, &catalog).await;
        Ok(Output::command("ALTER TABLE"))
    }

    /// The stored `CREATE VIEW` of a view, naming it `new` instead.
    fn renamed_view_sql(&self, sql: &str, new: &QualifiedName) -> Result<String> {
        let mut statements = self.parse(sql)?;
        let (Some(crate::sql::Statement::DataFusion(DFStatement::Statement(inner))), true) =
            (statements.pop(), statements.is_empty())
        else {
            return Err(Error::Catalog(format!(
                "cannot read the definition of a view: {sql}"
            )));
        };
        let SqlStatement::CreateView(mut create) = *inner else {
            return Err(Error::Catalog(format!(
                "cannot read the definition of a view: {sql}"
            )));
        };
        create.name = ObjectName::from(vec![
            Ident::with_quote('"', new.schema.as_str()),
            Ident::with_quote('"', new.name.as_str()),
        ]);
        Ok(SqlStatement::CreateView(create).to_string())
    }

    pub(super) fn qualify_object(&self, name: &ObjectName) -> Result<QualifiedName> {
        self.qualify(&object_name_to_table_reference(name.clone(), true)?)
    }
}

/// Whether `statement` is `INSERT ... VALUES`.
fn inserts_values(statement: &SqlStatement) -> bool {
    let SqlStatement::Insert(insert) = statement else {
        return false;
    };
    insert
        .source
        .as_ref()
        .is_some_and(|query| matches!(query.body.as_ref(), SetExpr::Values(_)))
}

/// Adds the external sources a query read to errors that come from parsing their files.
fn with_sources(error: DataFusionError, sources: &[String]) -> DataFusionError {
    let message = error.to_string();
    let from_files = [
        "Csv error",
        "Json error",
        "Parquet error",
        "Parser error",
        "Object Store error",
    ]
    .iter()
    .any(|kind| message.contains(kind));
    if sources.is_empty() || !from_files {
        return error;
    }
    DataFusionError::Context(format!("reading {}", sources.join("; ")), Box::new(error))
}

/// `schema` with the field names of `names` (PostgreSQL's, from the logical plan), when the
/// two have as many fields; the types stay those of the stream.
fn renamed_schema(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    names: &datafusion::arrow::datatypes::Schema,
) -> datafusion::arrow::datatypes::SchemaRef {
    if names.fields().len() != schema.fields().len()
        || names
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(n, f)| n.name() == f.name() && n.metadata() == f.metadata())
    {
        return schema.clone();
    }
    // Names and marks (a json column's type) as the logical plan has them.
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .zip(names.fields())
        .map(|(field, named)| {
            field
                .as_ref()
                .clone()
                .with_name(named.name())
                .with_metadata(named.metadata().clone())
        })
        .collect();
    Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ))
}
