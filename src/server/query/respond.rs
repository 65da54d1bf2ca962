//! The response to one classified statement, shared by both protocols: one arm per
//! [`Action`], each handed to the file that owns it.

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::common::ParamValues;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName};
use futures::Sink;
use pgwire::api::ClientInfo;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::classify::Action;
use super::cursors::{self, Declare};
use super::plan::Planned;
use super::run::Work;
use super::settings::show;
use super::transaction::{open_block_for, savepoint};
use super::{QueryHandler, engine_error};
use crate::pg::sqlstate::SqlState;
use crate::server::copy;
use crate::server::session::{Session, Transaction};
use crate::server::sqlstate;
use crate::server::startup::user_error;

impl QueryHandler {
    /// Answers `action`; `planned` is its plan when DataFusion planned it, `parameters` the
    /// values bound to it (extended protocol).
    pub(super) async fn respond<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        action: &Action,
        planned: Option<&Planned>,
        parameters: Option<ParamValues>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if session.transaction() == Transaction::Failed
            && !matches!(
                action,
                Action::Commit | Action::Rollback | Action::RollbackToSavepoint(_)
            )
        {
            return Err(user_error(sqlstate::error(
                SqlState::InFailedSqlTransaction,
                "current transaction is aborted, commands ignored until end of transaction block",
            )));
        }
        match action {
            Action::Begin => self.begin(client, session).await,
            Action::Commit => self.end_block(client, session, true).await,
            Action::Rollback => self.end_block(client, session, false).await,
            Action::Savepoint(_) | Action::ReleaseSavepoint(_) | Action::RollbackToSavepoint(_) => {
                savepoint(session, action)
            }
            Action::Set { name, value } => self.set(client, session, name, value.as_deref()).await,
            Action::Reset(name) => self.reset(client, session, name.as_deref()).await,
            Action::Discard => self.discard(client, session).await,
            Action::Show(name) => show(session, name, format),
            Action::Ignore(tag) => Ok(Response::Execution(Tag::new(tag))),
            Action::Refused(code, message) => {
                Err(user_error(sqlstate::error(*code, message.clone())))
            }
            Action::Unsupported(message) => Err(user_error(sqlstate::error(
                SqlState::FeatureNotSupported,
                message.clone(),
            ))),
            Action::CopyOut { format: copy, .. } => {
                let Some(planned) = planned else {
                    return Err(user_error(sqlstate::error(
                        SqlState::SyntaxError,
                        "COPY TO STDOUT needs a query",
                    )));
                };
                let work = Work::Plan(planned.plan.clone(), planned.schema.clone());
                self.execute(client, session, work, &Format::UnifiedText, Some(copy))
                    .await
            }
            Action::CopyIn {
                table,
                columns,
                format: copy,
            } => {
                open_block_for(&self.shared.engine, session, action).await?;
                self.copy_in(session, table, columns, copy).await
            }
            Action::Declare {
                name,
                query,
                hold,
                scroll,
            } => {
                let declare = Declare {
                    name,
                    query,
                    hold: *hold,
                    scroll: *scroll,
                };
                self.declare(session, declare, planned, parameters).await
            }
            Action::Fetch(step) => cursors::step(session, step, format).await,
            Action::Close(name) => cursors::close(session, name.as_deref()),
            Action::Run(statement) => {
                self.run(client, session, statement, planned, parameters, format)
                    .await
            }
        }
    }

    /// `COPY table FROM STDIN`: the copy handler reads the CopyData that follows.
    async fn copy_in(
        &self,
        session: &Session,
        table: &ObjectName,
        columns: &[Ident],
        copy: &copy::CopyFormat,
    ) -> PgWireResult<Response> {
        let (table, table_schema, positions) = copy::target(&session.ctx(), table, columns)
            .await
            .map_err(engine_error)?;
        let count = positions.len();
        let shape = copy::CopyShape {
            table,
            table_schema,
            columns: positions,
            format: copy.clone(),
        };
        let copy_in = copy::CopyIn::start(
            self.shared.engine.clone(),
            session.ctx(),
            &self.shared.cpu,
            shape,
        )
        .await
        .map_err(engine_error)?;
        *session.copy_in() = Some(copy_in);
        Ok(Response::CopyIn(CopyResponse::new(
            copy.code(),
            count,
            futures::stream::empty(),
        )))
    }
}
