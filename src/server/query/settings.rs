//! SET, RESET, DISCARD and SHOW over the session's settings ([`crate::pg::settings`]), with
//! a ParameterStatus message for each setting the client tracks that changed.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::startup::ParameterStatus;

use super::QueryHandler;
use crate::server::session::Session;
use crate::server::sqlstate;
use crate::server::startup::user_error;

impl QueryHandler {
    /// `SET name = value`, or back to the default for `None`.
    pub(super) async fn set<C>(
        &self,
        client: &mut C,
        session: &Session,
        name: &str,
        value: Option<&str>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let result = {
            let mut settings = session.settings();
            match value {
                Some(value) => settings.set(name, value),
                None => settings.reset(name),
            }
        };
        let reported = result.map_err(|e| user_error(sqlstate::error(e.state, e.message)))?;
        self.report(client, reported.into_iter()).await?;
        Ok(Response::Execution(Tag::new("SET")))
    }

    /// `RESET name`, or `RESET ALL` for `None`.
    pub(super) async fn reset<C>(
        &self,
        client: &mut C,
        session: &Session,
        name: Option<&str>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let reported = {
            let mut settings = session.settings();
            match name {
                Some(name) => settings
                    .reset(name)
                    .map(|r| r.into_iter().collect::<Vec<_>>())
                    .map_err(|e| user_error(sqlstate::error(e.state, e.message)))?,
                None => settings.reset_all(),
            }
        };
        self.report(client, reported.into_iter()).await?;
        Ok(Response::Execution(Tag::new("RESET")))
    }

    /// `DISCARD ALL` and friends: cursors closed, settings back to defaults.
    pub(super) async fn discard<C>(
        &self,
        client: &mut C,
        session: &Session,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        session.cursors().close_all();
        let reported = session.settings().reset_all();
        self.report(client, reported.into_iter()).await?;
        Ok(Response::Execution(Tag::new("DISCARD ALL")))
    }

    /// ParameterStatus for settings the client tracks (DateStyle, TimeZone, ...).
    pub(super) async fn report<C>(
        &self,
        client: &mut C,
        changed: impl Iterator<Item = (String, String)>,
    ) -> PgWireResult<()>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        for (name, value) in changed {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name, value,
                )))
                .await?;
        }
        Ok(())
    }
}

/// `SHOW name`, or `SHOW ALL`.
pub(super) fn show(session: &Session, name: &str, format: &Format) -> PgWireResult<Response> {
    let rows = if name.eq_ignore_ascii_case("all") {
        session.settings().all()
    } else {
        let value = session
            .settings()
            .get(name)
            .map_err(|e| user_error(sqlstate::error(e.state, e.message)))?;
        vec![(name.to_string(), value, String::new())]
    };
    Ok(Response::Query(show_response(name, rows, format)))
}

/// SHOW's columns: one named after the setting, or name, setting, description for ALL.
pub(super) fn show_fields(name: &str, format: &Format) -> Vec<FieldInfo> {
    let columns: Vec<&str> = if name.eq_ignore_ascii_case("all") {
        vec!["name", "setting", "description"]
    } else {
        vec![name]
    };
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| FieldInfo::new(c.to_string(), None, None, Type::TEXT, format.format_for(i)))
        .collect()
}

/// `SHOW name` (one column named after the setting) or `SHOW ALL`.
fn show_response(
    name: &str,
    rows: Vec<(String, String, String)>,
    format: &Format,
) -> QueryResponse {
    let all = name.eq_ignore_ascii_case("all");
    let fields = Arc::new(show_fields(name, format));
    let encoded: Vec<PgWireResult<pgwire::messages::data::DataRow>> = rows
        .into_iter()
        .map(|(n, v, d)| {
            let mut encoder = DataRowEncoder::new(fields.clone());
            if all {
                encoder.encode_field(&n)?;
                encoder.encode_field(&v)?;
                encoder.encode_field(&d)?;
            } else {
                encoder.encode_field(&v)?;
            }
            Ok(encoder.take_row())
        })
        .collect();
    let mut response = QueryResponse::new(fields, futures::stream::iter(encoded));
    response.set_command_tag("SHOW");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(fields: &[FieldInfo]) -> Vec<&str> {
        fields.iter().map(|f| f.name()).collect()
    }

    #[test]
    fn show_columns() {
        let text = Format::UnifiedText;
        assert_eq!(names(&show_fields("TimeZone", &text)), ["TimeZone"]);
        assert_eq!(
            names(&show_fields("ALL", &text)),
            ["name", "setting", "description"]
        );
        assert!(
            show_fields("all", &text)
                .iter()
                .all(|f| *f.datatype() == Type::TEXT)
        );
    }
}
