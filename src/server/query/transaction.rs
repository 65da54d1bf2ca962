//! Transaction blocks: BEGIN, COMMIT, ROLLBACK and savepoints, and the writing part of a
//! block, which starts at its first write (see [`open_block`]) and commits all of it at once.

use std::fmt::Debug;
use std::sync::Arc;

use futures::Sink;
use pgwire::api::ClientInfo;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::classify::Action;
use super::{QueryHandler, engine_error};
use crate::engine::Engine;
use crate::pg::sqlstate::SqlState;
use crate::server::session::{Session, Transaction};
use crate::server::sqlstate;
use crate::server::startup::user_error;
use crate::sql::route;

impl QueryHandler {
    /// BEGIN (a WARNING when a block is already open, as in PostgreSQL).
    pub(super) async fn begin<C>(&self, client: &mut C, session: &Session) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if session.transaction() != Transaction::Idle {
            self.notice(
                client,
                "WARNING",
                SqlState::ActiveSqlTransaction,
                "there is already a transaction in progress",
            )
            .await?;
        }
        session.set_transaction(Transaction::Open);
        Ok(Response::TransactionStart(Tag::new("BEGIN")))
    }

    /// COMMIT (`commit`) or ROLLBACK. COMMIT of a failed block rolls it back; a COMMIT that
    /// fails has rolled the block back, as in PostgreSQL.
    pub(super) async fn end_block<C>(
        &self,
        client: &mut C,
        session: &Session,
        commit: bool,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = session.transaction();
        if state == Transaction::Idle {
            self.notice(
                client,
                "WARNING",
                SqlState::NoActiveSqlTransaction,
                "there is no transaction in progress",
            )
            .await?;
        }
        session.set_transaction(Transaction::Idle);
        let commit = commit && state != Transaction::Failed;
        if let Some(block) = session.take_block() {
            let engine = &self.shared.engine;
            if commit {
                engine.commit(&block).await.map_err(engine_error)?;
            } else {
                engine.rollback(&block).await;
            }
        }
        session.cursors().end_block(commit);
        let tag = if commit { "COMMIT" } else { "ROLLBACK" };
        Ok(Response::TransactionEnd(Tag::new(tag)))
    }
}

/// SAVEPOINT, RELEASE SAVEPOINT and ROLLBACK TO SAVEPOINT. ROLLBACK TO clears a failed
/// statement, as in PostgreSQL; it cannot yet undo writes that succeeded after the
/// savepoint, and says so.
pub(super) fn savepoint(session: &Session, action: &Action) -> PgWireResult<Response> {
    let (Action::Savepoint(name)
    | Action::ReleaseSavepoint(name)
    | Action::RollbackToSavepoint(name)) = action
    else {
        return Err(user_error(sqlstate::error(
            SqlState::InternalError,
            "internal error: not a savepoint statement",
        )));
    };
    if session.transaction() == Transaction::Idle {
        return Err(user_error(sqlstate::error(
            SqlState::NoActiveSqlTransaction,
            "savepoints can only be used in transaction blocks",
        )));
    }
    let tag = match action {
        Action::Savepoint(_) => {
            let writes = session.block_writes();
            session.savepoints().push((name.clone(), writes));
            "SAVEPOINT"
        }
        _ => {
            let mut savepoints = session.savepoints();
            let Some(at) = savepoints.iter().rposition(|(s, _)| s == name) else {
                return Err(user_error(sqlstate::error(
                    SqlState::InvalidSavepointSpecification,
                    format!("savepoint \"{name}\" does not exist"),
                )));
            };
            if matches!(action, Action::ReleaseSavepoint(_)) {
                savepoints.truncate(at);
                "RELEASE"
            } else if session.block_writes() > savepoints[at].1 {
                drop(savepoints);
                session.fail_transaction();
                return Err(user_error(sqlstate::error(
                    SqlState::FeatureNotSupported,
                    format!(
                        "ROLLBACK TO SAVEPOINT cannot undo the writes made since savepoint \
                         \"{name}\" yet; ROLLBACK ends the whole transaction block"
                    ),
                )));
            } else {
                savepoints.truncate(at + 1);
                drop(savepoints);
                session.set_transaction(Transaction::Open);
                "ROLLBACK"
            }
        }
    };
    Ok(Response::Execution(Tag::new(tag)))
}

/// Whether `action` writes inside the session's open transaction block: then it is planned
/// and run in the block's session (see [`open_block`]). CREATE/DROP MODEL are refused there
/// instead (see [`route::writes_in_block`]).
pub(super) fn writes_in_block(session: &Session, action: &Action) -> bool {
    if session.transaction() != Transaction::Open {
        return false;
    }
    match action {
        Action::CopyIn { .. } => true,
        Action::Run(statement) => route::writes_in_block(statement),
        _ => false,
    }
}

/// Opens the block's writing part (once) before `action` is planned, when it writes in the
/// block, so that it is planned against the block's catalog.
pub(super) async fn open_block_for(
    engine: &Engine,
    session: &Arc<Session>,
    action: &Action,
) -> PgWireResult<()> {
    if writes_in_block(session, action) {
        open_block(engine, session).await?;
    }
    Ok(())
}

/// Starts the writing part of the session's open transaction block (once): waits for the
/// catalog lock, which another writing block may hold, at most statement_timeout.
pub(super) async fn open_block(engine: &Engine, session: &Session) -> PgWireResult<()> {
    if session.has_block() {
        return Ok(());
    }
    let begin = engine.begin(session.base());
    let timeout = session.settings().statement_timeout();
    let block = match timeout {
        Some(timeout) => match tokio::time::timeout(timeout, begin).await {
            Ok(block) => block,
            Err(_) => {
                return Err(user_error(sqlstate::error(
                    SqlState::QueryCanceled,
                    "canceling statement due to statement timeout: another transaction \
                     block is writing",
                )));
            }
        },
        None => begin.await,
    };
    session.set_block(block.map_err(engine_error)?);
    Ok(())
}
