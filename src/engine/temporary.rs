//! Temporary tables: `CREATE TEMP[ORARY] TABLE`, private to one client session and gone
//! when it ends.
//!
//! Each session ([`Engine::new_session`]) has a schema `pg_temp_N` of its own, as in
//! PostgreSQL: its catalog list is the shared one with that schema added, so no other
//! session sees it. An unqualified name finds a temporary table before a table of `public`
//! (PostgreSQL puts `pg_temp` first on the search path); [`qualify_temporary_names`] makes
//! that explicit in the statement before DataFusion resolves it, and writes `pg_temp.x` as
//! the session's own schema.
//!
//! A temporary table is a Delta table like any other, so INSERT, UPDATE, DELETE, TRUNCATE
//! and COPY work on it unchanged, under `temp_tables/` of the data directory rather than `tables/`:
//! the catalog never names it, the session deletes it when it ends, and the next start
//! deletes what a crash left. Writes to it are not part of a transaction block's
//! all-or-nothing (ROLLBACK does not undo them); a table created in a block that rolls back
//! is dropped, and `ON COMMIT DROP` drops the table when its block ends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arrow::array::{ArrayRef, BooleanArray, Int16Array, Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemorySchemaProvider, SchemaProvider, Session,
};
use datafusion::common::TableReference;
use datafusion::logical_expr::{CreateMemoryTable, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, ObjectNamePart, ObjectType, OnCommit, Statement as SqlStatement, Visit,
    Visitor, visit_relations_mut,
};

use super::system_tables::SystemRows;
use super::{CATALOG_NAME, Engine, Output};
use crate::catalog::QualifiedName;
use crate::error::{Error, Result};
use crate::pg::names::folded;
use crate::pg::sqlstate::SqlState;
use crate::storage::ManagedTable;

/// PostgreSQL's name for the current session's temporary schema, whatever its number.
const SESSION_TEMP_SCHEMA: &str = "pg_temp";

/// Temporary tables, held weakly for the background maintenance task (flushing their write
/// buffers like any table's).
pub(super) type OpenTemporaryTables = Arc<Mutex<Vec<Weak<ManagedTable>>>>;

/// The temporary tables of one session: a DataFusion config extension of the session, so
/// that its transaction blocks (which copy the config) find them too.
pub struct TemporaryTables {
    /// `pg_temp_N`.
    schema_name: String,
    schema: Arc<MemorySchemaProvider>,
    /// `temp_tables/sN` of the data directory; created with the first table.
    dir: PathBuf,
    tables: Mutex<BTreeMap<String, Temporary>>,
    next_dir: AtomicU64,
}

struct Temporary {
    table: Arc<ManagedTable>,
    dir: PathBuf,
    drop_on_commit: bool,
    /// Created in the transaction block now open: dropped if it rolls back.
    created_in_block: bool,
}

impl TemporaryTables {
    /// The temporary tables of `session`, when it is a client session.
    pub(super) fn of(session: &SessionContext) -> Option<Arc<TemporaryTables>> {
        // Read in place: every statement asks, and a copy of the config is not cheap.
        session
            .state_ref()
            .read()
            .config()
            .get_extension::<TemporaryTables>()
    }

    /// The session's temporary schema, `pg_temp_N`.
    pub fn schema_name(&self) -> &str {
        &self.schema_name
    }

    fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Temporary>> {
        self.tables.lock().expect("lock poisoned by a panic")
    }

    /// Forgets table `name` and deletes its files; whether it existed.
    fn remove(&self, name: &str) -> bool {
        let Some(table) = self.lock().remove(name) else {
            return false;
        };
        let _ = self.schema.deregister_table(name);
        if let Err(e) = std::fs::remove_dir_all(&table.dir) {
            // Harmless: the session's directory goes when it ends, and the next start
            // removes everything under temp_tables/.
            tracing::warn!("could not remove {}: {e}", table.dir.display());
        }
        true
    }

    /// At the end of a transaction block: drops the `ON COMMIT DROP` tables, and on
    /// rollback the tables the block created.
    pub(super) fn end_block(&self, committed: bool) {
        let ending: Vec<String> = self
            .lock()
            .iter_mut()
            .filter_map(|(name, table)| {
                let created = std::mem::take(&mut table.created_in_block);
                (table.drop_on_commit || (created && !committed)).then(|| name.clone())
            })
            .collect();
        for name in ending {
            self.remove(&name);
        }
    }
}

impl Drop for TemporaryTables {
    /// The session ended: its temporary tables go.
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("could not remove {}: {e}", self.dir.display());
        }
    }
}

impl Engine {
    /// A session's catalog list and temporary tables: the shared catalogs, with the
    /// session's own `pg_temp_N` schema in tenure's catalog.
    pub(super) fn temporary_tables_for_new_session(
        &self,
        shared: Arc<dyn CatalogProviderList>,
    ) -> (Arc<dyn CatalogProviderList>, Arc<TemporaryTables>) {
        let number = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let temporary = Arc::new(TemporaryTables {
            schema_name: format!("pg_temp_{number}"),
            schema: Arc::new(MemorySchemaProvider::new()),
            dir: self.data_dir.temp_tables_dir().join(format!("s{number}")),
            tables: Mutex::default(),
            next_dir: AtomicU64::new(1),
        });
        let catalogs = match shared.catalog(CATALOG_NAME) {
            Some(tenure) => Arc::new(SessionCatalogs {
                tenure: Arc::new(SessionCatalog {
                    shared: tenure,
                    temporary_name: temporary.schema_name.clone(),
                    temporary: temporary.schema.clone(),
                }),
                shared,
            }) as Arc<dyn CatalogProviderList>,
            None => shared,
        };
        (catalogs, temporary)
    }

    /// `CREATE TEMP TABLE name ...` (planned without its TEMP and ON COMMIT, which
    /// DataFusion refuses), `in_block` when a transaction block that writes is open.
    pub(super) async fn create_temporary_table(
        &self,
        session: &SessionContext,
        create: CreateMemoryTable,
        on_commit: Option<OnCommit>,
        in_block: bool,
    ) -> Result<Output> {
        let Some(temporary) = TemporaryTables::of(session) else {
            return Err(Error::unsupported(
                "temporary tables belong to a client session (tenure serve or the tenure sql \
                 shell); this statement runs outside one",
            ));
        };
        let name = match &create.name {
            TableReference::Bare { table } => table.to_string(),
            TableReference::Partial { schema, table } if **schema == temporary.schema_name => {
                table.to_string()
            }
            _ => {
                return Err(Error::state(
                    SqlState::InvalidTableDefinition,
                    format!(
                        "cannot create temporary relation {} in a non-temporary schema",
                        create.name
                    ),
                ));
            }
        };
        let drop_at_end = match on_commit {
            None | Some(OnCommit::PreserveRows) => false,
            Some(OnCommit::Drop) => true,
            Some(OnCommit::DeleteRows) => {
                return Err(Error::unsupported(
                    "ON COMMIT DELETE ROWS is not supported; use ON COMMIT DROP or TRUNCATE",
                ));
            }
        };
        if temporary.lock().contains_key(&name) {
            if create.if_not_exists {
                return Ok(Output::command("CREATE TABLE"));
            }
            if !create.or_replace {
                return Err(Error::AlreadyExists {
                    kind: "table",
                    name: format!("{}.{name}", temporary.schema_name),
                });
            }
            temporary.remove(&name);
        }
        let is_query = !matches!(create.input.as_ref(), LogicalPlan::EmptyRelation(_));
        let number = temporary.next_dir.fetch_add(1, Ordering::Relaxed);
        let dir = temporary.dir.join(format!("t{number}"));
        std::fs::create_dir_all(&dir)?;
        let url = url::Url::from_directory_path(&dir)
            .map_err(|()| Error::invalid(format!("cannot form a URL for {}", dir.display())))?;
        let input = Arc::unwrap_or_clone(create.input);
        let (table, rows) =
            match ManagedTable::create_from_plan(url, input, Arc::new(session.state())).await {
                Ok(created) => created,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            };
        temporary
            .schema
            .register_table(name.clone(), table.clone())?;
        temporary.lock().insert(
            name.clone(),
            Temporary {
                table: table.clone(),
                dir,
                drop_on_commit: drop_at_end,
                created_in_block: in_block,
            },
        );
        self.temporary
            .lock()
            .expect("lock poisoned by a panic")
            .push(Arc::downgrade(&table));
        if drop_at_end && !in_block {
            // Outside a block the statement is its own transaction, which has ended.
            temporary.remove(&name);
        }
        Ok(if is_query {
            Output::Command {
                tag: "SELECT",
                rows: Some(rows as u64),
            }
        } else {
            Output::command("CREATE TABLE")
        })
    }

    /// The temporary table `name` when it names one of `session`'s temporary schema:
    /// `Ok(None)` for a name in another schema, an error when no such temporary table exists.
    pub(super) fn temporary_table(
        &self,
        session: &SessionContext,
        name: &QualifiedName,
    ) -> Result<Option<Arc<ManagedTable>>> {
        let Some(temporary) = TemporaryTables::of(session) else {
            return Ok(None);
        };
        if name.schema != temporary.schema_name {
            return Ok(None);
        }
        match temporary.lock().get(&name.name) {
            Some(table) => Ok(Some(table.table.clone())),
            None => Err(Error::NotFound {
                kind: "table",
                name: name.to_string(),
            }),
        }
    }

    /// `DROP TABLE` of a name in the session's temporary schema: `None` when the name is
    /// elsewhere.
    pub(super) fn drop_temporary_table(
        &self,
        session: &SessionContext,
        name: &QualifiedName,
        if_exists: bool,
    ) -> Option<Result<Output>> {
        let temporary = TemporaryTables::of(session)?;
        if name.schema != temporary.schema_name {
            return None;
        }
        Some(if temporary.remove(&name.name) || if_exists {
            Ok(Output::command("DROP TABLE"))
        } else {
            Err(Error::NotFound {
                kind: "table",
                name: name.to_string(),
            })
        })
    }
}

/// Rewrites the names in `statement` that mean a temporary table of the session: an
/// unqualified name of one (unless a WITH query of the statement has that name) and any
/// `pg_temp.x` become `pg_temp_N.x`. `CREATE TABLE pg_temp.x` creates a temporary table, as
/// in PostgreSQL.
pub(super) fn qualify_temporary_names(statement: &mut SqlStatement, session: &SessionContext) {
    let Some(temporary) = TemporaryTables::of(session) else {
        return;
    };
    let names = temporary.names();
    if names.is_empty() && !mentions_session_temp_schema(statement) {
        return;
    }
    let own = Ident::new(temporary.schema_name.clone());
    if let SqlStatement::CreateTable(create) = statement {
        // The new table's own name: only an explicit pg_temp means temporary.
        if let [schema, _] = create.name.0.as_mut_slice()
            && is_session_temp_schema(schema)
        {
            *schema = ObjectNamePart::Identifier(own.clone());
            create.temporary = true;
        }
        let new_name = create.name.clone();
        qualify_relations(statement, &names, &own);
        if let SqlStatement::CreateTable(create) = statement {
            create.name = new_name;
        }
        return;
    }
    if let SqlStatement::Drop {
        object_type: ObjectType::Table,
        names: dropped,
        ..
    } = statement
    {
        for name in dropped {
            qualify(name, &names, &[], &own);
        }
        return;
    }
    qualify_relations(statement, &names, &own);
}

fn qualify_relations(statement: &mut SqlStatement, names: &[String], own: &Ident) {
    let with_names = with_query_names(statement);
    let _ = visit_relations_mut(statement, |name| {
        qualify(name, names, &with_names, own);
        std::ops::ControlFlow::<()>::Continue(())
    });
}

fn qualify(name: &mut ObjectName, temporary: &[String], with_names: &[String], own: &Ident) {
    match name.0.as_mut_slice() {
        [ObjectNamePart::Identifier(table)] => {
            let table = folded(table);
            if temporary.contains(&table) && !with_names.contains(&table) {
                name.0.insert(0, ObjectNamePart::Identifier(own.clone()));
            }
        }
        [schema, _] if is_session_temp_schema(schema) => {
            *schema = ObjectNamePart::Identifier(own.clone());
        }
        _ => {}
    }
}

/// Whether a relation of `statement` is named `pg_temp.x`.
fn mentions_session_temp_schema(statement: &SqlStatement) -> bool {
    datafusion::sql::sqlparser::ast::visit_relations(statement, |name| match name.0.as_slice() {
        [schema, _] if is_session_temp_schema(schema) => std::ops::ControlFlow::Break(()),
        _ => std::ops::ControlFlow::Continue(()),
    })
    .is_break()
}

fn is_session_temp_schema(part: &ObjectNamePart) -> bool {
    part.as_ident()
        .is_some_and(|ident| folded(ident) == SESSION_TEMP_SCHEMA)
}

/// The names of every WITH query in `statement`, which hide a temporary table of that name.
fn with_query_names(statement: &SqlStatement) -> Vec<String> {
    struct Names(Vec<String>);
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_query(
            &mut self,
            query: &datafusion::sql::sqlparser::ast::Query,
        ) -> std::ops::ControlFlow<()> {
            if let Some(with) = &query.with {
                self.0
                    .extend(with.cte_tables.iter().map(|cte| folded(&cte.alias.name)));
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut names = Names(Vec::new());
    let _ = statement.visit(&mut names);
    names.0
}

/// A session's catalogs: the shared ones, with tenure's catalog seen through
/// [`SessionCatalog`].
#[derive(Debug)]
struct SessionCatalogs {
    shared: Arc<dyn CatalogProviderList>,
    tenure: Arc<dyn CatalogProvider>,
}

impl CatalogProviderList for SessionCatalogs {
    fn register_catalog(
        &self,
        name: String,
        catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        self.shared.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        self.shared.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        if name == CATALOG_NAME {
            Some(self.tenure.clone())
        } else {
            self.shared.catalog(name)
        }
    }
}

/// tenure's shared catalog plus the session's temporary schema (listed once it holds a
/// table).
#[derive(Debug)]
struct SessionCatalog {
    shared: Arc<dyn CatalogProvider>,
    temporary_name: String,
    temporary: Arc<MemorySchemaProvider>,
}

impl CatalogProvider for SessionCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.shared.schema_names();
        if !self.temporary.table_names().is_empty() {
            names.push(self.temporary_name.clone());
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == self.temporary_name {
            Some(self.temporary.clone())
        } else {
            self.shared.schema(name)
        }
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> datafusion::error::Result<Option<Arc<dyn SchemaProvider>>> {
        self.shared.register_schema(name, schema)
    }

    fn deregister_schema(
        &self,
        name: &str,
        cascade: bool,
    ) -> datafusion::error::Result<Option<Arc<dyn SchemaProvider>>> {
        self.shared.deregister_schema(name, cascade)
    }
}

/// The session's temporary schema, for a transaction block's catalog (which copies the
/// schemas listed when it starts, and the temporary one may be empty then).
pub(super) fn temporary_schema(
    session: &SessionContext,
) -> Option<(String, Arc<dyn SchemaProvider>)> {
    let temporary = TemporaryTables::of(session)?;
    Some((
        temporary.schema_name.clone(),
        temporary.schema.clone() as Arc<dyn SchemaProvider>,
    ))
}

/// `tenure.temporary_columns`: the columns of the scanning session's temporary tables, which
/// pg_namespace, pg_class and pg_attribute add to the shared catalog's, so that psql's `\d`
/// lists them in `pg_temp_N` as PostgreSQL does. Empty outside a client session.
#[derive(Debug)]
pub(super) struct TemporaryColumnsTable;

impl SystemRows for TemporaryColumnsTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("table_schema", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("column_name", DataType::Utf8, false),
            Field::new("attnum", DataType::Int16, false),
            Field::new("atttypid", DataType::Int32, false),
            Field::new("atttypmod", DataType::Int32, false),
            Field::new("attnotnull", DataType::Boolean, false),
        ]))
    }

    fn columns(&self) -> Vec<ArrayRef> {
        temporary_columns(None)
    }

    fn columns_in(&self, session: &dyn Session) -> Vec<ArrayRef> {
        temporary_columns(session.config().get_extension::<TemporaryTables>())
    }
}

fn temporary_columns(temporary: Option<Arc<TemporaryTables>>) -> Vec<ArrayRef> {
    let (mut schemas, mut tables, mut columns) = (Vec::new(), Vec::new(), Vec::new());
    let (mut numbers, mut types, mut modifiers, mut not_null) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    if let Some(temporary) = temporary {
        for (name, table) in temporary.lock().iter() {
            let schema = datafusion::catalog::TableProvider::schema(table.table.as_ref());
            for (index, field) in schema.fields().iter().enumerate() {
                let (oid, modifier) = postgres_type(field);
                schemas.push(temporary.schema_name.clone());
                tables.push(name.clone());
                columns.push(field.name().clone());
                numbers.push(i16::try_from(index + 1).unwrap_or(i16::MAX));
                types.push(oid);
                modifiers.push(modifier);
                not_null.push(!field.is_nullable());
            }
        }
    }
    vec![
        Arc::new(StringArray::from(schemas)),
        Arc::new(StringArray::from(tables)),
        Arc::new(StringArray::from(columns)),
        Arc::new(Int16Array::from(numbers)),
        Arc::new(Int32Array::from(types)),
        Arc::new(Int32Array::from(modifiers)),
        Arc::new(BooleanArray::from(not_null)),
    ]
}

/// A column's type oid and type modifier, as the RowDescription describes the column.
fn postgres_type(field: &Field) -> (i32, i32) {
    if let Some((datatype, modifier)) = crate::pg::types::postgres_type(field) {
        return (datatype.oid() as i32, modifier);
    }
    let modifier = match field.data_type() {
        DataType::Decimal128(precision, scale) => {
            (i32::from(*precision) << 16) + i32::from(*scale) + 4
        }
        _ => -1,
    };
    match arrow_pg::datatypes::into_pg_type(field.data_type()) {
        Ok(datatype) => (datatype.oid() as i32, modifier),
        Err(_) => (postgres_types::Type::TEXT.oid() as i32, -1),
    }
}
