//! `tenure_view_definition(schema, name)`: a view's SQL as the catalog keeps it, in the form
//! PostgreSQL's `pg_get_viewdef` returns (a leading space, a closing semicolon). pg_views's
//! `definition` column and the rewrite of `pg_get_viewdef(oid)` (psql's `\d+ view` and `\sv`,
//! DBeaver's and Metabase's view sources) read it. NULL for anything that is not a view.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;

use super::udf_args::{like_arguments, row_count};
use crate::catalog::{QualifiedName, Relation, SavedCatalog};

pub use super::rewrite::VIEW_DEFINITION;

pub fn register(ctx: &SessionContext, catalog: SavedCatalog) {
    ctx.register_udf(create_udf(
        VIEW_DEFINITION,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let rows = row_count(args);
            let schemas = args[0].to_array(rows)?;
            let names = args[1].to_array(rows)?;
            let (schemas, names) = (schemas.as_string::<i32>(), names.as_string::<i32>());
            let state = catalog.get();
            let definitions: StringArray = (0..rows)
                .map(|row| {
                    if schemas.is_null(row) || names.is_null(row) {
                        return None;
                    }
                    let name = QualifiedName::new(schemas.value(row), names.value(row));
                    match state.get(&name) {
                        Some(Relation::View { sql }) => Some(definition(sql)),
                        _ => None,
                    }
                })
                .collect();
            like_arguments(args, Arc::new(definitions))
        }),
    ));
}

/// The query of a stored `CREATE VIEW` statement, as pg_get_viewdef shows it.
fn definition(sql: &str) -> String {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let query = match Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statement())
    {
        Ok(Statement::CreateView(create)) => create.query.to_string(),
        _ => sql.trim().trim_end_matches(';').to_string(),
    };
    format!(" {query};")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_query_of_a_view() {
        assert_eq!(
            super::definition("CREATE OR REPLACE VIEW v AS SELECT a FROM t WHERE b > 1"),
            " SELECT a FROM t WHERE b > 1;"
        );
    }
}
