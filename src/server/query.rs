//! Running clients' statements: the simple and the extended query protocol.
//!
//! Each statement is classified first. Session commands (BEGIN / COMMIT / ROLLBACK, SET,
//! SHOW, RESET, DISCARD) are answered here; everything else goes to the engine. Statements
//! DataFusion can plan are planned here in the client's session, so that the extended
//! protocol can describe their parameters and result columns before they run, and so that
//! result columns get PostgreSQL's names; the rest (tenure's own statements, and those the
//! engine carries out from their syntax) run from their text.
//!
//! Execution happens on the CPU runtime, never on the connection's task: the statement runs
//! in a task of its own that sends record batches through a small channel, so a slow query
//! does not hold up other connections, a CancelRequest or statement_timeout can abort it at
//! any await point, and a client that stops reading stops the query.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    CloseCursor, Declare, DeclareType, Expr as SqlExpr, Ident, ObjectName, Reset, Set,
    Statement as SqlStatement, Value,
};
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{
    ExtendedQueryHandler, SimpleQueryHandler, send_describe_response, send_query_response,
};
use pgwire::api::results::{
    CopyResponse, DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::CopyData;
use pgwire::messages::extendedquery::{Describe, TARGET_TYPE_BYTE_PORTAL};
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::copy;
use super::cursor::Cursor;
use super::encode;
use super::rewrite;
use super::session::{Session, StopReason, Transaction};
use super::sqlstate;
use super::startup::user_error;
use crate::catalog::CatalogState;
use crate::engine::plan_cache::{self, PlanCache, PlanKey};
use crate::engine::{Engine, Output, Progress};
use crate::error::Error;
use crate::sql::Statement;
use crate::sql::fetch::CursorStep;

/// What a statement asks of the server.
#[derive(Debug, Clone)]
enum Action {
    Begin,
    Commit,
    Rollback,
    /// Savepoints. ROLLBACK TO clears a failed statement, as in PostgreSQL; it cannot yet
    /// undo writes that succeeded after the savepoint, and says so.
    Savepoint(String),
    ReleaseSavepoint(String),
    RollbackToSavepoint(String),
    /// `SET name = value`; `None` for `SET name TO DEFAULT`.
    Set {
        name: String,
        value: Option<String>,
    },
    /// `RESET name`; `None` for `RESET ALL`.
    Reset(Option<String>),
    Show(String),
    /// `DISCARD ALL` and friends: settings back to defaults.
    Discard,
    /// Accepted and ignored (the tag to answer with).
    Ignore(&'static str),
    Unsupported(String),
    /// A statement for the engine.
    Run(Arc<Statement>),
    /// `COPY ... TO STDOUT`: the query's rows as CopyData.
    CopyOut {
        query: Arc<Statement>,
        format: copy::CopyFormat,
    },
    /// `COPY table FROM STDIN`.
    CopyIn {
        table: datafusion::sql::sqlparser::ast::ObjectName,
        columns: Vec<datafusion::sql::sqlparser::ast::Ident>,
        format: copy::CopyFormat,
    },
    /// `DECLARE name [SCROLL] CURSOR [WITH HOLD] FOR query`.
    Declare {
        name: String,
        query: Arc<Statement>,
        hold: bool,
        scroll: bool,
    },
    /// `FETCH` (or `MOVE`, which returns no rows) `[direction] FROM name`.
    Fetch(CursorStep),
    /// `CLOSE name`; `None` for `CLOSE ALL`.
    Close(Option<String>),
    /// A statement refused at classification: SQLSTATE and message.
    Refused(String, String),
}

/// A statement stored by Parse (extended protocol).
#[derive(Debug, Clone)]
pub struct Prepared {
    text: String,
    action: Action,
    /// For statements planned at Parse: the plan (with `$n` placeholders), its parameter
    /// types and PostgreSQL's names for its result columns.
    planned: Option<Planned>,
}

#[derive(Debug, Clone)]
struct Planned {
    plan: LogicalPlan,
    parameters: Vec<Option<DataType>>,
    schema: SchemaRef,
    /// The physical plan of a statement without parameters, kept between executions.
    physical: Arc<PlanCache>,
    /// What the plan was made against: the catalog's version and the session context (the
    /// client's own or a transaction block's). A plan made against others is made again.
    catalog: Arc<CatalogState>,
    context: String,
}

impl Planned {
    fn current(&self, engine: &Engine, session: &Session) -> bool {
        Arc::ptr_eq(&self.catalog, &engine.catalog_version())
            && self.context == session.ctx().session_id()
    }
}

/// The query handler, shared by all connections.
pub struct QueryHandler {
    pub(super) shared: Arc<Shared>,
}

pub(super) fn session<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Arc<Session>> {
    client
        .session_extensions()
        .get::<Arc<Session>>()
        .map(|s| Arc::clone(&*s))
        .ok_or_else(|| {
            user_error(sqlstate::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "the connection has not completed startup",
            ))
        })
}

pub(super) fn engine_error(e: Error) -> PgWireError {
    user_error(sqlstate::error_info(&e))
}

fn undefined_cursor(name: &str) -> PgWireError {
    user_error(sqlstate::error(
        sqlstate::UNDEFINED_CURSOR,
        format!("cursor \"{name}\" does not exist"),
    ))
}

/// The result columns of FETCH from cursor `name`, for Describe.
fn cursor_fields(session: &Session, name: &str, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    let Some(names) = session.cursors().schema(name) else {
        return Err(undefined_cursor(name));
    };
    let options = Arc::new(session.settings().format_options());
    arrow_pg::datatypes::arrow_schema_to_pg_fields(&names, format, Some(options))
}

fn transaction_status(session: &Session) -> TransactionStatus {
    match session.transaction() {
        Transaction::Idle => TransactionStatus::Idle,
        Transaction::Open => TransactionStatus::Transaction,
        Transaction::Failed => TransactionStatus::Error,
    }
}

/// Lower-cased dotted name.
fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| part.to_string().trim_matches('"').to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// A SET value as text: strings unquoted, identifiers and numbers as written, lists joined.
fn setting_value(values: &[SqlExpr]) -> Option<String> {
    let parts: Vec<String> = values
        .iter()
        .map(|v| match v {
            SqlExpr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            SqlExpr::Identifier(ident) => ident.value.clone(),
            other => other.to_string(),
        })
        .collect();
    if parts.len() == 1 && parts[0].eq_ignore_ascii_case("default") {
        return None;
    }
    Some(parts.join(", "))
}

/// PostgreSQL's spelling of the multi-word settings SHOW accepts.
fn show_name(words: &[String]) -> String {
    let joined = words.join(" ").to_ascii_lowercase();
    match joined.as_str() {
        "time zone" => "TimeZone".to_string(),
        "transaction isolation level" => "transaction_isolation".to_string(),
        "session authorization" => "session_authorization".to_string(),
        _ => words.join("."),
    }
}

fn refused(info: ErrorInfo) -> Action {
    Action::Refused(info.code, info.message)
}

/// Classifies one parsed statement; DataFusion statements get the PostgreSQL compatibility
/// rewrites (the pg_catalog queries of psql, JDBC, SQLAlchemy ...).
fn classify(shared: &Shared, text: &str, statement: Statement) -> Action {
    if let Statement::Fetch(step) = statement {
        return Action::Fetch(step);
    }
    if let Statement::CopyStream(copy) = &statement {
        return match copy::request(copy) {
            Ok(copy::CopyRequest::Out { query, format }) => {
                match crate::sql::parse_with_text(&query) {
                    Ok(mut parsed) if parsed.len() == 1 => {
                        let (text, statement) = parsed.remove(0);
                        match classify(shared, &text, statement) {
                            Action::Run(query) => Action::CopyOut { query, format },
                            _ => refused(sqlstate::error("42601", "COPY needs a query")),
                        }
                    }
                    Ok(_) => refused(sqlstate::error("42601", "COPY needs one query")),
                    Err(e) => refused(sqlstate::error_info(&e)),
                }
            }
            Ok(copy::CopyRequest::In {
                table,
                columns,
                format,
            }) => Action::CopyIn {
                table,
                columns,
                format,
            },
            Err(e) => refused(e),
        };
    }
    let Statement::DataFusion(df) = statement else {
        return Action::Run(Arc::new(statement));
    };
    let inner = match df {
        DFStatement::Statement(inner) => inner,
        DFStatement::Reset(datafusion::sql::parser::ResetStatement::Variable(name)) => {
            let name = object_name(&name);
            return Action::Reset((!name.eq_ignore_ascii_case("all")).then_some(name));
        }
        other => return Action::Run(Arc::new(Statement::DataFusion(other))),
    };
    match *inner {
        SqlStatement::StartTransaction { .. } => Action::Begin,
        SqlStatement::Commit { .. } => Action::Commit,
        SqlStatement::Rollback {
            savepoint: None, ..
        } => Action::Rollback,
        SqlStatement::Savepoint { name } => Action::Savepoint(name.value.to_lowercase()),
        SqlStatement::ReleaseSavepoint { name } => {
            Action::ReleaseSavepoint(name.value.to_lowercase())
        }
        SqlStatement::Rollback {
            savepoint: Some(name),
            ..
        } => Action::RollbackToSavepoint(name.value.to_lowercase()),
        SqlStatement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => {
            let name = object_name(&variable);
            if name.starts_with("datafusion.") {
                // DataFusion's own options apply to the session's context.
                return Action::Run(Arc::new(Statement::DataFusion(DFStatement::Statement(
                    Box::new(SqlStatement::Set(Set::SingleAssignment {
                        scope: None,
                        hivevar: false,
                        variable,
                        values,
                    })),
                ))));
            }
            Action::Set {
                name,
                value: setting_value(&values),
            }
        }
        SqlStatement::Set(Set::SetTimeZone { value, .. }) => Action::Set {
            name: "TimeZone".into(),
            value: setting_value(std::slice::from_ref(&value)),
        },
        SqlStatement::Set(Set::SetNames { charset_name, .. }) => Action::Set {
            name: "client_encoding".into(),
            value: Some(charset_name.value),
        },
        SqlStatement::Set(Set::SetTransaction { .. }) => Action::Ignore("SET"),
        SqlStatement::Set(Set::SetSessionAuthorization(_))
        | SqlStatement::Set(Set::SetRole { .. }) => {
            Action::Unsupported("SET ROLE and SET SESSION AUTHORIZATION are not supported".into())
        }
        SqlStatement::ShowVariable { variable } => {
            let words: Vec<String> = variable.iter().map(|i| i.value.clone()).collect();
            Action::Show(show_name(&words))
        }
        SqlStatement::Reset(reset) => match reset.reset {
            Reset::ALL => Action::Reset(None),
            Reset::ConfigurationParameter(name) => Action::Reset(Some(object_name(&name))),
        },
        SqlStatement::Discard { .. } => Action::Discard,
        SqlStatement::Deallocate { .. } => Action::Ignore("DEALLOCATE"),
        SqlStatement::Declare { stmts } => declare_action(text, stmts),
        SqlStatement::Close { cursor } => match cursor {
            CloseCursor::All => Action::Close(None),
            CloseCursor::Specific { name } => Action::Close(Some(identifier(&name))),
        },
        mut other => {
            // The compatibility parser also replaces whole client queries that DataFusion
            // cannot run (a few of psql's and pgcli's); use it when it reads the text
            // as this one statement, unless a rewrite had to run before it.
            let rewritten_first = (text.contains("pg_attrdef")
                && rewrite::keep_default_lookups(&mut other))
                | rewrite::check_regclass_names(&mut other);
            let parsed = if rewritten_first {
                None
            } else {
                shared.compat.parse(text).ok().filter(|p| p.len() == 1)
            };
            let mut rewritten = match parsed {
                Some(mut parsed) => parsed.remove(0),
                None => shared.compat.rewrite(other),
            };
            rewrite::for_datafusion(&mut rewritten, text.contains("pg_catalog"));
            Action::Run(Arc::new(Statement::DataFusion(DFStatement::Statement(
                Box::new(rewritten),
            ))))
        }
    }
}

/// `DECLARE name [NO SCROLL] CURSOR [WITH[OUT] HOLD] FOR query`.
fn declare_action(text: &str, mut declares: Vec<Declare>) -> Action {
    let unsupported = |what: &str| Action::Unsupported(format!("{what} is not supported"));
    let (Some(declare), true) = (declares.pop(), declares.is_empty()) else {
        return unsupported("DECLARE of several cursors");
    };
    let (Some(DeclareType::Cursor), [name], Some(query)) = (
        declare.declare_type,
        declare.names.as_slice(),
        declare.for_query,
    ) else {
        return unsupported("DECLARE other than DECLARE name CURSOR FOR query");
    };
    if declare.binary == Some(true) {
        return unsupported("DECLARE BINARY CURSOR");
    }
    let mut query = SqlStatement::Query(query);
    rewrite::for_datafusion(&mut query, text.contains("pg_catalog"));
    Action::Declare {
        name: identifier(name),
        query: Arc::new(Statement::DataFusion(DFStatement::Statement(Box::new(
            query,
        )))),
        hold: declare.hold == Some(true),
        scroll: declare.scroll == Some(true),
    }
}

/// An identifier as PostgreSQL stores it: folded to lower case unless quoted.
fn identifier(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The target type of each placeholder that appears directly under a cast.
fn cast_placeholder_types(plan: &LogicalPlan) -> Vec<(String, DataType)> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                match e {
                    Expr::Cast(cast) => {
                        if let Expr::Placeholder(p) = cast.expr.as_ref() {
                            found.push((p.id.clone(), cast.field.data_type().clone()));
                        }
                    }
                    Expr::TryCast(cast) => {
                        if let Expr::Placeholder(p) = cast.expr.as_ref() {
                            found.push((p.id.clone(), cast.field.data_type().clone()));
                        }
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// Plans `action` in the session when DataFusion can plan it.
async fn plan(
    engine: &Engine,
    session: &Session,
    action: &Action,
) -> Result<Option<Planned>, Error> {
    let (Action::Run(statement)
    | Action::CopyOut {
        query: statement, ..
    }
    | Action::Declare {
        query: statement, ..
    }) = action
    else {
        return Ok(None);
    };
    let Statement::DataFusion(df) = statement.as_ref() else {
        return Ok(None);
    };
    if Engine::runs_from_syntax(df) {
        return Ok(None);
    }
    // The version first: a change while planning then makes the plan out of date.
    let catalog = engine.catalog_version();
    let ctx = session.ctx();
    let plan = engine.statement_to_plan(&ctx, df.clone()).await?;
    let mut types = plan.get_parameter_types()?;
    // `$1::bigint`: DataFusion leaves the placeholder untyped; PostgreSQL types it by
    // the cast, and clients encode the value accordingly.
    for (name, data_type) in cast_placeholder_types(&plan) {
        if let Some(slot @ None) = types.get_mut(&name) {
            *slot = Some(data_type);
        }
    }
    let count = types
        .keys()
        .filter_map(|k| k.trim_start_matches('$').parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    let parameters = (1..=count)
        .map(|i| types.get(&format!("${i}")).cloned().flatten())
        .collect();
    let schema = Arc::new(postgres_names(&plan));
    Ok(Some(Planned {
        plan,
        parameters,
        schema,
        physical: Arc::default(),
        catalog,
        context: ctx.session_id(),
    }))
}

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
        let action = classify(&self.shared, text, statement);
        if writes_in_block(session, &action) {
            open_block(&self.shared.engine, session).await?;
        }
        let planned = match plan(&self.shared.engine, session, &action).await {
            Ok(planned) => planned,
            Err(e) => return Err(engine_error(e)),
        };
        let format = Format::UnifiedText;
        let response = self
            .respond(client, session, &action, planned.as_ref(), None, &format)
            .await?;
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
                pgwire::api::copy::send_copy_out_response(client, copy).await?
            }
            Response::CopyIn(copy) => {
                pgwire::api::copy::send_copy_in_response(client, copy).await?;
                // The client now sends CopyData; the copy handler answers at CopyDone.
                client.set_state(PgWireConnectionState::CopyInProgress(false));
            }
            Response::CopyBoth(_) => {
                return Err(user_error(sqlstate::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "COPY BOTH is not supported",
                )));
            }
        }
        Ok(())
    }

    /// The response to one statement, shared by both protocols.
    async fn respond<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        action: &Action,
        planned: Option<&Planned>,
        parameters: Option<datafusion::common::ParamValues>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = session.transaction();
        if state == Transaction::Failed
            && !matches!(
                action,
                Action::Commit | Action::Rollback | Action::RollbackToSavepoint(_)
            )
        {
            return Err(user_error(sqlstate::error(
                sqlstate::IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            )));
        }
        match action {
            Action::Begin => {
                if state != Transaction::Idle {
                    self.notice(
                        client,
                        "WARNING",
                        sqlstate::ACTIVE_SQL_TRANSACTION,
                        "there is already a transaction in progress",
                    )
                    .await?;
                }
                session.set_transaction(Transaction::Open);
                Ok(Response::TransactionStart(Tag::new("BEGIN")))
            }
            Action::Commit | Action::Rollback => {
                if state == Transaction::Idle {
                    self.notice(
                        client,
                        "WARNING",
                        sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                        "there is no transaction in progress",
                    )
                    .await?;
                }
                session.set_transaction(Transaction::Idle);
                let commit = matches!(action, Action::Commit) && state != Transaction::Failed;
                if let Some(block) = session.take_block() {
                    let engine = &self.shared.engine;
                    if commit {
                        // A failed COMMIT has rolled the block back, as in PostgreSQL.
                        engine.commit(&block).await.map_err(engine_error)?;
                    } else {
                        engine.rollback(&block).await;
                    }
                }
                session.cursors().end_block(commit);
                let tag = if commit { "COMMIT" } else { "ROLLBACK" };
                Ok(Response::TransactionEnd(Tag::new(tag)))
            }
            Action::Savepoint(name)
            | Action::ReleaseSavepoint(name)
            | Action::RollbackToSavepoint(name) => {
                if state == Transaction::Idle {
                    return Err(user_error(sqlstate::error(
                        sqlstate::NO_ACTIVE_SQL_TRANSACTION,
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
                                "3B001",
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
                                sqlstate::FEATURE_NOT_SUPPORTED,
                                format!(
                                    "ROLLBACK TO SAVEPOINT cannot undo the writes made since \
                                     savepoint \"{name}\" yet; ROLLBACK ends the whole \
                                     transaction block"
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
            Action::Set { name, value } => {
                let result = {
                    let mut settings = session.settings();
                    match value {
                        Some(value) => settings.set(name, value),
                        None => settings.reset(name),
                    }
                };
                let reported =
                    result.map_err(|e| user_error(sqlstate::error(e.code, e.message)))?;
                self.report(client, reported.into_iter()).await?;
                Ok(Response::Execution(Tag::new("SET")))
            }
            Action::Reset(name) => {
                let reported = {
                    let mut settings = session.settings();
                    match name {
                        Some(name) => settings
                            .reset(name)
                            .map(|r| r.into_iter().collect::<Vec<_>>())
                            .map_err(|e| user_error(sqlstate::error(e.code, e.message)))?,
                        None => settings.reset_all(),
                    }
                };
                self.report(client, reported.into_iter()).await?;
                Ok(Response::Execution(Tag::new("RESET")))
            }
            Action::Discard => {
                session.cursors().close_all();
                let reported = session.settings().reset_all();
                self.report(client, reported.into_iter()).await?;
                Ok(Response::Execution(Tag::new("DISCARD ALL")))
            }
            Action::Show(name) => {
                let rows = if name.eq_ignore_ascii_case("all") {
                    session.settings().all()
                } else {
                    let value = session
                        .settings()
                        .get(name)
                        .map_err(|e| user_error(sqlstate::error(e.code, e.message)))?;
                    vec![(name.clone(), value, String::new())]
                };
                Ok(Response::Query(show_response(name, rows, format)))
            }
            Action::Ignore(tag) => Ok(Response::Execution(Tag::new(tag))),
            Action::Refused(code, message) => {
                Err(user_error(sqlstate::error(code, message.clone())))
            }
            Action::CopyOut { format: copy, .. } => {
                let Some(planned) = planned else {
                    return Err(user_error(sqlstate::error(
                        "42601",
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
                if writes_in_block(session, action) {
                    open_block(&self.shared.engine, session).await?;
                }
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
            Action::Declare {
                name,
                query,
                hold,
                scroll,
            } => {
                if !hold && state != Transaction::Open {
                    return Err(user_error(sqlstate::error(
                        sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                        "DECLARE CURSOR can only be used in transaction blocks",
                    )));
                }
                if session.cursors().contains(name) {
                    return Err(user_error(sqlstate::error(
                        "42P03",
                        format!("cursor \"{name}\" already exists"),
                    )));
                }
                let planned = match (planned, parameters) {
                    (Some(planned), Some(values)) if !planned.parameters.is_empty() => {
                        Some(Planned {
                            plan: bind(planned, &values)?,
                            ..planned.clone()
                        })
                    }
                    (Some(planned), _) => Some(planned.clone()),
                    (None, Some(values)) if !values_empty(&values) => {
                        return Err(user_error(sqlstate::error(
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            "this cursor's query does not take parameters",
                        )));
                    }
                    _ => None,
                };
                let cursor = self
                    .declare(
                        session,
                        query.clone(),
                        planned,
                        *hold,
                        *scroll,
                        state == Transaction::Open,
                    )
                    .await?;
                session.cursors().insert(name.clone(), cursor);
                Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
            }
            Action::Fetch(step) if !step.fetch => {
                let name = &step.cursor;
                let Some(mut cursor) = session.cursors().take(name) else {
                    return Err(undefined_cursor(name));
                };
                let moved = cursor.advance(step.direction).await;
                session.cursors().insert(name.clone(), cursor);
                let moved = moved.map_err(engine_error)?;
                Ok(Response::Execution(Tag::new("MOVE").with_rows(moved)))
            }
            Action::Fetch(step) => {
                let name = &step.cursor;
                let Some(mut cursor) = session.cursors().take(name) else {
                    return Err(undefined_cursor(name));
                };
                let fetched = cursor.fetch(step.direction).await;
                let names = cursor.names.clone();
                session.cursors().insert(name.clone(), cursor);
                let batch = fetched.map_err(engine_error)?;
                let options = Arc::new(session.settings().format_options());
                let fields = Arc::new(arrow_pg::datatypes::arrow_schema_to_pg_fields(
                    &names,
                    format,
                    Some(options),
                )?);
                let rows = encode::data_rows(&fields, &batch)?;
                let mut response =
                    QueryResponse::new(fields, futures::stream::iter(rows.into_iter().map(Ok)));
                response.set_command_tag("FETCH");
                Ok(Response::Query(response))
            }
            Action::Close(name) => {
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
            Action::Unsupported(message) => Err(user_error(sqlstate::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                message.clone(),
            ))),
            Action::Run(statement) => {
                if state == Transaction::Open && is_model_statement(statement) {
                    // Model versions are not part of the catalog a block commits.
                    let mut info = sqlstate::error(
                        sqlstate::ACTIVE_SQL_TRANSACTION,
                        "CREATE MODEL and DROP MODEL cannot run inside a transaction block",
                    );
                    info.hint = Some(
                        "run it outside BEGIN ... COMMIT (autocommit mode in your driver)".into(),
                    );
                    return Err(user_error(info));
                }
                // Also here, not only before planning: a statement prepared before BEGIN
                // may run inside the block.
                let writes_in_block = writes_in_block(session, action);
                if writes_in_block {
                    open_block(&self.shared.engine, session).await?;
                }
                // A plan made before a change to the catalog, or outside the transaction
                // block that now runs it, is made again (PostgreSQL re-plans such
                // statements too).
                let replanned;
                let planned = match planned {
                    Some(planned) if !planned.current(&self.shared.engine, session) => {
                        replanned = plan(&self.shared.engine, session, action)
                            .await
                            .map_err(engine_error)?;
                        replanned.as_ref()
                    }
                    planned => planned,
                };
                let work = match (planned, parameters) {
                    (Some(planned), parameters) => {
                        let plan = match parameters {
                            Some(values) if !planned.parameters.is_empty() => {
                                bind(planned, &values)?
                            }
                            _ if returns_rows(&planned.plan) => {
                                return self
                                    .execute(
                                        client,
                                        session,
                                        Work::Prepared {
                                            plan: planned.plan.clone(),
                                            names: planned.schema.clone(),
                                            physical: planned.physical.clone(),
                                            key: session.plan_key(),
                                        },
                                        format,
                                        None,
                                    )
                                    .await;
                            }
                            _ => planned.plan.clone(),
                        };
                        Work::Plan(plan, planned.schema.clone())
                    }
                    (None, Some(values)) if !values_empty(&values) => {
                        return Err(user_error(sqlstate::error(
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            "this statement does not take parameters",
                        )));
                    }
                    (None, _) => Work::Statement(with_session_device(session, statement)),
                };
                let queries = matches!(&work, Work::Plan(plan, _) if returns_rows(plan));
                let response = self.execute(client, session, work, format, None).await;
                if writes_in_block && response.is_ok() {
                    session.note_write();
                }
                if !queries {
                    session.new_generation();
                }
                response
            }
        }
    }

    /// Starts a cursor's query on the CPU runtime; returns once it has its result columns.
    async fn declare(
        &self,
        session: &Arc<Session>,
        query: Arc<Statement>,
        planned: Option<Planned>,
        hold: bool,
        scroll: bool,
        in_block: bool,
    ) -> PgWireResult<Cursor> {
        // Planned first (at Parse, or here), for PostgreSQL's names of the result columns.
        let planned = match planned {
            Some(planned) => Some(planned),
            None => plan(&self.shared.engine, session, &Action::Run(query.clone()))
                .await
                .map_err(engine_error)?,
        };
        let (first_tx, first_rx) = oneshot::channel::<Result<SchemaRef, Error>>();
        let (batch_tx, batch_rx) = mpsc::channel(2);
        let engine = self.shared.engine.clone();
        let ctx = session.ctx();
        let task = self.shared.cpu.spawn(async move {
            let output = match planned {
                Some(planned) => engine
                    .execute_plan_in(&ctx, planned.plan)
                    .await
                    .map(|output| (output, Some(planned.schema))),
                None => engine
                    .execute_in(&ctx, Arc::unwrap_or_clone(query), None)
                    .await
                    .map(|output| (output, None)),
            };
            match output {
                Ok((Output::Rows(mut stream), names)) => {
                    let names = match names {
                        Some(names) if names.fields().len() == stream.schema().fields().len() => {
                            names
                        }
                        _ => stream.schema(),
                    };
                    if first_tx.send(Ok(names)).is_err() {
                        return;
                    }
                    while let Some(batch) = stream.next().await {
                        let failed = batch.is_err();
                        if batch_tx.send(batch.map_err(Error::from)).await.is_err() || failed {
                            return;
                        }
                    }
                }
                Ok((Output::Command { .. }, _)) => {
                    let _ = first_tx.send(Err(Error::invalid("DECLARE CURSOR needs a query")));
                }
                Err(e) => {
                    let _ = first_tx.send(Err(e));
                }
            }
        });
        let names = first_rx
            .await
            .map_err(|_| user_error(sqlstate::error("XX000", "the cursor's query stopped")))?
            .map_err(engine_error)?;
        Ok(Cursor::new(
            names,
            batch_rx,
            task.abort_handle(),
            hold,
            scroll,
            in_block,
        ))
    }

    /// Runs `work` on the CPU runtime and waits until it has a first answer: a command's
    /// tag, or a result's schema (its rows then stream through the returned response).
    async fn execute<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        work: Work,
        format: &Format,
        copy: Option<&copy::CopyFormat>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (first_tx, first_rx) = oneshot::channel::<Result<First, Error>>();
        let (batch_tx, batch_rx) = mpsc::channel::<Batch>(BATCHES_AHEAD);
        // Only statements the engine runs from their syntax (CREATE MODEL) report progress;
        // a channel for the others would cost a wake-up when it closes.
        let (progress_tx, mut progress_rx) = match work {
            Work::Statement(_) => {
                let (tx, rx) = mpsc::unbounded_channel::<Progress>();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        let engine = self.shared.engine.clone();
        let ctx = session.ctx();
        let task = self.shared.cpu.spawn(async move {
            let output = match work {
                Work::Plan(plan, names) => engine
                    .execute_plan_in(&ctx, plan)
                    .await
                    .map(|output| (output, Some(names))),
                Work::Prepared {
                    plan,
                    names,
                    physical,
                    key,
                } => run_prepared(&engine, &ctx, plan, &physical, key)
                    .await
                    .map(|output| (output, Some(names))),
                Work::Statement(statement) => {
                    let statement = Arc::unwrap_or_clone(statement);
                    engine
                        .execute_in(&ctx, statement, progress_tx.as_ref())
                        .await
                        .map(|output| (output, None))
                }
            };
            drop(progress_tx);
            match output {
                Err(e) => {
                    let _ = first_tx.send(Err(e));
                }
                Ok((Output::Command { tag, rows }, _)) => {
                    let _ = first_tx.send(Ok(First::Command { tag, rows }));
                }
                Ok((Output::Rows(mut stream), names)) => {
                    // The planned names, unless the engine answered with other columns.
                    let schema = match names {
                        Some(names) if names.fields().len() == stream.schema().fields().len() => {
                            names
                        }
                        _ => stream.schema(),
                    };
                    // The answer goes out once the first batches are in the channel, or as
                    // soon as the query has to wait: a small result then reaches the
                    // connection in one wake-up, a large one starts streaming at once.
                    let mut first_tx = Some(first_tx);
                    let mut queued = 0;
                    loop {
                        let item = match stream.next().now_or_never() {
                            Some(item) if queued < BATCHES_AHEAD => item,
                            ready => {
                                if let Some(tx) = first_tx.take()
                                    && tx.send(Ok(First::Rows(schema.clone()))).is_err()
                                {
                                    return;
                                }
                                match ready {
                                    Some(item) => item,
                                    None => stream.next().await,
                                }
                            }
                        };
                        let (message, last) = match item {
                            Some(Ok(batch)) => (Batch::Next(Ok(batch)), false),
                            Some(Err(e)) => (Batch::Next(Err(e.into())), true),
                            None => (Batch::Done, true),
                        };
                        if batch_tx.send(message).await.is_err() {
                            return;
                        }
                        queued += 1;
                        if last {
                            break;
                        }
                    }
                    if let Some(tx) = first_tx.take() {
                        let _ = tx.send(Ok(First::Rows(schema)));
                    }
                }
            }
        });
        let id = session.start(task.abort_handle());
        let guard = Running::new(self.shared.clone(), session.clone(), id);
        if let Some(timeout) = session.settings().statement_timeout() {
            let session = Arc::downgrade(session);
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(session) = session.upgrade() {
                    session.stop(Some(id), StopReason::Timeout);
                }
            });
        }

        // Training sends progress while it runs: forward it as NOTICE messages.
        let mut first_rx = first_rx;
        let first = match progress_rx.as_mut() {
            None => first_rx.await,
            Some(progress_rx) => loop {
                tokio::select! {
                    first = &mut first_rx => break first,
                    Some(progress) = progress_rx.recv() => {
                        self.notice(client, "NOTICE", "00000", &progress.to_string()).await?;
                        client.flush().await?;
                    }
                }
            },
        };
        match first {
            Ok(Ok(First::Command { tag, rows })) => {
                drop(guard);
                let tag = match (tag, rows) {
                    ("INSERT", Some(n)) => Tag::new("INSERT").with_oid(0).with_rows(n as usize),
                    (tag, Some(n)) => Tag::new(tag).with_rows(n as usize),
                    (tag, None) => Tag::new(tag),
                };
                Ok(Response::Execution(tag))
            }
            Ok(Ok(First::Rows(schema))) => {
                let options = Arc::new(session.settings().format_options());
                if let Some(copy) = copy {
                    let column_format = if copy.kind == copy::Kind::Binary {
                        Format::UnifiedBinary
                    } else {
                        Format::UnifiedText
                    };
                    let fields = Arc::new(arrow_pg::datatypes::arrow_schema_to_pg_fields(
                        &schema,
                        &column_format,
                        Some(options),
                    )?);
                    let header: Vec<CopyData> = copy::header(&fields, copy).into_iter().collect();
                    let code = copy.code();
                    let copy = copy.clone();
                    let columns = fields.len();
                    let data = encoded_stream(batch_rx, guard, header, move |batch| {
                        match copy::encode_batch(&fields, &copy, &batch) {
                            Ok(rows) => Box::new(rows.into_iter().map(Ok)),
                            Err(e) => Box::new(std::iter::once(Err(e))),
                        }
                    });
                    return Ok(Response::CopyOut(CopyResponse::new(code, columns, data)));
                }
                let fields = Arc::new(arrow_pg::datatypes::arrow_schema_to_pg_fields(
                    &schema,
                    format,
                    Some(options),
                )?);
                let encoding = fields.clone();
                let rows =
                    encoded_stream(
                        batch_rx,
                        guard,
                        Vec::new(),
                        move |batch| match encode::data_rows(&encoding, &batch) {
                            Ok(rows) => Box::new(rows.into_iter().map(Ok)),
                            Err(e) => Box::new(std::iter::once(Err(e))),
                        },
                    );
                Ok(Response::Query(QueryResponse::new(fields, rows)))
            }
            Ok(Err(e)) => Err(engine_error(e)),
            // The task was aborted (cancel, timeout) or panicked before answering.
            Err(_) => Err(guard.stopped_error()),
        }
    }

    async fn notice<C>(
        &self,
        client: &mut C,
        severity: &str,
        code: &str,
        message: &str,
    ) -> PgWireResult<()>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let info = ErrorInfo::new(severity.to_string(), code.to_string(), message.to_string());
        client
            .feed(PgWireBackendMessage::NoticeResponse(info.into()))
            .await?;
        Ok(())
    }

    /// ParameterStatus for settings the client tracks (DateStyle, TimeZone, ...).
    async fn report<C>(
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

/// `SET tenure.device = 'cuda:0'` (or 'cpu') applies to the session's trainings that do not
/// name a device in their OPTIONS; unset, the engine trains on the server's device.
fn with_session_device(session: &Session, statement: &Arc<Statement>) -> Arc<Statement> {
    let Statement::CreateModel(create) = statement.as_ref() else {
        return statement.clone();
    };
    let Some(device) = session
        .settings()
        .changed("tenure.device")
        .map(str::to_string)
    else {
        return statement.clone();
    };
    let mut create = create.clone();
    create.default_device(&device);
    Arc::new(Statement::CreateModel(create))
}

/// The planned statement with the client's parameter values in place of `$n`.
fn bind(planned: &Planned, values: &datafusion::common::ParamValues) -> PgWireResult<LogicalPlan> {
    planned
        .plan
        .clone()
        .replace_params_with_values(values)
        .map_err(|e| engine_error(e.into()))
}

fn values_empty(values: &datafusion::common::ParamValues) -> bool {
    match values {
        datafusion::common::ParamValues::List(list) => list.is_empty(),
        datafusion::common::ParamValues::Map(map) => map.is_empty(),
    }
}

/// Whether a statement writes (data, catalog or models), which tenure cannot yet hold back
/// until COMMIT.
/// Whether `action` writes inside the session's open transaction block: then it is planned
/// and run in the block's session (see [`open_block`]). CREATE/DROP MODEL are refused there
/// instead.
fn writes_in_block(session: &Session, action: &Action) -> bool {
    if session.transaction() != Transaction::Open {
        return false;
    }
    match action {
        Action::CopyIn { .. } => true,
        Action::Run(statement) => changes_state(statement) && !is_model_statement(statement),
        _ => false,
    }
}

/// Starts the writing part of the session's open transaction block (once): waits for the
/// catalog lock, which another writing block may hold, at most statement_timeout. Called
/// before a write in the block is planned, so it is planned against the block's catalog.
async fn open_block(engine: &Engine, session: &Session) -> PgWireResult<()> {
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
                    sqlstate::QUERY_CANCELED,
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

fn is_model_statement(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::CreateModel(_) | Statement::DropModel(_)
    )
}

fn changes_state(statement: &Statement) -> bool {
    match statement {
        Statement::CreateModel(_) | Statement::DropModel(_) => true,
        Statement::CopyStream(copy) => {
            !matches!(copy.as_ref(), SqlStatement::Copy { to: true, .. })
        }
        Statement::Fetch(_) => false,
        Statement::DataFusion(DFStatement::Statement(inner)) => !matches!(
            inner.as_ref(),
            SqlStatement::Query(_)
                | SqlStatement::Explain { .. }
                | SqlStatement::ExplainTable { .. }
                | SqlStatement::ShowTables { .. }
                | SqlStatement::ShowColumns { .. }
                | SqlStatement::ShowVariable { .. }
                | SqlStatement::ShowFunctions { .. }
                | SqlStatement::Set(_)
        ),
        Statement::DataFusion(DFStatement::Explain(_)) => false,
        Statement::DataFusion(DFStatement::Reset(_)) => false,
        Statement::DataFusion(_) => true,
    }
}

/// Batches a statement's task may compute ahead of the connection sending them.
const BATCHES_AHEAD: usize = 2;

/// Runs a prepared query without parameters from its kept physical plan when that is still
/// valid, else plans it (keeping the plan when it can be run again).
async fn run_prepared(
    engine: &Engine,
    ctx: &SessionContext,
    plan: LogicalPlan,
    physical: &PlanCache,
    key: PlanKey,
) -> Result<Output, Error> {
    if let Some((kept, task)) = physical.get(&key) {
        return engine.execute_physical(kept, task);
    }
    // The snapshots before planning: a commit in between makes the kept plan miss next
    // time rather than read stale data.
    let snapshots = plan_cache::snapshots(&plan);
    let (made, task) = engine.physical_plan_in(ctx, &plan).await?;
    if let Some(snapshots) = snapshots
        && plan_cache::rerunnable(&made)
    {
        physical.put(key, made.clone(), task.clone(), snapshots);
    }
    engine.execute_physical(made, task)
}

/// What runs on the CPU runtime.
enum Work {
    /// A plan made in the session (parameters bound), with PostgreSQL's column names.
    Plan(LogicalPlan, SchemaRef),
    /// A prepared query without parameters: its kept physical plan when still valid under
    /// `key`, else the plan made from `plan` (and kept when it can be).
    Prepared {
        plan: LogicalPlan,
        names: SchemaRef,
        physical: Arc<PlanCache>,
        key: PlanKey,
    },
    /// A statement the engine runs from its syntax.
    Statement(Arc<Statement>),
}

enum First {
    Command {
        tag: &'static str,
        rows: Option<u64>,
    },
    Rows(SchemaRef),
}

enum Batch {
    Next(Result<RecordBatch, Error>),
    Done,
}

/// One running statement, until its rows are sent or dropped: keeps the server's count of
/// running statements (shutdown waits for it) and clears the session's cancel slot.
struct Running {
    shared: Arc<Shared>,
    session: Arc<Session>,
    id: u64,
}

impl Running {
    fn new(shared: Arc<Shared>, session: Arc<Session>, id: u64) -> Running {
        shared.running.fetch_add(1, Ordering::SeqCst);
        Running {
            shared,
            session,
            id,
        }
    }

    /// The error for a statement that ended without finishing.
    fn stopped_error(&self) -> PgWireError {
        match self.session.stop_reason(self.id) {
            Some(reason) => user_error(sqlstate::error(
                if reason == StopReason::Shutdown {
                    sqlstate::ADMIN_SHUTDOWN
                } else {
                    sqlstate::QUERY_CANCELED
                },
                reason.message(),
            )),
            None => user_error(sqlstate::error("XX000", "the statement ended unexpectedly")),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.session.finish(self.id);
        if self.shared.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.idle.notify_waiters();
        }
    }
}

/// One batch's messages.
type Encoded<T> = Box<dyn Iterator<Item = PgWireResult<T>> + Send>;

/// The result's messages as the client receives them (DataRow or CopyData), encoded batch
/// by batch with `encode`.
fn encoded_stream<T: Send + 'static>(
    batches: mpsc::Receiver<Batch>,
    running: Running,
    first: Vec<T>,
    encode: impl FnMut(RecordBatch) -> Encoded<T> + Send + 'static,
) -> impl Stream<Item = PgWireResult<T>> + Send {
    struct State<T, E> {
        batches: mpsc::Receiver<Batch>,
        pending: Option<Box<dyn Iterator<Item = PgWireResult<T>> + Send>>,
        running: Option<Running>,
        encode: E,
    }
    let state = State {
        batches,
        pending: Some(Box::new(first.into_iter().map(Ok))),
        running: Some(running),
        encode,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(pending) = state.pending.as_mut() {
                if let Some(item) = pending.next() {
                    return Some((item, state));
                }
                state.pending = None;
            }
            let running = state.running.as_ref()?;
            match state.batches.recv().await {
                Some(Batch::Next(Ok(batch))) => state.pending = Some((state.encode)(batch)),
                Some(Batch::Next(Err(e))) => {
                    state.running = None;
                    return Some((Err(engine_error(e)), state));
                }
                // Dropping the state ends the statement (its `Running` guard).
                Some(Batch::Done) => return None,
                None => {
                    let error = running.stopped_error();
                    state.running = None;
                    return Some((Err(error), state));
                }
            }
        }
    })
}

/// SHOW's columns: one named after the setting, or name, setting, description for ALL.
fn show_fields(name: &str, format: &Format) -> Vec<FieldInfo> {
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

/// The plan's output schema with the names PostgreSQL gives unaliased result columns: a
/// column's own name, a function's name, `?column?` for other expressions.
fn postgres_names(plan: &LogicalPlan) -> Schema {
    let schema = plan.schema().as_arrow().clone();
    let Some(exprs) = top_projection(plan) else {
        return schema;
    };
    if exprs.len() != schema.fields().len() {
        return schema;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(exprs)
        .map(|(field, expr)| field.as_ref().clone().with_name(postgres_name(expr)))
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn top_projection(plan: &LogicalPlan) -> Option<&[Expr]> {
    match plan {
        LogicalPlan::Projection(p) => Some(&p.expr),
        LogicalPlan::Sort(s) => top_projection(&s.input),
        LogicalPlan::Limit(l) => top_projection(&l.input),
        _ => None,
    }
}

fn postgres_name(expr: &Expr) -> String {
    match expr {
        // DataFusion aliases some aggregates with their display text ("count(*)").
        Expr::Alias(alias) => function_name(&alias.name).unwrap_or_else(|| alias.name.clone()),
        Expr::Column(column) => function_name(&column.name).unwrap_or_else(|| column.name.clone()),
        Expr::ScalarFunction(f) => f.name().to_string(),
        Expr::AggregateFunction(f) => f.func.name().to_string(),
        Expr::WindowFunction(f) => f.fun.name().to_string(),
        Expr::Cast(cast) => cast_name(&cast.expr, cast.field.data_type()),
        Expr::TryCast(cast) => cast_name(&cast.expr, cast.field.data_type()),
        _ => "?column?".to_string(),
    }
}

/// `x::int` is named x; `'1'::int` is named after the type, as PostgreSQL does.
fn cast_name(inner: &Expr, to: &DataType) -> String {
    match postgres_name(inner).as_str() {
        "?column?" => arrow_pg::datatypes::into_pg_type(to)
            .map(|t| t.name().to_string())
            .unwrap_or_else(|_| "?column?".to_string()),
        name => name.to_string(),
    }
}

/// "count(*)" -> "count", for the columns an aggregate feeds to the final projection.
fn function_name(name: &str) -> Option<String> {
    let open = name.find('(')?;
    let prefix = &name[..open];
    (name.ends_with(')')
        && !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then(|| prefix.to_string())
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
            "XX000",
            "internal error: simple queries are answered by on_query",
        )))
    }
}

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
                "42601",
                "cannot insert multiple commands into a prepared statement",
            )));
        }
        let Some((text, statement)) = statements.pop() else {
            return Ok(None);
        };
        let action = classify(&self.shared, &text, statement);
        if writes_in_block(&session, &action) {
            open_block(&self.shared.engine, &session).await?;
        }
        let planned = plan(&self.shared.engine, &session, &action)
            .await
            .map_err(engine_error)?;
        Ok(Some(Prepared {
            text,
            action,
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
            .map(|t| match t {
                Some(t) => arrow_pg::datatypes::into_pg_type(t),
                // A parameter DataFusion could not type: the client sends text.
                None => Ok(Type::TEXT),
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
                arrow_pg::datatypes::arrow_schema_to_pg_fields(&planned.schema, format, None)
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// Whether a plan answers with rows (queries, EXPLAIN) rather than a command tag.
fn returns_rows(plan: &LogicalPlan) -> bool {
    !matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Copy(_)
    )
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
                Some(arrow_pg::datatypes::df::deserialize_parameters(
                    portal, &types,
                )?)
            }
            None if portal.parameter_len() > 0 => {
                return Err(user_error(sqlstate::error(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!(
                        "bind message supplies {} parameters, but this statement takes none",
                        portal.parameter_len()
                    ),
                )));
            }
            None => None,
        };
        tracing::debug!(statement = %prepared.text, "execute");
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
        if result.is_err() {
            session.fail_transaction();
        }
        result
    }
}
