//! tenure's SQL front: splits a script into statements and parses tenure's own statements
//! (CREATE MODEL, DROP MODEL); everything else goes to DataFusion's parser unchanged.
//!
//! ```sql
//! CREATE [OR REPLACE] MODEL [IF NOT EXISTS] name
//!   KIND kind
//!   [TARGET column]
//!   [TREATMENT column]   -- KIND uplift
//!   [OPTIONS (key = value, ...)]
//! { AS query | FROM 'directory' }   -- FROM: KIND text_encoder, imported, not trained
//!
//! DROP MODEL [IF EXISTS] name
//!
//! VACUUM [FULL] [FREEZE] [VERBOSE] [ANALYZE] [table [, ...]]
//! VACUUM (option [, ...]) [table [, ...]]
//! OPTIMIZE [TABLE] table [, ...]
//! ```
//!
//! (VACUUM and OPTIMIZE are parsed here: sqlparser knows only Redshift's VACUUM and
//! Databricks' OPTIMIZE.)
//!
//! [`route`] then says who carries each statement out and whether it changes stored state.
//!
//! The script is tokenized once with sqlparser's PostgreSQL tokenizer, so a `;` inside a
//! string or comment never splits a statement.

use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Value;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::error::Result;
use crate::qualified_name::fold_identifier;

pub mod fetch;
pub mod limits;
pub mod redact;
pub mod route;

pub use route::Route;

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Anything DataFusion parses (queries, DDL, DML, CREATE EXTERNAL TABLE, COPY, ...).
    DataFusion(DFStatement),
    CreateModel(CreateModel),
    DropModel(DropModel),
    /// `COPY ... TO STDOUT` / `COPY ... FROM STDIN`: data through the client connection,
    /// which only the server can carry out.
    CopyStream(Box<datafusion::sql::sqlparser::ast::Statement>),
    /// `FETCH` and `MOVE` over a cursor: cursors live in server sessions.
    Fetch(fetch::CursorStep),
    /// `VACUUM` or `OPTIMIZE`: table upkeep.
    Maintain(Maintain),
    /// Roles and privileges: CREATE / ALTER / DROP ROLE, GRANT, REVOKE.
    Access(crate::access::statement::AccessStatement),
}

/// `VACUUM` or `OPTIMIZE` of some tables (all managed tables when `tables` is empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Maintain {
    /// Rewrite small files into large ones first (`OPTIMIZE`, `VACUUM FULL`).
    pub compact: bool,
    /// Delete files no recent version needs (`VACUUM`).
    pub vacuum: bool,
    pub tables: Vec<datafusion::sql::sqlparser::ast::ObjectName>,
}

/// `CREATE MODEL`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateModel {
    pub name: String,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub kind: String,
    pub target: Option<String>,
    /// KIND uplift's TREATMENT column.
    pub treatment: Option<String>,
    /// (key, value) with keys lower-cased and values as text.
    pub options: Vec<(String, String)>,
    pub source: ModelSource,
}

/// What CREATE MODEL builds a model from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// `AS query`: the training query, as written.
    Query(String),
    /// `FROM 'directory'`: pretrained files to import (KIND text_encoder).
    Files(String),
}

impl CreateModel {
    /// Trains on `device` unless OPTIONS name one; kinds that do not train with candle
    /// (bgnbd, ...) have no device to choose.
    pub fn default_device(&mut self, device: &str) {
        let uses_device = tenure_models::Kind::parse(&self.kind).is_ok_and(|k| k.uses_device());
        if uses_device && !self.options.iter().any(|(k, _)| k == "device") {
            self.options
                .push(("device".to_string(), device.to_string()));
        }
    }
}

/// `DROP MODEL`.
#[derive(Debug, Clone, PartialEq)]
pub struct DropModel {
    pub name: String,
    pub if_exists: bool,
}

/// Parses every statement in `sql`.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    Ok(parse_with_text(sql)?
        .into_iter()
        .map(|(_, statement)| statement)
        .collect())
}

/// Parses every statement in `sql`, each with its own text (without the `;`), for callers
/// that re-read a statement (the server's PostgreSQL-compatibility rewrites).
pub fn parse_with_text(sql: &str) -> Result<Vec<(String, Statement)>> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| syntax_error(ParserError::TokenizerError(e.to_string())))?;
    let offsets = LineOffsets::new(sql);
    let mut statements = Vec::new();
    let mut start = 0;
    let mut chunk: Vec<&TokenWithSpan> = Vec::new();
    for token in tokens
        .iter()
        .chain(std::iter::once(&TokenWithSpan::wrap(Token::EOF)))
    {
        let end = match token.token {
            Token::SemiColon => offsets.byte(token.span.start),
            Token::EOF => sql.len(),
            _ => {
                chunk.push(token);
                continue;
            }
        };
        let text = &sql[start..end];
        limits::check_tokens(&chunk)?;
        if let Some(statement) = parse_one(text, &chunk)? {
            if let Statement::DataFusion(parsed) = &statement {
                limits::check_depth(parsed)?;
            }
            statements.push((text.to_string(), statement));
        }
        start = (end + 1).min(sql.len());
        chunk.clear();
    }
    Ok(statements)
}

/// Parses one statement's text; `None` if it is only whitespace and comments.
fn parse_one(text: &str, tokens: &[&TokenWithSpan]) -> Result<Option<Statement>> {
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .take(5)
        .map(|t| match &t.token {
            Token::Word(w) => w.value.to_ascii_uppercase(),
            _ => String::new(),
        })
        .collect();
    if words.is_empty() {
        return Ok(None);
    }
    let is_model = |w: &[String]| w.first().is_some_and(|x| x == "MODEL");
    if words[0] == "CREATE"
        && (is_model(&words[1..]) || words[1..].starts_with(&["OR".into(), "REPLACE".into()]))
        && let Some(create) = parse_create_model(text).map_err(syntax_error)?
    {
        return Ok(Some(Statement::CreateModel(create)));
    }
    if crate::access::statement::is_access_statement(&words) {
        return Ok(Some(Statement::Access(
            crate::access::statement::parse(text).map_err(syntax_error)?,
        )));
    }
    if words[0] == "DROP" && is_model(&words[1..]) {
        return Ok(Some(Statement::DropModel(
            parse_drop_model(text).map_err(syntax_error)?,
        )));
    }
    let dialect = PostgreSqlDialect {};
    let streams = tokens.iter().any(|t| {
        matches!(&t.token, Token::Word(w) if w.quote_style.is_none()
            && (w.value.eq_ignore_ascii_case("STDIN") || w.value.eq_ignore_ascii_case("STDOUT")))
    });
    if words[0] == "COPY" && streams {
        let statement = Parser::new(&dialect)
            .try_with_sql(text)
            .and_then(|mut p| p.parse_statement())
            .map_err(syntax_error)?;
        return Ok(Some(Statement::CopyStream(Box::new(statement))));
    }
    if words[0] == "VACUUM" || words[0] == "OPTIMIZE" {
        return Ok(Some(Statement::Maintain(
            parse_maintain(text).map_err(syntax_error)?,
        )));
    }
    if words[0] == "FETCH" || words[0] == "MOVE" {
        let step = fetch::parse(tokens).map_err(|e| syntax_error(ParserError::ParserError(e)))?;
        return Ok(Some(Statement::Fetch(step)));
    }
    if words[0] == "COMMENT" {
        // sqlparser reads only quoted strings after IS; dbt's persist_docs sends
        // `$dbt_comment_literal_block$...$dbt_comment_literal_block$`.
        let tokens = tokens
            .iter()
            .map(|t| match &t.token {
                Token::DollarQuotedString(s) => TokenWithSpan {
                    token: Token::SingleQuotedString(s.value.clone()),
                    span: t.span,
                },
                _ => (*t).clone(),
            })
            .collect();
        let statement = Parser::new(&dialect)
            .with_tokens_with_locations(tokens)
            .parse_statement()
            .map_err(syntax_error)?;
        return Ok(Some(Statement::DataFusion(DFStatement::Statement(
            Box::new(statement),
        ))));
    }
    let mut parsed = DFParserBuilder::new(text)
        .with_dialect(&dialect)
        .build()?
        .parse_statements()
        .map_err(|e| match e {
            DataFusionError::SQL(inner, _) => syntax_error(*inner),
            other => other.into(),
        })?;
    Ok(parsed.pop_front().map(Statement::DataFusion))
}

fn syntax_error(e: ParserError) -> crate::error::Error {
    if e == ParserError::RecursionLimitExceeded {
        return limits::too_complex("it nests parentheses or subqueries too deep".to_string());
    }
    DataFusionError::SQL(Box::new(e), None).into()
}

/// Consumes the word `word` (case-insensitive) if it is next.
fn parse_word(parser: &mut Parser, word: &str) -> bool {
    match &parser.peek_token().token {
        Token::Word(w) if w.value.eq_ignore_ascii_case(word) => {
            parser.next_token();
            true
        }
        _ => false,
    }
}

fn expect_word(parser: &mut Parser, word: &str) -> Result<(), ParserError> {
    if parse_word(parser, word) {
        Ok(())
    } else {
        parser.expected(word, parser.peek_token())
    }
}

/// `VACUUM ...` or `OPTIMIZE ...` (see the module documentation). PostgreSQL's VACUUM options
/// that have no meaning for Delta tables (FREEZE, VERBOSE, ANALYZE, ...) are accepted and do
/// nothing; FULL compacts too.
fn parse_maintain(text: &str) -> Result<Maintain, ParserError> {
    const ACCEPTED: &[&str] = &[
        "FREEZE",
        "VERBOSE",
        "ANALYZE",
        "DISABLE_PAGE_SKIPPING",
        "SKIP_LOCKED",
        "INDEX_CLEANUP",
        "PROCESS_MAIN",
        "PROCESS_TOAST",
        "TRUNCATE",
        "PARALLEL",
        "SKIP_DATABASE_STATS",
        "ONLY_DATABASE_STATS",
        "BUFFER_USAGE_LIMIT",
    ];
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(text)?;
    let mut maintain = Maintain {
        compact: false,
        vacuum: false,
        tables: Vec::new(),
    };
    if parse_word(&mut parser, "OPTIMIZE") {
        maintain.compact = true;
        parse_word(&mut parser, "TABLE");
    } else {
        expect_word(&mut parser, "VACUUM")?;
        maintain.vacuum = true;
        if parser.consume_token(&Token::LParen) {
            loop {
                let option = parser.parse_identifier()?.value.to_ascii_uppercase();
                // An option's value (`FULL true`, `PARALLEL 4`), if any.
                let value = match parser.peek_token().token {
                    Token::Comma | Token::RParen => None,
                    _ => Some(parser.parse_value()?.to_string().to_ascii_lowercase()),
                };
                let on = !matches!(value.as_deref(), Some("false" | "off" | "0"));
                if option == "FULL" {
                    maintain.compact = on;
                } else if !ACCEPTED.contains(&option.as_str()) {
                    return Err(ParserError::ParserError(format!(
                        "unrecognized VACUUM option \"{}\"",
                        option.to_lowercase()
                    )));
                }
                if !parser.consume_token(&Token::Comma) {
                    parser.expect_token(&Token::RParen)?;
                    break;
                }
            }
        } else {
            loop {
                if parse_word(&mut parser, "FULL") {
                    maintain.compact = true;
                } else if !["FREEZE", "VERBOSE", "ANALYZE"]
                    .iter()
                    .any(|w| parse_word(&mut parser, w))
                {
                    break;
                }
            }
        }
    }
    if parser.peek_token().token != Token::EOF {
        maintain.tables = parser.parse_comma_separated(|p| p.parse_object_name(false))?;
    }
    if maintain.compact && !maintain.vacuum && maintain.tables.is_empty() {
        return parser.expected("a table name", parser.peek_token());
    }
    let _ = parser.consume_token(&Token::SemiColon);
    if parser.peek_token().token != Token::EOF {
        return parser.expected("end of statement", parser.peek_token());
    }
    Ok(maintain)
}

/// `None` when the statement is `CREATE OR REPLACE <something other than MODEL>`.
fn parse_create_model(text: &str) -> Result<Option<CreateModel>, ParserError> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(text)?;
    parser.expect_keyword(Keyword::CREATE)?;
    let or_replace = parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    if !parse_word(&mut parser, "MODEL") {
        return Ok(None);
    }
    // A mistake before the query names the clause order, which is fixed.
    let in_order = |e: ParserError| {
        let message = match e {
            ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
            other => other.to_string(),
        };
        ParserError::ParserError(format!(
            "{message}; CREATE MODEL takes its clauses in this order: CREATE [OR REPLACE] \
             MODEL [IF NOT EXISTS] name KIND kind [TARGET column] [TREATMENT column] [OPTIONS \
             (key = value, ...)] {{AS query | FROM 'directory'}}"
        ))
    };
    let ModelClauses {
        if_not_exists,
        name,
        kind,
        target,
        treatment,
        options,
        from_files,
    } = parse_create_model_clauses(&mut parser).map_err(in_order)?;
    let source = if from_files {
        match parser.next_token().token {
            Token::SingleQuotedString(directory) => ModelSource::Files(directory),
            other => {
                return Err(ParserError::ParserError(format!(
                    "FROM takes the model's directory as a quoted string, found {other}"
                )));
            }
        }
    } else {
        let query_start = LineOffsets::new(text).byte(parser.peek_token().span.start);
        // Parse the query to report syntax errors here; keep the text as the user wrote it.
        parser.parse_query()?;
        ModelSource::Query(text[query_start..].trim().to_string())
    };
    if parser.peek_token().token != Token::EOF {
        return parser.expected("end of statement", parser.peek_token());
    }
    Ok(Some(CreateModel {
        name,
        or_replace,
        if_not_exists,
        kind,
        target,
        treatment,
        options,
        source,
    }))
}

/// What CREATE MODEL's clauses hold.
struct ModelClauses {
    if_not_exists: bool,
    name: String,
    kind: String,
    target: Option<String>,
    treatment: Option<String>,
    options: Vec<(String, String)>,
    /// FROM 'directory' follows, rather than AS query.
    from_files: bool,
}

/// CREATE MODEL's clauses after `MODEL`, up to and including `AS` or `FROM`.
fn parse_create_model_clauses(parser: &mut Parser) -> Result<ModelClauses, ParserError> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = fold_identifier(&parser.parse_identifier()?);
    expect_word(parser, "KIND")?;
    let kind = fold_identifier(&parser.parse_identifier()?);
    let target = if parse_word(parser, "TARGET") {
        Some(fold_identifier(&parser.parse_identifier()?))
    } else {
        None
    };
    let treatment = if parse_word(parser, "TREATMENT") {
        Some(fold_identifier(&parser.parse_identifier()?))
    } else {
        None
    };
    let mut options = Vec::new();
    if parser.parse_keyword(Keyword::OPTIONS) {
        parser.expect_token(&Token::LParen)?;
        loop {
            let key = fold_identifier(&parser.parse_identifier()?);
            parser.expect_token(&Token::Eq)?;
            let value = match parser.parse_value()?.value {
                Value::SingleQuotedString(s) => s,
                Value::Number(n, _) => n.clone(),
                Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(ParserError::ParserError(format!(
                        "option {key}: expected a string, number or boolean, found {other}"
                    )));
                }
            };
            options.push((key, value));
            if parser.consume_token(&Token::RParen) {
                break;
            }
            parser.expect_token(&Token::Comma)?;
        }
    }
    let from_files = parser.parse_keyword(Keyword::FROM);
    if !from_files {
        parser.expect_keyword(Keyword::AS)?;
    }
    Ok(ModelClauses {
        if_not_exists,
        name,
        kind,
        target,
        treatment,
        options,
        from_files,
    })
}

fn parse_drop_model(text: &str) -> Result<DropModel, ParserError> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(text)?;
    parser.expect_keyword(Keyword::DROP)?;
    expect_word(&mut parser, "MODEL")?;
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = fold_identifier(&parser.parse_identifier()?);
    if parser.peek_token().token != Token::EOF {
        return parser.expected("end of statement", parser.peek_token());
    }
    Ok(DropModel { name, if_exists })
}

/// Byte offsets of line starts, to turn a token's (line, column) into a byte offset.
struct LineOffsets<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineOffsets<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineOffsets { text, starts }
    }

    /// Columns count characters, from 1.
    fn byte(&self, location: Location) -> usize {
        let Some(&line_start) = self.starts.get(location.line.saturating_sub(1) as usize) else {
            return self.text.len();
        };
        self.text[line_start..]
            .char_indices()
            .nth(location.column.saturating_sub(1) as usize)
            .map_or(self.text.len(), |(i, _)| line_start + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Statement {
        let mut statements = parse(sql).unwrap();
        assert_eq!(statements.len(), 1, "{sql}");
        statements.pop().unwrap()
    }

    #[test]
    fn create_model_with_a_treatment() {
        let Statement::CreateModel(create) = one(
            "CREATE MODEL coupon KIND uplift TARGET retained TREATMENT Got_Coupon \
             AS SELECT x, got_coupon, retained FROM t",
        ) else {
            panic!()
        };
        assert_eq!(create.target.as_deref(), Some("retained"));
        assert_eq!(create.treatment.as_deref(), Some("got_coupon"));
        // The clauses keep their order: TREATMENT before TARGET is an error naming it.
        let error = parse("CREATE MODEL m KIND uplift TREATMENT t TARGET y AS SELECT 1")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("[TARGET column] [TREATMENT column]"),
            "{error}"
        );
    }

    #[test]
    fn create_model_from_a_directory() {
        let Statement::CreateModel(create) = one(
            "CREATE MODEL reviews KIND text_encoder OPTIONS (batch_size = 64) \
             FROM '/data/all-MiniLM-L6-v2'",
        ) else {
            panic!()
        };
        assert_eq!(create.kind, "text_encoder");
        assert_eq!(create.options, vec![("batch_size".into(), "64".into())]);
        assert_eq!(
            create.source,
            ModelSource::Files("/data/all-MiniLM-L6-v2".into())
        );
        // FROM takes one string literal and nothing after it.
        for bad in [
            "CREATE MODEL m KIND text_encoder FROM dir",
            "CREATE MODEL m KIND text_encoder FROM '/a' '/b'",
            "CREATE MODEL m KIND text_encoder FROM",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_model_with_everything() {
        let sql = "create or replace model Churn kind CHURN_CLASSIFIER target Churned \
                   options (hidden = '64,32', epochs = 3, balanced = true)\n\
                   as select a, 'x;y' as b, churned from t where a > 1";
        let Statement::CreateModel(create) = one(sql) else {
            panic!()
        };
        assert_eq!(
            create,
            CreateModel {
                name: "churn".into(),
                or_replace: true,
                if_not_exists: false,
                kind: "churn_classifier".into(),
                target: Some("churned".into()),
                treatment: None,
                options: vec![
                    ("hidden".into(), "64,32".into()),
                    ("epochs".into(), "3".into()),
                    ("balanced".into(), "true".into()),
                ],
                source: ModelSource::Query(
                    "select a, 'x;y' as b, churned from t where a > 1".into()
                ),
            }
        );
    }

    #[test]
    fn scripts_mix_tenure_and_datafusion_statements() {
        let sql = "SELECT 1; -- a comment; with a semicolon\n\
                   CREATE MODEL m KIND churn_classifier TARGET y AS SELECT x, y FROM t;\n\
                   DROP MODEL IF EXISTS \"M\";\nCREATE OR REPLACE VIEW v AS SELECT 1;;";
        let statements = parse(sql).unwrap();
        assert_eq!(statements.len(), 4);
        assert!(matches!(statements[0], Statement::DataFusion(_)));
        let Statement::CreateModel(create) = &statements[1] else {
            panic!()
        };
        assert_eq!(
            create.source,
            ModelSource::Query("SELECT x, y FROM t".into())
        );
        let Statement::DropModel(drop) = &statements[2] else {
            panic!()
        };
        assert_eq!((drop.name.as_str(), drop.if_exists), ("M", true));
        assert!(matches!(statements[3], Statement::DataFusion(_)));
    }

    #[test]
    fn syntax_errors_say_what_was_expected() {
        let err = parse("CREATE MODEL m churn_classifier AS SELECT 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Expected: KIND"), "{err}");
        let err = parse("CREATE MODEL m KIND k OPTIONS (a = ) AS SELECT 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("SQL error"), "{err}");
        let err = parse("CREATE MODEL m KIND k AS SELEC 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("SELEC"), "{err}");
        let err = parse("DROP MODEL a b").unwrap_err().to_string();
        assert!(err.contains("end of statement"), "{err}");
    }
}
