//! PostgreSQL compatibility that is not the wire protocol: what makes tenure's SQL, catalog
//! and session answer as PostgreSQL's do, for the CLI and the server alike. The engine
//! installs [`catalog`] on every session; the server uses [`rewrite`], [`settings`] and
//! [`functions`] per connection. Nothing here depends on the engine or the server.
//!
//! - [`catalog`]: pg_catalog (from datafusion-pg-catalog) with tenure's views over it, the
//!   driver catalog functions (`format_type()`, `pg_get_expr()`, ...) and `version()`;
//! - [`format`]: PostgreSQL's `format()`;
//! - [`json`]: the json and jsonb types, their operators and functions;
//! - [`keys`]: pg_constraint / pg_index oids and definitions of primary and foreign keys;
//! - [`names`]: result column names as PostgreSQL gives them;
//! - [`oids`]: relation and schema oids that survive a restart;
//! - [`origins`]: the table and column a result column comes from (RowDescription);
//! - [`sizes`]: `pg_size_pretty` and the relation sizes psql's `\dt+` shows;
//! - [`rewrite`]: rewrites of drivers' catalog SQL that DataFusion cannot plan as written;
//! - [`settings`]: session settings (GUCs) as clients expect them: SET, SHOW, RESET,
//!   ParameterStatus;
//! - [`functions`]: `current_setting()` and `set_config()` over one session's settings.
//! - [`views`]: the views' SQL for pg_get_viewdef and pg_views;
//! - [`sqlstate`]: the table of SQLSTATE codes tenure answers with;
//! - [`types`]: column types stored as text and marked in field metadata (`varchar(n)`,
//!   `json`, `jsonb`).
//!
//! The identity tenure shows clients (its version strings, the default user) lives here too.

pub mod catalog;
pub mod format;
pub mod functions;
pub mod json;
pub mod keys;
pub mod names;
pub mod oids;
pub mod origins;
pub mod privileges;
pub mod rewrite;
pub mod settings;
pub mod sizes;
pub mod sqlstate;
pub mod types;
mod udf_args;
pub mod views;

pub use catalog::{CHECKED_REGCLASS, EAGER_IF, INT2VECTOR_ELEMENT};

/// What `server_version` reports. Clients parse the leading number (libpq, pgjdbc, psycopg),
/// so it reads like a PostgreSQL 15 release with tenure's own version in the suffix, the way
/// distribution builds do ("15.4 (Debian 15.4-1)").
pub const SERVER_VERSION: &str = concat!("15.0 (tenure ", env!("CARGO_PKG_VERSION"), ")");
pub const SERVER_VERSION_NUM: &str = "150000";

/// What `version()` returns; SQLAlchemy and others match `PostgreSQL (\d+)\.(\d+)` in it.
pub fn version_string() -> String {
    format!(
        "PostgreSQL 15.0 on {}-unknown-linux-gnu, compiled by rustc, 64-bit (tenure {})",
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION")
    )
}

/// The user a trusting server (loopback, no users configured) knows, and the owner the
/// catalog shows for every relation.
pub const DEFAULT_USER: &str = "tenure";
