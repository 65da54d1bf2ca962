//! The simple query protocol: a query string of any number of statements, each answered
//! before the next starts; the first error ends the string, as in PostgreSQL.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::portal::Format;
use pgwire::api::query::{SimpleQueryHandler, send_query_response};
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::{CommandComplete, EmptyQueryResponse, ReadyForQuery};
use pgwire::messages::simplequery::Query;

use super::classify::classify;
use super::plan::plan_action;
use super::transaction::open_block_for;
use super::{QueryHandler, engine_error, session, transaction_status};
use crate::pg::sqlstate::SqlState;
use crate::server::audit;
use crate::server::session::Session;
use crate::server::sqlstate;
use crate::server::startup::user_error;
use crate::sql::Statement;

impl QueryHandler {
    /// Carries out one classified statement for the simple protocol, sending its response.
    async fn run_simple<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        text: &str,
        statement: Statement,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let class = audit::Class::of(&statement);
        let action = classify(&self.shared.compat, text, statement);
        open_block_for(&self.shared.engine, session, &action).await?;
        let planned = match plan_action(&self.shared.engine, session, &action).await {
            Ok(planned) => planned,
            Err(e) => {
                let error = Err(engine_error(e));
                audit::after_statement(self.shared.log_statement, session, class, text, &error);
                return error.map(|_: Response| ());
            }
        };
        let format = Format::UnifiedText;
        let response = self
            .respond(client, session, &action, planned.as_ref(), None, &format)
            .await;
        audit::after_statement(self.shared.log_statement, session, class, text, &response);
        let response = response?;
        match response {
            Response::Query(results) => send_query_response(client, results, true).await?,
            Response::Execution(tag)
            | Response::TransactionStart(tag)
            | Response::TransactionEnd(tag) => {
                client
                    .feed(PgWireBackendMessage::CommandComplete(
                        CommandComplete::from(tag),
                    ))
                    .await?;
            }
            Response::EmptyQuery => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
            }
            Response::Error(e) => return Err(PgWireError::UserError(e)),
            Response::CopyOut(copy) => {
                pgwire::api::copy::send_copy_out_response(client, copy).await?;
            }
            Response::CopyIn(copy) => {
                pgwire::api::copy::send_copy_in_response(client, copy).await?;
                // The client now sends CopyData; the copy handler answers at CopyDone.
                client.set_state(PgWireConnectionState::CopyInProgress(false));
            }
            Response::CopyBoth(_) => {
                return Err(user_error(sqlstate::error(
                    SqlState::FeatureNotSupported,
                    "COPY BOTH is not supported",
                )));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    /// Runs the statements of a query string one after another, each answered before the
    /// next starts; the first error ends the string, as in PostgreSQL.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let session = session(client)?;
        client.set_state(PgWireConnectionState::QueryInProgress);
        let result = match crate::sql::parse_with_text(&query.query) {
            Ok(statements) if statements.is_empty() => client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await
                .map_err(PgWireError::from),
            Ok(statements) => {
                let mut result = Ok(());
                for (text, statement) in statements {
                    result = self.run_simple(client, &session, &text, statement).await;
                    if result.is_err()
                        || matches!(client.state(), PgWireConnectionState::CopyInProgress(_))
                    {
                        break;
                    }
                }
                result
            }
            Err(e) => Err(engine_error(e)),
        };
        if let Err(e) = result {
            if matches!(e, PgWireError::IoError(_)) {
                return Err(e);
            }
            session.fail_transaction();
            let info = ErrorInfo::from(e);
            let peer = client.socket_addr();
            tracing::info!(%peer, code = %info.code, "error: {}", info.message);
            client
                .feed(PgWireBackendMessage::ErrorResponse(info.into()))
                .await?;
        }
        let status = transaction_status(&session);
        client.set_transaction_status(status);
        if matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            // ReadyForQuery follows the copy (pgwire sends it after CopyDone / CopyFail).
            return Ok(());
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        Ok(())
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // on_query above answers every statement itself.
        Err(user_error(sqlstate::error(
            SqlState::InternalError,
            "internal error: simple queries are answered by on_query",
        )))
    }
}
