//! Where a result column comes from, for the RowDescription's table oid and column number:
//! PostgreSQL fills them for a select item that is a plain column of a table or view (also
//! under an alias, through joins, subqueries and GROUP BY), and zero otherwise. pgjdbc's
//! `ResultSetMetaData.getTableName` / `getColumnName` / `isNullable` and the grid editors of
//! DBeaver and pgAdmin look the column up in pg_attribute by those two numbers.
//!
//! The server marks its planned result schema with [`mark_origins`] and the RowDescription
//! reads the marks back ([`origin`]).

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::{Column, TableReference};
use datafusion::logical_expr::{Distinct, Expr, JoinType, LogicalPlan};

use crate::catalog::CatalogState;

/// Field metadata: the oid of the column's table (see [`super::oids`]).
const TABLE_OID_KEY: &str = "tenure.table_oid";
/// Field metadata: the column's number in its table, counting from 1 (pg_attribute.attnum).
const COLUMN_NUMBER_KEY: &str = "tenure.column_number";

/// A result column's table and its number there.
#[derive(Debug, Clone, PartialEq)]
struct Origin {
    table: TableReference,
    number: usize,
}

/// `schema` (the planned result of `plan`) with each column that is a plain table column
/// marked with that table's oid and the column's number. Unqualified table names are in
/// `default_schema`.
pub fn mark_origins(
    schema: Schema,
    plan: &LogicalPlan,
    catalog: &CatalogState,
    default_schema: &str,
) -> Schema {
    let origins = origins(plan);
    if origins.len() != schema.fields().len() || origins.iter().all(Option::is_none) {
        return schema;
    }
    // One oid lookup per table, however many of its columns the result has.
    let mut oids: Vec<(TableReference, i32)> = Vec::new();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(origins)
        .map(|(field, origin)| {
            let field = field.as_ref().clone();
            let Some(Origin { table, number }) = origin else {
                return field;
            };
            let Ok(number) = i16::try_from(number) else {
                return field;
            };
            let oid = match oids.iter().find(|(t, _)| *t == table) {
                Some((_, oid)) => *oid,
                None => {
                    let table_schema = table.schema().unwrap_or(default_schema);
                    let oid = super::oids::relation_oid(catalog, table_schema, table.table());
                    oids.push((table, oid));
                    oid
                }
            };
            let mut metadata = field.metadata().clone();
            metadata.insert(TABLE_OID_KEY.to_string(), oid.to_string());
            metadata.insert(COLUMN_NUMBER_KEY.to_string(), number.to_string());
            field.with_metadata(metadata)
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// The table oid and column number [`mark_origins`] gave `field`.
pub fn origin(field: &Field) -> Option<(i32, i16)> {
    let metadata = field.metadata();
    let oid = metadata.get(TABLE_OID_KEY)?.parse().ok()?;
    let number = metadata.get(COLUMN_NUMBER_KEY)?.parse().ok()?;
    Some((oid, number))
}

/// The origin of each output column of `plan`; always as many as the plan has columns.
fn origins(plan: &LogicalPlan) -> Vec<Option<Origin>> {
    let width = plan.schema().fields().len();
    let found = match plan {
        LogicalPlan::TableScan(scan) => (0..width)
            .map(|i| {
                let index = scan
                    .projection
                    .as_ref()
                    .map_or(Some(i), |p| p.get(i).copied());
                index.map(|index| Origin {
                    table: scan.table_name.clone(),
                    number: index + 1,
                })
            })
            .collect(),
        LogicalPlan::Projection(projection) => through_exprs(&projection.expr, &projection.input),
        LogicalPlan::Distinct(Distinct::On(on)) => through_exprs(&on.select_expr, &on.input),
        LogicalPlan::Aggregate(aggregate) => {
            // Grouping sets add a grouping id column; those plans keep no origins.
            let mut found = through_exprs(&aggregate.group_expr, &aggregate.input);
            found.resize(width, None);
            found
        }
        LogicalPlan::Window(window) => {
            let mut found = origins(&window.input);
            found.resize(width, None);
            found
        }
        LogicalPlan::Join(join) => match join.join_type {
            JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => {
                let mut found = origins(&join.left);
                found.extend(origins(&join.right));
                found
            }
            JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                let mut found = origins(&join.left);
                found.resize(width, None);
                found
            }
            JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                let mut found = origins(&join.right);
                found.resize(width, None);
                found
            }
        },
        LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Distinct(Distinct::All(_)) => match plan.inputs().as_slice() {
            [input] => origins(input),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    if found.len() == width {
        found
    } else {
        vec![None; width]
    }
}

/// The origins of `exprs` evaluated over `input`: a column's (aliased or not), none for any
/// other expression.
fn through_exprs(exprs: &[Expr], input: &LogicalPlan) -> Vec<Option<Origin>> {
    let below = origins(input);
    exprs
        .iter()
        .map(|expr| {
            let column = plain_column(expr)?;
            let index = input.schema().index_of_column(column).ok()?;
            below.get(index).cloned().flatten()
        })
        .collect()
}

fn plain_column(expr: &Expr) -> Option<&Column> {
    match expr {
        Expr::Column(column) => Some(column),
        Expr::Alias(alias) => plain_column(&alias.expr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::DataType;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn marks(sql: &str) -> Vec<Option<(i32, i16)>> {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
        ]));
        for table in ["a", "b"] {
            ctx.register_table(
                table,
                Arc::new(MemTable::try_new(schema.clone(), vec![vec![]]).unwrap()),
            )
            .unwrap();
        }
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        let schema = mark_origins(
            plan.schema().as_arrow().clone(),
            &plan,
            &CatalogState::default(),
            "public",
        );
        schema.fields().iter().map(|f| origin(f)).collect()
    }

    #[tokio::test]
    async fn plain_columns_keep_their_table_and_number() {
        let a = super::super::oids::relation_oid(&CatalogState::default(), "public", "a");
        let b = super::super::oids::relation_oid(&CatalogState::default(), "public", "b");
        assert_eq!(
            marks("SELECT amount, id AS key, id + 1, upper(name) FROM a").await,
            vec![Some((a, 3)), Some((a, 1)), None, None]
        );
        assert_eq!(
            marks(
                "SELECT x.name, b.amount FROM a x JOIN b ON x.id = b.id \
                 WHERE b.amount > 1 ORDER BY 1 LIMIT 3"
            )
            .await,
            vec![Some((a, 2)), Some((b, 3))]
        );
        assert_eq!(
            marks("SELECT s.n, count(*) FROM (SELECT name AS n FROM b) s GROUP BY s.n").await,
            vec![Some((b, 2)), None]
        );
        assert_eq!(
            marks("SELECT id FROM a UNION ALL SELECT id FROM b").await,
            vec![None]
        );
    }
}
