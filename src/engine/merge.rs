//! Writes that join the table they change with other data: `MERGE INTO`, `UPDATE ...
//! FROM` (as a MERGE), and DELETE with `USING`, a target alias or a subquery in its
//! condition (what dbt's incremental models and snapshots emit). Delta Lake's own DELETE takes only a condition on the table's columns, so these
//! DELETEs rewrite the table from a query that keeps the other rows; MERGE is Delta Lake's.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, Merge, MergeAction, MergeClauseKind, MergeInsertKind, ObjectName,
    Statement as SqlStatement, TableAlias, TableFactor, TableWithJoins, Update,
    UpdateTableFromKind, VisitMut, VisitorMut,
};
use deltalake::protocol::SaveMode;

use super::dml::checked_value;
use super::{Engine, Output};
use crate::error::{Error, Result};
use crate::pg::names::folded;
use crate::pg::sqlstate::SqlState;
use crate::storage::ManagedTable;

impl Engine {
    /// `DELETE FROM target [AS alias] [USING ...] WHERE condition` where the condition
    /// needs a query (a join or a subquery): the table is rewritten, in one commit, with the
    /// rows the condition does not select.
    pub(super) async fn delete_by_rewrite(
        &self,
        session: &SessionContext,
        table: Arc<ManagedTable>,
        target: &ObjectName,
        alias: Option<&TableAlias>,
        using: Option<&[TableWithJoins]>,
        selection: Option<&Expr>,
    ) -> Result<Output> {
        let alias = alias.map(|a| format!(" {a}")).unwrap_or_default();
        let condition = selection.map_or_else(|| "TRUE".to_string(), |s| format!("({s})"));
        let keep = match using {
            Some(using) => format!(
                "SELECT * FROM {target}{alias} WHERE NOT EXISTS (SELECT 1 FROM {} WHERE {condition})",
                using
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            // A row whose condition is NULL stays, as in PostgreSQL.
            None => format!("SELECT * FROM {target}{alias} WHERE NOT coalesce({condition}, false)"),
        };
        let plan = session.state().create_logical_plan(&keep).await?;
        let state = Arc::new(session.state());
        let rows = table
            .rewrite(|delta| async move {
                let before = crate::storage::row_count(&delta);
                let kept = delta
                    .write(Vec::new())
                    .with_input_plan(plan)
                    .with_session_state(state)
                    .with_save_mode(SaveMode::Overwrite)
                    .await?;
                let after = crate::storage::row_count(&kept);
                Ok((kept, before.zip(after).map(|(b, a)| b.saturating_sub(a))))
            })
            .await?;
        Ok(Output::Command {
            tag: "DELETE",
            rows: rows.map(|n| n as u64),
        })
    }

    /// `UPDATE target [AS t] SET ... FROM source [AS s] WHERE condition` (dbt's snapshots
    /// close changed rows so): a MERGE of the one FROM item on the condition that updates
    /// the rows it matches. A column of the target may be named through its full name
    /// (`"tenure"."snapshots"."history".id`), as dbt does.
    pub(super) async fn update_from(
        &self,
        session: &SessionContext,
        mut update: Update,
    ) -> Result<Output> {
        let sources = match &update.from {
            Some(UpdateTableFromKind::AfterSet(from) | UpdateTableFromKind::BeforeSet(from)) => {
                from.clone()
            }
            None => Vec::new(),
        };
        let source = match sources.as_slice() {
            [source] if source.joins.is_empty() && update.table.joins.is_empty() => source,
            _ => {
                return Err(Error::unsupported(
                    "UPDATE ... FROM takes one table or subquery here; join the others in a \
                     subquery (FROM (SELECT ...) AS s)",
                ));
            }
        };
        let TableFactor::Table { name, alias, .. } = &update.table.relation else {
            return Err(Error::invalid(format!(
                "UPDATE needs a table name, not {}",
                update.table.relation
            )));
        };
        let target_ident = Ident::with_quote(
            '"',
            alias_or_name(alias.as_ref(), Some(name))
                .ok_or_else(|| Error::invalid(format!("invalid table name {name}")))?,
        );
        let mut by_name = ByTargetName {
            name: name
                .0
                .iter()
                .filter_map(|part| part.as_ident())
                .map(folded)
                .collect(),
            target: target_ident,
        };
        let _ = update.selection.visit(&mut by_name);
        for assignment in &mut update.assignments {
            let _ = assignment.value.visit(&mut by_name);
        }
        let sets: Vec<String> = update.assignments.iter().map(ToString::to_string).collect();
        // MERGE's parser takes no column aliases on its source (`AS s(id, v)`), so such a
        // source is wrapped in a subquery that applies them.
        let source = match &source.relation {
            TableFactor::Table {
                alias: Some(alias), ..
            }
            | TableFactor::Derived {
                alias: Some(alias), ..
            } if !alias.columns.is_empty() => {
                format!("(SELECT * FROM {}) AS {}", source.relation, alias.name)
            }
            relation => relation.to_string(),
        };
        let sql = format!(
            "MERGE INTO {} USING {} ON {} WHEN MATCHED THEN UPDATE SET {}",
            update.table.relation,
            source,
            update
                .selection
                .as_ref()
                .map_or_else(|| "TRUE".to_string(), ToString::to_string),
            sets.join(", ")
        );
        let mut statements = self.parse(&sql)?;
        let Some(crate::sql::Statement::DataFusion(DfStatement::Statement(statement))) =
            statements.pop()
        else {
            return Err(Error::invalid(format!(
                "cannot plan UPDATE ... FROM as {sql}"
            )));
        };
        let SqlStatement::Merge(merge) = *statement else {
            return Err(Error::invalid(format!(
                "cannot plan UPDATE ... FROM as {sql}"
            )));
        };
        match self.merge(session, merge).await {
            Ok(Output::Command { rows, .. }) => Ok(Output::Command {
                tag: "UPDATE",
                rows,
            }),
            Err(e) if e.sqlstate() == SqlState::CardinalityViolation => Err(Error::state(
                SqlState::CardinalityViolation,
                "UPDATE ... FROM matched a row of the target with more than one source row \
                 (PostgreSQL would update it with one of them, arbitrarily); make the source \
                 unique on the condition",
            )),
            other => other,
        }
    }

    /// `MERGE INTO target [AS t] USING source [AS s] ON condition WHEN ...`, with Delta
    /// Lake's merge: WHEN MATCHED THEN UPDATE / DELETE, WHEN NOT MATCHED THEN INSERT and WHEN
    /// NOT MATCHED BY SOURCE THEN UPDATE / DELETE, each with an optional AND condition, the
    /// first clause that applies winning, as in PostgreSQL.
    pub(super) async fn merge(&self, session: &SessionContext, merge: Merge) -> Result<Output> {
        if merge.output.is_some() {
            return Err(Error::unsupported("MERGE ... OUTPUT is not supported"));
        }
        let TableFactor::Table {
            name: target,
            alias: target_alias,
            ..
        } = &merge.table
        else {
            return Err(Error::invalid(format!(
                "MERGE INTO needs a table name, not {}",
                merge.table
            )));
        };
        let name = self.qualify_object(target)?;
        let target_table = name.name.clone();
        let table = self.writable_table(session, &name, "merge into").await?;
        let target_alias = alias_or_name(target_alias.as_ref(), Some(target));
        let (source_sql, source_alias) = match &merge.source {
            // MERGE's parser takes no column aliases (`AS s(id, v)`) here; `update_from`
            // wraps such a source in a subquery.
            TableFactor::Table {
                name, alias, args, ..
            } if args.is_none() => (
                format!("SELECT * FROM {name}"),
                alias_or_name(alias.as_ref(), Some(name)),
            ),
            TableFactor::Derived {
                subquery, alias, ..
            } => (subquery.to_string(), alias_or_name(alias.as_ref(), None)),
            other => {
                return Err(Error::unsupported(format!(
                    "MERGE ... USING {other} is not supported; use a table or a subquery"
                )));
            }
        };
        let Some(source_alias) = source_alias else {
            return Err(Error::invalid(
                "a subquery in MERGE ... USING needs an alias",
            ));
        };
        let target_alias = target_alias.expect("a table has a name");
        let source = session.sql(&source_sql).await?;
        let target_schema = datafusion::catalog::TableProvider::schema(&*table);
        let target_columns: Vec<String> = target_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut on = (*merge.on).clone();
        exact_identifiers(&mut on);
        let clauses = merge.clauses;
        // The condition and the new values are planned by DataFusion first, so that an
        // unknown column is reported in its words (42703) before Delta Lake runs anything.
        let mut checked = vec![on.to_string()];
        for clause in &clauses {
            if let Some(predicate) = &clause.predicate {
                let mut predicate = predicate.clone();
                exact_identifiers(&mut predicate);
                checked.push(predicate.to_string());
            }
            if let MergeAction::Update(update) = &clause.action {
                checked.extend(
                    assignments(&update.assignments, &target_schema)?
                        .into_iter()
                        .map(|(_, v)| v),
                );
            }
        }
        let check = format!(
            "SELECT {} FROM {target} AS {} CROSS JOIN ({source_sql}) AS {} WHERE false",
            checked.join(", "),
            Ident::with_quote('"', &target_alias),
            Ident::with_quote('"', &source_alias),
        );
        Box::pin(session.state().create_logical_plan(&check)).await?;
        let state = Arc::new(session.state());
        let (source_name, target_name) = (source_alias.clone(), target_alias.clone());
        let rows = table
            .rewrite(|delta| async move {
                let mut builder = delta
                    .merge(source, on.to_string())
                    .with_source_alias(source_name)
                    .with_target_alias(target_name)
                    .with_session_state(state);
                for clause in clauses {
                    let predicate = clause.predicate.map(|mut p| {
                        exact_identifiers(&mut p);
                        p.to_string()
                    });
                    builder = match (clause.clause_kind, clause.action) {
                        (MergeClauseKind::Matched, MergeAction::Update(update)) => {
                            let sets = assignments(&update.assignments, &target_schema)?;
                            builder.when_matched_update(|mut u| {
                                if let Some(p) = predicate {
                                    u = u.predicate(p);
                                }
                                for (column, value) in sets {
                                    u = u.update(column, value);
                                }
                                u
                            })?
                        }
                        (MergeClauseKind::Matched, MergeAction::Delete { .. }) => builder
                            .when_matched_delete(|mut d| {
                                if let Some(p) = predicate {
                                    d = d.predicate(p);
                                }
                                d
                            })?,
                        (
                            MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget,
                            MergeAction::Insert(insert),
                        ) => {
                            let values = insert_values(
                                insert.columns,
                                insert.kind,
                                &target_table,
                                &target_columns,
                                &source_alias,
                            )?
                            .into_iter()
                            .map(|(column, value)| {
                                let value = checked_value(&target_schema, &column, value);
                                (column, value)
                            })
                            .collect::<Vec<_>>();
                            builder.when_not_matched_insert(|mut i| {
                                if let Some(p) = predicate {
                                    i = i.predicate(p);
                                }
                                for (column, value) in values {
                                    i = i.set(column, value);
                                }
                                i
                            })?
                        }
                        (MergeClauseKind::NotMatchedBySource, MergeAction::Update(update)) => {
                            let sets = assignments(&update.assignments, &target_schema)?;
                            builder.when_not_matched_by_source_update(|mut u| {
                                if let Some(p) = predicate {
                                    u = u.predicate(p);
                                }
                                for (column, value) in sets {
                                    u = u.update(column, value);
                                }
                                u
                            })?
                        }
                        (MergeClauseKind::NotMatchedBySource, MergeAction::Delete { .. }) => {
                            builder.when_not_matched_by_source_delete(|mut d| {
                                if let Some(p) = predicate {
                                    d = d.predicate(p);
                                }
                                d
                            })?
                        }
                        (kind, action) => {
                            return Err(Error::state(
                                SqlState::SyntaxError,
                                format!("WHEN {kind} cannot be followed by {action}"),
                            ));
                        }
                    };
                }
                let (merged, metrics) = builder.await.map_err(|e| {
                    if e.to_string().contains("multiple source rows") {
                        // PostgreSQL's words and state for the same condition.
                        Error::state(
                            SqlState::CardinalityViolation,
                            "MERGE command cannot affect row a second time: more than one \
                             source row matches a row of the target; make the source unique \
                             on the join condition",
                        )
                    } else {
                        e.into()
                    }
                })?;
                let rows = metrics.num_target_rows_inserted
                    + metrics.num_target_rows_updated
                    + metrics.num_target_rows_deleted;
                Ok((merged, rows as u64))
            })
            .await?;
        Ok(Output::Command {
            tag: "MERGE",
            rows: Some(rows),
        })
    }
}

/// Rewrites a column named through the target's qualified name, as written in the UPDATE
/// (`"tenure"."snapshots"."history".id` after `UPDATE "tenure"."snapshots"."history"`, or
/// the name's last parts), to `target.column`, as MERGE names the target.
struct ByTargetName {
    /// The target's name parts, folded.
    name: Vec<String>,
    /// Its alias, or the last part of its name.
    target: Ident,
}

impl VisitorMut for ByTargetName {
    type Break = ();
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() >= 3
            && let Some((column, qualifier)) = parts.split_last()
            && self
                .name
                .ends_with(&qualifier.iter().map(folded).collect::<Vec<_>>())
        {
            *expr = Expr::CompoundIdentifier(vec![self.target.clone(), column.clone()]);
        }
        ControlFlow::Continue(())
    }
}

/// The name a MERGE refers to a relation by: its alias, else the table's own name; folded
/// as DataFusion folds identifiers.
fn alias_or_name(alias: Option<&TableAlias>, name: Option<&ObjectName>) -> Option<String> {
    let ident = match alias {
        Some(alias) => Some(&alias.name),
        None => name
            .and_then(|n| n.0.last())
            .and_then(|part| part.as_ident()),
    };
    ident.map(folded)
}

/// Quotes every column reference of `expr` with its folded name, so that Delta Lake's
/// parser reads exactly the names DataFusion would (`S.Id` is `"s"."id"`).
fn exact_identifiers(expr: &mut Expr) {
    struct Exact;
    impl VisitorMut for Exact {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(ident) => *ident = Ident::with_quote('"', folded(ident)),
                Expr::CompoundIdentifier(parts) => {
                    for ident in parts {
                        *ident = Ident::with_quote('"', folded(ident));
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let _ = expr.visit(&mut Exact);
}

/// (column, value SQL) of each `SET column = value` of a table with `schema`.
fn assignments(
    assignments: &[datafusion::sql::sqlparser::ast::Assignment],
    schema: &datafusion::arrow::datatypes::Schema,
) -> Result<Vec<(String, String)>> {
    super::dml::assignment_columns(assignments)?
        .into_iter()
        .zip(assignments)
        .map(|((column, _), assignment)| {
            let mut value = assignment.value.clone();
            exact_identifiers(&mut value);
            let value = checked_value(schema, &column, value.to_string());
            Ok((column, value))
        })
        .collect()
}

/// (column, value SQL) of `INSERT [(columns)] VALUES (values)`: every target column when
/// none are named. A bare column name in a value is the source's (the target has no row).
fn insert_values(
    columns: Vec<ObjectName>,
    kind: MergeInsertKind,
    target: &str,
    target_columns: &[String],
    source_alias: &str,
) -> Result<Vec<(String, String)>> {
    let MergeInsertKind::Values(values) = kind else {
        return Err(Error::unsupported(
            "MERGE ... INSERT ROW is not supported; list the values",
        ));
    };
    let [row] = values.rows.as_slice() else {
        return Err(Error::state(
            SqlState::SyntaxError,
            "MERGE ... INSERT takes exactly one VALUES row",
        ));
    };
    let columns: Vec<String> = if columns.is_empty() {
        target_columns.to_vec()
    } else {
        columns
            .iter()
            .map(|c| {
                c.0.last()
                    .and_then(|part| part.as_ident())
                    .map(folded)
                    .ok_or_else(|| Error::invalid(format!("invalid column {c}")))
            })
            .collect::<Result<_>>()?
    };
    if columns.len() != row.len() {
        return Err(Error::state(
            SqlState::SyntaxError,
            format!(
                "MERGE ... INSERT names {} columns but gives {} values",
                columns.len(),
                row.len()
            ),
        ));
    }
    for column in &columns {
        if !target_columns.contains(column) {
            return Err(Error::state(
                SqlState::UndefinedColumn,
                format!("column \"{column}\" of relation \"{target}\" does not exist"),
            ));
        }
    }
    struct OfSource(Ident);
    impl VisitorMut for OfSource {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Identifier(ident) = expr {
                *expr = Expr::CompoundIdentifier(vec![self.0.clone(), ident.clone()]);
            }
            ControlFlow::Continue(())
        }
    }
    let mut of_source = OfSource(Ident::with_quote('"', source_alias));
    Ok(columns
        .into_iter()
        .zip(row.iter().cloned())
        .map(|(column, mut value)| {
            exact_identifiers(&mut value);
            let _ = value.visit(&mut of_source);
            (column, value.to_string())
        })
        .collect())
}
