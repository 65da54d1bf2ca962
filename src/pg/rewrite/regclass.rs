//! `regclass`: names looked up as PostgreSQL's search path does, and shown as names.

use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Statement as SqlStatement, Value};

use super::*;

/// Runs before datafusion-pg-catalog's rules, whose lookup for `'name'::regclass` searches
/// only the current schema (so `'pg_class'::regclass` was NULL) and is NULL for an unknown
/// name. Here the name is looked up as PostgreSQL's search path does (pg_catalog first, then
/// the current schema; `schema.name` in its schema, with `"Quoted"` parts), and a name that
/// is no relation fails as in PostgreSQL (42P01). A number in quotes is an oid and is left
/// to that crate, as PostgreSQL does not check it either. Returns whether it changed
/// anything.
pub fn check_regclass_names(statement: &mut SqlStatement) -> bool {
    use datafusion::sql::sqlparser::ast::visit_expressions_mut;
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::Cast {
            expr: operand,
            data_type,
            ..
        } = expr
            && is_regclass(data_type)
            && let SqlExpr::Value(value) = operand.as_ref()
            && let Value::SingleQuotedString(name) = &value.value
            && !is_oid_text(name)
        {
            let name = Value::SingleQuotedString(name.clone()).to_string();
            // Still a regclass, which [`show_regclass_names`] shows as a name.
            if let Some(lookup) = parse_expr(&format!(
                "{}((SELECT c.oid FROM pg_catalog.pg_class c \
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                   CROSS JOIN (SELECT parse_ident({name}) AS parts) p \
                   WHERE (array_length(p.parts, 1) = 1 AND c.relname = p.parts[1] \
                          AND n.nspname IN ('pg_catalog', current_schema())) \
                      OR (array_length(p.parts, 1) = 2 AND n.nspname = p.parts[1] \
                          AND c.relname = p.parts[2]) \
                   ORDER BY n.nspname = 'pg_catalog' DESC LIMIT 1), {name})::{data_type}",
                crate::pg::CHECKED_REGCLASS
            )) {
                *expr = lookup;
                changed = true;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    changed
}

/// Whether a regclass's text is an oid (digits) rather than a name.
pub(super) fn is_oid_text(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `data_type` is `regclass` or `pg_catalog.regclass`.
fn is_regclass(data_type: &datafusion::sql::sqlparser::ast::DataType) -> bool {
    let name = data_type.to_string().to_ascii_lowercase();
    name.strip_prefix("pg_catalog.").unwrap_or(&name) == "regclass"
}

/// A regclass's output is the relation's name (schema-qualified outside public and
/// pg_catalog), as psql shows it in `\d`'s "Referenced by" (`conrelid::regclass`); tenure
/// plans regclass as the oid's integer. So `x::regclass` as a whole select item, and
/// `x::regclass::text` anywhere, look the name up in pg_class (the number itself when no
/// relation has that oid). A select item keeps PostgreSQL's column name: the column's, or
/// `regclass` (also in a query with ORDER BY, see below).
pub fn show_regclass_names(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{
        Ident, Query, SelectItem, SetExpr, VisitMut, VisitorMut, visit_expressions_mut,
    };
    fn regclass_operand(expr: &SqlExpr) -> Option<&SqlExpr> {
        match expr {
            SqlExpr::Cast {
                expr, data_type, ..
            } if is_regclass(data_type) => Some(expr),
            _ => None,
        }
    }
    fn relation_name(oid: &SqlExpr) -> Option<SqlExpr> {
        parse_expr(&format!(
            "COALESCE((SELECT max(tenure_regclass.tenure_regclass_name) \
             FROM (SELECT c.oid AS tenure_regclass_oid, \
                          CASE WHEN n.nspname IN ('public', 'pg_catalog') THEN c.relname \
                               ELSE n.nspname || '.' || c.relname END AS tenure_regclass_name \
                   FROM pg_catalog.pg_class c \
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace) tenure_regclass \
             WHERE tenure_regclass.tenure_regclass_oid = {oid}), CAST({oid} AS TEXT))"
        ))
    }
    struct Items;
    impl VisitorMut for Items {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> std::ops::ControlFlow<()> {
            // DataFusion cannot sort by a column that an item's alias shadows (psql orders
            // by `c.oid::regclass::text` beside an item `c.oid::regclass`).
            let sorted = query.order_by.is_some();
            if let SetExpr::Select(select) = query.body.as_mut() {
                // DataFusion refuses two items of one name, which PostgreSQL allows: a second
                // `regclass` is `regclass_2`.
                let mut names: Vec<String> = Vec::new();
                for item in &mut select.projection {
                    let (expr, alias) = match item {
                        SelectItem::UnnamedExpr(expr) => (expr, None),
                        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
                        _ => continue,
                    };
                    let Some(operand) = regclass_operand(expr) else {
                        continue;
                    };
                    let Some(name) = relation_name(operand) else {
                        continue;
                    };
                    let alias = alias.unwrap_or_else(|| match operand {
                        SqlExpr::Identifier(column) if !sorted => column.clone(),
                        SqlExpr::CompoundIdentifier(parts) if !sorted && !parts.is_empty() => {
                            parts[parts.len() - 1].clone()
                        }
                        _ => Ident::new("regclass"),
                    });
                    let mut alias = alias;
                    let base = alias.value.clone();
                    let mut n = 1;
                    while names.contains(&alias.value) {
                        n += 1;
                        alias = Ident::new(format!("{base}_{n}"));
                    }
                    names.push(alias.value.clone());
                    *item = SelectItem::ExprWithAlias { expr: name, alias };
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Items);
    let _ = visit_expressions_mut(statement, |expr| {
        use datafusion::sql::sqlparser::ast::DataType;
        if let SqlExpr::Cast {
            expr: inner,
            data_type: DataType::Text | DataType::Varchar(_) | DataType::String(_),
            ..
        } = expr
            && let Some(name) = regclass_operand(inner).and_then(relation_name)
        {
            *expr = name;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}
