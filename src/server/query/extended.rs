//! The extended query protocol: Parse plans a statement once (its parameter types and
//! result columns then answer Describe), Bind gives it values, Execute runs it. A cursor
//! made with DECLARE is also described as a portal of its name, as PostgreSQL does.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, send_describe_response};
use pgwire::api::results::{
    DescribePortalResponse, DescribeStatementResponse, FieldInfo, Response,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::extendedquery::{Describe, TARGET_TYPE_BYTE_PORTAL};

use super::classify::{Action, classify};
use super::cursors::cursor_fields;
use super::plan::{plan_action, returns_rows};
use super::settings::show_fields;
use super::transaction::open_block_for;
use super::{Prepared, QueryHandler, engine_error, session};
use crate::pg::sqlstate::SqlState;
use crate::server::Shared;
use crate::server::audit;
use crate::server::sqlstate;
use crate::server::startup::user_error;

/// Parses and plans for the extended protocol.
pub struct Parser {
    shared: Arc<Shared>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = session(client)?;
        let mut statements = crate::sql::parse_with_text(sql).map_err(engine_error)?;
        if statements.len() > 1 {
            return Err(user_error(sqlstate::error(
                SqlState::SyntaxError,
                "cannot insert multiple commands into a prepared statement",
            )));
        }
        let Some((text, statement)) = statements.pop() else {
            return Ok(None);
        };
        let class = audit::Class::of(&statement);
        let action = classify(&self.shared.compat, &text, statement);
        open_block_for(&self.shared.engine, &session, &action).await?;
        let planned = match plan_action(&self.shared.engine, &session, &action).await {
            Ok(planned) => planned,
            Err(e) => {
                // A denial at Parse is audited; other errors there are the client's syntax.
                let error = Err(engine_error(e));
                if let Err(PgWireError::UserError(info)) = &error
                    && info.code == "42501"
                {
                    audit::after_statement(
                        self.shared.log_statement,
                        &session,
                        class,
                        &text,
                        &error,
                    );
                }
                return error.map(|_: Response| None);
            }
        };
        Ok(Some(Prepared {
            text,
            action,
            class,
            planned,
        }))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        let Some(planned) = &statement.planned else {
            return Ok(Vec::new());
        };
        planned
            .parameters
            .iter()
            .enumerate()
            .map(|(i, t)| match (described_cast(&statement.text, i + 1), t) {
                (Some(oid), _) => Ok(oid),
                (None, Some(t)) => arrow_pg::datatypes::into_pg_type(t),
                // A parameter DataFusion could not type: the client sends text.
                (None, None) => Ok(Type::TEXT),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        match &statement.action {
            Action::Show(name) => return Ok(show_fields(name, format)),
            Action::Declare { .. } => return Ok(Vec::new()),
            _ => {}
        }
        match &statement.planned {
            Some(planned) if returns_rows(&planned.plan) => {
                crate::server::encode::pg_fields(&planned.schema, format, None)
            }
            _ => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::new(Parser {
            shared: self.shared.clone(),
        })
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<Prepared>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let parser = self.query_parser();
        let server_types = parser.get_parameter_types(&target.statement)?;
        let count = server_types.len().max(target.parameter_types.len());
        let parameters = (0..count)
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| server_types.get(i).cloned())
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        let fields = match &target.statement.action {
            Action::Fetch(step) if step.fetch => {
                cursor_fields(&*session(client)?, &step.cursor, &Format::UnifiedText)?
            }
            _ => parser.get_result_schema(&target.statement, None)?,
        };
        Ok(DescribeStatementResponse::new(parameters, fields))
    }

    /// Describe of a portal also answers for a cursor made with DECLARE, which PostgreSQL
    /// exposes as a portal of the same name: psycopg 3's server-side cursors learn their
    /// columns this way.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_PORTAL {
            let name = message.name.as_deref().unwrap_or_default();
            if client.portal_store().get_portal(name).is_none() {
                let session = session(client)?;
                if session.cursors().contains(name) {
                    let fields = cursor_fields(&session, name, &Format::UnifiedText)?;
                    let response = DescribePortalResponse::new(fields);
                    return send_describe_response(client, &response).await;
                }
            }
        }
        self._on_describe(client, message).await
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = match &portal.statement.statement.action {
            Action::Fetch(step) if step.fetch => cursor_fields(
                &*session(client)?,
                &step.cursor,
                &portal.result_column_format,
            )?,
            _ => self.query_parser().get_result_schema(
                &portal.statement.statement,
                Some(&portal.result_column_format),
            )?,
        };
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session(client)?;
        let prepared = &portal.statement.statement;
        let parameters = match &prepared.planned {
            Some(planned) => {
                let types: Vec<Option<&DataType>> =
                    planned.parameters.iter().map(|t| t.as_ref()).collect();
                let as_text = json_parameters_as_text(portal);
                Some(arrow_pg::datatypes::df::deserialize_parameters(
                    as_text.as_ref().unwrap_or(portal),
                    &types,
                )?)
            }
            None if portal.parameter_len() > 0 => {
                return Err(user_error(sqlstate::error(
                    SqlState::ProtocolViolation,
                    format!(
                        "bind message supplies {} parameters, but this statement takes none",
                        portal.parameter_len()
                    ),
                )));
            }
            None => None,
        };
        tracing::debug!(
            statement = %crate::sql::redact::redact_secrets(&prepared.text),
            "execute"
        );
        let result = self
            .respond(
                client,
                &session,
                &prepared.action,
                prepared.planned.as_ref(),
                parameters,
                &portal.result_column_format,
            )
            .await;
        audit::after_statement(
            self.shared.log_statement,
            &session,
            prepared.class,
            &prepared.text,
            &result,
        );
        if result.is_err() {
            session.fail_transaction();
        }
        result
    }
}

/// The type of a parameter the statement casts to `oid`, `json` or `jsonb` (or an array of one)
/// (`$1::oid[]`), which tenure holds as int4 or text but a client that asked for them
/// expects described so. asyncpg's type introspection sends `$1::oid[]` and knows `oid[]`
/// without looking it up (`int4[]` it would look up with that same query, without end);
/// its json codecs encode only a parameter described as json.
fn described_cast(text: &str, number: usize) -> Option<Type> {
    let placeholder = format!("${number}::");
    let mut rest = text;
    while let Some(at) = rest.find(&placeholder) {
        let after = &rest[at + placeholder.len()..];
        let after = after.strip_prefix("pg_catalog.").unwrap_or(after);
        let word_ends =
            |tail: &str| !tail.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        for (name, scalar, array) in [
            ("oid", Type::OID, Type::OID_ARRAY),
            ("jsonb", Type::JSONB, Type::JSONB_ARRAY),
            ("json", Type::JSON, Type::JSON_ARRAY),
        ] {
            if let Some(tail) = after.strip_prefix(name)
                && word_ends(tail)
            {
                return Some(match tail.starts_with("[]") {
                    true => array,
                    false => scalar,
                });
            }
        }
        rest = after;
    }
    None
}

/// `portal` with its json and jsonb parameters read as text (arrow-pg reads neither; a JSON
/// value is text here, see `pg::json`), or `None` when it has none. jsonb's binary form is a
/// version byte before the text.
fn json_parameters_as_text(portal: &Portal<Prepared>) -> Option<Portal<Prepared>> {
    // The client's declared type, else the one the server described (see `described_cast`).
    let types: Vec<Option<Type>> = (0..portal.parameter_len())
        .map(|i| {
            portal
                .statement
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .or_else(|| described_cast(&portal.statement.statement.text, i + 1))
        })
        .collect();
    let is_json = |t: &Option<Type>| matches!(t, Some(t) if *t == Type::JSON || *t == Type::JSONB);
    if !types.iter().any(is_json) {
        return None;
    }
    let mut parameters = portal.parameters.clone();
    for (i, (value, declared)) in parameters.iter_mut().zip(&types).enumerate() {
        if *declared == Some(Type::JSONB)
            && portal.parameter_format.is_binary(i)
            && let Some(bytes) = value
            && bytes.first() == Some(&1)
        {
            *bytes = bytes.slice(1..);
        }
    }
    let statement = StoredStatement::new(
        portal.statement.id.clone(),
        portal.statement.statement.clone(),
        types
            .iter()
            .map(|t| match t {
                Some(t) if *t == Type::JSON || *t == Type::JSONB => Some(Type::TEXT),
                other => other.clone(),
            })
            .collect(),
    );
    // The vendored pgwire's portals are non-exhaustive: a cursor portal, then its fields.
    let mut copy = Portal::new_cursor(portal.name.clone(), Arc::new(statement));
    copy.parameter_format = portal.parameter_format.clone();
    copy.parameters = parameters;
    copy.result_column_format = portal.result_column_format.clone();
    copy.state = portal.state.clone();
    Some(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_cast_to_oids() {
        assert_eq!(
            described_cast("WHERE ti.oid = any($1::oid[])", 1),
            Some(Type::OID_ARRAY)
        );
        assert_eq!(
            described_cast("WHERE c.oid = $2::pg_catalog.oid", 2),
            Some(Type::OID)
        );
        assert_eq!(described_cast("WHERE c.oid = $2::oidvector", 2), None);
        assert_eq!(described_cast("WHERE c.oid = $1::oid", 2), None);
        assert_eq!(
            described_cast("SELECT $1::jsonb -> 'a'", 1),
            Some(Type::JSONB)
        );
        assert_eq!(described_cast("SELECT $1::json", 1), Some(Type::JSON));
    }
}
