//! Primary, unique and foreign keys, indexes and column defaults of managed tables. Keys
//! and defaults are taken out of `CREATE TABLE` before DataFusion plans it (DataFusion
//! refuses foreign keys, would record the other keys only as column indices, and would keep
//! defaults only in memory), checked against the new table and the catalog, and recorded
//! there. Defaults are planned again when a table is opened and given to INSERT and COPY.
//!
//! Keys are informational, as in BigQuery or Snowflake: tenure does not check uniqueness or
//! references on write, but records them so that pg_catalog (and so pgjdbc, Metabase,
//! DBeaver, SQLAlchemy) shows them. A primary key's columns are NOT NULL, which is enforced.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, ColumnOptionDef, CreateIndex, CreateTable, Expr as SqlExpr, Ident, IndexColumn,
    ObjectName, SetExpr, Statement as SqlStatement, TableConstraint, TableObject, Value,
};

use super::transaction::CatalogGuard;
use super::{Engine, Output};
use crate::catalog::{ColumnDefault, KeyConstraint, KeyKind, QualifiedName, Relation};
use crate::error::{Error, Result};
use crate::pg::sqlstate::SqlState;

/// What `CREATE TABLE` declares besides its columns: keys, and column defaults as
/// (column, expression SQL).
#[derive(Debug, Default)]
pub struct Declarations {
    pub keys: Vec<KeySpec>,
    pub defaults: Vec<(String, String)>,
}

/// Takes the keys and defaults out of `create` (see [`take_keys`], [`take_defaults`]).
pub fn take_declarations(create: &mut CreateTable) -> Result<Declarations> {
    Ok(Declarations {
        keys: take_keys(create)?,
        defaults: take_defaults(create),
    })
}

/// A key as written in `CREATE TABLE`, before its names are resolved.
#[derive(Debug, Clone)]
pub struct KeySpec {
    name: Option<String>,
    columns: Vec<String>,
    kind: SpecKind,
}

#[derive(Debug, Clone)]
enum SpecKind {
    PrimaryKey,
    Unique,
    /// `referenced_columns` empty: the referenced table's primary key.
    ForeignKey {
        table: ObjectName,
        columns: Vec<String>,
    },
    Index {
        unique: bool,
    },
}

/// Removes the key constraints from `create` (column options and table constraints) and
/// returns them; a primary key's columns get `NOT NULL`. CHECK constraints are refused
/// rather than dropped silently.
pub fn take_keys(create: &mut CreateTable) -> Result<Vec<KeySpec>> {
    let mut specs = Vec::new();
    for column in &mut create.columns {
        let mut kept = Vec::with_capacity(column.options.len());
        for ColumnOptionDef { name, option } in std::mem::take(&mut column.options) {
            let constraint_name =
                |inner: &Option<Ident>| name.as_ref().or(inner.as_ref()).map(normalise);
            let spec = match &option {
                ColumnOption::PrimaryKey(key) => KeySpec {
                    name: constraint_name(&key.name),
                    columns: vec![column.name.value.clone()],
                    kind: SpecKind::PrimaryKey,
                },
                ColumnOption::Unique(key) => KeySpec {
                    name: constraint_name(&key.name),
                    columns: vec![column.name.value.clone()],
                    kind: SpecKind::Unique,
                },
                ColumnOption::ForeignKey(key) => KeySpec {
                    name: constraint_name(&key.name),
                    columns: vec![column.name.value.clone()],
                    kind: SpecKind::ForeignKey {
                        table: key.foreign_table.clone(),
                        columns: idents(&key.referred_columns),
                    },
                },
                ColumnOption::Check(_) => {
                    return Err(Error::unsupported(
                        "CHECK constraints are not supported yet",
                    ));
                }
                _ => {
                    kept.push(ColumnOptionDef { name, option });
                    continue;
                }
            };
            specs.push(spec);
        }
        column.options = kept;
    }
    for constraint in std::mem::take(&mut create.constraints) {
        let spec = match constraint {
            TableConstraint::PrimaryKey(key) => KeySpec {
                name: key.name.as_ref().map(normalise),
                columns: index_columns(&key.columns)?,
                kind: SpecKind::PrimaryKey,
            },
            TableConstraint::Unique(key) => KeySpec {
                name: key.name.as_ref().map(normalise),
                columns: index_columns(&key.columns)?,
                kind: SpecKind::Unique,
            },
            TableConstraint::ForeignKey(key) => KeySpec {
                name: key.name.as_ref().map(normalise),
                columns: idents(&key.columns),
                kind: SpecKind::ForeignKey {
                    table: key.foreign_table,
                    columns: idents(&key.referred_columns),
                },
            },
            TableConstraint::Check(_) => {
                return Err(Error::unsupported(
                    "CHECK constraints are not supported yet",
                ));
            }
            other => {
                return Err(Error::unsupported(format!(
                    "table constraint {other} is not supported"
                )));
            }
        };
        specs.push(spec);
    }
    for spec in &specs {
        if matches!(spec.kind, SpecKind::PrimaryKey) {
            for column in &mut create.columns {
                if spec.columns.contains(&column.name.value)
                    && !column
                        .options
                        .iter()
                        .any(|o| matches!(o.option, ColumnOption::NotNull))
                {
                    column.options.push(ColumnOptionDef {
                        name: None,
                        option: ColumnOption::NotNull,
                    });
                }
            }
        }
    }
    Ok(specs)
}

/// Removes the `DEFAULT expr` options from `create` and returns (column, expression SQL).
pub fn take_defaults(create: &mut CreateTable) -> Vec<(String, String)> {
    let mut defaults = Vec::new();
    for column in &mut create.columns {
        column.options.retain(|o| match &o.option {
            ColumnOption::Default(expr) => {
                defaults.push((normalise(&column.name), expr.to_string()));
                false
            }
            _ => true,
        });
    }
    defaults
}

fn idents(idents: &[Ident]) -> Vec<String> {
    idents.iter().map(normalise).collect()
}

/// Identifiers as stored: unquoted ones folded to lower case, as DataFusion does.
pub(super) fn normalise(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

fn index_columns(columns: &[IndexColumn]) -> Result<Vec<String>> {
    columns
        .iter()
        .map(|c| match &c.column.expr {
            SqlExpr::Identifier(ident) => Ok(normalise(ident)),
            other => Err(Error::unsupported(format!(
                "keys on expressions ({other}) are not supported; name columns"
            ))),
        })
        .collect()
}

impl Engine {
    /// The keys `specs` of the new table `table` (with `schema`), checked against it and
    /// against `catalog` (which must not yet hold `table`'s old keys, if it replaces one).
    pub(super) fn resolve_keys(
        &self,
        catalog: &mut CatalogGuard,
        table: &QualifiedName,
        schema: &Schema,
        specs: Vec<KeySpec>,
    ) -> Result<Vec<KeyConstraint>> {
        let mut keys: Vec<KeyConstraint> = Vec::new();
        for spec in specs {
            if spec.columns.is_empty() {
                return Err(Error::invalid("a key needs at least one column"));
            }
            let positions = column_positions(table, schema, &spec.columns)?;
            let kind = match spec.kind {
                SpecKind::PrimaryKey => {
                    if keys.iter().any(|k| k.kind == KeyKind::PrimaryKey) {
                        return Err(Error::state(
                            SqlState::InvalidTableDefinition,
                            format!("multiple primary keys for table {table} are not allowed"),
                        ));
                    }
                    KeyKind::PrimaryKey
                }
                SpecKind::Unique => KeyKind::Unique,
                SpecKind::Index { unique } => KeyKind::Index { unique },
                SpecKind::ForeignKey {
                    table: target,
                    columns,
                } => {
                    let target = self.qualify_object(&target)?;
                    // A table may reference its own key (declared in the same statement).
                    let (target_keys, target_schema): (Vec<KeyConstraint>, SchemaRef) =
                        if target == *table {
                            (keys.clone(), Arc::new(schema.clone()))
                        } else {
                            let dir = match catalog.get(&target) {
                                Some(Relation::Managed { dir }) => dir.clone(),
                                Some(_) => {
                                    return Err(Error::invalid(format!(
                                        "referenced relation {target} is not a table tenure \
                                         manages"
                                    )));
                                }
                                None => {
                                    return Err(Error::NotFound {
                                        kind: "table",
                                        name: target.to_string(),
                                    });
                                }
                            };
                            let opened = self.open_table(catalog, &dir).ok_or_else(|| {
                                Error::Catalog(format!("table {target} is not open"))
                            })?;
                            (
                                catalog.keys_of(&target).cloned().collect(),
                                opened.current().1.schema(),
                            )
                        };
                    let referenced = if columns.is_empty() {
                        target_keys
                            .iter()
                            .find(|k| k.kind == KeyKind::PrimaryKey)
                            .map(|k| k.columns.clone())
                            .ok_or_else(|| {
                                Error::state(
                                    SqlState::InvalidForeignKey,
                                    format!(
                                        "there is no primary key for referenced table {target}"
                                    ),
                                )
                            })?
                    } else {
                        columns
                    };
                    if referenced.len() != spec.columns.len() {
                        return Err(Error::invalid(format!(
                            "number of referencing and referenced columns for foreign key \
                             disagree ({} and {})",
                            spec.columns.len(),
                            referenced.len()
                        )));
                    }
                    let referenced_positions =
                        column_positions(&target, &target_schema, &referenced)?;
                    for (&from, &to) in positions.iter().zip(&referenced_positions) {
                        let from = schema.field(from as usize - 1);
                        let to = target_schema.field(to as usize - 1);
                        if !comparable(from.data_type(), to.data_type()) {
                            return Err(Error::state(
                                SqlState::DatatypeMismatch,
                                format!(
                                    "foreign key columns {} and {target}.{} are of incompatible \
                                 types: {} and {}",
                                    from.name(),
                                    to.name(),
                                    from.data_type(),
                                    to.data_type()
                                ),
                            ));
                        }
                    }
                    if !target_keys
                        .iter()
                        .any(|k| k.kind.is_unique() && k.columns == referenced)
                    {
                        return Err(Error::state(
                            SqlState::InvalidForeignKey,
                            format!(
                                "there is no unique constraint matching given keys for referenced \
                             table {target} ({})",
                                referenced.join(", ")
                            ),
                        ));
                    }
                    KeyKind::ForeignKey {
                        references: target,
                        columns: referenced,
                        positions: referenced_positions,
                    }
                }
            };
            let name = spec
                .name
                .unwrap_or_else(|| default_name(&table.name, &spec.columns, &kind));
            let taken = keys.iter().any(|k| k.name == name)
                || catalog
                    .keys
                    .iter()
                    .any(|k| k.table.schema == table.schema && k.table != *table && k.name == name)
                || catalog
                    .get(&QualifiedName::new(&table.schema, &name))
                    .is_some()
                || name == table.name;
            if taken {
                return Err(Error::AlreadyExists {
                    kind: "constraint",
                    name: format!("{}.{name}", table.schema),
                });
            }
            keys.push(KeyConstraint {
                table: table.clone(),
                name,
                kind,
                columns: spec.columns,
                positions,
            });
        }
        Ok(keys)
    }
}

impl Engine {
    /// The `DEFAULT` expressions of the new table `table`, checked: each must plan on its
    /// own (constants and functions such as `now()`, no column references).
    pub(super) fn check_defaults(
        &self,
        session: &SessionContext,
        table: &QualifiedName,
        schema: &Schema,
        defaults: Vec<(String, String)>,
    ) -> Result<Vec<ColumnDefault>> {
        defaults
            .into_iter()
            .map(|(column, sql)| {
                if schema.index_of(&column).is_err() {
                    return Err(Error::NotFound {
                        kind: "column",
                        name: format!("{column} of table {table}"),
                    });
                }
                plan_default(session, &sql).map_err(|e| {
                    Error::invalid(format!(
                        "invalid DEFAULT {sql} for column {column} of table {table}: {e}"
                    ))
                })?;
                Ok(ColumnDefault {
                    table: table.clone(),
                    column,
                    sql,
                })
            })
            .collect()
    }

    /// `CREATE [UNIQUE] INDEX [IF NOT EXISTS] [name] ON t (cols)`: recorded like a key
    /// (pg_index, pg_class, psql's `\d`), not built, and uniqueness is not checked.
    pub(super) async fn create_index(
        &self,
        session: &SessionContext,
        create: CreateIndex,
    ) -> Result<Output> {
        if create.predicate.is_some() {
            return Err(Error::unsupported(
                "partial indexes (CREATE INDEX ... WHERE) are not supported",
            ));
        }
        let table = self.qualify_object(&create.table_name)?;
        let columns = index_columns(&create.columns)?;
        let name = match &create.name {
            Some(name) => match name.0.last().and_then(|part| part.as_ident()) {
                Some(ident) => Some(normalise(ident)),
                None => return Err(Error::invalid(format!("invalid index name {name}"))),
            },
            None => None,
        };
        let mut catalog = self.lock_catalog(session).await?;
        let dir = match catalog.get(&table) {
            Some(Relation::Managed { dir }) => dir.clone(),
            Some(_) => {
                return Err(Error::invalid(format!(
                    "cannot create an index on {table}: indexes are supported on tables \
                     tenure manages"
                )));
            }
            None => {
                return Err(Error::NotFound {
                    kind: "table",
                    name: table.to_string(),
                });
            }
        };
        if let Some(name) = &name
            && catalog
                .keys
                .iter()
                .any(|k| k.table.schema == table.schema && k.name == *name)
        {
            if create.if_not_exists {
                return Ok(Output::command("CREATE INDEX"));
            }
            return Err(Error::AlreadyExists {
                kind: "relation",
                name: format!("{}.{name}", table.schema),
            });
        }
        let schema = self
            .open_table(&mut catalog, &dir)
            .ok_or_else(|| Error::Catalog(format!("table {table} is not open")))?
            .current()
            .1
            .schema();
        let spec = KeySpec {
            name,
            columns,
            kind: SpecKind::Index {
                unique: create.unique,
            },
        };
        let mut index = self.resolve_keys(&mut catalog, &table, &schema, vec![spec])?;
        // resolve_keys checks names against other tables' keys; this table's too.
        if let Some(new) = index.first_mut()
            && catalog.keys_of(&table).any(|k| k.name == new.name)
        {
            return Err(Error::AlreadyExists {
                kind: "relation",
                name: format!("{}.{}", table.schema, new.name),
            });
        }
        let mut next = catalog.clone();
        next.keys.extend(index);
        self.replace_catalog(&mut catalog, next)?;
        Ok(Output::command("CREATE INDEX"))
    }

    /// `DROP INDEX [IF EXISTS] name, ...`. The index of a key belongs to its constraint and
    /// cannot be dropped alone, as in PostgreSQL.
    pub(super) async fn drop_indexes(
        &self,
        session: &SessionContext,
        names: &[ObjectName],
        if_exists: bool,
    ) -> Result<Output> {
        let mut catalog = self.lock_catalog(session).await?;
        let mut next = catalog.clone();
        for name in names {
            let name = self.qualify_object(name)?;
            let Some(at) = next
                .keys
                .iter()
                .position(|k| k.table.schema == name.schema && k.name == name.name)
            else {
                if if_exists {
                    continue;
                }
                return Err(Error::NotFound {
                    kind: "index",
                    name: name.to_string(),
                });
            };
            let key = &next.keys[at];
            if !matches!(key.kind, KeyKind::Index { .. }) {
                return Err(Error::state(
                    SqlState::DependentObjectsStillExist,
                    format!(
                        "cannot drop index {name} because constraint {} on table {} requires it",
                        key.name, key.table
                    ),
                ));
            }
            next.keys.remove(at);
        }
        self.replace_catalog(&mut catalog, next)?;
        Ok(Output::command("DROP INDEX"))
    }
}

/// A column default's expression, planned without any columns in scope.
pub fn plan_default(
    session: &SessionContext,
    sql: &str,
) -> datafusion::error::Result<datafusion::logical_expr::Expr> {
    session
        .state()
        .create_logical_expr(sql, &datafusion::common::DFSchema::empty())
}

/// PostgreSQL's names: `t_pkey`, `t_a_b_key`, `t_a_fkey`, `t_a_idx`.
fn default_name(table: &str, columns: &[String], kind: &KeyKind) -> String {
    match kind {
        KeyKind::PrimaryKey => format!("{table}_pkey"),
        KeyKind::Unique => format!("{table}_{}_key", columns.join("_")),
        KeyKind::ForeignKey { .. } => format!("{table}_{}_fkey", columns.join("_")),
        KeyKind::Index { .. } => format!("{table}_{}_idx", columns.join("_")),
    }
}

/// Whether a foreign key column of type `a` may reference one of type `b`: the same type,
/// or both integers, both floating point, or both text (PostgreSQL allows such pairs).
fn comparable(a: &DataType, b: &DataType) -> bool {
    a == b
        || (a.is_integer() && b.is_integer())
        || (a.is_floating() && b.is_floating())
        || ([a, b]
            .iter()
            .all(|t| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)))
}

/// The 1-based positions of `columns` in `schema`.
fn column_positions(
    table: &QualifiedName,
    schema: &Schema,
    columns: &[String],
) -> Result<Vec<u16>> {
    let mut positions = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        if columns[..i].contains(column) {
            return Err(Error::invalid(format!(
                "column {column} appears twice in a key"
            )));
        }
        let index = schema.index_of(column).map_err(|_| Error::NotFound {
            kind: "column",
            name: format!("{column} of table {table}"),
        })?;
        positions.push(index as u16 + 1);
    }
    Ok(positions)
}

impl Engine {
    /// `INSERT ... VALUES (..., DEFAULT, ...)` and `INSERT ... DEFAULT VALUES`, which
    /// DataFusion cannot plan: each DEFAULT becomes the column's default expression, or NULL
    /// for a column without one, as PostgreSQL evaluates it. Other statements are left alone.
    pub(super) async fn fill_insert_defaults(
        &self,
        session: &SessionContext,
        statement: &mut SqlStatement,
    ) -> Result<()> {
        let SqlStatement::Insert(insert) = statement else {
            return Ok(());
        };
        let rows = match insert.source.as_deref_mut().map(|q| q.body.as_mut()) {
            Some(SetExpr::Values(values)) => {
                if !values.rows.iter().any(|row| row.iter().any(is_default)) {
                    return Ok(());
                }
                Some(&mut values.rows)
            }
            Some(_) => return Ok(()),
            // DEFAULT VALUES
            None if insert.assignments.is_empty() && insert.columns.is_empty() => None,
            None => return Ok(()),
        };
        let TableObject::TableName(table_name) = &insert.table else {
            return Ok(());
        };
        let name = self.qualify_object(table_name)?;
        let table = session.table_provider(Self::table_reference(&name)).await?;
        let columns: Vec<String> = if insert.columns.is_empty() {
            let schema = table.schema();
            schema.fields().iter().map(|f| f.name().clone()).collect()
        } else {
            insert
                .columns
                .iter()
                .map(|c| match c.0.as_slice() {
                    [part] => part.as_ident().map(normalise),
                    _ => None,
                })
                .collect::<Option<_>>()
                .ok_or_else(|| Error::invalid("INSERT names its columns by plain names"))?
        };
        let default_of = |column: &str| -> Result<SqlExpr> {
            match table.get_column_default(column) {
                Some(expr) => datafusion::sql::unparser::expr_to_sql(expr).map_err(Error::from),
                None => Ok(SqlExpr::Value(Value::Null.into())),
            }
        };
        match rows {
            Some(rows) => {
                for row in rows.iter_mut() {
                    for (position, value) in row.iter_mut().enumerate() {
                        if !is_default(value) {
                            continue;
                        }
                        let column = columns.get(position).ok_or_else(|| {
                            Error::invalid("INSERT has more expressions than target columns")
                        })?;
                        *value = default_of(column)?;
                    }
                }
            }
            None => {
                let row = columns
                    .iter()
                    .map(|c| default_of(c))
                    .collect::<Result<Vec<_>>>()?;
                let values = format!(
                    "VALUES ({})",
                    row.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let query = datafusion::sql::sqlparser::parser::Parser::new(
                    &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                )
                .try_with_sql(&values)
                .and_then(|mut p| p.parse_query())
                .map_err(|e| Error::invalid(format!("cannot build DEFAULT VALUES: {e}")))?;
                insert.source = Some(query);
            }
        }
        Ok(())
    }
}

/// `DEFAULT` in a VALUES row (sqlparser reads it as an identifier).
fn is_default(expr: &SqlExpr) -> bool {
    matches!(expr, SqlExpr::Identifier(ident)
        if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
}
