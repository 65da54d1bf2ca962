//! Cursors: DECLARE starts the query on the CPU runtime (as any statement, see
//! [`QueryHandler::start`]); FETCH and MOVE step through its batches ([`Cursor`]); CLOSE,
//! COMMIT and ROLLBACK end it.

use std::sync::Arc;

use datafusion::common::ParamValues;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};

use super::plan::{Planned, plan, values_empty};
use super::run::{First, Started, Work};
use super::{QueryHandler, engine_error};
use crate::error::Error;
use crate::pg::sqlstate::SqlState;
use crate::server::cursor::Cursor;
use crate::server::session::{Session, Transaction};
use crate::server::startup::user_error;
use crate::server::{encode, sqlstate};
use crate::sql::Statement;
use crate::sql::fetch::CursorStep;

/// `DECLARE name [SCROLL] CURSOR [WITH HOLD] FOR query`, as read by classify.
pub(super) struct Declare<'a> {
    pub(super) name: &'a str,
    pub(super) query: &'a Arc<Statement>,
    pub(super) hold: bool,
    pub(super) scroll: bool,
}

impl QueryHandler {
    /// DECLARE: the query starts at once; FETCH reads its batches as they come.
    pub(super) async fn declare(
        &self,
        session: &Arc<Session>,
        declare: Declare<'_>,
        planned: Option<&Planned>,
        parameters: Option<ParamValues>,
    ) -> PgWireResult<Response> {
        let Declare {
            name,
            query,
            hold,
            scroll,
        } = declare;
        let in_block = session.transaction() == Transaction::Open;
        if !hold && !in_block {
            return Err(user_error(sqlstate::error(
                SqlState::NoActiveSqlTransaction,
                "DECLARE CURSOR can only be used in transaction blocks",
            )));
        }
        if session.cursors().contains(name) {
            return Err(user_error(sqlstate::error(
                SqlState::DuplicateCursor,
                format!("cursor \"{name}\" already exists"),
            )));
        }
        let planned = match (planned, parameters) {
            (Some(planned), Some(values)) if !planned.parameters.is_empty() => {
                Some(planned.bound(&values)?)
            }
            (Some(planned), _) => Some(planned.clone()),
            (None, Some(values)) if !values_empty(&values) => {
                return Err(user_error(sqlstate::error(
                    SqlState::FeatureNotSupported,
                    "this cursor's query does not take parameters",
                )));
            }
            _ => None,
        };
        // Planned first (at Parse, or here), for PostgreSQL's names of the result columns.
        let planned = match planned {
            Some(planned) => Some(planned),
            None => plan(&self.shared.engine, session, query)
                .await
                .map_err(engine_error)?,
        };
        let work = match planned {
            Some(planned) => Work::Plan(planned.plan, planned.schema),
            None => Work::Statement(query.clone()),
        };
        let Started {
            first,
            batches,
            task,
            ..
        } = self.start(session, work);
        let names = match first.await {
            Ok(Ok(First::Rows(names))) => names,
            Ok(Ok(First::Command { .. })) => {
                return Err(engine_error(Error::invalid("DECLARE CURSOR needs a query")));
            }
            Ok(Err(e)) => return Err(engine_error(e)),
            Err(_) => {
                return Err(user_error(sqlstate::error(
                    SqlState::InternalError,
                    "the cursor's query stopped",
                )));
            }
        };
        let cursor = Cursor::new(names, batches, task, hold, scroll, in_block);
        session.cursors().insert(name.to_string(), cursor);
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }
}

/// FETCH (rows) or MOVE (only the count) over a cursor.
pub(super) async fn step(
    session: &Session,
    step: &CursorStep,
    format: &Format,
) -> PgWireResult<Response> {
    let name = &step.cursor;
    let Some(mut cursor) = session.cursors().take(name) else {
        return Err(undefined_cursor(name));
    };
    if !step.fetch {
        let moved = cursor.advance(step.direction).await;
        session.cursors().insert(name.clone(), cursor);
        let moved = moved.map_err(engine_error)?;
        return Ok(Response::Execution(Tag::new("MOVE").with_rows(moved)));
    }
    let fetched = cursor.fetch(step.direction).await;
    let names = cursor.names.clone();
    session.cursors().insert(name.clone(), cursor);
    let batch = fetched.map_err(engine_error)?;
    let options = Arc::new(session.settings().format_options());
    let fields = Arc::new(crate::server::encode::pg_fields(
        &names,
        format,
        Some(options),
    )?);
    let rows = encode::data_rows(&fields, &batch)?;
    let mut response = QueryResponse::new(fields, futures::stream::iter(rows.into_iter().map(Ok)));
    response.set_command_tag("FETCH");
    Ok(Response::Query(response))
}

/// `CLOSE name`, or `CLOSE ALL` for `None`.
pub(super) fn close(session: &Session, name: Option<&str>) -> PgWireResult<Response> {
    match name {
        Some(name) => {
            if !session.cursors().close(name) {
                return Err(undefined_cursor(name));
            }
        }
        None => session.cursors().close_all(),
    }
    Ok(Response::Execution(Tag::new(if name.is_some() {
        "CLOSE CURSOR"
    } else {
        "CLOSE CURSOR ALL"
    })))
}

/// The result columns of FETCH from cursor `name`, for Describe.
pub(super) fn cursor_fields(
    session: &Session,
    name: &str,
    format: &Format,
) -> PgWireResult<Vec<FieldInfo>> {
    let Some(names) = session.cursors().schema(name) else {
        return Err(undefined_cursor(name));
    };
    let options = Arc::new(session.settings().format_options());
    crate::server::encode::pg_fields(&names, format, Some(options))
}

fn undefined_cursor(name: &str) -> PgWireError {
    user_error(sqlstate::error(
        SqlState::InvalidCursorName,
        format!("cursor \"{name}\" does not exist"),
    ))
}
