//! The SQLSTATE codes tenure answers with, in one table: each [`SqlState`] with PostgreSQL's
//! code and condition name (Appendix A of PostgreSQL's manual), so that clients can tell a
//! missing table (42P01) from a syntax error (42601) or a bad cast (22P02) as they do with
//! PostgreSQL. Errors choose their state by type ([`crate::Error::sqlstate`]); the server
//! turns them into error responses (`server::sqlstate`).

macro_rules! sqlstates {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $condition:literal;)*) => {
        /// A SQLSTATE tenure uses.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum SqlState {
            $($(#[$doc])* $variant,)*
        }

        impl SqlState {
            /// Every state, in the table's order.
            pub const ALL: &'static [SqlState] = &[$(SqlState::$variant,)*];

            /// The five-character code.
            pub fn code(self) -> &'static str {
                match self {
                    $(SqlState::$variant => $code,)*
                }
            }

            /// PostgreSQL's name of the condition (as PL/pgSQL's EXCEPTION WHEN names it).
            pub fn condition(self) -> &'static str {
                match self {
                    $(SqlState::$variant => $condition,)*
                }
            }
        }
    };
}

sqlstates! {
    /// NOTICE and WARNING messages that report, not fail.
    SuccessfulCompletion = "00000", "successful_completion";
    ConnectionException = "08000", "connection_exception";
    ProtocolViolation = "08P01", "protocol_violation";
    FeatureNotSupported = "0A000", "feature_not_supported";
    InvalidGrantOperation = "0LP01", "invalid_grant_operation";
    CardinalityViolation = "21000", "cardinality_violation";
    StringDataRightTruncation = "22001", "string_data_right_truncation";
    NumericValueOutOfRange = "22003", "numeric_value_out_of_range";
    DivisionByZero = "22012", "division_by_zero";
    CharacterNotInRepertoire = "22021", "character_not_in_repertoire";
    InvalidParameterValue = "22023", "invalid_parameter_value";
    InvalidTextRepresentation = "22P02", "invalid_text_representation";
    NotNullViolation = "23502", "not_null_violation";
    ActiveSqlTransaction = "25001", "active_sql_transaction";
    NoActiveSqlTransaction = "25P01", "no_active_sql_transaction";
    InFailedSqlTransaction = "25P02", "in_failed_sql_transaction";
    InvalidAuthorizationSpecification = "28000", "invalid_authorization_specification";
    InvalidPassword = "28P01", "invalid_password";
    DependentObjectsStillExist = "2BP01", "dependent_objects_still_exist";
    InvalidCursorName = "34000", "invalid_cursor_name";
    InvalidSavepointSpecification = "3B001", "invalid_savepoint_specification";
    InvalidCatalogName = "3D000", "invalid_catalog_name";
    InvalidSchemaName = "3F000", "invalid_schema_name";
    SerializationFailure = "40001", "serialization_failure";
    /// The class of planning errors DataFusion reports without saying which.
    SyntaxErrorOrAccessRuleViolation = "42000", "syntax_error_or_access_rule_violation";
    InsufficientPrivilege = "42501", "insufficient_privilege";
    SyntaxError = "42601", "syntax_error";
    DuplicateColumn = "42701", "duplicate_column";
    AmbiguousColumn = "42702", "ambiguous_column";
    UndefinedColumn = "42703", "undefined_column";
    UndefinedObject = "42704", "undefined_object";
    DuplicateObject = "42710", "duplicate_object";
    DatatypeMismatch = "42804", "datatype_mismatch";
    InvalidForeignKey = "42830", "invalid_foreign_key";
    ReservedName = "42939", "reserved_name";
    UndefinedFunction = "42883", "undefined_function";
    UndefinedTable = "42P01", "undefined_table";
    DuplicateCursor = "42P03", "duplicate_cursor";
    DuplicateSchema = "42P06", "duplicate_schema";
    DuplicateTable = "42P07", "duplicate_table";
    InvalidTableDefinition = "42P16", "invalid_table_definition";
    OutOfMemory = "53200", "out_of_memory";
    TooManyConnections = "53300", "too_many_connections";
    /// A statement nested past the parser's limits (PostgreSQL's "stack depth limit
    /// exceeded").
    StatementTooComplex = "54001", "statement_too_complex";
    ObjectNotInPrerequisiteState = "55000", "object_not_in_prerequisite_state";
    ObjectInUse = "55006", "object_in_use";
    CantChangeRuntimeParam = "55P02", "cant_change_runtime_param";
    QueryCanceled = "57014", "query_canceled";
    AdminShutdown = "57P01", "admin_shutdown";
    CannotConnectNow = "57P03", "cannot_connect_now";
    IoError = "58030", "io_error";
    UndefinedFile = "58P01", "undefined_file";
    ConfigFileError = "F0000", "config_file_error";
    InternalError = "XX000", "internal_error";
    DataCorrupted = "XX001", "data_corrupted";
}

impl SqlState {
    /// The state with `code`, if tenure uses it.
    pub fn from_code(code: &str) -> Option<SqlState> {
        SqlState::ALL.iter().copied().find(|s| s.code() == code)
    }
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// PostgreSQL's class of each code's first two characters (errcodes.txt), as the
    /// condition name begins for the classes whose name a condition repeats.
    const CLASSES: &[(&str, &str)] = &[
        ("00", "successful_completion"),
        ("08", "connection_exception"),
        ("0A", "feature_not_supported"),
        ("0L", "invalid_grantor"),
        ("21", "cardinality_violation"),
        ("22", "data_exception"),
        ("23", "integrity_constraint_violation"),
        ("25", "invalid_transaction_state"),
        ("28", "invalid_authorization_specification"),
        ("2B", "dependent_privilege_descriptors_still_exist"),
        ("34", "invalid_cursor_name"),
        ("3B", "savepoint_exception"),
        ("3D", "invalid_catalog_name"),
        ("3F", "invalid_schema_name"),
        ("40", "transaction_rollback"),
        ("42", "syntax_error_or_access_rule_violation"),
        ("53", "insufficient_resources"),
        ("54", "program_limit_exceeded"),
        ("55", "object_not_in_prerequisite_state"),
        ("57", "operator_intervention"),
        ("58", "system_error"),
        ("F0", "config_file_error"),
        ("XX", "internal_error"),
    ];

    /// Each row: a well-formed code of a PostgreSQL class, and no code or name twice.
    #[test]
    fn every_row_is_a_postgres_code() {
        let mut codes = HashSet::new();
        let mut conditions = HashSet::new();
        for state in SqlState::ALL {
            let code = state.code();
            assert_eq!(code.len(), 5, "{state:?}");
            assert!(
                code.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
                "{state:?}: {code}"
            );
            assert!(
                CLASSES.iter().any(|(class, _)| code.starts_with(class)),
                "{state:?}: class of {code} is not one of PostgreSQL's"
            );
            assert!(codes.insert(code), "{code} twice");
            assert!(
                conditions.insert(state.condition()),
                "{} twice",
                state.condition()
            );
            assert_eq!(SqlState::from_code(code), Some(*state));
            // A class's own code (xx000) is named after its class.
            if code.ends_with("000") {
                let class = CLASSES.iter().find(|(c, _)| code.starts_with(c)).unwrap();
                assert_eq!(state.condition(), class.1, "{code}");
            }
        }
        assert_eq!(SqlState::from_code("99999"), None);
    }

    #[test]
    fn codes_and_names_of_familiar_states() {
        for (state, code, condition) in [
            (SqlState::UndefinedTable, "42P01", "undefined_table"),
            (SqlState::SyntaxError, "42601", "syntax_error"),
            (
                SqlState::InvalidTextRepresentation,
                "22P02",
                "invalid_text_representation",
            ),
            (SqlState::QueryCanceled, "57014", "query_canceled"),
            (SqlState::UndefinedFunction, "42883", "undefined_function"),
            (
                SqlState::InsufficientPrivilege,
                "42501",
                "insufficient_privilege",
            ),
        ] {
            assert_eq!((state.code(), state.condition()), (code, condition));
            assert_eq!(state.to_string(), code);
        }
    }
}
