//! `VALUES` nested inside an `INSERT ... SELECT`.
//!
//! DataFusion plans an INSERT's source with the target columns' types in force for every
//! `VALUES` list in it, meant for `INSERT ... VALUES` alone: a `VALUES` inside the source
//! (`INSERT INTO t (id, name) SELECT x, 'y' FROM (VALUES (10)) v(x)`) is then checked against
//! the target's columns and fails ("Inconsistent data length across values list"), though the
//! same SELECT plans on its own. Such a nested list becomes the equivalent `SELECT ... UNION
//! ALL SELECT ...` (columns named `column1`, ... as VALUES names them), which DataFusion plans
//! as it would outside an INSERT.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Ident, Query, Select, SelectItem, SetExpr, SetOperator, SetQuantifier,
    Statement as SqlStatement, Values, VisitMut, VisitorMut,
};

/// The most rows a nested list may have to be rewritten: each row is one more level of
/// UNION, and a longer list is better loaded as a table.
const MAX_ROWS: usize = 256;

/// Rewrites every `VALUES` list nested in the source of an `INSERT` whose source is not
/// itself a `VALUES` list.
pub fn nested_values_in_insert_sources(statement: &mut SqlStatement) {
    let SqlStatement::Insert(insert) = statement else {
        return;
    };
    let Some(source) = insert.source.as_mut() else {
        return;
    };
    if matches!(source.body.as_ref(), SetExpr::Values(_)) {
        return;
    }
    struct Nested;
    impl VisitorMut for Nested {
        type Break = ();
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Values(values) = query.body.as_ref()
                && let Some(union) = as_union(values)
            {
                *query.body = union;
            }
            ControlFlow::Continue(())
        }
    }
    let _ = source.visit(&mut Nested);
}

/// `VALUES (a, b), (c, d)` as `SELECT a AS column1, b AS column2 UNION ALL SELECT c, d`.
fn as_union(values: &Values) -> Option<SetExpr> {
    if values.rows.is_empty() || values.rows.len() > MAX_ROWS || values.explicit_row {
        return None;
    }
    let mut rows = values.rows.iter().enumerate().map(|(index, row)| {
        let projection = row
            .iter()
            .enumerate()
            .map(|(column, expr)| match index {
                0 => SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: Ident::new(format!("column{}", column + 1)),
                },
                _ => SelectItem::UnnamedExpr(expr.clone()),
            })
            .collect();
        SetExpr::Select(Box::new(select(projection)))
    });
    let first = rows.next()?;
    Some(rows.fold(first, |left, right| SetExpr::SetOperation {
        op: SetOperator::Union,
        set_quantifier: SetQuantifier::All,
        left: Box::new(left),
        right: Box::new(right),
    }))
}

/// A `SELECT` of `projection` alone (built from a parsed `SELECT 1`, since sqlparser's
/// `Select` has many fields and no constructor).
fn select(projection: Vec<SelectItem>) -> Select {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let query = Parser::new(&PostgreSqlDialect {})
        .try_with_sql("SELECT 1")
        .and_then(|mut parser| parser.parse_query())
        .expect("SELECT 1 parses");
    let SetExpr::Select(mut select) = *query.body else {
        unreachable!("SELECT 1 is a select");
    };
    select.projection = projection;
    *select
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        super::super::tests::rewritten(sql, nested_values_in_insert_sources)
    }

    #[test]
    fn nested_values_become_unions() {
        assert_eq!(
            rewritten("INSERT INTO t (id, name) SELECT x, 'y' FROM (VALUES (10), (11)) v(x)"),
            "INSERT INTO t (id, name) SELECT x, 'y' FROM (SELECT 10 AS column1 UNION ALL \
             SELECT 11) v (x)"
        );
        // An INSERT ... VALUES, and queries outside an INSERT, are left alone.
        let plain = "INSERT INTO t VALUES (1, 'a')";
        assert_eq!(rewritten(plain), plain);
        let query = "SELECT * FROM (VALUES (1)) v (x)";
        assert_eq!(rewritten(query), query);
    }
}
