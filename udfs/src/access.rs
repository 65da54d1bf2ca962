//! The access-control hook of table functions. A table function reads what its arguments
//! name (a model, a query over tables) while it is planned or scanned, out of sight of the
//! engine's check of the statement's plan, so it asks the session's [`SessionAccess`] itself.
//! The engine installs one in every client session; a session without one (the local shell,
//! which runs as the data directory's owner) may read everything.

use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;

/// What a session's role may read.
pub trait Authorizer: std::fmt::Debug + Send + Sync {
    /// Fails (SQLSTATE 42501) unless the role may read every table and use every model
    /// `plan` reads; else `plan` with the row-level security policies that apply to the
    /// role (it is what the function must run). `state` is the session planning it.
    fn check_plan(&self, state: &SessionState, plan: LogicalPlan) -> Result<LogicalPlan>;
    /// Fails (SQLSTATE 42501) unless the role has USAGE on the model `reference` names.
    fn check_model(&self, reference: &str) -> Result<()>;
}

/// The session config extension that carries a session's [`Authorizer`].
#[derive(Debug, Clone)]
pub struct SessionAccess(pub Arc<dyn Authorizer>);

fn authorizer(session: &dyn Session) -> Option<Arc<SessionAccess>> {
    session.config().get_extension::<SessionAccess>()
}

/// [`Authorizer::check_plan`] of the session's authorizer, if it has one.
pub fn check_plan(state: &SessionState, plan: LogicalPlan) -> Result<LogicalPlan> {
    match authorizer(state) {
        Some(access) => access.0.check_plan(state, plan),
        None => Ok(plan),
    }
}

/// [`Authorizer::check_model`] of the session's authorizer, if it has one.
pub fn check_model(session: &dyn Session, reference: &str) -> Result<()> {
    match authorizer(session) {
        Some(access) => access.0.check_model(reference),
        None => Ok(()),
    }
}
