//! The audit log: structured events of the tracing target `tenure::audit` (route them with
//! `RUST_LOG`, e.g. `RUST_LOG=info` or `RUST_LOG=tenure::audit=info` for the audit alone).
//!
//! Always logged: logins (who, from where, accepted or refused) and denials (42501). Which
//! statements are logged, with their role, outcome, rows and fingerprint, `log_statement`
//! says (tenure.toml, as in PostgreSQL): 'none'; 'ddl', what changes the catalog, roles,
//! privileges or models (CREATE MODEL included); 'mod' (the default), that and what changes
//! data (INSERT, UPDATE, DELETE, TRUNCATE, MERGE, COPY FROM, VACUUM); 'all', reads too.
//!
//! A statement is logged as its *normalised* text: every literal is `?`, so no value a
//! client sent (a password, a secret, a customer's e-mail in a WHERE) reaches the log, and
//! no bind parameter is ever logged. The fingerprint is a hash of the normalised text, so
//! the runs of one statement with different values share it.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::response::CommandComplete;

use crate::config::LogStatement;
use crate::sql::{Route, Statement};

/// What a statement does, for the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Queries, SET, SHOW, transaction control.
    Read,
    /// Changes to data.
    Mod,
    /// Changes to the catalog, roles, privileges or models.
    Ddl,
}

impl Class {
    pub fn of(statement: &Statement) -> Class {
        use datafusion::sql::parser::Statement as DF;
        use datafusion::sql::sqlparser::ast::Statement as Sql;
        if !crate::sql::route::changes_state(statement) {
            return Class::Read;
        }
        match statement {
            Statement::CopyStream(_) => Class::Mod,
            Statement::DataFusion(DF::Statement(inner)) => match inner.as_ref() {
                Sql::Insert(_)
                | Sql::Update(_)
                | Sql::Delete(_)
                | Sql::Merge(_)
                | Sql::Truncate(_) => Class::Mod,
                _ => Class::Ddl,
            },
            _ if Route::of(statement) == Route::Maintenance => Class::Mod,
            _ => Class::Ddl,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Mod => "mod",
            Class::Ddl => "ddl",
        }
    }

    /// Whether the audit logs a statement of this class under `log_statement`.
    pub fn logged(self, log_statement: LogStatement) -> bool {
        let least = match self {
            Class::Ddl => LogStatement::Ddl,
            Class::Mod => LogStatement::Mod,
            Class::Read => LogStatement::All,
        };
        log_statement >= least
    }
}

/// `text` with every literal replaced by `?` and whitespace and comments collapsed; text
/// that does not tokenize is not logged at all.
pub fn normalized(text: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, text).tokenize() else {
        return "<statement that does not tokenize>".to_string();
    };
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    // The token after PASSWORD is hidden whatever it is, and a credential's value.
    let mut after_password = false;
    let mut credentials = crate::sql::redact::CredentialValues::default();
    for token in tokens {
        let credential = credentials.hides(&token);
        match token {
            Token::Whitespace(_) => space = true,
            token => {
                if space && !out.is_empty() {
                    out.push(' ');
                }
                space = false;
                if std::mem::take(&mut after_password) || credential {
                    out.push('?');
                    continue;
                }
                after_password =
                    matches!(&token, Token::Word(w) if w.value.eq_ignore_ascii_case("password"));
                match token {
                    Token::Number(..)
                    | Token::SingleQuotedString(_)
                    | Token::DoubleQuotedByteStringLiteral(_)
                    | Token::SingleQuotedByteStringLiteral(_)
                    | Token::DollarQuotedString(_)
                    | Token::EscapedStringLiteral(_)
                    | Token::NationalStringLiteral(_)
                    | Token::HexStringLiteral(_)
                    | Token::UnicodeStringLiteral(_) => out.push('?'),
                    other => out.push_str(&other.to_string()),
                }
            }
        }
    }
    out
}

/// FNV-1a of the normalised text, as 16 hex digits.
pub fn fingerprint(normalized: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in normalized.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// A statement's outcome: `Ok(rows)` (rows when the command reports them) or the SQLSTATE.
pub fn statement(user: &str, class: Class, text: &str, outcome: Result<Option<u64>, &str>) {
    let normalized = normalized(text);
    let fingerprint = fingerprint(&normalized);
    match outcome {
        Ok(rows) => tracing::info!(
            target: "tenure::audit",
            event = "statement",
            user,
            class = class.name(),
            fingerprint,
            rows,
            statement = %normalized,
        ),
        Err(code) => tracing::info!(
            target: "tenure::audit",
            event = if code == "42501" { "denied" } else { "failed" },
            user,
            class = class.name(),
            fingerprint,
            code,
            statement = %normalized,
        ),
    }
}

/// After a client's statement: logs it as `log_statement` says, and always when it was
/// denied (42501).
pub fn after_statement(
    log_statement: LogStatement,
    session: &super::session::Session,
    class: Class,
    text: &str,
    result: &PgWireResult<Response>,
) {
    let code = match result {
        Err(PgWireError::UserError(info)) => Some(info.code.as_str()),
        Err(_) => Some("XX000"),
        Ok(_) => None,
    };
    if code != Some("42501") && !class.logged(log_statement) {
        return;
    }
    let user = crate::engine::session_role(session.base()).unwrap_or_default();
    let outcome = match (result, code) {
        (Ok(Response::Execution(tag)), _) => Ok(rows_of(tag)),
        (_, Some(code)) => Err(code),
        _ => Ok(None),
    };
    statement(&user, class, text, outcome);
}

/// The row count a command tag reports (`INSERT 0 5` is 5).
fn rows_of(tag: &Tag) -> Option<u64> {
    let complete = CommandComplete::from(tag.clone());
    let words: Vec<&str> = complete.tag.split_whitespace().collect();
    match words.as_slice() {
        [_, .., last] if words.len() > 1 => last.parse().ok(),
        _ => None,
    }
}

/// A login, accepted or refused.
pub fn login(user: &str, peer: &std::net::SocketAddr, accepted: bool) {
    tracing::info!(
        target: "tenure::audit",
        event = if accepted { "login" } else { "login refused" },
        user,
        %peer,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_reach_the_log() {
        let text = "ALTER USER alice PASSWORD 's3cret';  -- a comment\nSELECT * FROM t WHERE email = 'a@b.c' AND id = 42";
        let normal = normalized(text);
        assert!(
            !normal.contains("s3cret") && !normal.contains("a@b.c") && !normal.contains("42"),
            "{normal}"
        );
        assert_eq!(
            normalized("ALTER USER a PASSWORD \"S3cret\""),
            "ALTER USER a PASSWORD ?"
        );
        assert_eq!(
            normalized("INSERT INTO t VALUES (1, 'x'),\n   (2, $$y$$)"),
            "INSERT INTO t VALUES (?, ?), (?, ?)"
        );
        assert_eq!(
            fingerprint(&normalized("SELECT * FROM t WHERE id = 1")),
            fingerprint(
                &normalized("select  *  from t where id = 2")
                    .replace("select", "SELECT")
                    .replace("from", "FROM")
                    .replace("where", "WHERE")
            ),
        );
    }

    #[test]
    fn classes() {
        let class = |sql: &str| Class::of(&crate::sql::parse(sql).unwrap().remove(0));
        assert_eq!(class("SELECT 1"), Class::Read);
        assert_eq!(class("INSERT INTO t VALUES (1)"), Class::Mod);
        assert_eq!(class("COPY t FROM STDIN"), Class::Mod);
        assert_eq!(class("DELETE FROM t"), Class::Mod);
        assert_eq!(class("GRANT SELECT ON t TO r"), Class::Ddl);
        assert_eq!(class("CREATE TABLE t (a INT)"), Class::Ddl);
        assert_eq!(
            class("CREATE MODEL m KIND kmeans AS SELECT 1 AS x"),
            Class::Ddl
        );
        assert_eq!(LogStatement::parse("MOD"), Some(LogStatement::Mod));
        assert!(!Class::Read.logged(LogStatement::Mod));
        assert!(Class::Read.logged(LogStatement::All));
        assert!(Class::Ddl.logged(LogStatement::Ddl) && !Class::Mod.logged(LogStatement::Ddl));
        assert!(!Class::Ddl.logged(LogStatement::None));
    }
}
