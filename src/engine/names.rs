//! PostgreSQL's names for select-list items that DataFusion would name otherwise, or
//! refuse: an unaliased scalar subquery is named after its own single column, as in
//! PostgreSQL (`(SELECT count(*) FROM t)` is `count`), where DataFusion names every such
//! item `(<subquery>)` and so refused two of them in one select list. A name already taken
//! in the list gets a suffix (`count_2`): PostgreSQL allows two columns of one name,
//! DataFusion does not; for the same reason, when DataFusion refuses a select list for two
//! items of one name, the later ones get suffixes and it is planned again.

use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, Ident, Query, SelectItem, SetExpr, Statement as SqlStatement, VisitMut,
    VisitorMut,
};
use std::ops::ControlFlow;

use super::keys::normalise;

/// Aliases every unaliased scalar subquery in a select list of `statement`.
pub fn name_subquery_items(statement: &mut SqlStatement) {
    struct Names;
    impl VisitorMut for Names {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            let SetExpr::Select(select) = query.body.as_mut() else {
                return ControlFlow::Continue(());
            };
            if !select
                .projection
                .iter()
                .any(|item| matches!(item, SelectItem::UnnamedExpr(SqlExpr::Subquery(_))))
            {
                return ControlFlow::Continue(());
            }
            // Other items keep their names; each subquery takes the first free one.
            let fixed: Vec<String> = select
                .projection
                .iter()
                .filter(|item| !matches!(item, SelectItem::UnnamedExpr(SqlExpr::Subquery(_))))
                .filter_map(item_name)
                .collect();
            let mut given: Vec<String> = Vec::new();
            for item in &mut select.projection {
                let SelectItem::UnnamedExpr(SqlExpr::Subquery(subquery)) = item else {
                    continue;
                };
                let base = subquery_name(subquery);
                let mut name = base.clone();
                let mut n = 1;
                while fixed.contains(&name) || given.contains(&name) {
                    n += 1;
                    name = format!("{base}_{n}");
                }
                given.push(name.clone());
                let expr = SqlExpr::Subquery(subquery.clone());
                *item = SelectItem::ExprWithAlias {
                    expr,
                    alias: Ident::with_quote('"', name),
                };
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Names);
}

/// After DataFusion refused a select list for two items of one name (`SELECT m,
/// m::timestamp`, `SELECT a, a`): every unaliased item whose name an earlier item of its list
/// already has gets a suffix (`m_2`). Only then, since DataFusion tells apart what
/// PostgreSQL names alike (`a.id` and `b.id`, both `id`), and those should keep their names.
///
/// In a query the suffix follows [`crate::pg::names::DUPLICATE_MARK`], which the result's
/// column names leave out (PostgreSQL names both `count`); in a table or view made from a
/// query it follows `_`, since column names must differ there.
pub fn alias_duplicate_items(statement: &mut SqlStatement) {
    let separator = match statement {
        SqlStatement::Query(_) => crate::pg::names::DUPLICATE_MARK,
        _ => "_",
    };
    struct Duplicates(&'static str);
    impl VisitorMut for Duplicates {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            let SetExpr::Select(select) = query.body.as_mut() else {
                return ControlFlow::Continue(());
            };
            let aliases: Vec<String> = select
                .projection
                .iter()
                .filter(|item| matches!(item, SelectItem::ExprWithAlias { .. }))
                .filter_map(item_name)
                .collect();
            let mut seen: Vec<String> = Vec::new();
            for item in &mut select.projection {
                let SelectItem::UnnamedExpr(expr) = item else {
                    continue;
                };
                // An expression without a column name of its own (`NULL`, `1 + 1`) is
                // `?column?` in PostgreSQL, which allows several of them.
                let base = expr_name(expr).unwrap_or_else(|| "?column?".to_string());
                if !seen.contains(&base) {
                    seen.push(base);
                    continue;
                }
                let mut n = 2;
                let separator = self.0;
                let mut name = format!("{base}{separator}{n}");
                while seen.contains(&name) || aliases.contains(&name) {
                    n += 1;
                    name = format!("{base}{separator}{n}");
                }
                seen.push(name.clone());
                let expr = expr.clone();
                *item = SelectItem::ExprWithAlias {
                    expr,
                    alias: Ident::with_quote('"', name),
                };
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Duplicates(separator));
}

/// The name PostgreSQL gives a select item, where it is plain from the syntax.
fn item_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(normalise(alias)),
        SelectItem::UnnamedExpr(expr) => expr_name(expr),
        _ => None,
    }
}

fn expr_name(expr: &SqlExpr) -> Option<String> {
    match expr {
        SqlExpr::Identifier(ident) => Some(normalise(ident)),
        SqlExpr::CompoundIdentifier(parts) => parts.last().map(normalise),
        SqlExpr::Function(function) => function
            .name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(normalise),
        SqlExpr::Nested(inner) => expr_name(inner),
        // `x::type` is named x (a constant cast is named after its type: no clash to fix).
        SqlExpr::Cast { expr, .. } => expr_name(expr),
        SqlExpr::Subquery(subquery) => Some(subquery_name(subquery)),
        _ => None,
    }
}

/// A scalar subquery's name: that of its single item, or `?column?`.
fn subquery_name(subquery: &Query) -> String {
    match subquery.body.as_ref() {
        SetExpr::Select(select) if select.projection.len() == 1 => item_name(&select.projection[0]),
        _ => None,
    }
    .unwrap_or_else(|| "?column?".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn named(sql: &str) -> String {
        let mut statement = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .unwrap();
        name_subquery_items(&mut statement);
        statement.to_string()
    }

    #[test]
    fn subqueries_are_named_after_their_column() {
        assert_eq!(
            named("SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), (SELECT 1)"),
            "SELECT (SELECT count(*) FROM a) AS \"count\", (SELECT count(*) FROM b) AS \
             \"count_2\", (SELECT 1) AS \"?column?\""
        );
        assert_eq!(
            named("SELECT id, (SELECT max(x) AS id FROM b) FROM a"),
            "SELECT id, (SELECT max(x) AS id FROM b) AS \"id_2\" FROM a"
        );
        // Nothing to do without an unaliased subquery item.
        assert_eq!(
            named("SELECT (SELECT 1) AS one"),
            "SELECT (SELECT 1) AS one"
        );
    }

    #[test]
    fn duplicate_names_get_suffixes() {
        let mut statement = Parser::new(&PostgreSqlDialect {})
            .try_with_sql("SELECT m, m::TIMESTAMP, t.m, m AS m_2, count(*) FROM t")
            .and_then(|mut p| p.parse_statement())
            .unwrap();
        alias_duplicate_items(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT m, m::TIMESTAMP AS \"m\u{2063}2\", t.m AS \"m\u{2063}3\", m AS m_2, count(*) FROM t"
        );
        let mut create = Parser::new(&PostgreSqlDialect {})
            .try_with_sql("CREATE VIEW v AS SELECT m, m::TIMESTAMP, m AS m_2 FROM t")
            .and_then(|mut p| p.parse_statement())
            .unwrap();
        alias_duplicate_items(&mut create);
        assert_eq!(
            create.to_string(),
            "CREATE VIEW v AS SELECT m, m::TIMESTAMP AS \"m_3\", m AS m_2 FROM t"
        );
    }
}
