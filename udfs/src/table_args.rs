//! Argument checks and query runs shared by tenure's table functions.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionState;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::{DataFrame, SessionContext};
use futures::FutureExt;

/// Exactly `N` text literal arguments, named `names` in errors.
pub fn text_arguments<const N: usize>(
    function: &str,
    names: &[&str; N],
    exprs: &[Expr],
) -> Result<[String; N]> {
    if exprs.len() != N {
        return plan_err!(
            "{function} expects {N} argument{} ({}), got {}",
            if N == 1 { "" } else { "s" },
            names.join(", "),
            exprs.len()
        );
    }
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (i, expr) in exprs.iter().enumerate() {
        match expr {
            Expr::Literal(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)),
                _,
            ) => out[i] = s.clone(),
            _ => {
                return plan_err!(
                    "{function}: argument {} ({}) must be a text literal",
                    i + 1,
                    names[i]
                );
            }
        }
    }
    Ok(out)
}

/// `schema` marked with the call that produced it. DataFusion names a table function's scan
/// `name()` whatever its arguments, and plans compare by name and schema, so without the
/// mark two calls with different arguments in one statement (two scalar subqueries) are
/// taken for the same plan and the optimiser computes one for both.
pub fn call_schema(schema: Schema, call: String) -> SchemaRef {
    Arc::new(schema.with_metadata([("tenure.table_function_call".to_string(), call)].into()))
}

/// Runs `sql` in the caller's session and collects it. Only a query is allowed (no DDL, DML
/// or SET), so a table function over a query cannot change anything.
pub async fn collect_read_only(
    state: &SessionState,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let frame = read_only_frame(state, sql).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    Ok((schema, frame.collect().await?))
}

/// [`collect_read_only`] a batch at a time, for functions that fold the rows as they come.
pub async fn stream_read_only(
    state: &SessionState,
    sql: &str,
) -> Result<(SchemaRef, SendableRecordBatchStream)> {
    let frame = read_only_frame(state, sql).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    Ok((schema, frame.execute_stream().await?))
}

async fn read_only_frame(state: &SessionState, sql: &str) -> Result<DataFrame> {
    let ctx = SessionContext::new_with_state(state.clone());
    let read_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx.sql_with_options(sql, read_only).await?;
    let plan = crate::access::check_plan(state, frame.into_unoptimized_plan())?;
    Ok(DataFrame::new(state.clone(), plan))
}

/// Plans `sql` while the table function itself is planned, to learn the columns it returns,
/// without awaiting: tenure's catalog resolves tables from memory, so planning completes at
/// once, and anything that would wait is reported. Only a query is allowed; `what` names it
/// in errors ("the transactions").
pub fn plan_read_only(
    function: &str,
    what: &str,
    state: &SessionState,
    sql: &str,
) -> Result<LogicalPlan> {
    let plan = state
        .create_logical_plan(sql)
        .now_or_never()
        .ok_or_else(|| {
            DataFusionError::Plan(format!(
                "{function}: {what} reads a table that cannot be resolved while planning; \
                 materialise it first (CREATE TABLE ... AS)"
            ))
        })?
        .map_err(|e| DataFusionError::Plan(format!("{function}: in {what}: {e}")))?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| DataFusionError::Plan(format!("{function}: {what} must be a query: {e}")))?;
    crate::access::check_plan(state, plan)
}

/// The session of a table function's scan, which tenure always runs in a DataFusion
/// [`SessionState`].
pub fn session_state<'a>(function: &str, state: &'a dyn Session) -> Result<&'a SessionState> {
    match state.as_any().downcast_ref::<SessionState>() {
        Some(state) => Ok(state),
        None => plan_err!("{function} needs a DataFusion session"),
    }
}
