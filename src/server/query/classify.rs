//! What a statement asks of the server: one [`Action`] per statement, chosen by its
//! [`Route`]. Session commands are read here into their parts; statements for the engine get
//! the PostgreSQL compatibility rewrites (the pg_catalog queries of psql, JDBC, SQLAlchemy
//! ...).

use std::sync::Arc;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    CloseCursor, Declare, DeclareType, Expr as SqlExpr, Ident, ObjectName, Reset, Set,
    Statement as SqlStatement, Value,
};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use pgwire::error::ErrorInfo;

use crate::pg::sqlstate::SqlState;
use crate::pg::{names, rewrite};
use crate::server::copy;
use crate::server::sqlstate;
use crate::sql::fetch::CursorStep;
use crate::sql::{Route, Statement};

/// What a statement asks of the server.
#[derive(Debug, Clone)]
pub(super) enum Action {
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
    Refused(SqlState, String),
}

/// Classifies one parsed statement by its route.
pub(super) fn classify(
    compat: &PostgresCompatibilityParser,
    text: &str,
    statement: Statement,
) -> Action {
    match Route::of(&statement) {
        Route::CopyStream => copy_action(compat, statement),
        Route::Transaction | Route::Session => session_action(compat, text, statement),
        Route::Model | Route::Maintenance | Route::Access => Action::Run(Arc::new(statement)),
        Route::Syntax | Route::Plan => engine_action(compat, text, statement),
    }
}

/// `COPY ... TO STDOUT` (its query classified in turn) or `COPY ... FROM STDIN`.
fn copy_action(compat: &PostgresCompatibilityParser, statement: Statement) -> Action {
    let Statement::CopyStream(copy) = &statement else {
        return engine_action(compat, "", statement);
    };
    match copy::request(copy) {
        Ok(copy::CopyRequest::Out { query, format }) => match crate::sql::parse_with_text(&query) {
            Ok(mut parsed) if parsed.len() == 1 => {
                let (text, statement) = parsed.remove(0);
                match classify(compat, &text, statement) {
                    Action::Run(query) => Action::CopyOut { query, format },
                    _ => refused(sqlstate::error(SqlState::SyntaxError, "COPY needs a query")),
                }
            }
            Ok(_) => refused(sqlstate::error(
                SqlState::SyntaxError,
                "COPY needs one query",
            )),
            Err(e) => refused(sqlstate::error_info(&e)),
        },
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
    }
}

/// Transaction control, settings and cursors. `SET datafusion.*` goes to the session's
/// DataFusion context; forms this server does not answer itself go to the engine.
fn session_action(
    compat: &PostgresCompatibilityParser,
    text: &str,
    statement: Statement,
) -> Action {
    let inner = match statement {
        Statement::Fetch(step) => return Action::Fetch(step),
        Statement::DataFusion(DFStatement::Reset(
            datafusion::sql::parser::ResetStatement::Variable(name),
        )) => {
            let name = object_name(&name);
            return Action::Reset((!name.eq_ignore_ascii_case("all")).then_some(name));
        }
        Statement::DataFusion(DFStatement::Statement(inner)) => inner,
        other => return engine_action(compat, text, other),
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
        SqlStatement::Set(Set::SetSessionAuthorization(_) | Set::SetRole { .. }) => {
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
        other => engine_action(
            compat,
            text,
            Statement::DataFusion(DFStatement::Statement(Box::new(other))),
        ),
    }
}

/// A statement for the engine, with the compatibility rewrites applied to SQL statements.
fn engine_action(compat: &PostgresCompatibilityParser, text: &str, statement: Statement) -> Action {
    let Statement::DataFusion(DFStatement::Statement(inner)) = statement else {
        return Action::Run(Arc::new(statement));
    };
    let mut other = *inner;
    // Result columns are named from what the client wrote, before any rewrite changes it.
    names::name_result_columns(&mut other);
    // The compatibility parser also replaces whole client queries that DataFusion cannot
    // run (a few of psql's and pgcli's); use it when it reads the text as this one
    // statement, unless a rewrite had to run before it.
    let rewritten_first = (text.contains("pg_attrdef")
        && rewrite::keep_default_lookups(&mut other))
        | rewrite::check_regclass_names(&mut other);
    // psql's `\d` policy listing is one of those it replaces (with no rows); tenure's
    // pg_policy answers it (see pg/rewrite/definitions.rs, role_name_arrays).
    let answered_here = text.contains("pg_policy");
    let parsed = if rewritten_first || answered_here {
        None
    } else {
        compat.parse(text).ok().filter(|p| p.len() == 1)
    };
    let mut rewritten = match parsed {
        Some(mut parsed) => {
            let mut whole = parsed.remove(0);
            names::keep_result_names(&other, &mut whole);
            names::name_result_columns(&mut whole);
            whole
        }
        None => compat.rewrite(other),
    };
    rewrite::for_datafusion(&mut rewritten, text.contains("pg_catalog"));
    Action::Run(Arc::new(Statement::DataFusion(DFStatement::Statement(
        Box::new(rewritten),
    ))))
}

fn refused(info: ErrorInfo) -> Action {
    let state = SqlState::from_code(&info.code).unwrap_or(SqlState::InternalError);
    Action::Refused(state, info.message)
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
    names::name_result_columns(&mut query);
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

/// A dotted name as written, without quotes.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn action(sql: &str) -> Action {
        let mut parsed = crate::sql::parse_with_text(sql).expect("parses");
        assert_eq!(parsed.len(), 1, "{sql}");
        let (text, statement) = parsed.remove(0);
        classify(&PostgresCompatibilityParser::new(), &text, statement)
    }

    #[test]
    fn transaction_control() {
        assert!(matches!(action("BEGIN"), Action::Begin));
        assert!(matches!(action("START TRANSACTION"), Action::Begin));
        assert!(matches!(action("COMMIT"), Action::Commit));
        assert!(matches!(action("ROLLBACK"), Action::Rollback));
        assert!(matches!(action("SAVEPOINT Sp1"), Action::Savepoint(n) if n == "sp1"));
        assert!(
            matches!(action("RELEASE SAVEPOINT sp1"), Action::ReleaseSavepoint(n) if n == "sp1")
        );
        assert!(
            matches!(action("ROLLBACK TO SAVEPOINT sp1"), Action::RollbackToSavepoint(n) if n == "sp1")
        );
    }

    #[test]
    fn settings_are_read_into_name_and_value() {
        let set = |sql| match action(sql) {
            Action::Set { name, value } => (name, value),
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(
            set("SET search_path = 'public'"),
            ("search_path".into(), Some("public".into()))
        );
        assert_eq!(
            set("SET search_path TO a, b"),
            ("search_path".into(), Some("a, b".into()))
        );
        assert_eq!(
            set("SET extra_float_digits = 3"),
            ("extra_float_digits".into(), Some("3".into()))
        );
        assert_eq!(set("SET DateStyle TO DEFAULT"), ("DateStyle".into(), None));
        assert_eq!(
            set("SET TIME ZONE 'UTC'"),
            ("TimeZone".into(), Some("UTC".into()))
        );
        assert_eq!(
            set("SET NAMES 'UTF8'"),
            ("client_encoding".into(), Some("UTF8".into()))
        );
        assert!(matches!(
            action("SET datafusion.execution.batch_size = 100"),
            Action::Run(_)
        ));
        assert!(matches!(action("SET ROLE admin"), Action::Unsupported(_)));
        assert!(matches!(action("SHOW TIME ZONE"), Action::Show(n) if n == "TimeZone"));
        assert!(matches!(action("SHOW ALL"), Action::Show(n) if n.eq_ignore_ascii_case("all")));
        assert!(matches!(action("RESET ALL"), Action::Reset(None)));
        assert!(
            matches!(action("RESET statement_timeout"), Action::Reset(Some(n)) if n == "statement_timeout")
        );
        assert!(matches!(action("DISCARD ALL"), Action::Discard));
    }

    #[test]
    fn cursors() {
        match action("DECLARE \"Cur\" SCROLL CURSOR WITH HOLD FOR SELECT 1") {
            Action::Declare {
                name, hold, scroll, ..
            } => assert_eq!((name.as_str(), hold, scroll), ("Cur", true, true)),
            other => panic!("{other:?}"),
        }
        match action("DECLARE c CURSOR FOR SELECT 1") {
            Action::Declare {
                name, hold, scroll, ..
            } => assert_eq!((name.as_str(), hold, scroll), ("c", false, false)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            action("DECLARE c BINARY CURSOR FOR SELECT 1"),
            Action::Unsupported(_)
        ));
        assert!(matches!(action("FETCH 2 FROM c"), Action::Fetch(step) if step.fetch));
        assert!(matches!(action("MOVE NEXT IN c"), Action::Fetch(step) if !step.fetch));
        assert!(matches!(action("CLOSE C"), Action::Close(Some(n)) if n == "c"));
        assert!(matches!(action("CLOSE ALL"), Action::Close(None)));
    }

    #[test]
    fn engine_statements_run() {
        for sql in [
            "SELECT 1",
            "CREATE TABLE t (a int)",
            "UPDATE t SET a = 1",
            "DROP MODEL IF EXISTS m",
            "SELECT relname FROM pg_catalog.pg_class",
        ] {
            assert!(matches!(action(sql), Action::Run(_)), "{sql}");
        }
        assert!(matches!(action("COPY t FROM STDIN"), Action::CopyIn { .. }));
        assert!(matches!(
            action("COPY (SELECT 1) TO STDOUT"),
            Action::CopyOut { .. }
        ));
    }

    #[test]
    fn setting_values_and_show_names() {
        assert_eq!(show_name(&["time".into(), "zone".into()]), "TimeZone");
        assert_eq!(
            show_name(&["TRANSACTION".into(), "ISOLATION".into(), "LEVEL".into()]),
            "transaction_isolation"
        );
        assert_eq!(
            show_name(&["tenure".into(), "device".into()]),
            "tenure.device"
        );
        assert_eq!(identifier(&Ident::new("Mixed")), "mixed");
        assert_eq!(identifier(&Ident::with_quote('"', "Mixed")), "Mixed");
    }
}
