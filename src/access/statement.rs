//! The access-control statements, parsed here rather than by sqlparser, whose PostgreSQL
//! grammar lacks `CREATE USER ... PASSWORD`, models as objects and `CREATEMODEL`:
//!
//! ```sql
//! CREATE { ROLE | USER } [IF NOT EXISTS] name [[WITH] option ...]
//! ALTER { ROLE | USER } name [WITH] option ...
//! DROP { ROLE | USER } [IF EXISTS] name [, ...]
//! GRANT role [, ...] TO role [, ...]
//! REVOKE role [, ...] FROM role [, ...]
//! GRANT { privilege [, ...] | ALL [PRIVILEGES] }
//!     ON { [TABLE] table [, ...] | ALL TABLES IN SCHEMA s [, ...] | SCHEMA s [, ...]
//!        | MODEL m [, ...] }
//!     TO { role | PUBLIC } [, ...]
//! REVOKE ... FROM { role | PUBLIC } [, ...] [CASCADE | RESTRICT]
//! ```
//!
//! ALTER { ROLE | USER } name SET setting { TO | = } value
//! ALTER { ROLE | USER } name RESET { setting | ALL }
//!
//! ALTER DEFAULT PRIVILEGES [FOR { ROLE | USER } r [, ...]] [IN SCHEMA s [, ...]]
//!     { GRANT privileges ON { TABLES | MODELS } TO grantees
//!     | REVOKE privileges ON { TABLES | MODELS } FROM grantees }
//! CREATE [OR REPLACE] [PERSISTENT] SECRET [IF NOT EXISTS] name (option value [, ...])
//! DROP [PERSISTENT] SECRET [IF EXISTS] name
//!
//! Role options: LOGIN, NOLOGIN, SUPERUSER, NOSUPERUSER, CREATEMODEL, NOCREATEMODEL,
//! INHERIT, NOINHERIT, [ENCRYPTED] PASSWORD 'text' | NULL, CONNECTION LIMIT n,
//! IN ROLE r [, ...].

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::Privilege;
use crate::qualified_name::fold_identifier;

/// One parsed access-control statement.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessStatement {
    CreateRole {
        name: String,
        if_not_exists: bool,
        options: RoleOptions,
    },
    AlterRole {
        name: String,
        options: RoleOptions,
    },
    /// `ALTER ROLE name SET setting {TO | =} value` (`value` Some), `RESET setting` (None),
    /// `RESET ALL` (setting `all`, None): the role's defaults for its sessions.
    AlterRoleSet {
        name: String,
        setting: String,
        value: Option<String>,
    },
    DropRole {
        names: Vec<String>,
        if_exists: bool,
    },
    /// `GRANT role TO member` (`grant`), or `REVOKE role FROM member`.
    Membership {
        grant: bool,
        roles: Vec<String>,
        members: Vec<String>,
    },
    /// `CREATE SECRET name (TYPE s3, KEY_ID '...', ...)`: option names upper-cased,
    /// values as written without quotes.
    CreateSecret {
        name: String,
        or_replace: bool,
        if_not_exists: bool,
        options: SecretOptions,
    },
    DropSecret {
        name: String,
        if_exists: bool,
    },
    /// `ALTER DEFAULT PRIVILEGES ...`; `roles` empty for the current role, `schemas` empty
    /// for every schema, `privileges` `None` for ALL.
    DefaultPrivileges {
        grant: bool,
        roles: Vec<String>,
        schemas: Vec<String>,
        privileges: Option<Vec<Privilege>>,
        objects: super::DefaultObjects,
        grantees: Vec<String>,
    },
    /// `GRANT privileges ON objects TO grantees`, or `REVOKE ... FROM ...`.
    Privileges {
        grant: bool,
        /// `None` for ALL.
        privileges: Option<Vec<Privilege>>,
        objects: Objects,
        /// Role names, or [`super::PUBLIC`].
        grantees: Vec<String>,
        /// `GRANT SELECT (a, b) ON t`: the privileges are on these columns of the tables;
        /// empty for privileges on the objects themselves.
        columns: Vec<String>,
    },
}

impl AccessStatement {
    /// The command tag PostgreSQL answers with.
    pub fn tag(&self) -> &'static str {
        match self {
            AccessStatement::CreateRole { .. } => "CREATE ROLE",
            AccessStatement::AlterRole { .. } | AccessStatement::AlterRoleSet { .. } => {
                "ALTER ROLE"
            }
            AccessStatement::DropRole { .. } => "DROP ROLE",
            AccessStatement::CreateSecret { .. } => "CREATE SECRET",
            AccessStatement::DropSecret { .. } => "DROP SECRET",
            AccessStatement::DefaultPrivileges { .. } => "ALTER DEFAULT PRIVILEGES",
            AccessStatement::Membership { grant: true, .. }
            | AccessStatement::Privileges { grant: true, .. } => "GRANT",
            AccessStatement::Membership { grant: false, .. }
            | AccessStatement::Privileges { grant: false, .. } => "REVOKE",
        }
    }
}

/// What a privilege statement is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Objects {
    /// Table or view names, each one or two parts (schema, name), folded.
    Tables(Vec<Vec<String>>),
    AllTablesInSchema(Vec<String>),
    Schemas(Vec<String>),
    Models(Vec<String>),
}

/// Options of CREATE / ALTER ROLE; `None` leaves the default or the current value.
#[derive(Clone, Default, PartialEq)]
pub struct RoleOptions {
    pub login: Option<bool>,
    pub superuser: Option<bool>,
    pub create_model: Option<bool>,
    pub inherit: Option<bool>,
    /// `Some(None)` is `PASSWORD NULL`.
    pub password: Option<Option<String>>,
    pub in_roles: Vec<String>,
    /// `CONNECTION LIMIT n`; -1 for none.
    pub connection_limit: Option<i32>,
}

/// Never prints the password.
impl std::fmt::Debug for RoleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleOptions")
            .field("login", &self.login)
            .field("superuser", &self.superuser)
            .field("create_model", &self.create_model)
            .field("inherit", &self.inherit)
            .field(
                "password",
                &self
                    .password
                    .as_ref()
                    .map(|p| p.as_ref().map(|_| "<redacted>")),
            )
            .field("in_roles", &self.in_roles)
            .field("connection_limit", &self.connection_limit)
            .finish()
    }
}

/// CREATE SECRET's options; never prints their values.
#[derive(Clone, Default, PartialEq)]
pub struct SecretOptions(pub Vec<(String, String)>);

impl std::fmt::Debug for SecretOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

/// Whether the statement starting with `words` (upper-cased, the first five) is one of
/// this module's.
pub fn is_access_statement(words: &[String]) -> bool {
    let second = words.get(1).map(String::as_str);
    let is_secret = |rest: &[String]| {
        let rest = match rest.first().map(String::as_str) {
            Some("PERSISTENT" | "TEMPORARY" | "TEMP") => &rest[1..],
            _ => rest,
        };
        rest.first().is_some_and(|w| w == "SECRET")
    };
    match words.first().map(String::as_str) {
        Some("CREATE") if words[1..].starts_with(&["OR".into(), "REPLACE".into()]) => {
            is_secret(&words[3..])
        }
        Some("CREATE" | "DROP") if is_secret(&words[1..]) => true,
        Some("ALTER") if second == Some("DEFAULT") => true,
        Some("CREATE" | "ALTER" | "DROP") => matches!(second, Some("ROLE" | "USER")),
        Some("GRANT" | "REVOKE") => true,
        _ => false,
    }
}

/// Parses one statement for which [`is_access_statement`] holds.
pub fn parse(text: &str) -> Result<AccessStatement, ParserError> {
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(text)?;
    let statement = if word(&mut p, "CREATE") {
        let or_replace = words(&mut p, &["OR", "REPLACE"]);
        if word(&mut p, "PERSISTENT") || is_word(&p, "SECRET") {
            return create_secret(&mut p, or_replace);
        }
        if word(&mut p, "TEMPORARY") || word(&mut p, "TEMP") {
            return Err(unsupported(
                "temporary secrets (every secret is kept in the catalog)",
            ));
        }
        if or_replace {
            return p.expected("SECRET", p.peek_token());
        }
        let user = kind(&mut p)?;
        let if_not_exists = words(&mut p, &["IF", "NOT", "EXISTS"]);
        let name = name(&mut p)?;
        let mut options = role_options(&mut p)?;
        if user && options.login.is_none() {
            options.login = Some(true);
        }
        AccessStatement::CreateRole {
            name,
            if_not_exists,
            options,
        }
    } else if word(&mut p, "ALTER") {
        if words(&mut p, &["DEFAULT", "PRIVILEGES"]) {
            return default_privileges(&mut p);
        }
        kind(&mut p)?;
        let name = name(&mut p)?;
        if word(&mut p, "RENAME") {
            return Err(unsupported("ALTER ROLE ... RENAME and role renames"));
        }
        if word(&mut p, "SET") {
            let setting = p.parse_identifier()?.value.to_ascii_lowercase();
            if !p.consume_token(&Token::Eq) {
                expect(&mut p, "TO")?;
            }
            let next = p.next_token();
            let value = match next.token {
                Token::SingleQuotedString(s) => s,
                Token::Number(n, _) => n,
                Token::Word(w) => w.value,
                _ => return p.expected("a setting's value", next),
            };
            if !grant_end(&mut p) {
                return p.expected("end of statement", p.peek_token());
            }
            return Ok(AccessStatement::AlterRoleSet {
                name,
                setting,
                value: Some(value),
            });
        }
        if word(&mut p, "RESET") {
            let setting = p.parse_identifier()?.value.to_ascii_lowercase();
            if !grant_end(&mut p) {
                return p.expected("end of statement", p.peek_token());
            }
            return Ok(AccessStatement::AlterRoleSet {
                name,
                setting,
                value: None,
            });
        }
        let options = role_options(&mut p)?;
        if options == RoleOptions::default() {
            return p.expected("a role option", p.peek_token());
        }
        AccessStatement::AlterRole { name, options }
    } else if word(&mut p, "DROP") {
        word(&mut p, "PERSISTENT");
        if word(&mut p, "SECRET") {
            let if_exists = words(&mut p, &["IF", "EXISTS"]);
            let name = name(&mut p)?;
            if !grant_end(&mut p) {
                return p.expected("end of statement", p.peek_token());
            }
            return Ok(AccessStatement::DropSecret { name, if_exists });
        }
        kind(&mut p)?;
        let if_exists = words(&mut p, &["IF", "EXISTS"]);
        AccessStatement::DropRole {
            names: names(&mut p)?,
            if_exists,
        }
    } else {
        let grant = word(&mut p, "GRANT");
        if !grant {
            expect(&mut p, "REVOKE")?;
            if words(&mut p, &["GRANT", "OPTION", "FOR"])
                || words(&mut p, &["ADMIN", "OPTION", "FOR"])
            {
                return Err(unsupported("grant and admin options"));
            }
        }
        privileges_or_roles(&mut p, grant)?
    };
    if !grant_end(&mut p) {
        return p.expected("end of statement", p.peek_token());
    }
    Ok(statement)
}

fn privileges_or_roles(p: &mut Parser, grant: bool) -> Result<AccessStatement, ParserError> {
    let to = if grant { "TO" } else { "FROM" };
    // `GRANT ALL [PRIVILEGES] ON`, a list of privileges then ON, or a list of roles then TO.
    let mut roles = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    let mut without_columns = false;
    let privileges = if word(p, "ALL") {
        word(p, "PRIVILEGES");
        None
    } else {
        loop {
            let item = name(p)?;
            if p.consume_token(&Token::LParen) {
                let list = names(p)?;
                p.expect_token(&Token::RParen)?;
                if !columns.is_empty() && columns != list {
                    return Err(unsupported("different column lists in one GRANT"));
                }
                columns = list;
            } else {
                without_columns = true;
            }
            roles.push(item);
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        if !is_word(p, "ON") {
            expect(p, to)?;
            return Ok(AccessStatement::Membership {
                grant,
                roles,
                members: names(p)?,
            });
        }
        let mut parsed = Vec::new();
        for item in &roles {
            parsed.push(Privilege::parse(item).ok_or_else(|| {
                ParserError::ParserError(format!("unrecognized privilege type \"{item}\""))
            })?);
        }
        if !columns.is_empty() && without_columns {
            return Err(unsupported(
                "column and table privileges in one GRANT (give them in two)",
            ));
        }
        Some(parsed)
    };
    expect(p, "ON")?;
    let objects = if words(p, &["ALL", "TABLES", "IN", "SCHEMA"]) {
        Objects::AllTablesInSchema(names(p)?)
    } else if word(p, "SCHEMA") {
        Objects::Schemas(names(p)?)
    } else if word(p, "MODEL") {
        Objects::Models(names(p)?)
    } else {
        if !word(p, "TABLE") && (is_word(p, "FUNCTION") || is_word(p, "SEQUENCE")) {
            return Err(unsupported("privileges on functions and sequences"));
        }
        let mut tables = Vec::new();
        loop {
            tables.push(
                p.parse_object_name(false)?
                    .0
                    .into_iter()
                    .filter_map(|part| part.as_ident().map(fold_identifier))
                    .collect(),
            );
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        Objects::Tables(tables)
    };
    expect(p, to)?;
    let grantees = grantees(p)?;
    Ok(AccessStatement::Privileges {
        grant,
        privileges,
        objects,
        grantees,
        columns,
    })
}

/// `[GROUP] role | PUBLIC [, ...]`.
fn grantees(p: &mut Parser) -> Result<Vec<String>, ParserError> {
    let mut grantees = Vec::new();
    loop {
        word(p, "GROUP");
        grantees.push(if word(p, "PUBLIC") {
            super::PUBLIC.to_string()
        } else {
            name(p)?
        });
        if !p.consume_token(&Token::Comma) {
            return Ok(grantees);
        }
    }
}

fn role_options(p: &mut Parser) -> Result<RoleOptions, ParserError> {
    let mut options = RoleOptions::default();
    word(p, "WITH");
    while let Token::Word(w) = p.peek_token().token {
        let flag = w.value.to_ascii_uppercase();
        let (negated, base) = match flag.strip_prefix("NO") {
            Some(base) => (true, base.to_string()),
            None => (false, flag.clone()),
        };
        let slot = match base.as_str() {
            "LOGIN" => Some(&mut options.login),
            "SUPERUSER" => Some(&mut options.superuser),
            "CREATEMODEL" => Some(&mut options.create_model),
            "INHERIT" => Some(&mut options.inherit),
            _ => None,
        };
        if let Some(slot) = slot {
            p.next_token();
            *slot = Some(!negated);
            continue;
        }
        match flag.as_str() {
            "ENCRYPTED" | "PASSWORD" => {
                p.next_token();
                if flag == "ENCRYPTED" {
                    expect(p, "PASSWORD")?;
                }
                options.password = Some(if word(p, "NULL") {
                    None
                } else {
                    let next = p.next_token();
                    match next.token {
                        Token::SingleQuotedString(text) | Token::EscapedStringLiteral(text) => {
                            Some(text)
                        }
                        Token::DollarQuotedString(text) => Some(text.value),
                        // Not an identifier: it would be logged as written.
                        _ => return p.expected("a password as a string literal", next),
                    }
                });
            }
            "IN" => {
                p.next_token();
                if !word(p, "ROLE") {
                    expect(p, "GROUP")?;
                }
                options.in_roles.extend(names(p)?);
            }
            "CONNECTION" => {
                p.next_token();
                expect(p, "LIMIT")?;
                let negative = p.consume_token(&Token::Minus);
                let next = p.next_token();
                let limit: i32 = match next.token {
                    Token::Number(n, _) => n.parse().map_err(|_| {
                        ParserError::ParserError(format!("invalid connection limit {n}"))
                    })?,
                    _ => return p.expected("a connection limit", next),
                };
                options.connection_limit = Some(if negative { -limit } else { limit });
            }
            "CREATEDB" | "NOCREATEDB" | "CREATEROLE" | "NOCREATEROLE" | "REPLICATION"
            | "NOREPLICATION" | "BYPASSRLS" | "NOBYPASSRLS" | "VALID" => {
                return Err(unsupported(&format!(
                    "the role option {flag} (tenure's are LOGIN, SUPERUSER, CREATEMODEL, \
                     INHERIT, PASSWORD, CONNECTION LIMIT and IN ROLE)"
                )));
            }
            _ => break,
        }
    }
    Ok(options)
}

/// The rest of `ALTER DEFAULT PRIVILEGES`.
fn default_privileges(p: &mut Parser) -> Result<AccessStatement, ParserError> {
    let mut roles = Vec::new();
    let mut schemas = Vec::new();
    loop {
        if word(p, "FOR") {
            if !word(p, "ROLE") {
                expect(p, "USER")?;
            }
            roles.extend(names(p)?);
        } else if words(p, &["IN", "SCHEMA"]) {
            schemas.extend(names(p)?);
        } else {
            break;
        }
    }
    let grant = word(p, "GRANT");
    if !grant {
        expect(p, "REVOKE")?;
        if words(p, &["GRANT", "OPTION", "FOR"]) {
            return Err(unsupported("grant options"));
        }
    }
    let privileges = if word(p, "ALL") {
        word(p, "PRIVILEGES");
        None
    } else {
        let mut parsed = Vec::new();
        for item in names(p)? {
            parsed.push(Privilege::parse(&item).ok_or_else(|| {
                ParserError::ParserError(format!("unrecognized privilege type \"{item}\""))
            })?);
        }
        Some(parsed)
    };
    expect(p, "ON")?;
    let objects = if word(p, "TABLES") {
        super::DefaultObjects::Tables
    } else if word(p, "MODELS") {
        super::DefaultObjects::Models
    } else if ["SEQUENCES", "FUNCTIONS", "ROUTINES", "TYPES", "SCHEMAS"]
        .iter()
        .any(|w| is_word(p, w))
    {
        return Err(unsupported(
            "default privileges other than on TABLES and MODELS",
        ));
    } else {
        return p.expected("TABLES or MODELS", p.peek_token());
    };
    expect(p, if grant { "TO" } else { "FROM" })?;
    let grantees = grantees(p)?;
    if !grant_end(p) {
        return p.expected("end of statement", p.peek_token());
    }
    Ok(AccessStatement::DefaultPrivileges {
        grant,
        roles,
        schemas,
        privileges,
        objects,
        grantees,
    })
}

/// The rest of `CREATE [OR REPLACE] [PERSISTENT] SECRET`, after PERSISTENT.
fn create_secret(p: &mut Parser, or_replace: bool) -> Result<AccessStatement, ParserError> {
    expect(p, "SECRET")?;
    let if_not_exists = words(p, &["IF", "NOT", "EXISTS"]);
    let name = name(p)?;
    p.expect_token(&Token::LParen)?;
    let mut options = Vec::new();
    loop {
        let option = p.parse_identifier()?.value.to_ascii_uppercase();
        let next = p.next_token();
        let value = match next.token {
            Token::SingleQuotedString(s) => s,
            // A credential is a string literal; the error does not echo what was there.
            _ if super::secrets::is_credential_option(&option) => {
                return Err(ParserError::ParserError(format!(
                    "{option} takes a quoted string ('...')"
                )));
            }
            Token::Number(n, _) => n,
            Token::Word(w) => w.value,
            _ => return p.expected("an option's value", next),
        };
        options.push((option, value));
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen)?;
    if p.peek_token().token != Token::EOF {
        return p.expected("end of statement", p.peek_token());
    }
    Ok(AccessStatement::CreateSecret {
        name,
        or_replace,
        if_not_exists,
        options: SecretOptions(options),
    })
}

fn unsupported(what: &str) -> ParserError {
    ParserError::ParserError(format!("{what} are not supported"))
}

/// ROLE or USER; whether it was USER (which logs in by default).
fn kind(p: &mut Parser) -> Result<bool, ParserError> {
    if word(p, "USER") {
        return Ok(true);
    }
    expect(p, "ROLE")?;
    Ok(false)
}

/// REVOKE's trailing CASCADE / RESTRICT (accepted: grants are not passed on), then the end.
fn grant_end(p: &mut Parser) -> bool {
    let _ = word(p, "CASCADE") || word(p, "RESTRICT");
    p.peek_token().token == Token::EOF
}

fn name(p: &mut Parser) -> Result<String, ParserError> {
    Ok(fold_identifier(&p.parse_identifier()?))
}

fn names(p: &mut Parser) -> Result<Vec<String>, ParserError> {
    p.parse_comma_separated(name)
}

fn is_word(p: &Parser, expected: &str) -> bool {
    matches!(&p.peek_token().token, Token::Word(w) if w.quote_style.is_none()
        && w.value.eq_ignore_ascii_case(expected))
}

fn word(p: &mut Parser, expected: &str) -> bool {
    let found = is_word(p, expected);
    if found {
        p.next_token();
    }
    found
}

fn words(p: &mut Parser, expected: &[&str]) -> bool {
    let tokens = p.peek_tokens_with_location::<4>();
    let all = expected.iter().enumerate().all(|(i, e)| {
        matches!(&tokens[i].token, Token::Word(w) if w.quote_style.is_none()
            && w.value.eq_ignore_ascii_case(e))
    });
    if all {
        for _ in expected {
            p.next_token();
        }
    }
    all
}

fn expect(p: &mut Parser, expected: &str) -> Result<(), ParserError> {
    if word(p, expected) {
        Ok(())
    } else {
        p.expected(expected, p.peek_token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> AccessStatement {
        parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn roles() {
        assert_eq!(
            parsed("CREATE USER Alice WITH PASSWORD 'pw' CREATEMODEL IN ROLE analysts"),
            AccessStatement::CreateRole {
                name: "alice".into(),
                if_not_exists: false,
                options: RoleOptions {
                    login: Some(true),
                    create_model: Some(true),
                    password: Some(Some("pw".into())),
                    in_roles: vec!["analysts".into()],
                    ..Default::default()
                },
            }
        );
        assert_eq!(
            parsed("create role \"BI\" nologin noinherit"),
            AccessStatement::CreateRole {
                name: "BI".into(),
                if_not_exists: false,
                options: RoleOptions {
                    login: Some(false),
                    inherit: Some(false),
                    ..Default::default()
                },
            }
        );
        assert_eq!(
            parsed("ALTER ROLE bob PASSWORD NULL NOSUPERUSER"),
            AccessStatement::AlterRole {
                name: "bob".into(),
                options: RoleOptions {
                    superuser: Some(false),
                    password: Some(None),
                    ..Default::default()
                },
            }
        );
        assert_eq!(
            parsed("ALTER USER alice SET statement_timeout TO '5s'"),
            AccessStatement::AlterRoleSet {
                name: "alice".into(),
                setting: "statement_timeout".into(),
                value: Some("5s".into()),
            }
        );
        assert_eq!(
            parsed("ALTER ROLE alice RESET ALL"),
            AccessStatement::AlterRoleSet {
                name: "alice".into(),
                setting: "all".into(),
                value: None,
            }
        );
        assert_eq!(
            parsed("CREATE ROLE bi LOGIN CONNECTION LIMIT 2"),
            AccessStatement::CreateRole {
                name: "bi".into(),
                if_not_exists: false,
                options: RoleOptions {
                    login: Some(true),
                    connection_limit: Some(2),
                    ..Default::default()
                },
            }
        );
        assert_eq!(
            parsed("DROP USER IF EXISTS a, b"),
            AccessStatement::DropRole {
                names: vec!["a".into(), "b".into()],
                if_exists: true,
            }
        );
        assert_eq!(
            parsed("GRANT analysts, ops TO alice"),
            AccessStatement::Membership {
                grant: true,
                roles: vec!["analysts".into(), "ops".into()],
                members: vec!["alice".into()],
            }
        );
    }

    #[test]
    fn privileges() {
        assert_eq!(
            parsed("GRANT SELECT, insert ON TABLE crm.Customers, orders TO bi, PUBLIC"),
            AccessStatement::Privileges {
                grant: true,
                privileges: Some(vec![Privilege::Select, Privilege::Insert]),
                objects: Objects::Tables(vec![
                    vec!["crm".into(), "customers".into()],
                    vec!["orders".into()],
                ]),
                grantees: vec!["bi".into(), "public".into()],
                columns: vec![],
            }
        );
        assert_eq!(
            parsed("REVOKE SELECT (Email, id) ON customers FROM bi"),
            AccessStatement::Privileges {
                grant: false,
                privileges: Some(vec![Privilege::Select]),
                objects: Objects::Tables(vec![vec!["customers".into()]]),
                grantees: vec!["bi".into()],
                columns: vec!["email".into(), "id".into()],
            }
        );
        assert_eq!(
            parsed("REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA crm FROM bi CASCADE"),
            AccessStatement::Privileges {
                grant: false,
                privileges: None,
                objects: Objects::AllTablesInSchema(vec!["crm".into()]),
                grantees: vec!["bi".into()],
                columns: vec![],
            }
        );
        assert_eq!(
            parsed("GRANT USAGE ON MODEL churn TO analysts"),
            AccessStatement::Privileges {
                grant: true,
                privileges: Some(vec![Privilege::Usage]),
                objects: Objects::Models(vec!["churn".into()]),
                grantees: vec!["analysts".into()],
                columns: vec![],
            }
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (sql, wanted) in [
            (
                "GRANT SELEKT ON t TO bi",
                "unrecognized privilege type \"selekt\"",
            ),
            (
                "GRANT SELECT (a), INSERT ON t TO bi",
                "column and table privileges in one GRANT",
            ),
            ("CREATE ROLE r VALID UNTIL 'infinity'", "VALID"),
            ("ALTER ROLE r", "a role option"),
            (
                "GRANT SELECT ON t TO bi WITH GRANT OPTION",
                "end of statement",
            ),
            ("DROP ROLE", "identifier"),
            ("ALTER ROLE r PASSWORD \"S3cret\"", "string literal"),
        ] {
            let err = parse(sql).unwrap_err().to_string();
            assert!(err.contains(wanted), "{sql}: {err}");
        }
    }

    #[test]
    fn default_privileges() {
        assert_eq!(
            parsed(
                "ALTER DEFAULT PRIVILEGES FOR ROLE etl IN SCHEMA crm, mart \
                 GRANT SELECT, INSERT ON TABLES TO bi, PUBLIC"
            ),
            AccessStatement::DefaultPrivileges {
                grant: true,
                roles: vec!["etl".into()],
                schemas: vec!["crm".into(), "mart".into()],
                privileges: Some(vec![Privilege::Select, Privilege::Insert]),
                objects: crate::access::DefaultObjects::Tables,
                grantees: vec!["bi".into(), "public".into()],
            }
        );
        assert_eq!(
            parsed("alter default privileges revoke all on models from analysts"),
            AccessStatement::DefaultPrivileges {
                grant: false,
                roles: vec![],
                schemas: vec![],
                privileges: None,
                objects: crate::access::DefaultObjects::Models,
                grantees: vec!["analysts".into()],
            }
        );
        for bad in [
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON SEQUENCES TO bi",
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLE t TO bi",
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES bi",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets() {
        let words = |sql: &str| -> Vec<String> {
            sql.split_whitespace()
                .take(5)
                .map(str::to_ascii_uppercase)
                .collect()
        };
        for sql in [
            "CREATE SECRET s (TYPE s3)",
            "create or replace persistent secret s (TYPE s3)",
            "DROP SECRET IF EXISTS s",
        ] {
            assert!(is_access_statement(&words(sql)), "{sql}");
        }
        assert!(!is_access_statement(&words(
            "CREATE OR REPLACE VIEW secret AS SELECT 1"
        )));
        assert_eq!(
            parsed(
                "CREATE OR REPLACE SECRET IF NOT EXISTS Lake (TYPE s3, KEY_ID 'AKIA1', \
                 SECRET 'it''s', USE_SSL false, port 9000)"
            ),
            AccessStatement::CreateSecret {
                name: "lake".into(),
                or_replace: true,
                if_not_exists: true,
                options: SecretOptions(vec![
                    ("TYPE".into(), "s3".into()),
                    ("KEY_ID".into(), "AKIA1".into()),
                    ("SECRET".into(), "it's".into()),
                    ("USE_SSL".into(), "false".into()),
                    ("PORT".into(), "9000".into()),
                ]),
            }
        );
        let debug = format!(
            "{:?}",
            parsed("CREATE SECRET s (TYPE s3, SECRET 'hunter2')")
        );
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(
            parsed("DROP PERSISTENT SECRET s"),
            AccessStatement::DropSecret {
                name: "s".into(),
                if_exists: false
            }
        );
        for bad in [
            "CREATE SECRET s",
            "CREATE SECRET s ()",
            "CREATE SECRET s (TYPE)",
            "CREATE SECRET s (TYPE s3) extra",
            "CREATE TEMPORARY SECRET s (TYPE s3)",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        for bad in [
            "CREATE SECRET s (TYPE s3, SECRET wJalrXq)",
            "CREATE SECRET s (TYPE s3, KEY_ID \"AKIA9\")",
            "CREATE SECRET s (TYPE s3, SESSION_TOKEN 42)",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("takes a quoted string"), "{bad}: {err}");
            assert!(
                !err.contains("wJalr") && !err.contains("AKIA9") && !err.contains("42"),
                "{err}"
            );
        }
    }
}
