//! Writes to managed tables: INSERT, UPDATE, DELETE and TRUNCATE, as Delta Lake commits
//! (inside a transaction block, to the block's copies of the tables).

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Assignment, AssignmentTarget, CascadeOption, Delete, FromTable, ObjectName, TableFactor,
    TableWithJoins, Truncate, Update,
};

use super::transaction::transaction_of;
use super::{Engine, Output};
use crate::catalog::{QualifiedName, Relation};
use crate::error::{Error, Result};
use crate::pg::sqlstate::SqlState;
use crate::storage::ManagedTable;

impl Engine {
    /// The managed table `name`, or an error saying why it cannot be written. Inside a
    /// transaction block, a table from before the block is first copied for the block.
    pub(super) async fn writable_table(
        &self,
        session: &SessionContext,
        name: &QualifiedName,
        verb: &str,
    ) -> Result<Arc<ManagedTable>> {
        self.writable_table_keeping(session, name, verb, true).await
    }

    /// [`Engine::writable_table`]; in a block, a table from before it is copied with its
    /// rows only when `keep_rows` (TRUNCATE needs its columns alone).
    async fn writable_table_keeping(
        &self,
        session: &SessionContext,
        name: &QualifiedName,
        verb: &str,
        keep_rows: bool,
    ) -> Result<Arc<ManagedTable>> {
        if let Some(temporary) = self.temporary_table(session, name)? {
            return Ok(temporary);
        }
        let mut catalog = self.lock_catalog(session).await?;
        let dir = match catalog.get(name) {
            Some(Relation::Managed { dir }) => dir.clone(),
            Some(Relation::View { .. }) => {
                return Err(Error::invalid(format!("cannot {verb} view {name}")));
            }
            Some(Relation::External(_)) => {
                return Err(Error::invalid(format!(
                    "cannot {verb} external table {name}; it is read-only in tenure"
                )));
            }
            None => {
                return Err(Error::NotFound {
                    kind: "table",
                    name: name.to_string(),
                });
            }
        };
        let table = self
            .open_table(&mut catalog, &dir)
            .ok_or_else(|| Error::Catalog(format!("table {name} is not open")))?;
        match catalog.block() {
            Some(block) if !block.owns(&dir) => {}
            _ => return Ok(table),
        }
        // First write in the block to a table from before it: the block writes a copy. The
        // marker is read before the copy, so an append that lands in between makes COMMIT
        // fail rather than go missing.
        let marker = table.change_marker();
        let scan = LogicalPlanBuilder::scan(
            Self::table_reference(name),
            datafusion::datasource::provider_as_source(table.clone()),
            None,
        )?;
        let scan = match keep_rows {
            true => scan.build()?,
            false => scan.limit(0, Some(0))?.build()?,
        };
        let (copy_dir, copy, _) = self.write_new_table(&mut catalog, session, scan).await?;
        let block = catalog.block().expect("inside a block");
        block.copies.push((dir.clone(), marker));
        block.retired.push(dir);
        let mut next = catalog.clone();
        next.put(
            name.clone(),
            Relation::Managed {
                dir: copy_dir.clone(),
            },
        );
        self.replace_catalog(&mut catalog, next)?;
        self.register_managed(&mut catalog, name, &copy_dir, copy.clone())?;
        self.rebuild_views(&catalog.ctx().clone(), &catalog).await;
        Ok(copy)
    }

    pub(super) async fn insert(
        &self,
        session: &SessionContext,
        dml: DmlStatement,
    ) -> Result<Output> {
        let name = self.qualify(&dml.table_name)?;
        let table = self.writable_table(session, &name, "insert into").await?;
        // Write to the table the catalog names now (in a block, its copy), whichever
        // provider the statement was planned against.
        // `INSERT ... VALUES` of constants (and bound parameters), the common small write:
        // its rows are computed here and appended without planning and running a query.
        if let Some(batch) = values_batch(&dml.input)
            && let Some(rows) = table.append_small(batch).await?
        {
            return Ok(Output::Command {
                tag: "INSERT",
                rows: Some(rows),
            });
        }
        let mut dml = dml;
        dml.target = datafusion::datasource::provider_as_source(table.clone());
        let plan = LogicalPlan::Dml(dml);
        // The table's append sink commits (see `storage`): a failed statement commits nothing.
        let result = async {
            let frame = session.execute_logical_plan(plan.clone()).await?;
            frame.collect().await
        }
        .await;
        let batches = match result {
            Ok(batches) => batches,
            Err(e) => return Err(self.explain_insert_error(e.into(), &plan, &name).await),
        };
        Ok(Output::Command {
            tag: "INSERT",
            rows: Some(count_from(&batches)),
        })
    }

    /// Whether running `plan` fails (at planning or while running).
    async fn fails(&self, plan: LogicalPlan) -> bool {
        match self.ctx.execute_logical_plan(plan).await {
            Ok(frame) => frame.collect().await.is_err(),
            Err(_) => true,
        }
    }

    /// Turns a cast failure inside an INSERT into an error that names the column, by
    /// evaluating the insert's input one target column at a time. Only runs on failure.
    async fn explain_insert_error(
        &self,
        error: Error,
        plan: &LogicalPlan,
        table: &QualifiedName,
    ) -> Error {
        let message = error.to_string();
        let LogicalPlan::Dml(dml) = plan else {
            return error;
        };
        let null_violation = message.contains("non-nullable");
        let state = error.sqlstate();
        let bad_value = matches!(
            state,
            SqlState::InvalidTextRepresentation | SqlState::NumericValueOutOfRange
        );
        if !null_violation && !bad_value {
            return error;
        }
        let invalid = |column: &str| {
            Error::state(
                state,
                format!("invalid value for column {column} of table {table}: {message}"),
            )
        };
        let input = dml.input.as_ref();
        // `INSERT ... VALUES`: DataFusion casts each value to its column's type inside the
        // VALUES list itself, so the list is tried one of its columns at a time, each named
        // after the target column the projection above it feeds.
        if let LogicalPlan::Projection(projection) = input
            && let LogicalPlan::Values(values) = projection.input.as_ref()
            && bad_value
        {
            for (expr, field) in projection.expr.iter().zip(input.schema().fields()) {
                let refs = expr.column_refs();
                let [column] = refs.into_iter().collect::<Vec<_>>()[..] else {
                    continue;
                };
                let Ok(index) = values.schema.index_of_column(column) else {
                    continue;
                };
                let rows = values
                    .values
                    .iter()
                    .map(|row| vec![row[index].clone()])
                    .collect();
                let Ok(single) = LogicalPlanBuilder::values(rows).and_then(|b| b.build()) else {
                    continue;
                };
                if self.fails(single).await {
                    return invalid(field.name());
                }
            }
        }
        for (index, (qualifier, field)) in input.schema().iter().enumerate() {
            // One target column's expression alone: over the projection's input when the
            // input is a projection (the casts to the column types), since the optimizer
            // would fold every constant cast of a projection left in between.
            let single = match input {
                LogicalPlan::Projection(projection) => {
                    LogicalPlanBuilder::from(projection.input.as_ref().clone())
                        .project(vec![projection.expr[index].clone()])
                }
                _ => LogicalPlanBuilder::from(input.clone())
                    .project(vec![Expr::Column(Column::from((qualifier, field)))]),
            };
            let Ok(single) = single.and_then(|b| b.build()) else {
                continue;
            };
            let failed = self.fails(single).await;
            if failed && null_violation {
                return Error::state(
                    SqlState::NotNullViolation,
                    format!(
                        "null value in column {} of table {table} violates its NOT NULL constraint",
                        field.name()
                    ),
                );
            }
            if failed {
                return invalid(field.name());
            }
        }
        // The writer names the column by position ("Invalid batch column at '0' has null but
        // schema specifies non-nullable") when no single column fails on its own (bound
        // parameters): name it from the table's schema.
        if null_violation
            && let Some(index) = message
                .split("column at '")
                .nth(1)
                .and_then(|rest| rest.split('\'').next())
                .and_then(|n| n.parse::<usize>().ok())
            && let Some(field) = dml.target.schema().fields().get(index)
        {
            return Error::state(
                SqlState::NotNullViolation,
                format!(
                    "null value in column {} of table {table} violates its NOT NULL constraint",
                    field.name()
                ),
            );
        }
        error
    }

    pub(super) async fn update(&self, session: &SessionContext, update: Update) -> Result<Output> {
        if update.returning.is_some() {
            return Err(Error::unsupported(
                "UPDATE ... RETURNING is not supported yet",
            ));
        }
        if update.from.is_some() || !update.table.joins.is_empty() {
            // Boxed: a MERGE's future is large, and every statement's future holds this one
            // (the tests' threads have 2 MiB stacks).
            return Box::pin(self.update_from(session, update)).await;
        }
        let table_name = single_table_name(&update.table)?;
        let name = self.qualify_object(&table_name)?;
        let table = self.writable_table(session, &name, "update").await?;
        let mut assignments = assignment_columns(&update.assignments)?;
        let schema = datafusion::catalog::TableProvider::schema(table.as_ref());
        for (column, value) in &mut assignments {
            *value = checked_value(&schema, column, std::mem::take(value));
        }
        for (column, _) in &assignments {
            if schema.field_with_name(column).is_err() {
                return Err(Error::state(
                    SqlState::UndefinedObject,
                    format!("column {column} of table {name} does not exist"),
                ));
            }
        }
        // Plan the same expressions with DataFusion first, so unknown columns and type errors
        // are reported in DataFusion's words before Delta rewrites anything.
        let check = format!(
            "SELECT {} FROM {table_name}{}",
            if assignments.is_empty() {
                "1".to_string()
            } else {
                assignments
                    .iter()
                    .map(|(_, e)| e.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            update
                .selection
                .as_ref()
                .map(|s| format!(" WHERE {s}"))
                .unwrap_or_default()
        );
        session.state().create_logical_plan(&check).await?;
        let state = Arc::new(session.state());
        let rows = table
            .rewrite(|delta| async move {
                let mut builder = delta.update().with_session_state(state);
                if let Some(selection) = &update.selection {
                    builder = builder.with_predicate(selection.to_string());
                }
                for (column, expression) in assignments {
                    builder = builder.with_update(column, expression);
                }
                let (updated, metrics) = builder.await?;
                Ok((updated, metrics.num_updated_rows as u64))
            })
            .await?;
        Ok(Output::Command {
            tag: "UPDATE",
            rows: Some(rows),
        })
    }

    pub(super) async fn delete(&self, session: &SessionContext, delete: Delete) -> Result<Output> {
        if delete.returning.is_some() || delete.limit.is_some() || !delete.order_by.is_empty() {
            return Err(Error::unsupported(
                "DELETE ... RETURNING, ORDER BY and LIMIT are not supported",
            ));
        }
        let from = match &delete.from {
            FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables) => tables,
        };
        let [from] = from.as_slice() else {
            return Err(Error::invalid("DELETE works on exactly one table"));
        };
        if let TableWithJoins {
            relation: TableFactor::Table { name, alias, .. },
            joins,
        } = from
            && joins.is_empty()
            && (alias.is_some()
                || delete.using.is_some()
                || delete.selection.as_ref().is_some_and(has_subquery))
        {
            let table = self
                .writable_table(session, &self.qualify_object(name)?, "delete from")
                .await?;
            return self
                .delete_by_rewrite(
                    session,
                    table,
                    name,
                    alias.as_ref(),
                    delete.using.as_deref(),
                    delete.selection.as_ref(),
                )
                .await;
        }
        let table_name = single_table_name(from)?;
        let name = self.qualify_object(&table_name)?;
        let table = self.writable_table(session, &name, "delete from").await?;
        let check = format!(
            "SELECT 1 FROM {table_name}{}",
            delete
                .selection
                .as_ref()
                .map(|s| format!(" WHERE {s}"))
                .unwrap_or_default()
        );
        session.state().create_logical_plan(&check).await?;
        let state = Arc::new(session.state());
        let rows = table
            .rewrite(|delta| async move {
                let before = crate::storage::row_count(&delta);
                let mut builder = delta.delete().with_session_state(state);
                if let Some(selection) = &delete.selection {
                    builder = builder.with_predicate(selection.to_string());
                }
                let (deleted, metrics) = builder.await?;
                let after = crate::storage::row_count(&deleted);
                let rows = metrics.num_deleted_rows.or_else(|| Some(before? - after?));
                Ok((deleted, rows))
            })
            .await?;
        Ok(Output::Command {
            tag: "DELETE",
            rows: rows.map(|n| n as u64),
        })
    }

    /// `TRUNCATE [TABLE] t [, ...]`: every row of each table goes, all tables at once: inside
    /// a transaction block with the block, else (for several tables) in a block of its own.
    /// CASCADE, which in PostgreSQL also empties the tables whose foreign keys reference
    /// these, is refused.
    pub(super) async fn truncate(
        &self,
        session: &SessionContext,
        truncate: Truncate,
    ) -> Result<Output> {
        if truncate.table_names.len() < 2 || transaction_of(session).is_some() {
            return self.truncate_in(session, truncate).await;
        }
        let block = self.begin(session).await?;
        match self.truncate_in(&block, truncate).await {
            Ok(output) => {
                self.commit(&block).await?;
                Ok(output)
            }
            Err(e) => {
                self.rollback(&block).await;
                Err(e)
            }
        }
    }

    async fn truncate_in(&self, session: &SessionContext, truncate: Truncate) -> Result<Output> {
        if matches!(truncate.cascade, Some(CascadeOption::Cascade)) {
            return Err(Error::unsupported("TRUNCATE ... CASCADE is not supported"));
        }
        if truncate.partitions.is_some() || truncate.on_cluster.is_some() {
            return Err(Error::unsupported(
                "TRUNCATE of partitions or on a cluster is not supported",
            ));
        }
        // Every table is checked before any is emptied.
        let mut tables = Vec::new();
        for target in &truncate.table_names {
            let name = self.qualify_object(&target.name)?;
            tables.push(
                self.writable_table_keeping(session, &name, "truncate", false)
                    .await?,
            );
        }
        for table in tables {
            let state = Arc::new(session.state());
            table
                .rewrite(|delta| async move {
                    let (emptied, _) = delta.delete().with_session_state(state).await?;
                    Ok((emptied, ()))
                })
                .await?;
        }
        Ok(Output::Command {
            tag: "TRUNCATE TABLE",
            rows: None,
        })
    }
}

impl Engine {
    /// `VACUUM [FULL] [tables]` and `OPTIMIZE tables` (see [`crate::storage::maintenance`]):
    /// each table's write buffer is flushed, then OPTIMIZE and VACUUM FULL compact its small
    /// files and VACUUM deletes the files no version within `vacuum_retention` needs. With
    /// no table named, VACUUM does every managed table.
    pub(super) async fn maintain(
        &self,
        session: &SessionContext,
        maintain: crate::sql::Maintain,
    ) -> Result<Output> {
        if transaction_of(session).is_some() {
            return Err(Error::state(
                SqlState::ActiveSqlTransaction,
                "VACUUM and OPTIMIZE cannot run inside a transaction block",
            ));
        }
        let verb = if maintain.vacuum {
            "vacuum"
        } else {
            "optimize"
        };
        let tables: Vec<Arc<ManagedTable>> = if maintain.tables.is_empty() {
            self.managed
                .lock()
                .expect("lock poisoned by a panic")
                .values()
                .cloned()
                .collect()
        } else {
            let mut tables = Vec::new();
            for name in &maintain.tables {
                let name = self.qualify_object(name)?;
                tables.push(self.writable_table(session, &name, verb).await?);
            }
            tables
        };
        for table in tables {
            if maintain.compact {
                table.compact(true).await?;
            } else {
                table.flush().await?;
            }
            if maintain.vacuum {
                table.vacuum(self.config.vacuum_retention).await?;
            }
        }
        Ok(Output::Command {
            tag: if maintain.vacuum {
                "VACUUM"
            } else {
                "OPTIMIZE"
            },
            rows: None,
        })
    }
}

/// The rows of an INSERT's input when it is only `VALUES` of expressions that need no table
/// (constants, bound parameters, casts, arithmetic) under the projection DataFusion adds to
/// match the table's columns; `None` for anything else, or when evaluating fails (the planned
/// INSERT then runs and reports the error as usual).
fn values_batch(plan: &LogicalPlan) -> Option<arrow::record_batch::RecordBatch> {
    use arrow::array::RecordBatchOptions;
    use arrow::record_batch::RecordBatch;
    use datafusion::common::{DFSchema, ScalarValue};
    use datafusion::execution::context::ExecutionProps;
    use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
    use datafusion::physical_expr::create_physical_expr;

    let props = ExecutionProps::new();
    let evaluate = |expr: &Expr, schema: &DFSchema, input: &RecordBatch| {
        let physical =
            create_physical_expr(expr, schema, &props, &PhysicalPlanningContext::default()).ok()?;
        physical
            .evaluate(input)
            .ok()?
            .into_array(input.num_rows())
            .ok()
    };
    match plan {
        LogicalPlan::Values(values) => {
            let one_row = RecordBatch::try_new_with_options(
                Arc::new(arrow::datatypes::Schema::empty()),
                vec![],
                &RecordBatchOptions::new().with_row_count(Some(1)),
            )
            .ok()?;
            let empty = DFSchema::empty();
            let mut columns = Vec::new();
            for (index, field) in values.schema.fields().iter().enumerate() {
                let mut cells = Vec::with_capacity(values.values.len());
                for row in &values.values {
                    let cell = match row.get(index)? {
                        Expr::Literal(value, _) => value.clone(),
                        expr => {
                            let array = evaluate(expr, &empty, &one_row)?;
                            ScalarValue::try_from_array(&array, 0).ok()?
                        }
                    };
                    cells.push(cell.cast_to(field.data_type()).ok()?);
                }
                columns.push(ScalarValue::iter_to_array(cells).ok()?);
            }
            RecordBatch::try_new_with_options(
                values.schema.inner().clone(),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(values.values.len())),
            )
            .ok()
        }
        LogicalPlan::Projection(projection) => {
            let input = values_batch(&projection.input)?;
            let schema = projection.input.schema();
            let columns = projection
                .expr
                .iter()
                .map(|expr| evaluate(expr, schema, &input))
                .collect::<Option<Vec<_>>>()?;
            RecordBatch::try_new_with_options(
                projection.schema.inner().clone(),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(input.num_rows())),
            )
            .ok()
        }
        LogicalPlan::SubqueryAlias(alias) => values_batch(&alias.input),
        _ => None,
    }
}

/// The `count` column DataFusion's insert returns.
fn count_from(batches: &[arrow::record_batch::RecordBatch]) -> u64 {
    use arrow::array::{Array, UInt64Array};
    batches
        .iter()
        .filter_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>().cloned())
        .map(|a| (0..a.len()).map(|i| a.value(i)).sum::<u64>())
        .sum()
}

/// Whether `expr` holds a subquery (which Delta Lake's own DELETE cannot evaluate).
fn has_subquery(expr: &datafusion::sql::sqlparser::ast::Expr) -> bool {
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Visit, Visitor};
    struct Finds;
    impl Visitor for Finds {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &SqlExpr) -> std::ops::ControlFlow<()> {
            match expr {
                SqlExpr::Subquery(_) | SqlExpr::InSubquery { .. } | SqlExpr::Exists { .. } => {
                    std::ops::ControlFlow::Break(())
                }
                _ => std::ops::ControlFlow::Continue(()),
            }
        }
    }
    expr.visit(&mut Finds).is_break()
}

fn single_table_name(table: &TableWithJoins) -> Result<ObjectName> {
    match &table.relation {
        TableFactor::Table {
            name, alias: None, ..
        } => Ok(name.clone()),
        TableFactor::Table { .. } => {
            Err(Error::unsupported("table aliases are not supported here"))
        }
        other => Err(Error::invalid(format!(
            "expected a table name, got {other}"
        ))),
    }
}

/// (column, expression SQL) for each `SET column = expression`.
pub(super) fn assignment_columns(assignments: &[Assignment]) -> Result<Vec<(String, String)>> {
    assignments
        .iter()
        .map(|assignment| match &assignment.target {
            AssignmentTarget::ColumnName(column) => {
                let ident = column
                    .0
                    .last()
                    .and_then(|part| part.as_ident())
                    .ok_or_else(|| Error::invalid(format!("invalid column {column}")))?;
                let normalized = if ident.quote_style.is_some() {
                    ident.value.clone()
                } else {
                    ident.value.to_lowercase()
                };
                Ok((normalized, assignment.value.to_string()))
            }
            AssignmentTarget::Tuple(_) => Err(Error::unsupported(
                "UPDATE ... SET (a, b) = (...) is not supported",
            )),
        })
        .collect()
}

/// `value`, SQL for a new value of `column` of a table with `schema`: a json or jsonb
/// column's is checked (and jsonb's normalised) as the insert path does (see
/// `storage::conform`); any other column's is `value` itself. UPDATE and MERGE use it.
pub(super) fn checked_value(
    schema: &datafusion::arrow::datatypes::Schema,
    column: &str,
    value: String,
) -> String {
    let kind = schema
        .field_with_name(column)
        .ok()
        .and_then(crate::pg::json::JsonKind::of);
    match kind {
        Some(crate::pg::json::JsonKind::Json) => {
            format!("{}({value})", crate::pg::json::PARSE_JSON)
        }
        Some(crate::pg::json::JsonKind::Jsonb) => {
            format!("{}({value})", crate::pg::json::PARSE_JSONB)
        }
        None => value,
    }
}
