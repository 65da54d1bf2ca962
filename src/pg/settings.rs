//! Session settings as PostgreSQL clients expect them: the parameters drivers send at connect
//! and with `SET` (DateStyle, extra_float_digits, search_path, ...), `SHOW`, `RESET`,
//! `current_setting()` and `set_config()`, and which of them PostgreSQL reports to the client
//! with a ParameterStatus message when they change.
//!
//! Most of them only need to be remembered and shown back; those that change behaviour are
//! `statement_timeout` (read by the query handler), DateStyle, IntervalStyle, bytea_output
//! and extra_float_digits (text encoding of results) and `tenure.*`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use super::sqlstate::SqlState;
use super::{SERVER_VERSION, SERVER_VERSION_NUM};

/// One known setting.
struct Definition {
    /// As PostgreSQL spells it (SHOW's column name, ParameterStatus's name).
    name: &'static str,
    default: &'static str,
    /// Sent to the client in a ParameterStatus message when it changes.
    reported: bool,
    /// Cannot be changed by SET.
    read_only: bool,
    description: &'static str,
}

const fn setting(
    name: &'static str,
    default: &'static str,
    reported: bool,
    read_only: bool,
    description: &'static str,
) -> Definition {
    Definition {
        name,
        default,
        reported,
        read_only,
        description,
    }
}

const DEFINITIONS: &[Definition] = &[
    setting(
        "application_name",
        "",
        true,
        false,
        "Sets the application name to be reported in statistics and logs.",
    ),
    setting(
        "bytea_output",
        "hex",
        false,
        false,
        "Sets the output format for bytea.",
    ),
    setting(
        "client_encoding",
        "UTF8",
        true,
        false,
        "Sets the client's character set encoding (tenure speaks UTF8 only).",
    ),
    setting(
        "client_min_messages",
        "notice",
        false,
        false,
        "Sets the message levels that are sent to the client.",
    ),
    setting(
        "DateStyle",
        "ISO, MDY",
        true,
        false,
        "Sets the display format for date and time values.",
    ),
    setting(
        "default_transaction_isolation",
        "read committed",
        false,
        false,
        "Sets the transaction isolation level of each new transaction.",
    ),
    setting(
        "default_transaction_read_only",
        "off",
        true,
        false,
        "Sets the default read-only status of new transactions.",
    ),
    setting(
        "extra_float_digits",
        "1",
        false,
        false,
        "Sets the number of digits displayed for floating-point values.",
    ),
    setting(
        "idle_in_transaction_session_timeout",
        "0",
        false,
        false,
        "Accepted for compatibility; not enforced.",
    ),
    setting(
        "in_hot_standby",
        "off",
        true,
        true,
        "Shows whether hot standby is currently active.",
    ),
    setting(
        "integer_datetimes",
        "on",
        true,
        true,
        "Shows whether datetimes are integer based.",
    ),
    setting(
        "IntervalStyle",
        "postgres",
        true,
        false,
        "Sets the display format for interval values.",
    ),
    setting(
        "jit",
        "off",
        false,
        false,
        "Accepted for compatibility (asyncpg turns it off); tenure compiles no query code.",
    ),
    setting(
        "is_superuser",
        "on",
        true,
        true,
        "Shows whether the current user is a superuser.",
    ),
    setting(
        "lc_collate",
        "C",
        false,
        true,
        "Shows the collation order locale.",
    ),
    setting(
        "lc_ctype",
        "C",
        false,
        true,
        "Shows the character classification and case conversion locale.",
    ),
    setting(
        "lc_messages",
        "C",
        false,
        false,
        "Sets the language in which messages are displayed.",
    ),
    setting(
        "lc_monetary",
        "C",
        false,
        false,
        "Sets the locale for formatting monetary amounts.",
    ),
    setting(
        "lc_numeric",
        "C",
        false,
        false,
        "Sets the locale for formatting numbers.",
    ),
    setting(
        "lc_time",
        "C",
        false,
        false,
        "Sets the locale for formatting date and time values.",
    ),
    setting(
        "lock_timeout",
        "0",
        false,
        false,
        "Accepted for compatibility; tenure takes no row locks.",
    ),
    setting(
        "max_identifier_length",
        "63",
        false,
        true,
        "Shows the maximum identifier length.",
    ),
    setting(
        "search_path",
        "\"$user\", public",
        false,
        false,
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    setting(
        "server_encoding",
        "UTF8",
        true,
        true,
        "Shows the server (database) character set encoding.",
    ),
    setting(
        "server_version",
        SERVER_VERSION,
        true,
        true,
        "Shows the server version.",
    ),
    setting(
        "server_version_num",
        SERVER_VERSION_NUM,
        false,
        true,
        "Shows the server version as an integer.",
    ),
    setting(
        "session_authorization",
        "tenure",
        true,
        true,
        "Shows the session user name.",
    ),
    setting(
        "standard_conforming_strings",
        "on",
        true,
        true,
        "Causes '...' strings to treat backslashes literally.",
    ),
    setting(
        "memory_limit",
        "0",
        false,
        false,
        "Sets the most memory one session's statements may hold (0: only the server's \
         limit); ALTER ROLE ... SET memory_limit makes it a ceiling the role cannot raise.",
    ),
    setting(
        "statement_timeout",
        "0",
        false,
        false,
        "Sets the maximum allowed duration of any statement (0 turns this off).",
    ),
    setting(
        "synchronous_commit",
        "on",
        false,
        false,
        "Accepted for compatibility; every commit is durable.",
    ),
    setting(
        "TimeZone",
        "UTC",
        true,
        false,
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    setting(
        "transaction_isolation",
        "read committed",
        false,
        false,
        "Shows the current transaction's isolation level.",
    ),
    setting(
        "transaction_read_only",
        "off",
        false,
        false,
        "Shows the current transaction's read-only status.",
    ),
    setting(
        "tenure.device",
        "cpu",
        false,
        false,
        "Device for this session's CREATE MODEL: cpu or cuda:N (with --features cuda); unset, the server's device.",
    ),
];

fn definition(name: &str) -> Option<&'static Definition> {
    DEFINITIONS
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
}

/// A setting error, with the SQLSTATE PostgreSQL uses for it.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingError {
    pub state: SqlState,
    pub message: String,
}

impl SettingError {
    fn unknown(name: &str) -> SettingError {
        SettingError {
            state: SqlState::UndefinedObject,
            message: format!("unrecognized configuration parameter \"{name}\""),
        }
    }

    fn invalid(name: &str, value: &str, expected: &str) -> SettingError {
        SettingError {
            state: SqlState::InvalidParameterValue,
            message: format!("invalid value for parameter \"{name}\": \"{value}\"; {expected}"),
        }
    }
}

/// One session's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Changed from their defaults, by lower-cased name.
    values: BTreeMap<String, String>,
    /// Custom settings (`myapp.key`, any name with a dot), which PostgreSQL also accepts.
    custom: BTreeMap<String, String>,
    user: String,
    /// The role's `memory_limit` (`ALTER ROLE ... SET`), in bytes: its sessions may lower
    /// theirs, not raise it or turn it off.
    memory_ceiling: Option<(usize, String)>,
    /// The session's memory pool's limit (see `engine/session_memory.rs`), kept equal to
    /// `memory_limit` by every change of it: SET, RESET, DISCARD or set_config.
    memory_limit_sink: Option<Arc<AtomicUsize>>,
}

impl Settings {
    /// Defaults, then what the client sent in its startup message (unknown ones ignored, as
    /// PostgreSQL rejects only malformed ones).
    pub fn new<'a>(user: &str, startup: impl IntoIterator<Item = (&'a str, &'a str)>) -> Settings {
        Settings::for_role(user, [], startup)
    }

    /// Defaults, then the role's (`ALTER ROLE ... SET`), then the client's startup message.
    /// The role's `memory_limit` becomes the session's ceiling.
    pub fn for_role<'a>(
        user: &str,
        role: impl IntoIterator<Item = (&'a str, &'a str)>,
        startup: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Settings {
        let mut settings = Settings {
            values: BTreeMap::new(),
            custom: BTreeMap::new(),
            user: user.to_string(),
            memory_ceiling: None,
            memory_limit_sink: None,
        };
        for (name, value) in role {
            if let Some(d) = definition(name)
                && !d.read_only
                && settings.set(name, value).is_ok()
                && d.name == "memory_limit"
                && let Some(bytes) = settings.memory_limit()
            {
                settings.memory_ceiling = Some((bytes, value.to_string()));
            }
        }
        for (name, value) in startup {
            if let Some(d) = definition(name)
                && !d.read_only
            {
                let _ = settings.set(name, value);
            }
        }
        settings
    }

    /// The value of `name`, or an error naming it when it does not exist.
    pub fn get(&self, name: &str) -> Result<String, SettingError> {
        let lower = name.to_ascii_lowercase();
        if lower == "session_authorization" || lower == "current_user" {
            return Ok(self.user.clone());
        }
        if let Some(d) = definition(name) {
            return Ok(self
                .values
                .get(&lower)
                .cloned()
                .unwrap_or_else(|| d.default.to_string()));
        }
        self.custom
            .get(&lower)
            .cloned()
            .ok_or_else(|| SettingError::unknown(name))
    }

    /// The value of `name` when this session set it (SET or the startup message), else None.
    pub fn changed(&self, name: &str) -> Option<&str> {
        self.values
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Sets `name`; returns the (name, value) to report to the client, if PostgreSQL reports
    /// this setting.
    pub fn set(
        &mut self,
        name: &str,
        value: &str,
    ) -> Result<Option<(String, String)>, SettingError> {
        let lower = name.to_ascii_lowercase();
        let Some(d) = definition(name) else {
            if lower.contains('.') {
                self.custom.insert(lower, value.to_string());
                return Ok(None);
            }
            return Err(SettingError::unknown(name));
        };
        if d.read_only {
            return Err(SettingError {
                state: SqlState::CantChangeRuntimeParam,
                message: format!("parameter \"{}\" cannot be changed", d.name),
            });
        }
        let value = normalize(d.name, value)?;
        if d.name == "memory_limit"
            && let Some((ceiling, text)) = &self.memory_ceiling
        {
            let bytes = crate::config::parse_bytes(&value).unwrap_or(0);
            if bytes == 0 || bytes > *ceiling {
                return Err(SettingError {
                    state: SqlState::InsufficientPrivilege,
                    message: format!(
                        "memory_limit of role {} is {text}: a session may lower it, not \
                         raise it or turn it off",
                        self.user
                    ),
                });
            }
        }
        self.values.insert(lower, value.clone());
        self.sync_memory_limit();
        Ok(d.reported.then(|| (d.name.to_string(), value)))
    }

    /// Keeps `sink`, the session's memory pool's limit, equal to `memory_limit` from now on.
    pub fn bind_memory_limit(&mut self, sink: Arc<AtomicUsize>) {
        self.memory_limit_sink = Some(sink);
        self.sync_memory_limit();
    }

    fn sync_memory_limit(&self) {
        if let Some(sink) = &self.memory_limit_sink {
            sink.store(
                self.memory_limit().unwrap_or(usize::MAX),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// Back to the default; returns what to report, as [`Settings::set`].
    pub fn reset(&mut self, name: &str) -> Result<Option<(String, String)>, SettingError> {
        let lower = name.to_ascii_lowercase();
        let Some(d) = definition(name) else {
            if self.custom.remove(&lower).is_some() || lower.contains('.') {
                return Ok(None);
            }
            return Err(SettingError::unknown(name));
        };
        self.values.remove(&lower);
        self.restore_ceiling();
        Ok(d.reported
            .then(|| (d.name.to_string(), d.default.to_string())))
    }

    /// After a RESET: the role's memory_limit again, not the default (none).
    fn restore_ceiling(&mut self) {
        if let Some((_, text)) = &self.memory_ceiling
            && !self.values.contains_key("memory_limit")
        {
            self.values.insert("memory_limit".into(), text.clone());
        }
        self.sync_memory_limit();
    }

    /// `memory_limit` in bytes, when one is set.
    pub fn memory_limit(&self) -> Option<usize> {
        let value = self.get("memory_limit").ok()?;
        crate::config::parse_bytes(&value)
            .ok()
            .filter(|bytes| *bytes > 0)
    }

    /// Everything back to defaults; returns the reported settings that changed.
    pub fn reset_all(&mut self) -> Vec<(String, String)> {
        let changed: Vec<(String, String)> = self
            .values
            .keys()
            .filter_map(|name| definition(name))
            .filter(|d| d.reported)
            .map(|d| (d.name.to_string(), d.default.to_string()))
            .collect();
        self.values.clear();
        self.custom.clear();
        self.restore_ceiling();
        changed
    }

    /// (name, setting, description) of every setting, for `SHOW ALL`.
    pub fn all(&self) -> Vec<(String, String, String)> {
        let mut rows: Vec<(String, String, String)> = DEFINITIONS
            .iter()
            .map(|d| {
                (
                    d.name.to_string(),
                    self.get(d.name).unwrap_or_default(),
                    d.description.to_string(),
                )
            })
            .chain(
                self.custom
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone(), String::new())),
            )
            .collect();
        rows.sort_by_key(|(name, _, _)| name.to_ascii_lowercase());
        rows
    }

    /// The settings reported at connection start.
    pub fn reported(&self) -> Vec<(String, String)> {
        DEFINITIONS
            .iter()
            .filter(|d| d.reported)
            .map(|d| (d.name.to_string(), self.get(d.name).unwrap_or_default()))
            .collect()
    }

    /// `statement_timeout`, when one is set.
    pub fn statement_timeout(&self) -> Option<Duration> {
        let value = self.get("statement_timeout").ok()?;
        parse_duration_ms(&value)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }

    /// The text-format options pgwire's encoders read.
    pub fn format_options(&self) -> pgwire::types::format::FormatOptions {
        let mut options = pgwire::types::format::FormatOptions::default();
        options.date_style = self.get("DateStyle").unwrap_or_default();
        options.interval_style = self.get("IntervalStyle").unwrap_or_default();
        options.bytea_output = self.get("bytea_output").unwrap_or_default();
        options.time_zone = self.get("TimeZone").unwrap_or_default();
        if let Ok(digits) = self.get("extra_float_digits").unwrap_or_default().parse() {
            options.extra_float_digits = digits;
        }
        options
    }
}

/// Checks and canonicalises a value the way PostgreSQL does for the settings where clients
/// depend on it.
fn normalize(name: &str, value: &str) -> Result<String, SettingError> {
    let trimmed = value.trim();
    match name {
        "client_encoding" => {
            let upper = trimmed.to_ascii_uppercase().replace(['-', '_'], "");
            if upper == "UTF8" || upper == "UNICODE" {
                Ok("UTF8".to_string())
            } else {
                Err(SettingError::invalid(
                    name,
                    value,
                    "tenure supports only UTF8",
                ))
            }
        }
        "extra_float_digits" => match trimmed.parse::<i32>() {
            Ok(n) if (-15..=3).contains(&n) => Ok(n.to_string()),
            _ => Err(SettingError::invalid(
                name,
                value,
                "expected an integer from -15 to 3",
            )),
        },
        "memory_limit" => match trimmed {
            "0" => Ok("0".to_string()),
            _ => crate::config::parse_bytes(trimmed)
                .map(|_| trimmed.to_string())
                .map_err(|_| SettingError::invalid(name, value, "expected a size such as 512MiB")),
        },
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => {
            parse_duration_ms(trimmed)
                .map(|ms| ms.to_string())
                .map_err(|expected| SettingError::invalid(name, value, expected))
        }
        "DateStyle" => {
            // PostgreSQL accepts partial updates ("ISO" keeps the order); tenure writes ISO.
            let upper = trimmed.to_ascii_uppercase();
            let order = ["MDY", "DMY", "YMD"]
                .into_iter()
                .find(|o| upper.contains(o))
                .unwrap_or("MDY");
            if upper.contains("ISO")
                || upper
                    .split(',')
                    .all(|p| ["MDY", "DMY", "YMD"].contains(&p.trim()))
            {
                Ok(format!("ISO, {order}"))
            } else {
                Err(SettingError::invalid(
                    name,
                    value,
                    "tenure formats dates as ISO",
                ))
            }
        }
        "TimeZone" => {
            if trimmed.is_empty() {
                Err(SettingError::invalid(
                    name,
                    value,
                    "expected a time zone name",
                ))
            } else {
                Ok(trimmed.to_string())
            }
        }
        _ => Ok(trimmed.to_string()),
    }
}

/// A duration setting in milliseconds: a bare number is milliseconds; units ms, s, min, h, d.
fn parse_duration_ms(text: &str) -> Result<u64, &'static str> {
    const EXPECTED: &str = "expected milliseconds or a number with ms, s, min, h or d";
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| EXPECTED)?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(EXPECTED),
    };
    Ok((number * factor).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_sets_and_resets() {
        let mut s = Settings::new("tenure", [("application_name", "psql"), ("bogus", "x")]);
        assert_eq!(s.get("application_name").unwrap(), "psql");
        assert_eq!(s.get("datestyle").unwrap(), "ISO, MDY");
        assert_eq!(
            s.set("DateStyle", "iso, dmy").unwrap(),
            Some(("DateStyle".into(), "ISO, DMY".into()))
        );
        assert_eq!(s.set("extra_float_digits", "3").unwrap(), None);
        assert_eq!(s.get("EXTRA_FLOAT_DIGITS").unwrap(), "3");
        assert_eq!(
            s.reset("DateStyle").unwrap(),
            Some(("DateStyle".into(), "ISO, MDY".into()))
        );
        assert_eq!(s.get("DateStyle").unwrap(), "ISO, MDY");
        assert_eq!(s.set("myapp.tenant", "7").unwrap(), None);
        assert_eq!(s.get("myapp.tenant").unwrap(), "7");
        assert_eq!(s.get("session_authorization").unwrap(), "tenure");
    }

    #[test]
    fn bad_settings_get_postgres_codes() {
        let mut s = Settings::new("tenure", []);
        assert_eq!(
            s.set("no_such_thing", "1").unwrap_err().state,
            SqlState::UndefinedObject
        );
        assert_eq!(
            s.get("no_such_thing").unwrap_err().state,
            SqlState::UndefinedObject
        );
        assert_eq!(
            s.set("server_version", "16").unwrap_err().state,
            SqlState::CantChangeRuntimeParam
        );
        assert_eq!(
            s.set("client_encoding", "LATIN1").unwrap_err().state,
            SqlState::InvalidParameterValue
        );
        assert_eq!(
            s.set("statement_timeout", "soon").unwrap_err().state,
            SqlState::InvalidParameterValue
        );
    }

    #[test]
    fn statement_timeout_units() {
        let mut s = Settings::new("tenure", []);
        assert_eq!(s.statement_timeout(), None);
        s.set("statement_timeout", "1500").unwrap();
        assert_eq!(s.statement_timeout(), Some(Duration::from_millis(1500)));
        s.set("statement_timeout", "2s").unwrap();
        assert_eq!(s.statement_timeout(), Some(Duration::from_secs(2)));
        s.set("statement_timeout", "1min").unwrap();
        assert_eq!(s.get("statement_timeout").unwrap(), "60000");
    }

    #[test]
    fn a_roles_memory_limit_is_a_ceiling() {
        let mut s = Settings::for_role("bi", [("memory_limit", "512MiB")], []);
        assert_eq!(s.memory_limit(), Some(512 << 20));
        s.set("memory_limit", "100MB").unwrap();
        assert_eq!(s.memory_limit(), Some(100 << 20));
        for higher in ["1GiB", "0"] {
            let err = s.set("memory_limit", higher).unwrap_err();
            assert_eq!(
                err.state,
                SqlState::InsufficientPrivilege,
                "{}",
                err.message
            );
        }
        s.reset("memory_limit").unwrap();
        assert_eq!(s.memory_limit(), Some(512 << 20));
        s.reset_all();
        assert_eq!(s.memory_limit(), Some(512 << 20));
        // A client's startup option may not raise it either.
        let s = Settings::for_role(
            "bi",
            [("memory_limit", "64MiB")],
            [("memory_limit", "1GiB")],
        );
        assert_eq!(s.memory_limit(), Some(64 << 20));
        let sink = Arc::new(AtomicUsize::new(0));
        let mut bound = Settings::for_role("bi", [("memory_limit", "64MiB")], []);
        bound.bind_memory_limit(sink.clone());
        let limit = || sink.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(limit(), 64 << 20);
        bound.set("memory_limit", "1MiB").unwrap();
        assert_eq!(limit(), 1 << 20);
        bound.reset_all();
        assert_eq!(limit(), 64 << 20);
        let mut free = Settings::new("admin", []);
        assert_eq!(free.memory_limit(), None);
        assert!(free.set("memory_limit", "lots").is_err());
        free.set("memory_limit", "2GiB").unwrap();
        free.set("memory_limit", "0").unwrap();
        assert_eq!(free.memory_limit(), None);
    }
}
