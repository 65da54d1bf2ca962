//! Error responses: every error a client receives is made here, with a [`SqlState`] from the
//! one table of codes ([`crate::pg::sqlstate`]); an engine error's state is its own
//! ([`Error::sqlstate`]). Internal errors are masked for the client and logged in full.

use pgwire::error::ErrorInfo;

pub use crate::pg::sqlstate::SqlState;

use crate::error::Error;

/// What a client is told of an internal error; the server's log has the message.
const INTERNAL_MESSAGE: &str = "internal error: see the server log for details";

/// An ERROR response in `state`.
pub fn error(state: SqlState, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new(
        "ERROR".to_string(),
        state.code().to_string(),
        message.into(),
    )
}

/// A FATAL response (the server closes the connection after it).
pub fn fatal(state: SqlState, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new(
        "FATAL".to_string(),
        state.code().to_string(),
        message.into(),
    )
}

/// The error response for `e`: its SQLSTATE and message, or for an internal error only that
/// it happened (the whole chain goes to the log).
pub fn error_info(e: &Error) -> ErrorInfo {
    if e.is_internal() {
        tracing::error!(error = ?e, "internal error: {e}");
        return error(SqlState::InternalError, INTERNAL_MESSAGE);
    }
    error(e.sqlstate(), message(e))
}

/// Longest message of a storage error a client is told; the rest is in the server's log.
const MAX_STORAGE_MESSAGE: usize = 300;

/// The message without DataFusion's "Error during planning:" style prefixes, which say
/// nothing to a SQL user. A storage error (58030) keeps what failed, not what a remote
/// service answered: the body of an object store's reply (S3's XML) is logged, not sent.
fn message(e: &Error) -> String {
    let mut text = e.to_string();
    if e.sqlstate() == SqlState::IoError {
        let cut = text
            .find("<?xml")
            .or_else(|| text.find('<'))
            .unwrap_or(text.len())
            .min(MAX_STORAGE_MESSAGE);
        if cut < text.len() {
            tracing::info!(error = %text, "storage error, shortened for the client");
            let end = (0..=cut)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.truncate(end);
            text = format!("{} (the rest is in the server's log)", text.trim_end());
        }
    }
    let mut rest = text.as_str();
    // Nested errors repeat the prefixes ("Arrow error: External error: ...").
    while let Some(stripped) = [
        "Error during planning: ",
        "Execution error: ",
        "Schema error: ",
        "Arrow error: ",
        "This feature is not implemented: ",
        "SQL error: ",
        "External error: ",
        "Invalid argument error: ",
    ]
    .iter()
    .find_map(|prefix| rest.strip_prefix(prefix))
    {
        rest = stripped;
    }
    // sqlparser's errors print as `ParserError("...")`: the message inside, as psql shows.
    for wrapper in ["ParserError(\"", "TokenizerError(\""] {
        if let Some(inner) = rest
            .strip_prefix(wrapper)
            .and_then(|r| r.strip_suffix("\")"))
        {
            return inner.replace("\\\"", "\"");
        }
    }
    rest.to_string()
}

#[cfg(test)]
mod tests {
    use datafusion::error::DataFusionError;

    use super::*;

    #[test]
    fn parser_errors_show_their_message() {
        let err = crate::sql::parse("CREATE SECRET s (TYPE s3, SECRET bare)").unwrap_err();
        assert_eq!(message(&err), "SECRET takes a quoted string ('...')");
        let err = crate::sql::parse("SELEC 1").unwrap_err();
        assert!(message(&err).starts_with("Expected: "), "{}", message(&err));
    }

    #[test]
    fn messages_lose_datafusion_prefixes() {
        let plan = Error::DataFusion(DataFusionError::Plan(
            "table 'tenure.public.nope' not found".into(),
        ));
        assert_eq!(message(&plan), "table 'tenure.public.nope' not found");
        let info = error_info(&plan);
        assert_eq!(
            (info.code.as_str(), info.message.as_str()),
            ("42P01", "table 'tenure.public.nope' not found")
        );
    }

    #[test]
    fn remote_reply_bodies_stay_in_the_log() {
        let reply = Error::Io(std::io::Error::other(
            "Client error with status 403 Forbidden: <?xml version=\"1.0\"?><Error>\
             <Code>AccessDenied</Code><Secret>internal-host-42</Secret></Error>",
        ));
        let info = error_info(&reply);
        assert_eq!(info.code, "58030");
        assert!(info.message.contains("403 Forbidden"), "{}", info.message);
        assert!(
            !info.message.contains("internal-host-42"),
            "{}",
            info.message
        );
    }

    #[test]
    fn internal_errors_are_masked() {
        let info = error_info(&Error::Internal("the plan cache lost entry 7".into()));
        assert_eq!(info.code, "XX000");
        assert_eq!(info.message, INTERNAL_MESSAGE);
        assert!(!info.message.contains("plan cache"));
        // Other XX000 errors keep their message: they say what failed where.
        let storage = error_info(&Error::Catalog("cannot write catalog.json".into()));
        assert_eq!(
            (storage.code.as_str(), storage.message.as_str()),
            ("XX000", "catalog error: cannot write catalog.json")
        );
    }
}
