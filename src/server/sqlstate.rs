//! SQLSTATE codes for tenure's errors, so clients can tell a missing table (42P01) from a
//! syntax error (42601) or a bad cast (22P02) the way they do with PostgreSQL.
//!
//! Errors from tenure's own code carry their kind in the [`Error`] variant. DataFusion's
//! errors carry it partly in the variant (SQL parse, schema, arrow cast, resources) and
//! partly only in the message (planning errors), so those are matched on the wording
//! DataFusion uses; anything unrecognised is XX000, PostgreSQL's internal_error.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use pgwire::error::ErrorInfo;

use crate::error::Error;

pub const QUERY_CANCELED: &str = "57014";
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
pub const ACTIVE_SQL_TRANSACTION: &str = "25001";
pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
pub const NO_ACTIVE_SQL_TRANSACTION: &str = "25P01";
pub const TOO_MANY_CONNECTIONS: &str = "53300";
pub const INVALID_CATALOG_NAME: &str = "3D000";
pub const INVALID_AUTHORIZATION: &str = "28000";
pub const PROTOCOL_VIOLATION: &str = "08P01";
pub const ADMIN_SHUTDOWN: &str = "57P01";
pub const UNDEFINED_CURSOR: &str = "34000";

/// An ERROR response with `code`.
pub fn error(code: &str, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new("ERROR".to_string(), code.to_string(), message.into())
}

/// A FATAL response (the server closes the connection after it).
pub fn fatal(code: &str, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new("FATAL".to_string(), code.to_string(), message.into())
}

/// The error response for `e`.
pub fn error_info(e: &Error) -> ErrorInfo {
    error(code(e), message(e))
}

/// The message without DataFusion's "Error during planning:" style prefixes, which say
/// nothing to a SQL user.
fn message(e: &Error) -> String {
    let text = e.to_string();
    let mut rest = text.as_str();
    for prefix in [
        "Error during planning: ",
        "Execution error: ",
        "Schema error: ",
        "Arrow error: ",
        "This feature is not implemented: ",
        "SQL error: ",
        "External error: ",
        "Invalid argument error: ",
    ] {
        if let Some(stripped) = rest.strip_prefix(prefix) {
            rest = stripped;
        }
    }
    rest.to_string()
}

/// The SQLSTATE of `e`.
pub fn code(e: &Error) -> &'static str {
    match e {
        Error::DataDirInUse { .. } => "55006",
        Error::Config(_) => "F0000",
        Error::Invalid(message) => invalid_code(message),
        Error::NotFound { kind, .. } => match *kind {
            "table" | "view" | "relation" => "42P01",
            "schema" => "3F000",
            "column" => "42703",
            "function" => "42883",
            _ => "42704",
        },
        Error::AlreadyExists { kind, .. } => match *kind {
            "table" | "view" | "relation" => "42P07",
            "schema" => "42P06",
            _ => "42710",
        },
        Error::PermissionDenied(_) => "42501",
        Error::SerializationFailure(_) => "40001",
        Error::DataFusion(e) => datafusion_code(e),
        Error::Delta(_) | Error::Catalog(_) => "XX000",
        Error::Io(_) => "58030",
        Error::Model(e) => model_code(e),
    }
}

fn invalid_code(message: &str) -> &'static str {
    if message.contains("violates its NOT NULL constraint") {
        "23502"
    } else if message.contains("no unique constraint matching")
        || message.contains("there is no primary key for referenced table")
    {
        "42830"
    } else if message.contains("because constraint") && message.ends_with("requires it") {
        "2BP01"
    } else if message.starts_with("foreign key columns") && message.contains("incompatible") {
        "42804"
    } else if message.starts_with("multiple primary keys") {
        "42P16"
    } else if message.starts_with("invalid value for column") {
        "22P02"
    } else if message.starts_with("cursor can only scan forward") {
        "55000"
    } else if message.contains("not supported") || message.contains("not yet supported") {
        FEATURE_NOT_SUPPORTED
    } else if message.contains("does not exist") {
        "42704"
    } else {
        "22023"
    }
}

fn model_code(e: &tenure_models::Error) -> &'static str {
    use tenure_models::Error as M;
    match e {
        M::InvalidData(_) => "22023",
        M::InvalidOption(_) => "22023",
        M::InvalidInput(_) => "22023",
        M::CorruptArtifact(_) => "XX001",
        M::Device(_) => FEATURE_NOT_SUPPORTED,
        M::Cancelled => QUERY_CANCELED,
        M::Candle(_) => "XX000",
    }
}

fn datafusion_code(e: &DataFusionError) -> &'static str {
    match e {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
        },
        DataFusionError::ArrowError(e, _) => arrow_code(e),
        DataFusionError::ParquetError(_) | DataFusionError::ObjectStore(_) => "58030",
        DataFusionError::IoError(_) => "58030",
        DataFusionError::NotImplemented(_) => FEATURE_NOT_SUPPORTED,
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::Plan(message) => plan_code(message),
        DataFusionError::Execution(message) => execution_code(message),
        DataFusionError::Context(_, inner) => datafusion_code(inner),
        DataFusionError::Shared(inner) => datafusion_code(inner),
        DataFusionError::Diagnostic(_, inner) => datafusion_code(inner),
        DataFusionError::External(inner) => {
            if let Some(e) = inner.downcast_ref::<Error>() {
                code(e)
            } else if let Some(e) = inner.downcast_ref::<DataFusionError>() {
                datafusion_code(e)
            } else if let Some(e) = inner.downcast_ref::<ArrowError>() {
                arrow_code(e)
            } else if let Some(e) = inner.downcast_ref::<tenure_models::Error>() {
                model_code(e)
            } else {
                "XX000"
            }
        }
        DataFusionError::Collection(errors) => errors.first().map_or("XX000", datafusion_code),
        _ => "XX000",
    }
}

fn arrow_code(e: &ArrowError) -> &'static str {
    match e {
        ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
        ArrowError::DivideByZero => "22012",
        ArrowError::ArithmeticOverflow(_) => "22003",
        ArrowError::InvalidArgumentError(message) if message.contains("non-nullable") => "23502",
        ArrowError::ExternalError(inner) => {
            if let Some(e) = inner.downcast_ref::<DataFusionError>() {
                datafusion_code(e)
            } else {
                "XX000"
            }
        }
        _ => "XX000",
    }
}

fn plan_code(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    if lower.contains("table") && (lower.contains("not found") || lower.contains("does not exist"))
    {
        "42P01"
    } else if lower.contains("invalid function")
        || lower.contains("unknown function")
        || lower.contains("no function matches")
        || lower.contains("cannot infer common argument type")
        || lower.contains("failed to coerce arguments")
        || lower.contains("does not support arguments")
    {
        "42883"
    } else if lower.contains("no field named")
        || lower.contains("column") && lower.contains("not found")
    {
        "42703"
    } else if lower.contains("does not exist") {
        "42704"
    } else if lower.contains("already exists") {
        "42P07"
    } else if lower.contains("non-nullable") || lower.contains("not null") {
        "23502"
    } else if lower.contains("cannot cast") || lower.contains("cast error") {
        "22P02"
    } else if lower.contains("expects") || lower.contains("argument") {
        // Tenure's functions check arity and types at planning ("churn_score expects ...").
        "42883"
    } else {
        // syntax_error_or_access_rule_violation: the class of planning errors.
        "42000"
    }
}

fn execution_code(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    if lower.contains("non-nullable") || lower.contains("not null") {
        "23502"
    } else if lower.contains("cast error") || lower.contains("cannot cast") {
        "22P02"
    } else if lower.contains("divide by zero") || lower.contains("division by zero") {
        "22012"
    } else if lower.contains("overflow") {
        "22003"
    } else if lower.contains("does not exist") {
        "42704"
    } else {
        "XX000"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::parser::ParserError;

    #[test]
    fn codes_by_kind() {
        let not_found = Error::NotFound {
            kind: "table",
            name: "t".into(),
        };
        assert_eq!(code(&not_found), "42P01");
        let syntax = Error::DataFusion(DataFusionError::SQL(
            Box::new(ParserError::ParserError("x".into())),
            None,
        ));
        assert_eq!(code(&syntax), "42601");
        let plan = Error::DataFusion(DataFusionError::Plan(
            "table 'tenure.public.nope' not found".into(),
        ));
        assert_eq!(code(&plan), "42P01");
        let cast = Error::DataFusion(DataFusionError::ArrowError(
            Box::new(ArrowError::CastError(
                "Cannot cast string 'x' to value of Int64 type".into(),
            )),
            None,
        ));
        assert_eq!(code(&cast), "22P02");
        let wrapped = Error::DataFusion(DataFusionError::Context(
            "while planning".into(),
            Box::new(DataFusionError::External(Box::new(Error::NotFound {
                kind: "schema",
                name: "s".into(),
            }))),
        ));
        assert_eq!(code(&wrapped), "3F000");
        assert_eq!(message(&plan), "table 'tenure.public.nope' not found");
    }
}
