//! Result column names as PostgreSQL gives them, for the server and the shell alike.
//!
//! PostgreSQL names an unaliased select item after what the client wrote (its
//! `FigureColname`): a column by its name, a function call by the function (`round`), a cast
//! of a constant by the type (`'1'::int` is `int4`), `CASE` as `case`, an array constructor
//! `array`, anything else `?column?`. DataFusion names items by their display text
//! (`round(avg(t.x),Int64(2))`), and tenure's own rewrites of client SQL would show through
//! (`tenure_if` for a rewritten `CASE`). Two steps give PostgreSQL's names:
//!
//! - [`name_result_columns`] aliases the top-level items of a query from its syntax, before
//!   any rewrite, where the name is unique in the list (DataFusion refuses two items of one
//!   name);
//! - [`postgres_schema`] names a planned query's result columns from its final projection,
//!   which covers what the first step leaves (duplicate names such as two `count`s).

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::sqlparser::ast::{
    DataType as SqlType, Expr as SqlExpr, Ident, ObjectName, Query, SelectItem, SetExpr,
    Statement as SqlStatement, TimezoneInfo,
};

/// Aliases the unaliased items of a query statement's result (the outermost select list; the
/// left-most one of a UNION) with PostgreSQL's names, where the name is plain from the syntax
/// and no other item of the list would have it too. Other statements are left alone.
pub fn name_result_columns(statement: &mut SqlStatement) {
    if let SqlStatement::Query(query) = statement {
        name_query_columns(query);
    }
}

/// [`name_result_columns`] for a query (a cursor's, say).
pub fn name_query_columns(query: &mut Query) {
    let mut body = query.body.as_mut();
    let select = loop {
        match body {
            SetExpr::Select(select) => break select,
            SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            SetExpr::Query(inner) => body = inner.body.as_mut(),
            _ => return,
        }
    };
    let names: Vec<Option<String>> = select.projection.iter().map(item_name).collect();
    let unique = |name: &str| names.iter().flatten().filter(|n| *n == name).count() == 1;
    for (item, name) in select.projection.iter_mut().zip(&names) {
        let SelectItem::UnnamedExpr(expr) = item else {
            continue;
        };
        // Plain columns (and scalar subqueries, which the engine names) are named already,
        // and so is an item named after a column (`c.oid::regclass` is `oid`): DataFusion
        // names it after the column too, and an alias would clash with the column itself
        // where the plan carries both (an ORDER BY on another column).
        if matches!(expr, SqlExpr::Subquery(_)) || named_after_column(expr) {
            continue;
        }
        let Some(name) = name.as_deref().filter(|n| unique(n)) else {
            continue;
        };
        *item = SelectItem::ExprWithAlias {
            expr: expr.clone(),
            alias: Ident::with_quote('"', name),
        };
    }
}

/// Carries the result names of `original` (a statement as the client wrote it, after
/// [`name_result_columns`]) over to `replacement`, the same statement as a compatibility layer
/// rewrote it: an item the rewrite changed (`current_user` to `session_user()`,
/// `current_catalog` to `current_database()`) keeps the name the client's text gives it.
pub fn keep_result_names(original: &SqlStatement, replacement: &mut SqlStatement) {
    let (SqlStatement::Query(from), SqlStatement::Query(to)) = (original, replacement) else {
        return;
    };
    let (SetExpr::Select(from), SetExpr::Select(to)) = (from.body.as_ref(), to.body.as_mut())
    else {
        return;
    };
    if from.projection.len() != to.projection.len() {
        return;
    }
    let names: Vec<Option<String>> = from.projection.iter().map(item_name).collect();
    let unique = |name: &str| names.iter().flatten().filter(|n| *n == name).count() == 1;
    for ((before, after), name) in from.projection.iter().zip(&mut to.projection).zip(&names) {
        let (Some(name), SelectItem::UnnamedExpr(expr)) = (name, &*after) else {
            continue;
        };
        let unchanged = matches!(before, SelectItem::UnnamedExpr(e) if e == expr);
        if unchanged || !unique(name) || named_after_column(expr) {
            continue;
        }
        *after = SelectItem::ExprWithAlias {
            expr: expr.clone(),
            alias: Ident::with_quote('"', name.as_str()),
        };
    }
}

/// The name PostgreSQL gives a select item, where its syntax decides one.
fn item_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(folded(alias)),
        SelectItem::UnnamedExpr(expr) => figure(expr).map(|(name, _)| name),
        _ => None,
    }
}

/// PostgreSQL's `FigureColnameInternal`: a name and its strength (2 for a name the client
/// wrote, 1 for a fallback such as a cast's type, which an outer cast replaces).
fn figure(expr: &SqlExpr) -> Option<(String, u8)> {
    let named = |name: &str| Some((name.to_string(), 2));
    match expr {
        SqlExpr::Identifier(ident) => Some((folded(ident), 2)),
        SqlExpr::CompoundIdentifier(parts) => parts.last().map(|p| (folded(p), 2)),
        SqlExpr::Function(function) => last_name(&function.name).map(|n| (n, 2)),
        SqlExpr::Nested(inner) => figure(inner),
        SqlExpr::Cast {
            expr, data_type, ..
        } => match figure(expr) {
            Some(strong @ (_, 2)) => Some(strong),
            _ => Some((type_name(data_type), 1)),
        },
        SqlExpr::TypedString(typed) => Some((type_name(&typed.data_type), 1)),
        SqlExpr::Case { else_result, .. } => match else_result.as_deref().and_then(figure) {
            Some(strong @ (_, 2)) => Some(strong),
            _ => Some(("case".to_string(), 1)),
        },
        SqlExpr::Array(_) => named("array"),
        SqlExpr::Exists { .. } => named("exists"),
        SqlExpr::Tuple(_) => named("row"),
        SqlExpr::Extract { .. } => named("extract"),
        SqlExpr::Substring { .. } => named("substring"),
        SqlExpr::Position { .. } => named("position"),
        SqlExpr::Trim { .. } => named("btrim"),
        SqlExpr::Ceil { .. } => named("ceil"),
        SqlExpr::Floor { .. } => named("floor"),
        SqlExpr::Overlay { .. } => named("overlay"),
        SqlExpr::AtTimeZone { .. } => named("timezone"),
        _ => None,
    }
}

/// Whether PostgreSQL names `expr` after a column it reads (through casts, parentheses and a
/// CASE's ELSE).
fn named_after_column(expr: &SqlExpr) -> bool {
    match expr {
        SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_) => true,
        SqlExpr::Nested(inner) | SqlExpr::Cast { expr: inner, .. } => named_after_column(inner),
        SqlExpr::Case {
            else_result: Some(inner),
            ..
        } => named_after_column(inner),
        _ => false,
    }
}

fn last_name(name: &ObjectName) -> Option<String> {
    name.0.last().and_then(|part| part.as_ident()).map(folded)
}

/// An identifier as PostgreSQL stores it: folded to lower case unless quoted.
pub fn folded(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

/// The name PostgreSQL's catalog gives a type written in SQL (`int` is `int4`).
fn type_name(data_type: &SqlType) -> String {
    let name = match data_type {
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => "int4",
        SqlType::BigInt(_) | SqlType::Int8(_) => "int8",
        SqlType::SmallInt(_) | SqlType::Int2(_) => "int2",
        SqlType::Real | SqlType::Float4 => "float4",
        SqlType::Double(_) | SqlType::DoublePrecision | SqlType::Float8 | SqlType::Float(_) => {
            "float8"
        }
        SqlType::Bool | SqlType::Boolean => "bool",
        SqlType::Numeric(_) | SqlType::Decimal(_) | SqlType::Dec(_) => "numeric",
        SqlType::Varchar(_) | SqlType::CharacterVarying(_) | SqlType::CharVarying(_) => "varchar",
        SqlType::Char(_) | SqlType::Character(_) => "bpchar",
        SqlType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timestamptz",
        SqlType::Timestamp(..) => "timestamp",
        SqlType::Time(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timetz",
        SqlType::Time(..) => "time",
        SqlType::JSON => "json",
        SqlType::JSONB => "jsonb",
        SqlType::Bytea => "bytea",
        SqlType::Custom(name, _) => return last_name(name).unwrap_or_else(|| "?column?".into()),
        other => {
            let text = other.to_string().to_ascii_lowercase();
            return text
                .split(['(', ' '])
                .next()
                .unwrap_or("?column?")
                .to_string();
        }
    };
    name.to_string()
}

/// The plan's output schema with the names PostgreSQL gives unaliased result columns: a
/// column's own name, a function's name, `?column?` for other expressions.
pub fn postgres_schema(plan: &LogicalPlan) -> Schema {
    let schema = without_stale_oid_marks(plan.schema().as_arrow());
    let Some(exprs) = top_projection(plan) else {
        return schema;
    };
    if exprs.len() != schema.fields().len() {
        return schema;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(exprs)
        .map(|(field, expr)| {
            let field = field.as_ref().clone().with_name(postgres_name(expr));
            if casts_to_text(expr) && field.metadata().contains_key(super::json::PG_TYPE_KEY) {
                // `props::text`: DataFusion keeps the json column's mark through the cast.
                let mut metadata = field.metadata().clone();
                metadata.remove(super::json::PG_TYPE_KEY);
                field.with_metadata(metadata)
            } else {
                field
            }
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// Whether `expr` (under its alias) is a cast to text.
fn casts_to_text(expr: &Expr) -> bool {
    match expr {
        Expr::Alias(alias) => casts_to_text(&alias.expr),
        Expr::Cast(cast) => matches!(
            cast.field.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        Expr::TryCast(cast) => matches!(
            cast.field.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        _ => false,
    }
}

/// `schema` without the oid marks (arrow-pg's `pg.oid_alias` field metadata, which makes an
/// int4 column an `oid` or `regtype` for clients) on fields that are no longer int4: DataFusion
/// keeps a column's metadata through a cast, so `t.typelem::regtype::text` (asyncpg's type
/// introspection) would be described as an oid and sent as text, which a client reading
/// binary oids cannot decode.
fn without_stale_oid_marks(schema: &Schema) -> Schema {
    const OID_MARK: &str = "pg.oid_alias";
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let mut field = field.as_ref().clone();
            if *field.data_type() != DataType::Int32 && field.metadata().contains_key(OID_MARK) {
                let mut metadata = field.metadata().clone();
                metadata.remove(OID_MARK);
                field = field.with_metadata(metadata);
            }
            field
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn top_projection(plan: &LogicalPlan) -> Option<&[Expr]> {
    match plan {
        LogicalPlan::Projection(p) => Some(&p.expr),
        LogicalPlan::Sort(s) => top_projection(&s.input),
        LogicalPlan::Limit(l) => top_projection(&l.input),
        _ => None,
    }
}

/// Separates the suffix tenure gives the second of two result columns of one name, which
/// DataFusion refuses and PostgreSQL allows (`count(*), count(*)::int`); the names clients
/// see stop before it. An invisible separator, so nobody writes it by accident.
pub const DUPLICATE_MARK: &str = "\u{2063}";

fn without_duplicate_mark(name: &str) -> String {
    name.split(DUPLICATE_MARK)
        .next()
        .unwrap_or(name)
        .to_string()
}

fn postgres_name(expr: &Expr) -> String {
    match expr {
        // DataFusion aliases some aggregates with their display text ("count(*)").
        Expr::Alias(alias) => {
            function_name(&alias.name).unwrap_or_else(|| without_duplicate_mark(&alias.name))
        }
        Expr::Column(column) => {
            function_name(&column.name).unwrap_or_else(|| without_duplicate_mark(&column.name))
        }
        // `ARRAY[...]` plans as make_array.
        Expr::ScalarFunction(f) if f.name() == "make_array" => "array".to_string(),
        // The JSON operators (`props ->> 'page'`), planned as functions of these names.
        Expr::ScalarFunction(f) if f.name().starts_with("tenure_json") => "?column?".to_string(),
        Expr::ScalarFunction(f) => f.name().to_string(),
        Expr::AggregateFunction(f) => f.func.name().to_string(),
        Expr::WindowFunction(f) => f.fun.name().to_string(),
        Expr::Cast(cast) => cast_name(&cast.expr, cast.field.data_type()),
        Expr::TryCast(cast) => cast_name(&cast.expr, cast.field.data_type()),
        _ => "?column?".to_string(),
    }
}

/// `x::int` is named x; `'1'::int` is named after the type, as PostgreSQL does.
fn cast_name(inner: &Expr, to: &DataType) -> String {
    match postgres_name(inner).as_str() {
        "?column?" => arrow_pg::datatypes::into_pg_type(to)
            .map_or_else(|_| "?column?".to_string(), |t| t.name().to_string()),
        name => name.to_string(),
    }
}

/// "count(*)" -> "count", for the columns an aggregate feeds to the final projection.
fn function_name(name: &str) -> Option<String> {
    let open = name.find('(')?;
    let prefix = &name[..open];
    (name.ends_with(')')
        && !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then(|| prefix.to_string())
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    /// The names a query's result columns get, through both steps, as DataFusion plans it.
    async fn names(sql: &str) -> Vec<String> {
        let mut statement = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statement())
            .expect("parses");
        name_result_columns(&mut statement);
        let plan = SessionContext::new()
            .state()
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                statement,
            )))
            .await
            .expect("plans");
        postgres_schema(&plan)
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// Unaliased result columns are named as PostgreSQL 15 names them (each list checked
    /// against `psql -c` on PostgreSQL 15).
    #[tokio::test]
    async fn result_columns_get_postgres_names() {
        assert_eq!(
            names("SELECT a, a + 1, upper('x'), 'x'::text, b::bigint FROM (VALUES (1, 2)) t(a, b)")
                .await,
            ["a", "?column?", "upper", "text", "b"]
        );
        assert_eq!(
            names("SELECT count(*), max(a) FROM (VALUES (1)) t(a) ORDER BY 1 LIMIT 1").await,
            ["count", "max"]
        );
        assert_eq!(names("SELECT 1 AS one, 2 AS \"Two\"").await, ["one", "Two"]);
        assert_eq!(
            names(
                "SELECT round(avg(a), 2), CASE WHEN a > 0 THEN 1 END, ARRAY[1, 2], 1::int, \
                 '1'::bigint::double precision, now(), CAST(a AS text), count(*)::int \
                 FROM (VALUES (1.5)) t(a) GROUP BY a"
            )
            .await,
            [
                "round", "case", "array", "int4", "float8", "now", "a", "count"
            ]
        );
        // Two items of one name keep it (DataFusion refuses such aliases; the plan step
        // names them), and a UNION takes the names of its first select list.
        assert_eq!(
            names("SELECT count(*), count(a), 1, 2 FROM (VALUES (1)) t(a)").await,
            ["count", "count", "?column?", "?column?"]
        );
        assert_eq!(
            names("SELECT upper('a') UNION ALL SELECT lower('b')").await,
            ["upper"]
        );
        assert_eq!(
            names("SELECT ARRAY[1, 2], ARRAY['a']").await,
            ["array", "array"]
        );
        assert_eq!(
            names("SELECT CASE WHEN true THEN 'x' ELSE 'y'::text END, DATE '2024-01-01'").await,
            ["case", "date"]
        );
    }

    #[test]
    fn function_names_from_display_text() {
        assert_eq!(function_name("count(*)").as_deref(), Some("count"));
        assert_eq!(function_name("max(t.a)").as_deref(), Some("max"));
        assert_eq!(function_name("a + b"), None);
        assert_eq!(function_name("(a)"), None);
        assert_eq!(function_name("f(x) + 1"), None);
    }
}
