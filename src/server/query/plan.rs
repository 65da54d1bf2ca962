//! Planning a statement in the client's session, for the statements DataFusion can plan
//! ([`Route::Plan`]): the parameters' types and the result columns, named as PostgreSQL
//! names them, are known before the statement runs (Describe of the extended protocol).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
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
    let default_schema = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_schema
        .clone();
    let schema = Arc::new(crate::pg::origins::mark_origins(
        crate::pg::names::postgres_schema(&plan),
        &plan,
        &catalog,
        &default_schema,
    ));
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

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

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
