//! COPY ... FROM STDIN after its statement: the CopyData, CopyDone and CopyFail messages,
//! handed to the session's running copy (`server::copy`).

use std::sync::Arc;

use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::Tag;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};

use super::{engine_error, session};
use crate::pg::sqlstate::SqlState;
use crate::server::Shared;
use crate::server::sqlstate;
use crate::server::startup::user_error;

/// Receives `COPY ... FROM STDIN` data and finishes the copy at CopyDone.
pub struct CopyInHandler {
    pub(in crate::server) shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl CopyHandler for CopyInHandler {
    async fn on_copy_data<C>(&self, client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session(client)?;
        // Out of the session while it parses and waits for the INSERT to take the rows.
        let Some(mut copy) = session.copy_in().take() else {
            return Err(user_error(sqlstate::error(
                SqlState::ProtocolViolation,
                "CopyData without a COPY FROM STDIN in progress",
            )));
        };
        copy.receive(&data.data, &self.shared.cpu).await;
        *session.copy_in() = Some(copy);
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session(client)?;
        let Some(copy) = session.copy_in().take() else {
            return Err(user_error(sqlstate::error(
                SqlState::ProtocolViolation,
                "CopyDone without a COPY FROM STDIN in progress",
            )));
        };
        let rows = copy.finish(&self.shared.cpu).await.map_err(engine_error)?;
        let tag = Tag::new("COPY").with_rows(rows as usize);
        client
            .feed(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Ok(session) = session(client) {
            session.copy_in().take();
        }
        user_error(sqlstate::error(
            SqlState::QueryCanceled,
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}
