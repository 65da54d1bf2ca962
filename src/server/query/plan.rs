//! Planning a statement in the client's session, for the statements DataFusion can plan
//! ([`Route::Plan`]): the parameters' types and the result columns, named as PostgreSQL
//! names them, are known before the statement runs (Describe of the extended protocol).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::logical_expr::{Expr, LogicalPlan};
use pgwire::error::PgWireResult;

use super::classify::Action;
use super::engine_error;
use crate::catalog::CatalogState;
use crate::engine::Engine;
use crate::engine::plan_cache::PlanCache;
use crate::error::Error;
use crate::server::session::Session;
use crate::sql::{Route, Statement};

/// A statement planned in a session.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) plan: LogicalPlan,
    pub(super) parameters: Vec<Option<DataType>>,
    pub(super) schema: SchemaRef,
    /// The physical plan of a statement without parameters, kept between executions.
    pub(super) physical: Arc<PlanCache>,
    /// What the plan was made against: the catalog's version and the session context (the
    /// client's own or a transaction block's). A plan made against others is made again.
    catalog: Arc<CatalogState>,
    context: String,
}

impl Planned {
    /// Whether the plan was made against the catalog and session context now in force.
    pub(super) fn current(&self, engine: &Engine, session: &Session) -> bool {
        Arc::ptr_eq(&self.catalog, &engine.catalog_version())
            && self.context == session.ctx().session_id()
    }

    /// The same plan with the client's parameter values in place of `$n`.
    pub(super) fn bound(&self, values: &ParamValues) -> PgWireResult<Planned> {
        Ok(Planned {
            plan: bind(self, values)?,
            ..self.clone()
        })
    }
}

/// Plans the statement of `action` (a statement for the engine, COPY TO STDOUT's query, a
/// cursor's query) in the session when DataFusion can plan it.
pub(super) async fn plan_action(
    engine: &Engine,
    session: &Session,
    action: &Action,
) -> Result<Option<Planned>, Error> {
    match action {
        Action::Run(statement)
        | Action::CopyOut {
            query: statement, ..
        }
        | Action::Declare {
            query: statement, ..
        } => plan(engine, session, statement).await,
        _ => Ok(None),
    }
}

/// Plans `statement` in the session when it is one DataFusion plans.
pub(super) async fn plan(
    engine: &Engine,
    session: &Session,
    statement: &Statement,
) -> Result<Option<Planned>, Error> {
    let Statement::DataFusion(df) = statement else {
        return Ok(None);
    };
    if Route::of_datafusion(df) == Route::Syntax {
        return Ok(None);
    }
    // The version first: a change while planning then makes the plan out of date.
    let catalog = engine.catalog_version();
    let ctx = session.ctx();
    let plan = engine.statement_to_plan(&ctx, df.clone()).await?;
    let mut types = plan.get_parameter_types()?;
    // `$1::bigint`: DataFusion leaves the placeholder untyped; PostgreSQL types it by
    // the cast, and clients encode the value accordingly.
    for (name, data_type) in cast_placeholder_types(&plan) {
        if let Some(slot @ None) = types.get_mut(&name) {
            *slot = Some(data_type);
        }
    }
    let count = types
        .keys()
        .filter_map(|k| k.trim_start_matches('$').parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    let parameters = (1..=count)
        .map(|i| types.get(&format!("${i}")).cloned().flatten())
        .collect();
    let schema = Arc::new(postgres_names(&plan));
    Ok(Some(Planned {
        plan,
        parameters,
        schema,
        physical: Arc::default(),
        catalog,
        context: ctx.session_id(),
    }))
}

/// The target type of each placeholder that appears directly under a cast.
fn cast_placeholder_types(plan: &LogicalPlan) -> Vec<(String, DataType)> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                match e {
                    Expr::Cast(cast) => {
                        if let Expr::Placeholder(p) = cast.expr.as_ref() {
                            found.push((p.id.clone(), cast.field.data_type().clone()));
                        }
                    }
                    Expr::TryCast(cast) => {
                        if let Expr::Placeholder(p) = cast.expr.as_ref() {
                            found.push((p.id.clone(), cast.field.data_type().clone()));
                        }
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// The planned statement with the client's parameter values in place of `$n`.
pub(super) fn bind(planned: &Planned, values: &ParamValues) -> PgWireResult<LogicalPlan> {
    planned
        .plan
        .clone()
        .replace_params_with_values(values)
        .map_err(|e| engine_error(e.into()))
}

pub(super) fn values_empty(values: &ParamValues) -> bool {
    match values {
        ParamValues::List(list) => list.is_empty(),
        ParamValues::Map(map) => map.is_empty(),
    }
}

/// Whether a plan answers with rows (queries, EXPLAIN) rather than a command tag.
pub(super) fn returns_rows(plan: &LogicalPlan) -> bool {
    !matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Copy(_)
    )
}

/// The plan's output schema with the names PostgreSQL gives unaliased result columns: a
/// column's own name, a function's name, `?column?` for other expressions.
fn postgres_names(plan: &LogicalPlan) -> Schema {
    let schema = plan.schema().as_arrow().clone();
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
        .map(|(field, expr)| field.as_ref().clone().with_name(postgres_name(expr)))
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

fn postgres_name(expr: &Expr) -> String {
    match expr {
        // DataFusion aliases some aggregates with their display text ("count(*)").
        Expr::Alias(alias) => function_name(&alias.name).unwrap_or_else(|| alias.name.clone()),
        Expr::Column(column) => function_name(&column.name).unwrap_or_else(|| column.name.clone()),
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

    use super::*;

    async fn names(sql: &str) -> Vec<String> {
        let plan = SessionContext::new()
            .state()
            .create_logical_plan(sql)
            .await
            .expect("plans");
        postgres_names(&plan)
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// Unaliased result columns are named as PostgreSQL names them.
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
    }

    #[test]
    fn function_names_from_display_text() {
        assert_eq!(function_name("count(*)").as_deref(), Some("count"));
        assert_eq!(function_name("max(t.a)").as_deref(), Some("max"));
        assert_eq!(function_name("a + b"), None);
        assert_eq!(function_name("(a)"), None);
        assert_eq!(function_name("f(x) + 1"), None);
    }

    /// `$1::bigint` types the placeholder by its cast.
    #[tokio::test]
    async fn placeholder_types_from_casts() {
        let plan = SessionContext::new()
            .state()
            .create_logical_plan("SELECT $1::bigint + 1, $2")
            .await
            .expect("plans");
        assert_eq!(
            cast_placeholder_types(&plan),
            [("$1".to_string(), DataType::Int64)]
        );
    }
}
