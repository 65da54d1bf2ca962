//! tenure's error type. Each variant is a kind of failure a user can act on, and says which
//! SQLSTATE it is ([`Error::sqlstate`]); the server answers clients with that code.
//!
//! DataFusion's own errors carry their kind partly in the variant (SQL parse, schema, arrow
//! cast, resources) and partly only in the message (planning and execution errors): those
//! are read from DataFusion's wording, here and nowhere else. Anything unrecognised is
//! internal_error (XX000).

use std::path::PathBuf;

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;

use crate::pg::sqlstate::SqlState;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in tenure, grouped by what the user should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process owns the data directory.
    #[error("data directory {} is in use by process {pid}", dir.display())]
    DataDirInUse { dir: PathBuf, pid: String },
    /// A bad setting in tenure.toml, the environment or a flag.
    #[error("configuration error: {0}")]
    Config(String),
    /// The statement is well-formed but asks for something impossible (a bad value, an
    /// unknown option, ...): invalid_parameter_value.
    #[error("{0}")]
    Invalid(String),
    /// A feature tenure does not have (yet): feature_not_supported.
    #[error("{0}")]
    Unsupported(String),
    /// A failure with a SQLSTATE of its own (a NOT NULL violation, a foreign key to a table
    /// without a key, ...).
    #[error("{message}")]
    State { state: SqlState, message: String },
    /// A broken invariant of tenure's own: the client is told only that it happened; the
    /// server's log has the message.
    #[error("internal error: {0}")]
    Internal(String),
    /// A named object does not exist.
    #[error("{kind} {name} does not exist")]
    NotFound { kind: &'static str, name: String },
    /// A named object already exists.
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// A server client named a path outside the configured roots.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Errors from planning or executing a query, in PostgreSQL's words where it has them.
    #[error("{}", postgres_message(.0))]
    DataFusion(#[from] DataFusionError),
    /// Errors from the Delta Lake storage layer.
    #[error("storage error: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// A transaction block could not commit because another session changed what it wrote.
    #[error("{0}")]
    SerializationFailure(String),
    /// The catalog file could not be read or written.
    #[error("catalog error: {0}")]
    Catalog(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Training, loading or scoring a model failed (bad options, bad data, cancelled, ...).
    #[error(transparent)]
    Model(#[from] tenure_models::Error),
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }

    pub fn unsupported(message: impl Into<String>) -> Error {
        Error::Unsupported(message.into())
    }

    /// An error with SQLSTATE `state`.
    pub fn state(state: SqlState, message: impl Into<String>) -> Error {
        Error::State {
            state,
            message: message.into(),
        }
    }

    /// The SQLSTATE clients receive for this error.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            Error::DataDirInUse { .. } => SqlState::ObjectInUse,
            Error::Config(_) => SqlState::ConfigFileError,
            Error::Invalid(_) => SqlState::InvalidParameterValue,
            Error::Unsupported(_) => SqlState::FeatureNotSupported,
            Error::State { state, .. } => *state,
            Error::Internal(_) => SqlState::InternalError,
            Error::NotFound { kind, .. } => match *kind {
                "table" | "view" | "relation" => SqlState::UndefinedTable,
                "schema" => SqlState::InvalidSchemaName,
                "column" => SqlState::UndefinedColumn,
                "function" => SqlState::UndefinedFunction,
                _ => SqlState::UndefinedObject,
            },
            Error::AlreadyExists { kind, .. } => match *kind {
                "table" | "view" | "relation" => SqlState::DuplicateTable,
                "schema" => SqlState::DuplicateSchema,
                _ => SqlState::DuplicateObject,
            },
            Error::PermissionDenied(_) => SqlState::InsufficientPrivilege,
            Error::SerializationFailure(_) => SqlState::SerializationFailure,
            Error::DataFusion(e) => datafusion_state(e),
            Error::Delta(_) | Error::Catalog(_) => SqlState::InternalError,
            Error::Io(_) => SqlState::IoError,
            Error::Model(e) => model_state(e),
        }
    }

    /// Whether the message is for the server's log only: a client gets a generic one.
    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Internal(_))
    }
}

fn model_state(e: &tenure_models::Error) -> SqlState {
    use tenure_models::Error as M;
    match e {
        M::InvalidData(_) | M::InvalidOption(_) | M::InvalidInput(_) => {
            SqlState::InvalidParameterValue
        }
        M::CorruptArtifact(_) => SqlState::DataCorrupted,
        M::Device(_) => SqlState::FeatureNotSupported,
        M::Cancelled => SqlState::QueryCanceled,
        M::Candle(_) => SqlState::InternalError,
    }
}

fn registry_state(e: &tenure_udfs::ModelError) -> SqlState {
    use tenure_udfs::ModelError as R;
    match e {
        R::InvalidReference(_) => SqlState::InvalidParameterValue,
        R::NotFound(_) => SqlState::UndefinedObject,
        R::Unreadable(_) => SqlState::IoError,
        R::Corrupt(_) => SqlState::DataCorrupted,
    }
}

fn datafusion_state(e: &DataFusionError) -> SqlState {
    match e {
        DataFusionError::SQL(..) => SqlState::SyntaxError,
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            SchemaError::FieldNotFound { .. } => SqlState::UndefinedColumn,
            SchemaError::AmbiguousReference { .. } => SqlState::AmbiguousColumn,
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => SqlState::DuplicateColumn,
        },
        DataFusionError::ArrowError(e, _) => arrow_state(e),
        DataFusionError::ObjectStore(e) => match e.as_ref() {
            object_store::Error::PermissionDenied { .. } => SqlState::InsufficientPrivilege,
            object_store::Error::NotFound { .. } => SqlState::UndefinedFile,
            _ => SqlState::IoError,
        },
        DataFusionError::ParquetError(_) | DataFusionError::IoError(_) => SqlState::IoError,
        DataFusionError::NotImplemented(_) => SqlState::FeatureNotSupported,
        DataFusionError::ResourcesExhausted(_) => SqlState::OutOfMemory,
        DataFusionError::Plan(message) => plan_state(message),
        DataFusionError::Execution(message) => execution_state(message),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            datafusion_state(inner)
        }
        DataFusionError::Shared(inner) => datafusion_state(inner),
        DataFusionError::External(inner) => {
            if let Some(e) = inner.downcast_ref::<Error>() {
                e.sqlstate()
            } else if let Some(e) = inner.downcast_ref::<DataFusionError>() {
                datafusion_state(e)
            } else if let Some(e) = inner.downcast_ref::<ArrowError>() {
                arrow_state(e)
            } else if let Some(e) = inner.downcast_ref::<tenure_models::Error>() {
                model_state(e)
            } else if let Some(e) = inner.downcast_ref::<tenure_udfs::ModelError>() {
                registry_state(e)
            } else {
                SqlState::InternalError
            }
        }
        DataFusionError::Collection(errors) => errors
            .first()
            .map_or(SqlState::InternalError, datafusion_state),
        _ => SqlState::InternalError,
    }
}

fn arrow_state(e: &ArrowError) -> SqlState {
    match e {
        ArrowError::CastError(message) if message.starts_with("Can't cast value") => {
            SqlState::NumericValueOutOfRange
        }
        ArrowError::InvalidArgumentError(message) if message.contains("too large to store") => {
            SqlState::NumericValueOutOfRange
        }
        ArrowError::CastError(_) | ArrowError::ParseError(_) => SqlState::InvalidTextRepresentation,
        ArrowError::DivideByZero => SqlState::DivisionByZero,
        ArrowError::ArithmeticOverflow(_) => SqlState::NumericValueOutOfRange,
        ArrowError::InvalidArgumentError(message) if message.contains("non-nullable") => {
            SqlState::NotNullViolation
        }
        ArrowError::ExternalError(inner) => {
            if let Some(e) = inner.downcast_ref::<DataFusionError>() {
                datafusion_state(e)
            } else if let Some(e) = inner.downcast_ref::<Error>() {
                e.sqlstate()
            } else {
                SqlState::InternalError
            }
        }
        _ => SqlState::InternalError,
    }
}

/// DataFusion's planning errors, by their wording.
fn plan_state(message: &str) -> SqlState {
    let lower = message.to_ascii_lowercase();
    if lower.contains("table") && (lower.contains("not found") || lower.contains("does not exist"))
    {
        SqlState::UndefinedTable
    } else if lower.contains("invalid function")
        || lower.contains("unknown function")
        || lower.contains("no function matches")
        || lower.contains("cannot infer common argument type")
        || lower.contains("failed to coerce arguments")
        || lower.contains("does not support arguments")
    {
        SqlState::UndefinedFunction
    } else if lower.contains("no field named")
        || lower.contains("column") && lower.contains("not found")
    {
        SqlState::UndefinedColumn
    } else if lower.contains("does not exist") {
        SqlState::UndefinedObject
    } else if lower.contains("already exists") {
        SqlState::DuplicateTable
    } else if lower.contains("non-nullable") || lower.contains("not null") {
        SqlState::NotNullViolation
    } else if lower.contains("cannot cast") || lower.contains("cast error") {
        SqlState::InvalidTextRepresentation
    } else if lower.contains("expects") || lower.contains("argument") {
        // Tenure's functions check arity and types at planning ("churn_score expects ...").
        SqlState::UndefinedFunction
    } else {
        // syntax_error_or_access_rule_violation: the class of planning errors.
        SqlState::SyntaxErrorOrAccessRuleViolation
    }
}

/// DataFusion's execution errors, by their wording.
fn execution_state(message: &str) -> SqlState {
    let lower = message.to_ascii_lowercase();
    if lower.contains("non-nullable") || lower.contains("not null") {
        SqlState::NotNullViolation
    } else if lower.contains("cast error") || lower.contains("cannot cast") {
        SqlState::InvalidTextRepresentation
    } else if lower.contains("divide by zero") || lower.contains("division by zero") {
        SqlState::DivisionByZero
    } else if lower.contains("overflow") {
        SqlState::NumericValueOutOfRange
    } else if lower.contains("does not exist") {
        SqlState::UndefinedObject
    } else {
        SqlState::InternalError
    }
}

/// A DataFusion error's message, with the value errors PostgreSQL words otherwise (and that
/// clients and people recognise) in PostgreSQL's words: `'x'::int` is `invalid input syntax
/// for type integer: "x"` rather than Arrow's cast error inside an optimizer rule's.
fn postgres_message(e: &DataFusionError) -> String {
    let text = e.to_string();
    postgres_value_error(&text).unwrap_or(text)
}

fn postgres_value_error(text: &str) -> Option<String> {
    // "Cannot cast string 'x' to value of Int32 type", "Cannot cast value 'x' to ..."
    for marker in ["Cannot cast string '", "Cannot cast value '"] {
        if let Some(start) = text.find(marker) {
            let rest = &text[start + marker.len()..];
            let end = rest.rfind("' to value of ")?;
            let target = rest[end + "' to value of ".len()..].split(" type").next()?;
            return Some(format!(
                "invalid input syntax for type {}: \"{}\"",
                postgres_type(target),
                &rest[..end]
            ));
        }
    }
    // "Error parsing timestamp from 'x': ..."
    if let Some(start) = text.find("Error parsing timestamp from '") {
        let rest = &text[start + "Error parsing timestamp from '".len()..];
        let value = &rest[..rest.rfind("':")?];
        return Some(format!(
            "invalid input syntax for type timestamp: \"{value}\""
        ));
    }
    // "Can't cast value 3000000000 to type Int32"
    if let Some(start) = text.find("Can't cast value ") {
        let target = text[start..].rsplit("to type ").next()?.trim();
        return Some(format!("{} out of range", postgres_type(target)));
    }
    // "1234.50 is too large to store in a Decimal128 of precision 4. Max is 99.99"
    if let Some(end) = text.find(" is too large to store in a Decimal") {
        let value = text[..end].rsplit([' ', '\n']).next()?;
        let rest = &text[end..];
        let precision: String = rest
            .split("precision ")
            .nth(1)?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let max = rest.split("Max is ").nth(1)?.trim();
        let scale = max
            .split_once('.')
            .map_or(0, |(_, fraction)| fraction.len());
        return Some(format!(
            "numeric field overflow: {value} does not fit numeric({precision},{scale}) \
             (whose values must round to an absolute value of at most {max})"
        ));
    }
    None
}

/// PostgreSQL's name for an Arrow type named in a DataFusion message.
fn postgres_type(arrow: &str) -> String {
    match arrow {
        "Int8" | "Int16" => "smallint",
        "Int32" => "integer",
        "Int64" => "bigint",
        "Float16" | "Float32" => "real",
        "Float64" => "double precision",
        "Boolean" => "boolean",
        "Date32" | "Date64" => "date",
        "Utf8" | "LargeUtf8" | "Utf8View" => "text",
        other if other.starts_with("Decimal") => "numeric",
        other if other.starts_with("Timestamp") => "timestamp",
        other => return other.to_ascii_lowercase(),
    }
    .to_string()
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::DataFusion(DataFusionError::ArrowError(Box::new(e), None))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::parser::ParserError;

    use super::*;

    fn not_found(kind: &'static str) -> Error {
        Error::NotFound {
            kind,
            name: "x".into(),
        }
    }

    fn exists(kind: &'static str) -> Error {
        Error::AlreadyExists {
            kind,
            name: "x".into(),
        }
    }

    fn plan(message: &str) -> Error {
        Error::DataFusion(DataFusionError::Plan(message.into()))
    }

    fn execution(message: &str) -> Error {
        Error::DataFusion(DataFusionError::Execution(message.into()))
    }

    fn arrow(e: ArrowError) -> Error {
        Error::DataFusion(DataFusionError::ArrowError(Box::new(e), None))
    }

    /// Value errors read as PostgreSQL writes them, with its SQLSTATEs.
    #[test]
    fn value_errors_in_postgres_words() {
        let cast = |message: &str| {
            Error::DataFusion(DataFusionError::Context(
                "Optimizer rule 'simplify_expressions' failed".into(),
                Box::new(DataFusionError::ArrowError(
                    Box::new(ArrowError::CastError(message.into())),
                    None,
                )),
            ))
        };
        let e = cast("Cannot cast string 'x' to value of Int32 type");
        assert_eq!(
            e.to_string(),
            "invalid input syntax for type integer: \"x\""
        );
        assert_eq!(e.sqlstate(), SqlState::InvalidTextRepresentation);
        let e = cast("Can't cast value 3000000000 to type Int32");
        assert_eq!(e.to_string(), "integer out of range");
        assert_eq!(e.sqlstate(), SqlState::NumericValueOutOfRange);
        let e = arrow(ArrowError::InvalidArgumentError(
            "1234.50 is too large to store in a Decimal128 of precision 4. Max is 99.99".into(),
        ));
        assert_eq!(
            e.to_string(),
            "numeric field overflow: 1234.50 does not fit numeric(4,2) (whose values must round \
             to an absolute value of at most 99.99)"
        );
        assert_eq!(e.sqlstate(), SqlState::NumericValueOutOfRange);
        // Anything else keeps DataFusion's message.
        assert_eq!(
            plan("no such thing").to_string(),
            "Error during planning: no such thing"
        );
    }

    /// One row per way an error chooses its SQLSTATE.
    #[test]
    fn every_error_has_its_sqlstate() {
        use SqlState::*;
        let rows: Vec<(Error, SqlState)> = vec![
            (
                Error::DataDirInUse {
                    dir: "d".into(),
                    pid: "1".into(),
                },
                ObjectInUse,
            ),
            (Error::Config("x".into()), ConfigFileError),
            (Error::invalid("bad value"), InvalidParameterValue),
            (Error::unsupported("not yet"), FeatureNotSupported),
            (Error::state(NotNullViolation, "null"), NotNullViolation),
            (Error::state(InvalidForeignKey, "fk"), InvalidForeignKey),
            (Error::Internal("x".into()), InternalError),
            (not_found("table"), UndefinedTable),
            (not_found("view"), UndefinedTable),
            (not_found("relation"), UndefinedTable),
            (not_found("schema"), InvalidSchemaName),
            (not_found("column"), UndefinedColumn),
            (not_found("function"), UndefinedFunction),
            (not_found("model"), UndefinedObject),
            (exists("table"), DuplicateTable),
            (exists("schema"), DuplicateSchema),
            (exists("model"), DuplicateObject),
            (Error::PermissionDenied("x".into()), InsufficientPrivilege),
            (
                Error::SerializationFailure("x".into()),
                SerializationFailure,
            ),
            (Error::Catalog("x".into()), InternalError),
            (Error::Io(std::io::Error::other("x")), IoError),
            (
                Error::Model(tenure_models::Error::InvalidOption("x".into())),
                InvalidParameterValue,
            ),
            (
                Error::Model(tenure_models::Error::CorruptArtifact("x".into())),
                DataCorrupted,
            ),
            (Error::Model(tenure_models::Error::Cancelled), QueryCanceled),
            (
                Error::DataFusion(DataFusionError::External(Box::new(
                    tenure_udfs::ModelError::Unreadable("card.json is gone".into()),
                ))),
                IoError,
            ),
            (
                Error::DataFusion(DataFusionError::External(Box::new(
                    tenure_udfs::ModelError::Corrupt("bad weights".into()),
                ))),
                DataCorrupted,
            ),
            (
                Error::Model(tenure_models::Error::Device("x".into())),
                FeatureNotSupported,
            ),
            (
                Error::DataFusion(DataFusionError::SQL(
                    Box::new(ParserError::ParserError("x".into())),
                    None,
                )),
                SyntaxError,
            ),
            (
                Error::DataFusion(DataFusionError::NotImplemented("x".into())),
                FeatureNotSupported,
            ),
            (
                Error::DataFusion(DataFusionError::ResourcesExhausted("x".into())),
                OutOfMemory,
            ),
            (plan("table 'tenure.public.nope' not found"), UndefinedTable),
            (plan("Invalid function 'nope'"), UndefinedFunction),
            (plan("No field named nope"), UndefinedColumn),
            (plan("model 'm' does not exist"), UndefinedObject),
            (plan("view v already exists"), DuplicateTable),
            (plan("churn_score expects 3 arguments"), UndefinedFunction),
            (plan("something else"), SyntaxErrorOrAccessRuleViolation),
            (execution("Cast error: x"), InvalidTextRepresentation),
            (execution("Divide by zero"), DivisionByZero),
            (execution("Int64 overflow"), NumericValueOutOfRange),
            (execution("column a is non-nullable"), NotNullViolation),
            (execution("anything"), InternalError),
            (
                arrow(ArrowError::CastError("Cannot cast string 'x'".into())),
                InvalidTextRepresentation,
            ),
            (arrow(ArrowError::DivideByZero), DivisionByZero),
            (
                arrow(ArrowError::ArithmeticOverflow("x".into())),
                NumericValueOutOfRange,
            ),
            (
                Error::DataFusion(DataFusionError::Context(
                    "while planning".into(),
                    Box::new(DataFusionError::External(Box::new(not_found("schema")))),
                )),
                InvalidSchemaName,
            ),
            (
                Error::DataFusion(DataFusionError::External(Box::new(
                    tenure_models::Error::Cancelled,
                ))),
                QueryCanceled,
            ),
        ];
        for (error, state) in rows {
            assert_eq!(error.sqlstate(), state, "{error:?}");
        }
    }

    #[test]
    fn only_internal_errors_are_internal() {
        assert!(Error::Internal("x".into()).is_internal());
        assert!(!Error::Catalog("x".into()).is_internal());
        assert!(!execution("anything").is_internal());
    }
}
