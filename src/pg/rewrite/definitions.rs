//! Two catalog constructs that psql's backslash commands use and DataFusion cannot plan:
//!
//! - `pg_get_viewdef(oid [, pretty])` (`\d+ view`, `\sv`): a lookup of the view's stored SQL
//!   by the relation's oid, as a scalar subquery over pg_class and pg_namespace (the oid is
//!   only known there) calling `tenure_view_definition(schema, name)`, which reads the
//!   catalog;
//! - `ARRAY(SELECT x FROM ...)` (`\du`, `\dg`, `\dD`, `\dy`): the same rows collected by
//!   `(SELECT array_agg(x) FROM ...)`, which DataFusion plans, correlated or not. An empty
//!   result gives NULL where PostgreSQL gives `{}`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArguments, OrderByKind, SelectItem, SetExpr,
    Statement as SqlStatement, visit_expressions_mut,
};

use super::{call_parts, parse_expr};

/// The function that returns a view's SQL from the catalog, by schema and name.
pub const VIEW_DEFINITION: &str = "tenure_view_definition";

/// `pg_get_viewdef(x [, pretty])` as a lookup of the view with oid x.
pub fn view_definition_lookups(statement: &mut SqlStatement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Some((name, args)) = call_parts(expr)
            && name == "pg_get_viewdef"
            && (1..=2).contains(&args.len())
            && let Some(lookup) = parse_expr(&format!(
                "(SELECT max({VIEW_DEFINITION}(tenure_vn.nspname, tenure_vc.relname)) \
                 FROM pg_catalog.pg_class tenure_vc \
                 JOIN pg_catalog.pg_namespace tenure_vn ON tenure_vn.oid = tenure_vc.relnamespace \
                 WHERE tenure_vc.oid = {})",
                args[0]
            ))
        {
            *expr = lookup;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `ARRAY(SELECT x FROM ... [ORDER BY ...])` as `(SELECT array_agg(x [ORDER BY ...]) FROM
/// ...)`, for a subquery of one plain select item without LIMIT, GROUP BY or DISTINCT.
pub fn array_subqueries(statement: &mut SqlStatement) {
    let _ = visit_expressions_mut(statement, |expr| {
        let SqlExpr::Function(function) = expr else {
            return ControlFlow::<()>::Continue(());
        };
        let FunctionArguments::Subquery(query) = &function.args else {
            return ControlFlow::Continue(());
        };
        if !function.name.to_string().eq_ignore_ascii_case("array")
            || query.limit_clause.is_some()
            || query.with.is_some()
        {
            return ControlFlow::Continue(());
        }
        let mut query = query.clone();
        let order_by = query.order_by.take();
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let grouped = !matches!(
            &select.group_by,
            datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty()
        );
        if select.distinct.is_some() || grouped || select.projection.len() != 1 {
            return ControlFlow::Continue(());
        }
        let item = match &select.projection[0] {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
            _ => return ControlFlow::Continue(()),
        };
        // `ARRAY(SELECT x FROM unnest(a) AS t(x))` (psql's `\dy`) is `a`.
        if order_by.is_none()
            && let Some(array) = unnested_array(select, &item)
        {
            *expr = array;
            return ControlFlow::Continue(());
        }
        let order = match order_by.map(|o| o.kind) {
            None => String::new(),
            Some(OrderByKind::Expressions(keys)) => {
                let keys: Vec<String> = keys
                    .into_iter()
                    .map(|mut key| {
                        // `ORDER BY 1` is the select item.
                        if key.expr.to_string() == "1" {
                            key.expr = item.clone();
                        }
                        key.to_string()
                    })
                    .collect();
                format!(" ORDER BY {}", keys.join(", "))
            }
            Some(OrderByKind::All(_)) => return ControlFlow::Continue(()),
        };
        let Some(collected) = parse_expr(&format!("array_agg({item}{order})")) else {
            return ControlFlow::Continue(());
        };
        select.projection = vec![SelectItem::UnnamedExpr(collected)];
        *expr = SqlExpr::Subquery(query);
        ControlFlow::Continue(())
    });
}

/// `a` when `select` is `SELECT x FROM unnest(a) AS t(x)` and `item` is that `x`.
fn unnested_array(
    select: &datafusion::sql::sqlparser::ast::Select,
    item: &SqlExpr,
) -> Option<SqlExpr> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, TableFactor};
    let [from] = select.from.as_slice() else {
        return None;
    };
    if select.selection.is_some() || !from.joins.is_empty() {
        return None;
    }
    let SqlExpr::Identifier(column) = item else {
        return None;
    };
    let TableFactor::Table {
        name,
        args: Some(args),
        alias: Some(alias),
        ..
    } = &from.relation
    else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] = args.args.as_slice() else {
        return None;
    };
    let named_column = alias.columns.len() == 1
        && alias.columns[0]
            .name
            .value
            .eq_ignore_ascii_case(&column.value);
    (name.to_string().eq_ignore_ascii_case("unnest") && named_column).then(|| array.clone())
}

/// `array_to_string(x.relacl, sep)` and `array_to_string(x.nspacl, sep)` (psql's `\\dp`,
/// `\\z`, `\\dn+`): the aclitems of the relation or schema whose oid is `x.oid`, from
/// tenure's grants (`tenure_relation_acl`, `tenure_namespace_acl`; NULL when nothing was
/// granted, as in PostgreSQL). pg_default_acl's defaclacl is a real array. Other acl
/// columns (attacl, datacl, ...) are NULL: tenure shows column privileges in
/// information_schema.column_privileges only and has no database privileges;
/// datafusion-pg-catalog keeps them as text, which array_to_string refuses.
pub fn acl_texts(statement: &mut SqlStatement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Some((name, args)) = call_parts(expr)
            && name == "array_to_string"
            && let Some(first) = args.first()
            && first.to_string().to_ascii_lowercase().ends_with("acl")
            && !first
                .to_string()
                .to_ascii_lowercase()
                .ends_with("defaclacl")
        {
            let column = first.to_string();
            let lower = column.to_ascii_lowercase();
            let separator = args
                .get(1)
                .map_or_else(|| "','".to_string(), ToString::to_string);
            let qualifier = column.rsplit_once('.').map(|(q, _)| q.to_string());
            let function = if lower.ends_with("relacl") {
                Some("tenure_relation_acl")
            } else if lower.ends_with("nspacl") {
                Some("tenure_namespace_acl")
            } else {
                None
            };
            let replacement = match (function, qualifier) {
                (Some(function), Some(qualifier)) => {
                    parse_expr(&format!("{function}({qualifier}.oid, {separator})"))
                }
                _ => parse_expr("CAST(NULL AS TEXT)"),
            };
            if let Some(replacement) = replacement {
                *expr = replacement;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `ARRAY(SELECT ... FROM pg_policy ... WHERE polrelid = c.oid)` (psql's `\dp`, correlated
/// twice over, which DataFusion cannot plan) is `tenure_relation_policies(c.oid)`: the
/// relation's row policies as psql prints them; without such a correlation, the empty array.
pub fn policy_arrays(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::BinaryOperator;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Some(select) = array_subquery_over(expr, "pg_policy") {
            let relation = match &select.selection {
                Some(SqlExpr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                }) if left.to_string().to_ascii_lowercase().ends_with("polrelid") => {
                    Some(right.to_string())
                }
                _ => None,
            };
            let replacement = match relation {
                Some(relation) => parse_expr(&format!("tenure_relation_policies({relation})")),
                None => parse_expr("CAST(make_array() AS VARCHAR[])"),
            };
            if let Some(replacement) = replacement {
                *expr = replacement;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `ARRAY(SELECT rolname FROM pg_roles WHERE oid = ANY (x.polroles) ORDER BY 1)` (psql's
/// `\d` Policies footer, correlated, which DataFusion cannot plan) is
/// `tenure_role_names(x.polroles)`: the names of those roles, sorted.
pub fn role_name_arrays(statement: &mut SqlStatement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Some(select) = array_subquery_over(expr, "pg_roles")
            && let Some(roles) = select.selection.as_ref().and_then(role_oid_membership)
            && roles.to_ascii_lowercase().ends_with("polroles")
            && let Some(replacement) = parse_expr(&format!("tenure_role_names({roles})"))
        {
            *expr = replacement;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The SELECT of `ARRAY(SELECT ... FROM [pg_catalog.]table ...)`, over that one table.
fn array_subquery_over<'a>(
    expr: &'a SqlExpr,
    table: &str,
) -> Option<&'a datafusion::sql::sqlparser::ast::Select> {
    use datafusion::sql::sqlparser::ast::TableFactor;
    if let SqlExpr::Function(function) = expr
        && function.name.to_string().eq_ignore_ascii_case("array")
        && let FunctionArguments::Subquery(query) = &function.args
        && let SetExpr::Select(select) = query.body.as_ref()
        && let [from] = select.from.as_slice()
        && from.joins.is_empty()
        && let TableFactor::Table { name, .. } = &from.relation
        && name
            .to_string()
            .to_ascii_lowercase()
            .trim_start_matches("pg_catalog.")
            == table
    {
        return Some(select);
    }
    None
}

/// The list `x` of `oid = ANY (x)`, or of `array_contains(x, oid)`, what the compatibility
/// parser makes of it.
fn role_oid_membership(condition: &SqlExpr) -> Option<String> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, FunctionArg, FunctionArgExpr};
    let list = match condition {
        SqlExpr::AnyOp {
            left,
            compare_op: BinaryOperator::Eq,
            right,
            ..
        } if left.to_string().eq_ignore_ascii_case("oid") => right.to_string(),
        SqlExpr::Function(function)
            if function
                .name
                .to_string()
                .eq_ignore_ascii_case("array_contains") =>
        {
            let FunctionArguments::List(list) = &function.args else {
                return None;
            };
            match list.args.as_slice() {
                [
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(list)),
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(oid)),
                ] if oid.to_string().eq_ignore_ascii_case("oid") => list.to_string(),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(
        list.trim_start_matches('(')
            .trim_end_matches(')')
            .to_string(),
    )
}

/// `polroles <> '{0}'` (psql's `\dp` and `\d`): PostgreSQL reads a quoted `{...}` compared
/// with an array column as an array; DataFusion cannot compare a list with text. A quoted
/// list of integers on the right of `=` or `<>` with pg_policy's `polroles` on the left
/// becomes `make_array(...)`.
pub fn array_literal_comparisons(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Value};
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::BinaryOp {
            op: BinaryOperator::Eq | BinaryOperator::NotEq,
            left,
            right,
        } = expr
            && left.to_string().to_ascii_lowercase().ends_with("polroles")
            && let SqlExpr::Value(value) = right.as_ref()
            && let Value::SingleQuotedString(text) = &value.value
            && let Some(items) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}'))
            && !items.is_empty()
            && items.split(',').all(|n| n.trim().parse::<i64>().is_ok())
            && let Some(array) = parse_expr(&format!("make_array({items})"))
        {
            **right = array;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Catalog columns psql 15 names that datafusion-pg-catalog has under another name or not
/// at all: pg_collation's `colliculocale` (`colllocale` since PostgreSQL 17; psql's `\dO`)
/// and the system column `tableoid` (psql's `\dL` joins descriptions on it), NULL here.
pub fn catalog_column_renames(statement: &mut SqlStatement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::CompoundIdentifier(parts) = expr
            && let Some(last) = parts.last_mut()
        {
            match last.value.to_ascii_lowercase().as_str() {
                "colliculocale" => last.value = "colllocale".to_string(),
                "tableoid" => {
                    if let Some(null) = parse_expr("CAST(NULL AS INT)") {
                        *expr = null;
                    }
                }
                _ => {}
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// asyncpg's type introspection (run before the first query that has a column or parameter
/// of a type it does not know) reads a domain's base types and a composite type's attribute
/// types through correlated subqueries, one a recursive CTE, which DataFusion cannot plan:
/// `CASE WHEN t.typtype = 'd' THEN (subquery) ELSE NULL END` and the same for `'c'`. The
/// types tenure's results and parameters have are never domains or composites, so for them
/// both are NULL, which is what the expressions become: typed as the subquery's result (an
/// oid, a list of oids or of names), since asyncpg looks up a result type it does not know
/// (`unknown` for an untyped NULL) with this very query, again and again.
pub fn domain_and_composite_lookups(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Value};
    let _ = visit_expressions_mut(statement, |expr| {
        let SqlExpr::Case {
            operand: None,
            conditions,
            else_result,
            ..
        } = expr
        else {
            return ControlFlow::<()>::Continue(());
        };
        let [condition] = conditions.as_slice() else {
            return ControlFlow::Continue(());
        };
        let typtype_test = match &condition.condition {
            SqlExpr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let column = match left.as_ref() {
                    SqlExpr::CompoundIdentifier(parts) => parts.last(),
                    SqlExpr::Identifier(ident) => Some(ident),
                    _ => None,
                };
                let kind = match right.as_ref() {
                    SqlExpr::Value(v) => match &v.value {
                        Value::SingleQuotedString(kind) => Some(kind.as_str()),
                        _ => None,
                    },
                    _ => None,
                };
                column.is_some_and(|c| c.value.eq_ignore_ascii_case("typtype"))
                    && matches!(kind, Some("d" | "c"))
            }
            _ => false,
        };
        let else_null = match else_result.as_deref() {
            None => true,
            Some(SqlExpr::Value(v)) => matches!(v.value, Value::Null),
            _ => false,
        };
        if typtype_test
            && else_null
            && let SqlExpr::Subquery(query) = &condition.result
            && let Some(null) = parse_expr(&format!("CAST(NULL AS {})", result_type(query)))
        {
            *expr = null;
        }
        ControlFlow::Continue(())
    });
}

/// The SQL type the NULL for asyncpg's lookup subquery gets: an oid for one value; for a
/// list (`array_agg`, of oids or names) `text[]`, which asyncpg decodes without a lookup
/// (tenure would describe a list of oids as `int4[]`, which asyncpg looks up).
fn result_type(query: &datafusion::sql::sqlparser::ast::Query) -> &'static str {
    let item = match query.body.as_ref() {
        SetExpr::Select(select) => select.projection.first(),
        _ => None,
    };
    let text = item
        .map(ToString::to_string)
        .unwrap_or_default()
        .to_ascii_lowercase();
    match text.starts_with("array_agg(") {
        true => "text[]",
        false => "oid",
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::rewritten;
    use super::*;

    #[test]
    fn policy_role_names() {
        let sql = "SELECT CASE WHEN pol.polroles = '{0}' THEN NULL ELSE \
                   pg_catalog.array_to_string(array(select rolname from pg_catalog.pg_roles \
                   where oid = any (pol.polroles) order by 1),',') END \
                   FROM pg_catalog.pg_policy pol";
        let out = rewritten(sql, role_name_arrays);
        assert!(out.contains("tenure_role_names(pol.polroles)"), "{out}");
        let out = rewritten(sql, |s| crate::pg::rewrite::for_datafusion(s, true));
        assert!(out.contains("tenure_role_names(pol.polroles)"), "{out}");
        // As the compatibility parser hands it on.
        let contains = sql.replace(
            "oid = any (pol.polroles)",
            "array_contains(pol.polroles, oid)",
        );
        let out = rewritten(&contains, role_name_arrays);
        assert!(out.contains("tenure_role_names(pol.polroles)"), "{out}");
    }

    #[test]
    fn view_definitions_and_array_subqueries() {
        assert_eq!(
            rewritten(
                "SELECT pg_catalog.pg_get_viewdef(c.oid, true) FROM pg_class c",
                view_definition_lookups
            ),
            "SELECT (SELECT max(tenure_view_definition(tenure_vn.nspname, tenure_vc.relname)) \
             FROM pg_catalog.pg_class tenure_vc JOIN pg_catalog.pg_namespace tenure_vn \
             ON tenure_vn.oid = tenure_vc.relnamespace WHERE tenure_vc.oid = c.oid) \
             FROM pg_class c"
        );
        assert_eq!(
            rewritten(
                "SELECT ARRAY(SELECT b.rolname FROM m JOIN b ON m.roleid = b.oid \
                 WHERE m.member = r.oid) AS memberof FROM r",
                array_subqueries
            ),
            "SELECT (SELECT array_agg(b.rolname) FROM m JOIN b ON m.roleid = b.oid \
             WHERE m.member = r.oid) AS memberof FROM r"
        );
        assert_eq!(
            rewritten(
                "SELECT (CASE WHEN t.typtype = 'd' THEN (SELECT 1 FROM x WHERE x.a = t.oid) \
                 ELSE NULL END) AS basetype, CASE WHEN t.typtype = 'b' THEN (SELECT 2) END \
                 FROM pg_type t",
                domain_and_composite_lookups
            ),
            "SELECT (CAST(NULL AS oid)) AS basetype, CASE WHEN t.typtype = 'b' THEN (SELECT 2) END \
             FROM pg_type t"
        );
        assert_eq!(
            rewritten(
                "SELECT pg_catalog.array_to_string(n.nspacl, E'\\n'), \
                 array_to_string(c.relacl, ','), array_to_string(attacl, ',') FROM n",
                acl_texts
            ),
            "SELECT tenure_namespace_acl(n.oid, E'\\n'), tenure_relation_acl(c.oid, ','), \
             CAST(NULL AS TEXT) FROM n"
        );
        assert_eq!(
            rewritten(
                "SELECT pol.polroles <> '{0}', polroles = '{1, 2}', polroles = '{a}', \
                 x = '{1}' FROM p",
                array_literal_comparisons
            ),
            "SELECT pol.polroles <> make_array(0), polroles = make_array(1, 2), \
             polroles = '{a}', x = '{1}' FROM p"
        );
        assert_eq!(
            rewritten(
                "SELECT array_to_string(ARRAY(SELECT polname FROM pg_catalog.pg_policy pol \
                 WHERE polrelid = c.oid), E'\\n') FROM pg_class c",
                policy_arrays
            ),
            "SELECT array_to_string(tenure_relation_policies(c.oid), E'\\n') FROM pg_class c"
        );
        // An ordered subquery orders the aggregate; `ORDER BY 1` is its item.
        assert_eq!(
            rewritten(
                "SELECT ARRAY(SELECT rolname FROM r WHERE oid = ANY (p.roles) ORDER BY 1 DESC)",
                array_subqueries
            ),
            "SELECT (SELECT array_agg(rolname ORDER BY rolname DESC) FROM r \
             WHERE oid = ANY(p.roles))"
        );
        let limited = "SELECT ARRAY(SELECT x FROM t ORDER BY x LIMIT 2)";
        assert_eq!(rewritten(limited, array_subqueries), limited);
    }
}
