//! Running clients' statements: the simple and the extended query protocol.
//!
//! The path of one statement, by file:
//! - [`simple`] (Query) or [`extended`] (Parse, Bind, Describe, Execute) receives it;
//! - [`classify`] turns it into an [`Action`](classify::Action) by its
//!   [`Route`](crate::sql::Route): session commands (BEGIN / COMMIT / ROLLBACK, SET, SHOW,
//!   RESET, DISCARD, cursors, COPY) are answered here, everything else goes to the engine;
//! - [`plan`] plans the statements DataFusion can plan in the client's session, so that the
//!   extended protocol can describe their parameters and result columns before they run, and
//!   so that result columns get PostgreSQL's names; the rest (tenure's own statements, and
//!   those the engine carries out from their syntax) run from their text;
//! - [`respond`] answers each action, with [`transaction`], [`settings`] and [`cursors`]
//!   for the session's own state and [`run`] for the engine's work.
//!
//! Execution happens on the CPU runtime, never on the connection's task: the statement runs
//! in a task of its own that sends record batches through a small channel ([`run`]), so a
//! slow query does not hold up other connections, a CancelRequest or statement_timeout can
//! abort it at any await point, and a client that stops reading stops the query.

pub(super) mod batch;
mod classify;
pub(super) mod copy_in;
mod cursors;
mod extended;
mod plan;
mod respond;
mod run;
mod settings;
mod simple;
mod transaction;

use std::sync::Arc;

use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;

use super::Shared;
use super::session::{Session, Transaction};
use super::sqlstate;
use super::startup::user_error;
use crate::error::Error;
use crate::pg::sqlstate::SqlState;
use classify::Action;
use plan::Planned;

/// A statement stored by Parse (extended protocol).
#[derive(Debug, Clone)]
pub struct Prepared {
    text: String,
    action: Action,
    /// What the audit log calls it (see [`crate::server::audit`]).
    class: crate::server::audit::Class,
    /// For statements planned at Parse: the plan (with `$n` placeholders), its parameter
    /// types and PostgreSQL's names for its result columns.
    planned: Option<Planned>,
}

/// The query handler, shared by all connections.
pub struct QueryHandler {
    pub(super) shared: Arc<Shared>,
}

/// The session of a connection that has completed startup.
pub(super) fn session<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Arc<Session>> {
    client
        .session_extensions()
        .get::<Arc<Session>>()
        .map(|s| Arc::clone(&*s))
        .ok_or_else(|| {
            user_error(sqlstate::fatal(
                SqlState::ProtocolViolation,
                "the connection has not completed startup",
            ))
        })
}

/// The client's error for an engine error (SQLSTATE and message, see [`sqlstate`]).
pub(super) fn engine_error(e: Error) -> PgWireError {
    user_error(sqlstate::error_info(&e))
}

/// The status ReadyForQuery reports.
fn transaction_status(session: &Session) -> TransactionStatus {
    match session.transaction() {
        Transaction::Idle => TransactionStatus::Idle,
        Transaction::Open => TransactionStatus::Transaction,
        Transaction::Failed => TransactionStatus::Error,
    }
}
