//! Rewrites of client SQL for PostgreSQL compatibility, beside datafusion-pg-catalog's own
//! (applied first): what drivers send in their catalog and introspection queries that
//! DataFusion cannot plan as written.

mod definitions;
mod insert_values;
mod json_syntax;
mod regclass;

use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, ObjectName, Statement as SqlStatement, Value,
};

pub use definitions::{
    VIEW_DEFINITION, acl_texts, array_literal_comparisons, array_subqueries,
    catalog_column_renames, domain_and_composite_lookups, policy_arrays, role_name_arrays,
    view_definition_lookups,
};
pub use insert_values::nested_values_in_insert_sources;
pub use json_syntax::rewrite_json_syntax;
use regclass::is_oid_text;
pub use regclass::{check_regclass_names, show_regclass_names};

/// Every rewrite below, in order, after datafusion-pg-catalog's; the catalog ones only for a
/// query over pg_catalog (`catalog_query`).
pub fn for_datafusion(statement: &mut SqlStatement, catalog_query: bool) {
    view_definition_lookups(statement);
    read_key_views_from_pg_catalog(statement);
    rewrite_name_lookups(statement);
    rewrite_like_escapes(statement);
    rewrite_expandarray(statement);
    rewrite_field_access(statement);
    rewrite_int2vector_subscripts(statement);
    if catalog_query {
        domain_and_composite_lookups(statement);
        acl_texts(statement);
        array_literal_comparisons(statement);
        policy_arrays(statement);
        role_name_arrays(statement);
        catalog_column_renames(statement);
        empty_partition_ancestors(statement);
        compare_regproc_columns_by_name(statement);
        inline_reloptions_arrays(statement);
        inline_serial_sequence_lookups(statement);
        eager_catalog_case_subqueries(statement);
        aggregate_catalog_subqueries(statement);
    }
    // After inline_reloptions_arrays, which knows psql's ARRAY over reloptions.
    array_subqueries(statement);
    show_regclass_names(statement);
}

/// `pg_partition_ancestors(relation)`, the partitions' parents, is always empty here: tenure
/// has no partitioned tables. As a table in FROM (psql's `\d` reads it, correlated, in a
/// scalar subquery over pg_trigger, `... WITH ORDINALITY AS a(relid, depth)`) it becomes an
/// empty derived table with the same columns, and a scalar subquery that joins it is NULL.
pub fn empty_partition_ancestors(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{
        JoinOperator, SetExpr, TableFactor, VisitMut, VisitorMut, visit_expressions_mut,
    };
    fn is_ancestors(factor: &TableFactor) -> bool {
        matches!(factor, TableFactor::Table { name, args: Some(_), .. }
            if name.to_string().to_ascii_lowercase().trim_start_matches("pg_catalog.")
                == "pg_partition_ancestors")
    }
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::Subquery(query) = expr
            && let SetExpr::Select(select) = query.body.as_ref()
            && select.from.iter().any(|from| {
                is_ancestors(&from.relation)
                    || from.joins.iter().any(|join| {
                        matches!(
                            join.join_operator,
                            JoinOperator::Join(_)
                                | JoinOperator::Inner(_)
                                | JoinOperator::CrossJoin(_)
                        ) && is_ancestors(&join.relation)
                    })
            })
        {
            *expr = SqlExpr::Value(Value::Null.into());
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    struct Empty;
    impl VisitorMut for Empty {
        type Break = ();
        fn pre_visit_table_factor(
            &mut self,
            factor: &mut TableFactor,
        ) -> std::ops::ControlFlow<()> {
            if is_ancestors(factor)
                && let TableFactor::Table {
                    alias,
                    with_ordinality,
                    ..
                } = factor
            {
                let columns = if *with_ordinality {
                    "CAST(NULL AS INT) AS relid, CAST(NULL AS BIGINT) AS ordinality"
                } else {
                    "CAST(NULL AS INT) AS relid"
                };
                if let Some(SqlStatement::Query(subquery)) =
                    parse_statement(&format!("SELECT {columns} WHERE false"))
                {
                    *factor = TableFactor::Derived {
                        lateral: false,
                        subquery,
                        alias: alias.take(),
                        sample: None,
                    };
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Empty);
}

/// `to_regtype(name)` and `to_regclass(name)`, which drivers use to look types and tables up
/// (psycopg's TypeInfo, SQLAlchemy), as scalar subqueries over pg_catalog; likewise
/// `col_description(table, column)` and `obj_description(object [, catalog])` (psql's `\d+`,
/// SQLAlchemy's comments) as aggregated lookups in pg_description, and `pg_table_size(oid)`
/// and friends (psql's `\dt+`) in pg_catalog.tenure_relation_sizes. A call that is a whole
/// select item keeps its name as the column's, as in PostgreSQL (and two such subqueries in
/// one select list would otherwise clash in DataFusion).
pub fn rewrite_name_lookups(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{
        Ident, Query, SelectItem, SetExpr, VisitMut, VisitorMut, visit_expressions_mut,
    };
    const LOOKUPS: [&str; 8] = [
        "to_regtype",
        "to_regclass",
        "col_description",
        "obj_description",
        "pg_table_size",
        "pg_total_relation_size",
        "pg_relation_size",
        "pg_indexes_size",
    ];
    struct NameItems;
    impl VisitorMut for NameItems {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> std::ops::ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut() {
                for item in &mut select.projection {
                    let SelectItem::UnnamedExpr(expr) = item else {
                        continue;
                    };
                    let Some(name) = call_parts(expr)
                        .map(|(name, _)| name)
                        .filter(|name| LOOKUPS.contains(&name.as_str()))
                    else {
                        continue;
                    };
                    let expr = std::mem::replace(expr, SqlExpr::Value(Value::Null.into()));
                    *item = SelectItem::ExprWithAlias {
                        expr,
                        alias: Ident::new(name),
                    };
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut NameItems);
    let _ = visit_expressions_mut(statement, |expr| {
        let Some((name, args)) = call_parts(expr) else {
            return std::ops::ControlFlow::<()>::Continue(());
        };
        let lookup = match (name.as_str(), args.as_slice()) {
            ("to_regtype", [arg]) => Some(format!(
                "(SELECT oid FROM pg_catalog.pg_type WHERE typname = \
                 CASE lower({arg}) {} ELSE lower({arg}) END LIMIT 1)",
                TYPE_ALIASES
                    .iter()
                    .map(|(sql, pg)| format!("WHEN '{sql}' THEN '{pg}'"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            ("to_regclass", [arg]) => Some(format!(
                "(SELECT oid FROM pg_catalog.pg_class WHERE relname = {arg} LIMIT 1)"
            )),
            ("col_description", [object, column]) => Some(format!(
                "(SELECT max(description) FROM pg_catalog.pg_description \
                 WHERE objoid = {object} AND objsubid = {column})"
            )),
            ("obj_description", [object] | [object, _]) => Some(format!(
                "(SELECT max(description) FROM pg_catalog.pg_description \
                 WHERE objoid = {object} AND objsubid = 0)"
            )),
            // A table's files are all its storage (no TOAST; indexes are not built).
            (
                "pg_table_size" | "pg_total_relation_size" | "pg_relation_size",
                [relation] | [relation, _],
            ) => {
                // PostgreSQL reads a text argument as a regclass: a table name, which must
                // exist, or an oid in digits.
                let relid = match relation {
                    SqlExpr::Value(v) => match &v.value {
                        Value::SingleQuotedString(s) if is_oid_text(s) => s.clone(),
                        Value::SingleQuotedString(_) => format!(
                            "{}((SELECT oid FROM pg_catalog.pg_class WHERE relname = \
                             {relation} LIMIT 1), {relation})",
                            super::CHECKED_REGCLASS
                        ),
                        _ => relation.to_string(),
                    },
                    _ => relation.to_string(),
                };
                Some(format!(
                    "(SELECT max(bytes) FROM pg_catalog.tenure_relation_sizes \
                     WHERE relid = {relid})"
                ))
            }
            ("pg_indexes_size", [_]) => Some("CAST(0 AS BIGINT)".to_string()),
            _ => None,
        };
        if let Some(parsed) = lookup.as_deref().and_then(parse_expr) {
            *expr = parsed;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `CASE WHEN cond THEN value [ELSE NULL] END` where `cond` or `value` holds a subquery, as
/// in SQLAlchemy's column reflection (defaults, identity, collation): DataFusion cannot plan
/// a correlated subquery inside CASE, so it becomes `tenure_if(cond, value)`: `value` where
/// `cond` is true, NULL elsewhere, both evaluated for every row. That is safe for catalog
/// lookups, whose subqueries cannot fail and return at most one row (see
/// [`aggregate_catalog_subqueries`]). A condition on the outer row alone inside the
/// subquery's WHERE (`pg_attribute.atthasdef AND adrelid = attrelid`) moves out into
/// `cond`, as DataFusion decorrelates only comparisons with the subquery's own columns.
/// Applied to queries over pg_catalog only. Returns whether it changed anything.
pub fn eager_catalog_case_subqueries(statement: &mut SqlStatement) -> bool {
    use datafusion::sql::sqlparser::ast::visit_expressions_mut;
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::Case {
            operand: None,
            conditions,
            else_result,
            ..
        } = expr
            && let [when] = conditions.as_slice()
            && else_result
                .as_deref()
                .is_none_or(|e| matches!(e, SqlExpr::Value(v) if v.value == Value::Null))
            && (has_subquery(&when.condition) || has_subquery(&when.result))
        {
            let mut condition = when.condition.clone();
            let mut value = when.result.clone();
            if let SqlExpr::Subquery(query) = &mut value {
                for outer in take_outer_conjuncts(query) {
                    condition = and_nested(condition, outer);
                }
            }
            *expr = function_call(super::EAGER_IF, vec![condition, value]);
            changed = true;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    changed
}

/// `(left) AND (right)`.
fn and_nested(left: SqlExpr, right: SqlExpr) -> SqlExpr {
    SqlExpr::BinaryOp {
        left: Box::new(SqlExpr::Nested(Box::new(left))),
        op: datafusion::sql::sqlparser::ast::BinaryOperator::And,
        right: Box::new(SqlExpr::Nested(Box::new(right))),
    }
}

/// Removes from a subquery's WHERE the conjuncts that name only columns qualified by tables
/// outside the subquery's FROM, and returns them.
fn take_outer_conjuncts(query: &mut datafusion::sql::sqlparser::ast::Query) -> Vec<SqlExpr> {
    use datafusion::sql::sqlparser::ast::{
        BinaryOperator, SetExpr, TableFactor, visit_expressions,
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Vec::new();
    };
    // The names the subquery's own columns may be qualified with.
    let mut inner = Vec::new();
    for table in &select.from {
        for factor in
            std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation))
        {
            if let TableFactor::Table { name, alias, .. } = factor {
                if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                    inner.push(last.value.to_lowercase());
                }
                if let Some(alias) = alias {
                    inner.push(alias.name.value.to_lowercase());
                }
            }
        }
    }
    let only_outer = |e: &SqlExpr| {
        let mut outer_columns = 0;
        let inner_or_bare = visit_expressions(e, |e| match e {
            SqlExpr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let table = parts[parts.len() - 2].value.to_lowercase();
                if inner.contains(&table) {
                    std::ops::ControlFlow::Break(())
                } else {
                    outer_columns += 1;
                    std::ops::ControlFlow::Continue(())
                }
            }
            SqlExpr::Identifier(_) | SqlExpr::Subquery(_) => std::ops::ControlFlow::Break(()),
            _ => std::ops::ControlFlow::Continue(()),
        })
        .is_break();
        !inner_or_bare && outer_columns > 0
    };
    let Some(selection) = select.selection.take() else {
        return Vec::new();
    };
    let mut conjuncts = Vec::new();
    split_and(selection, &mut conjuncts);
    let (outer, kept): (Vec<SqlExpr>, Vec<SqlExpr>) = conjuncts.into_iter().partition(only_outer);
    select.selection = kept.into_iter().reduce(|left, right| SqlExpr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::And,
        right: Box::new(right),
    });
    outer
}

fn split_and(expr: SqlExpr, into: &mut Vec<SqlExpr>) {
    use datafusion::sql::sqlparser::ast::BinaryOperator;
    match expr {
        SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(*left, into);
            split_and(*right, into);
        }
        SqlExpr::Nested(inner)
            if matches!(
                inner.as_ref(),
                SqlExpr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(*inner, into);
        }
        other => into.push(other),
    }
}

fn has_subquery(expr: &SqlExpr) -> bool {
    use datafusion::sql::sqlparser::ast::visit_expressions;
    visit_expressions(expr, |e| {
        if matches!(e, SqlExpr::Subquery(_)) {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// `information_schema.table_constraints`, `key_column_usage`, `referential_constraints`,
/// `table_privileges`, `role_table_grants` and `column_privileges`, which DataFusion's
/// information_schema lacks, and `columns`, whose types DataFusion names
/// in Arrow's terms, are read from their pg_catalog views (`tenure_table_constraints`, ...),
/// under their own name when the query gives no alias.
pub fn read_key_views_from_pg_catalog(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{
        Ident, ObjectNamePart, TableAlias, TableFactor, VisitMut, VisitorMut,
    };
    const VIEWS: [&str; 7] = [
        "table_constraints",
        "key_column_usage",
        "referential_constraints",
        "columns",
        "table_privileges",
        "role_table_grants",
        "column_privileges",
    ];
    struct Redirect;
    impl VisitorMut for Redirect {
        type Break = ();
        fn pre_visit_table_factor(
            &mut self,
            factor: &mut TableFactor,
        ) -> std::ops::ControlFlow<()> {
            if let TableFactor::Table { name, alias, .. } = factor
                && let [schema, view] = name.0.as_slice()
                && let (Some(schema), Some(view)) = (schema.as_ident(), view.as_ident())
                && schema.value.eq_ignore_ascii_case("information_schema")
                && let Some(view) = VIEWS.iter().find(|v| view.value.eq_ignore_ascii_case(v))
            {
                *name = ObjectName(vec![
                    ObjectNamePart::Identifier(Ident::new("pg_catalog")),
                    ObjectNamePart::Identifier(Ident::new(format!("tenure_{view}"))),
                ]);
                alias.get_or_insert_with(|| TableAlias {
                    explicit: true,
                    name: Ident::new(*view),
                    columns: vec![],
                    at: None,
                });
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Redirect);
}

/// Runs before datafusion-pg-catalog's rules. psql's `\d` reads each column's default with a
/// correlated scalar subquery over pg_attrdef as a whole select item, which that crate's
/// RemoveSubqueryFromProjection replaces with NULL. The item becomes `tenure_if(outer
/// conditions, subquery)` (`a.atthasdef` moves out, as in [`eager_catalog_case_subqueries`]),
/// or the subquery in parentheses when its WHERE holds no outer-only condition: the crate
/// leaves both alone, and [`aggregate_catalog_subqueries`] then makes the subquery plannable.
/// Returns whether it changed anything.
pub fn keep_default_lookups(statement: &mut SqlStatement) -> bool {
    use datafusion::sql::sqlparser::ast::{Query, SelectItem, SetExpr, VisitMut, VisitorMut};
    use std::ops::ControlFlow;
    struct Keep(bool);
    impl VisitorMut for Keep {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            let SetExpr::Select(select) = query.body.as_mut() else {
                return ControlFlow::Continue(());
            };
            for item in &mut select.projection {
                let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item
                else {
                    continue;
                };
                let SqlExpr::Subquery(subquery) = expr else {
                    continue;
                };
                if !reads_only_table(subquery, "pg_attrdef") {
                    continue;
                }
                let outer = take_outer_conjuncts(subquery);
                let lookup = std::mem::replace(expr, SqlExpr::Value(Value::Null.into()));
                *expr = match outer.into_iter().reduce(and_nested) {
                    Some(condition) => function_call(super::EAGER_IF, vec![condition, lookup]),
                    None => SqlExpr::Nested(Box::new(lookup)),
                };
                self.0 = true;
            }
            ControlFlow::Continue(())
        }
    }
    let mut keep = Keep(false);
    let _ = statement.visit(&mut keep);
    keep.0
}

/// Whether `query` is a plain SELECT over the one table `table` (any schema), without joins.
fn reads_only_table(query: &datafusion::sql::sqlparser::ast::Query, table: &str) -> bool {
    use datafusion::sql::sqlparser::ast::{SetExpr, TableFactor};
    if let SetExpr::Select(select) = query.body.as_ref()
        && let [from] = select.from.as_slice()
        && from.joins.is_empty()
        && let TableFactor::Table { name, .. } = &from.relation
    {
        name.0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case(table))
    } else {
        false
    }
}

/// tenure has no sequences: `pg_get_serial_sequence(table, column)` is NULL and so is a
/// scalar subquery over pg_sequence alone. Said in the SQL, so that SQLAlchemy's identity
/// lookup (a subquery over pg_sequence with the outer row in its select list) is not a
/// correlated subquery DataFusion cannot plan. Applied to queries over pg_catalog only.
pub fn inline_serial_sequence_lookups(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::visit_expressions_mut;
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::Subquery(query) = expr
            && reads_only_table(query, "pg_sequence")
        {
            *expr = SqlExpr::Value(Value::Null.into());
            return std::ops::ControlFlow::<()>::Continue(());
        }
        if call_parts(expr).is_some_and(|(name, _)| name == "pg_get_serial_sequence")
            && let Some(null) = parse_expr("CAST(NULL AS TEXT)")
        {
            *expr = null;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// Drivers' catalog queries use correlated scalar subqueries that PostgreSQL knows return
/// at most one row (a column's default, its collation), which DataFusion only plans when
/// aggregated: wrap the single result in `max()`. Applied to queries over pg_catalog only,
/// where the subqueries look rows up by key.
pub fn aggregate_catalog_subqueries(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{
        GroupByExpr, SelectItem, SetExpr, visit_expressions_mut,
    };
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::Subquery(query) = expr
            && let SetExpr::Select(select) = query.body.as_mut()
            && matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
            && query.limit_clause.is_none()
            && let [SelectItem::UnnamedExpr(item) | SelectItem::ExprWithAlias { expr: item, .. }] =
                select.projection.as_mut_slice()
            && !is_aggregate_call(item)
        {
            let inner = std::mem::replace(item, SqlExpr::Value(Value::Null.into()));
            *item = function_call("max", vec![inner]);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `sql` as an expression (the rewrites' own SQL, so it parses).
fn parse_expr(sql: &str) -> Option<SqlExpr> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    datafusion::sql::sqlparser::parser::Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// `sql` as a statement (the rewrites' own SQL, so it parses).
fn parse_statement(sql: &str) -> Option<SqlStatement> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    datafusion::sql::sqlparser::parser::Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statement())
        .ok()
}

/// `name(args...)`.
fn function_call(name: &str, args: Vec<SqlExpr>) -> SqlExpr {
    use datafusion::sql::sqlparser::ast::{
        Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    };
    SqlExpr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// The lower-case name of a function call without a `pg_catalog.` or
/// `information_schema.` qualifier, and its plain arguments.
fn call_parts(expr: &SqlExpr) -> Option<(String, Vec<&SqlExpr>)> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let SqlExpr::Function(function) = expr else {
        return None;
    };
    let name = function.name.to_string().to_ascii_lowercase();
    let name = name
        .strip_prefix("pg_catalog.")
        .or_else(|| name.strip_prefix("information_schema."))
        .unwrap_or(&name)
        .to_string();
    let args = match &function.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?,
        FunctionArguments::None => Vec::new(),
        FunctionArguments::Subquery(_) => return None,
    };
    Some((name, args))
}

/// `information_schema._pg_expandarray(array)`, PostgreSQL's set-returning function of
/// `(x, n)` records (element, 1-based position) that pgjdbc's getPrimaryKeys and
/// getIndexInfo call in a select list, becomes `unnest(tenure_expand_array(array))`: a
/// list of such structs, unnested into one row per element as PostgreSQL does. Two calls
/// over the same array in one select list unnest in step, as in PostgreSQL.
///
/// Likewise `generate_subscripts(array, dim)` (SQLAlchemy's key and index reflection, beside
/// `unnest(array)`) becomes `unnest(generate_series(1, array_length(array, dim)))`.
pub fn rewrite_expandarray(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::visit_expressions_mut;
    let _ = visit_expressions_mut(statement, |expr| {
        let Some((name, args)) = call_parts(expr) else {
            return std::ops::ControlFlow::<()>::Continue(());
        };
        let args: Vec<SqlExpr> = args.into_iter().cloned().collect();
        match (name.as_str(), args.as_slice()) {
            ("_pg_expandarray", [_]) => {
                *expr = function_call("unnest", vec![function_call("tenure_expand_array", args)]);
            }
            ("generate_subscripts", [_, _]) => {
                let one = SqlExpr::Value(Value::Number("1".into(), false).into());
                *expr = function_call(
                    "unnest",
                    vec![function_call(
                        "generate_series",
                        vec![one, function_call("array_length", args)],
                    )],
                );
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `(record).field`, PostgreSQL's field selection, as `get_field(record, 'field')`:
/// DataFusion plans only bracket access on an expression's fields. (`t.column[i]` parses
/// the same way with a plain name as root; DataFusion plans that itself.)
pub fn rewrite_field_access(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{AccessExpr, visit_expressions_mut};
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::CompoundFieldAccess { root, access_chain } = expr
            && matches!(root.as_ref(), SqlExpr::Nested(_))
            && access_chain
                .iter()
                .any(|a| matches!(a, AccessExpr::Dot(SqlExpr::Identifier(_))))
        {
            let mut value = std::mem::replace(root.as_mut(), SqlExpr::Value(Value::Null.into()));
            for access in std::mem::take(access_chain) {
                value = match access {
                    AccessExpr::Dot(SqlExpr::Identifier(field)) => function_call(
                        "get_field",
                        vec![
                            value,
                            SqlExpr::Value(Value::SingleQuotedString(field.value).into()),
                        ],
                    ),
                    other => SqlExpr::CompoundFieldAccess {
                        root: Box::new(value),
                        access_chain: vec![other],
                    },
                };
            }
            *expr = value;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `i.indoption[n]`, or `tmp.I_INDOPTION[n]` in pgjdbc's getIndexInfo: pg_index.indoption
/// is an int2vector's text here (SQLAlchemy parses it as such), subscripted from 0 as
/// PostgreSQL does, through `tenure_int2vector_element`.
pub fn rewrite_int2vector_subscripts(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{AccessExpr, Ident, Subscript, visit_expressions_mut};
    /// indoption, or pgjdbc's alias of it in a subquery (`i.indoption AS I_INDOPTION`).
    fn is_int2vector(name: &Ident) -> bool {
        name.value.to_ascii_lowercase().ends_with("indoption")
    }
    let _ = visit_expressions_mut(statement, |expr| {
        let SqlExpr::CompoundFieldAccess { root, access_chain } = expr else {
            return std::ops::ControlFlow::<()>::Continue(());
        };
        // `t.indoption[i]` (root t, chain .indoption [i]) or `indoption[i]`.
        let column = match (root.as_ref(), access_chain.as_slice()) {
            (
                SqlExpr::Identifier(table),
                [
                    AccessExpr::Dot(SqlExpr::Identifier(column)),
                    AccessExpr::Subscript(_),
                ],
            ) if is_int2vector(column) => Some(SqlExpr::CompoundIdentifier(vec![
                table.clone(),
                column.clone(),
            ])),
            (SqlExpr::Identifier(column), [AccessExpr::Subscript(_)]) if is_int2vector(column) => {
                Some(SqlExpr::Identifier(column.clone()))
            }
            _ => None,
        };
        if let Some(column) = column
            && let Some(AccessExpr::Subscript(Subscript::Index { index })) = access_chain.last()
        {
            *expr = function_call(super::INT2VECTOR_ELEMENT, vec![column, index.clone()]);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `ARRAY(SELECT ... FROM unnest(t.reloptions) ...)` (psql's `\d+`): pg_class.reloptions is
/// always NULL here, so the array is empty, and psql's `c.reloptions || ARRAY(...)` NULL, as
/// PostgreSQL computes it; said as a NULL text array, since DataFusion cannot plan a
/// subquery over an outer row's column in FROM.
pub fn inline_reloptions_arrays(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{FunctionArguments, SetExpr, visit_expressions_mut};
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::Function(function) = expr
            && function.name.to_string().eq_ignore_ascii_case("array")
            && let FunctionArguments::Subquery(query) = &function.args
            && let SetExpr::Select(select) = query.body.as_ref()
            && select.from.iter().any(|from| {
                from.relation
                    .to_string()
                    .to_ascii_lowercase()
                    .contains("reloptions")
            })
            && let Some(null) = parse_expr("CAST(NULL AS TEXT[])")
        {
            *expr = null;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// pg_type's regproc columns (typinput, typoutput, ...) hold function names here, not
/// oids, so `typinput = 'pg_catalog.array_in'::regproc` (pgjdbc's getTypeInfo), which
/// datafusion-pg-catalog turns into a comparison with a pg_proc oid, compares names.
pub fn compare_regproc_columns_by_name(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, SetExpr, visit_expressions_mut};
    const REGPROC_COLUMNS: [&str; 7] = [
        "typinput",
        "typoutput",
        "typreceive",
        "typsend",
        "typmodin",
        "typmodout",
        "typanalyze",
    ];
    fn is_regproc_column(expr: &SqlExpr) -> bool {
        let name = match expr {
            SqlExpr::Identifier(ident) => &ident.value,
            SqlExpr::CompoundIdentifier(parts) => match parts.last() {
                Some(last) => &last.value,
                None => return false,
            },
            _ => return false,
        };
        REGPROC_COLUMNS.contains(&name.to_ascii_lowercase().as_str())
    }
    /// The name in `(SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'name')`.
    fn proc_lookup_name(expr: &SqlExpr) -> Option<String> {
        let SqlExpr::Subquery(query) = expr else {
            return None;
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            return None;
        };
        let from = select
            .from
            .first()?
            .relation
            .to_string()
            .to_ascii_lowercase();
        if !from.ends_with("pg_proc") {
            return None;
        }
        let Some(SqlExpr::BinaryOp {
            right,
            op: BinaryOperator::Eq,
            ..
        }) = &select.selection
        else {
            return None;
        };
        match right.as_ref() {
            SqlExpr::Value(v) => match &v.value {
                Value::SingleQuotedString(name) => {
                    Some(name.rsplit('.').next().unwrap_or(name).to_string())
                }
                _ => None,
            },
            _ => None,
        }
    }
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Eq | BinaryOperator::NotEq,
            right,
        } = expr
        {
            if is_regproc_column(left)
                && let Some(proc) = proc_lookup_name(right)
            {
                **right = SqlExpr::Value(Value::SingleQuotedString(proc).into());
            } else if is_regproc_column(right)
                && let Some(proc) = proc_lookup_name(left)
            {
                **left = SqlExpr::Value(Value::SingleQuotedString(proc).into());
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `LIKE 'pg/_%' ESCAPE '/'`: DataFusion knows only the backslash as escape character, so a
/// literal pattern with another one is rewritten to use the backslash.
pub fn rewrite_like_escapes(statement: &mut SqlStatement) {
    use datafusion::sql::sqlparser::ast::visit_expressions_mut;
    fn convert(pattern: &str, escape: char) -> String {
        let mut out = String::with_capacity(pattern.len() + 4);
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c == escape {
                out.push('\\');
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        out
    }
    let _ = visit_expressions_mut(statement, |expr| {
        if let SqlExpr::Like {
            pattern,
            escape_char,
            ..
        }
        | SqlExpr::ILike {
            pattern,
            escape_char,
            ..
        } = expr
            && let Some(escape) = escape_char
            && let Value::SingleQuotedString(e) = &escape.value
            && let Some(e) = e.chars().next().filter(|c| *c != '\\')
        {
            match pattern.as_mut() {
                SqlExpr::Value(p) if matches!(p.value, Value::SingleQuotedString(_)) => {
                    if let Value::SingleQuotedString(text) = &p.value {
                        p.value = Value::SingleQuotedString(convert(text, e));
                    }
                }
                // A parameter: convert when the value arrives.
                other => {
                    let escaped = if e.is_ascii_alphanumeric() {
                        e.to_string()
                    } else {
                        format!("\\{e}")
                    };
                    let sql = format!(
                        "regexp_replace(replace({other}, '\\', '\\\\'), '{escaped}(.)', '\\${{1}}', 'g')"
                    );
                    match parse_expr(&sql) {
                        Some(parsed) => *other = parsed,
                        None => return std::ops::ControlFlow::Continue(()),
                    }
                }
            }
            *escape_char = None;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

fn is_aggregate_call(expr: &SqlExpr) -> bool {
    const AGGREGATES: &[&str] = &[
        "max",
        "min",
        "count",
        "sum",
        "avg",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
    ];
    matches!(expr, SqlExpr::Function(f)
        if AGGREGATES.contains(&f.name.to_string().to_ascii_lowercase().as_str()))
}

/// SQL type names and the pg_type names they stand for.
const TYPE_ALIASES: &[(&str, &str)] = &[
    ("bigint", "int8"),
    ("integer", "int4"),
    ("int", "int4"),
    ("smallint", "int2"),
    ("double precision", "float8"),
    ("real", "float4"),
    ("boolean", "bool"),
    ("character varying", "varchar"),
    ("character", "bpchar"),
    ("decimal", "numeric"),
    ("timestamp without time zone", "timestamp"),
    ("timestamp with time zone", "timestamptz"),
    ("time without time zone", "time"),
];

#[cfg(test)]
mod tests;
