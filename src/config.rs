//! Configuration: `tenure.toml`, overridden by `TENURE_*` environment variables, overridden by
//! command-line flags. This is the only module that reads the environment; everything below
//! receives a typed [`Config`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Everything the engine needs to open a data directory and run queries.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The data directory: Delta tables, the catalog, the lock file.
    pub data_dir: PathBuf,
    /// DataFusion target partitions (threads used by one query). Defaults to the core count.
    pub threads: usize,
    /// Memory pool limit in bytes; queries past it spill to `data_dir/tmp` or fail cleanly.
    pub memory_limit: Option<usize>,
    /// Rows per Arrow record batch.
    pub batch_size: usize,
    /// Where models score, and where CREATE MODEL trains when neither its OPTIONS nor the
    /// session name a device: `cpu` or `cuda:N` (a build with `--features cuda`).
    pub device: String,
    /// Directories that server clients may name in `CREATE EXTERNAL TABLE ... LOCATION` and
    /// `COPY ... TO`. Empty means `data_dir/import`.
    pub allowed_roots: Vec<PathBuf>,
    /// Address the PostgreSQL-protocol server listens on.
    pub listen: String,
    /// Most client connections the server holds at once; past it a new one is refused with
    /// SQLSTATE 53300.
    pub max_connections: usize,
    /// PEM certificate chain and private key: with both, clients may use TLS
    /// (`sslmode=require`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Password users (SCRAM-SHA-256). With none, the server trusts loopback clients and
    /// refuses to listen elsewhere.
    pub users: Vec<User>,
    /// Refuse clients that do not use TLS (needs tls_cert and tls_key).
    pub require_tls: bool,
    /// How long a client may take from connecting to being authenticated; past it the
    /// connection is closed. Clients still starting up do not count against
    /// max_connections.
    pub authentication_timeout: std::time::Duration,
    /// S3 endpoints (e.g. `http://minio.internal:9000`) that server clients may name in an
    /// external table's `aws.endpoint`; no other endpoint is ever called for them.
    pub s3_endpoints: Vec<String>,
    /// How long files that tables no longer use (replaced by compaction, UPDATE or DELETE,
    /// or left by a write that never committed) are kept before VACUUM deletes them: a
    /// query that started before they were replaced may still be reading them.
    pub vacuum_retention: std::time::Duration,
    /// Which statements the audit log records: none, ddl, mod (the default) or all.
    pub log_statement: LogStatement,
    /// The key that seals secrets in the catalog (see `access/secrets.rs`).
    pub secret_key: SecretKeySource,
}

/// Where the key that seals secrets comes from: never the data directory.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum SecretKeySource {
    /// None configured and no home directory for the default file: secrets are refused.
    #[default]
    None,
    /// A file of 64 hex digits; `create` where it is the default
    /// (`~/.config/tenure/secret.key`), which is made on first use.
    File { path: PathBuf, create: bool },
    /// An environment variable (`secret_key_env`) holding the key, read at start.
    Environment {
        variable: String,
        key: Option<Redacted>,
    },
}

/// A value that is never printed.
#[derive(Clone, PartialEq)]
pub struct Redacted(String);

impl Redacted {
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `log_statement`: which statements the audit log records (see `server/audit.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogStatement {
    None,
    Ddl,
    #[default]
    Mod,
    All,
}

impl LogStatement {
    pub fn parse(text: &str) -> Option<LogStatement> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Some(LogStatement::None),
            "ddl" => Some(LogStatement::Ddl),
            "mod" => Some(LogStatement::Mod),
            "all" => Some(LogStatement::All),
            _ => None,
        }
    }
}

/// A user who logs in with a password.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub password: String,
}

/// Never prints the password, so a logged or printed configuration leaks no secret.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("tenure-data"),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            memory_limit: None,
            batch_size: 8192,
            device: "cpu".to_string(),
            allowed_roots: Vec::new(),
            listen: "127.0.0.1:5433".to_string(),
            max_connections: 200,
            tls_cert: None,
            tls_key: None,
            users: Vec::new(),
            require_tls: false,
            authentication_timeout: std::time::Duration::from_secs(10),
            s3_endpoints: Vec::new(),
            vacuum_retention: std::time::Duration::from_secs(3600),
            log_statement: LogStatement::default(),
            secret_key: SecretKeySource::None,
        }
    }
}

/// One layer of settings (`tenure.toml`, the environment or flags); `None` leaves the lower
/// layer's value. Unknown keys in the file are an error so that a typo does not silently fall
/// back to a default.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub threads: Option<usize>,
    /// e.g. "4GiB", "512MiB", "2000000000"
    pub memory_limit: Option<String>,
    pub batch_size: Option<usize>,
    /// "cpu", "cuda" or "cuda:N"
    pub device: Option<String>,
    pub allowed_roots: Option<Vec<PathBuf>>,
    pub listen: Option<String>,
    pub max_connections: Option<usize>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub users: Option<Vec<User>>,
    pub require_tls: Option<bool>,
    /// Seconds.
    pub authentication_timeout: Option<u64>,
    pub s3_endpoints: Option<Vec<String>>,
    /// Seconds.
    pub vacuum_retention: Option<u64>,
    /// "none", "ddl", "mod" or "all".
    pub log_statement: Option<String>,
    /// A file holding the key that seals secrets (64 hex digits); by default
    /// `~/.config/tenure/secret.key`, made on first use.
    pub secret_key_file: Option<PathBuf>,
    /// The name of an environment variable holding that key instead.
    pub secret_key_env: Option<String>,
}

impl Config {
    /// Builds the configuration: defaults, then `config_file` (or `./tenure.toml` when it
    /// exists), then the `TENURE_*` environment, then `flags`.
    pub fn load(config_file: Option<&Path>, flags: &Overrides) -> Result<Config> {
        let mut config = Config::default();
        let default_file = Path::new("tenure.toml");
        let file = match config_file {
            Some(path) => Some(path),
            None if default_file.exists() => Some(default_file),
            None => None,
        };
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
            config.apply_file_text(&text, path)?;
        }
        config.apply(&Overrides::from_env(|key| std::env::var(key).ok())?)?;
        config.apply(flags)?;
        config.resolve_secret_key(|key| std::env::var(key).ok());
        config.validate()?;
        Ok(config)
    }

    /// Reads the key of `secret_key_env`, or names the default key file where nothing
    /// was configured: `$XDG_CONFIG_HOME/tenure/secret.key` or
    /// `$HOME/.config/tenure/secret.key`, outside any data directory.
    fn resolve_secret_key(&mut self, get: impl Fn(&str) -> Option<String>) {
        match &mut self.secret_key {
            SecretKeySource::Environment { variable, key } => {
                *key = get(variable).map(Redacted);
            }
            SecretKeySource::None => {
                let config_home = get("XDG_CONFIG_HOME")
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| get("HOME").map(|home| PathBuf::from(home).join(".config")));
                if let Some(dir) = config_home {
                    self.secret_key = SecretKeySource::File {
                        path: dir.join("tenure").join("secret.key"),
                        create: true,
                    };
                }
            }
            SecretKeySource::File { .. } => {}
        }
    }

    fn apply_file_text(&mut self, text: &str, path: &Path) -> Result<()> {
        let file: Overrides = toml::from_str(text).map_err(|e| {
            // toml's own Display quotes the offending line, which may be a password: say
            // where and what, never the text.
            let place = e.span().map_or(String::new(), |span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            });
            Error::Config(format!("{}{place}: {}", path.display(), e.message()))
        })?;
        self.apply(&file)
    }

    /// Applies one layer of overrides.
    pub fn apply(&mut self, o: &Overrides) -> Result<()> {
        if let Some(dir) = &o.data_dir {
            self.data_dir = dir.clone();
        }
        if let Some(threads) = o.threads {
            self.threads = threads;
        }
        if let Some(limit) = &o.memory_limit {
            self.memory_limit = Some(parse_bytes(limit)?);
        }
        if let Some(batch_size) = o.batch_size {
            self.batch_size = batch_size;
        }
        if let Some(device) = &o.device {
            self.device = device.trim().to_ascii_lowercase();
        }
        if let Some(roots) = &o.allowed_roots {
            self.allowed_roots = roots.clone();
        }
        if let Some(listen) = &o.listen {
            self.listen = listen.clone();
        }
        if let Some(max) = o.max_connections {
            self.max_connections = max;
        }
        if let Some(cert) = &o.tls_cert {
            self.tls_cert = Some(cert.clone());
        }
        if let Some(key) = &o.tls_key {
            self.tls_key = Some(key.clone());
        }
        if let Some(users) = &o.users {
            self.users = users.clone();
        }
        if let Some(require) = o.require_tls {
            self.require_tls = require;
        }
        if let Some(seconds) = o.authentication_timeout {
            self.authentication_timeout = std::time::Duration::from_secs(seconds);
        }
        if let Some(endpoints) = &o.s3_endpoints {
            self.s3_endpoints = endpoints.clone();
        }
        if let Some(seconds) = o.vacuum_retention {
            self.vacuum_retention = std::time::Duration::from_secs(seconds);
        }
        match (&o.secret_key_file, &o.secret_key_env) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "set secret_key_file or secret_key_env, not both".into(),
                ));
            }
            (Some(path), None) => {
                self.secret_key = SecretKeySource::File {
                    path: path.clone(),
                    create: false,
                };
            }
            (None, Some(variable)) => {
                self.secret_key = SecretKeySource::Environment {
                    variable: variable.clone(),
                    key: None,
                };
            }
            (None, None) => {}
        }
        if let Some(text) = &o.log_statement {
            self.log_statement = LogStatement::parse(text).ok_or_else(|| {
                Error::Config(format!(
                    "log_statement {text:?} is not one of none, ddl, mod, all"
                ))
            })?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        if self.threads == 0 {
            return Err(Error::Config("threads must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(Error::Config("batch_size must be at least 1".into()));
        }
        if self.max_connections == 0 {
            return Err(Error::Config("max_connections must be at least 1".into()));
        }
        if self.require_tls && self.tls_cert.is_none() {
            return Err(Error::Config(
                "require_tls needs a certificate: set tls_cert and tls_key".into(),
            ));
        }
        if self.authentication_timeout.is_zero() {
            return Err(Error::Config(
                "authentication_timeout must be at least 1 second".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(Error::Config(
                "TLS needs both tls_cert and tls_key (PEM files)".into(),
            ));
        }
        for (i, user) in self.users.iter().enumerate() {
            if user.name.is_empty() || user.password.is_empty() {
                return Err(Error::Config(format!(
                    "users[{i}] needs a name and a non-empty password"
                )));
            }
            if self.users[..i].iter().any(|u| u.name == user.name) {
                return Err(Error::Config(format!("user {} is listed twice", user.name)));
            }
        }
        if self.memory_limit == Some(0) {
            return Err(Error::Config(
                "memory_limit must be more than 0 bytes".into(),
            ));
        }
        // The name only; whether the build and the machine have the device is checked when
        // the engine opens it.
        if tenure_models::parse_device_name(&self.device).is_none() {
            return Err(Error::Config(format!(
                "device {:?} is not a device; use cpu or cuda:N",
                self.device
            )));
        }
        Ok(())
    }

    /// The roots server clients may read from, made absolute.
    pub fn effective_allowed_roots(&self) -> Vec<PathBuf> {
        if self.allowed_roots.is_empty() {
            vec![self.data_dir.join("import")]
        } else {
            self.allowed_roots.clone()
        }
    }
}

impl Overrides {
    /// Reads `TENURE_DATA_DIR`, `TENURE_THREADS`, `TENURE_MEMORY_LIMIT`, `TENURE_BATCH_SIZE`,
    /// `TENURE_DEVICE`,
    /// `TENURE_ALLOWED_ROOTS` (separated by ':'), `TENURE_LISTEN`, `TENURE_MAX_CONNECTIONS`,
    /// `TENURE_TLS_CERT`, `TENURE_TLS_KEY` and `TENURE_SECRET_KEY_FILE` through `get`. Users
    /// come only from the file.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Overrides> {
        let number = |key: &str| -> Result<Option<usize>> {
            get(key)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        Error::Config(format!("{key}={v:?} is not a non-negative integer"))
                    })
                })
                .transpose()
        };
        Ok(Overrides {
            data_dir: get("TENURE_DATA_DIR").map(PathBuf::from),
            threads: number("TENURE_THREADS")?,
            memory_limit: get("TENURE_MEMORY_LIMIT"),
            batch_size: number("TENURE_BATCH_SIZE")?,
            device: get("TENURE_DEVICE"),
            allowed_roots: get("TENURE_ALLOWED_ROOTS").map(|v| {
                v.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            }),
            listen: get("TENURE_LISTEN"),
            max_connections: number("TENURE_MAX_CONNECTIONS")?,
            tls_cert: get("TENURE_TLS_CERT").map(PathBuf::from),
            tls_key: get("TENURE_TLS_KEY").map(PathBuf::from),
            users: None,
            require_tls: get("TENURE_REQUIRE_TLS")
                .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "on" | "yes" => Ok(true),
                    "0" | "false" | "off" | "no" => Ok(false),
                    _ => Err(Error::Config(format!(
                        "TENURE_REQUIRE_TLS={v:?} is not a boolean"
                    ))),
                })
                .transpose()?,
            authentication_timeout: number("TENURE_AUTHENTICATION_TIMEOUT")?.map(|n| n as u64),
            s3_endpoints: None,
            vacuum_retention: number("TENURE_VACUUM_RETENTION")?.map(|n| n as u64),
            log_statement: get("TENURE_LOG_STATEMENT"),
            secret_key_file: get("TENURE_SECRET_KEY_FILE").map(PathBuf::from),
            secret_key_env: None,
        })
    }
}

/// Parses a byte size such as `4GiB`, `512MB`, `1.5G` or `1000000`.
pub fn parse_bytes(text: &str) -> Result<usize> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| Error::Config(format!("invalid size {text:?}; expected e.g. 4GiB")))?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        other => {
            return Err(Error::Config(format!(
                "invalid size unit {other:?} in {text:?}; use B, KiB, MiB, GiB or TiB"
            )));
        }
    };
    if !value.is_finite() || value < 0.0 {
        return Err(Error::Config(format!("invalid size {text:?}")));
    }
    Ok((value * multiplier) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_bytes("512 MB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }

    #[test]
    fn layers_override_in_order() {
        let mut config = Config::default();
        config
            .apply_file_text("data_dir = 'from-file'\nthreads = 3\n", Path::new("t.toml"))
            .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("from-file"));
        let env = Overrides::from_env(|k| match k {
            "TENURE_THREADS" => Some("5".into()),
            "TENURE_MEMORY_LIMIT" => Some("1GiB".into()),
            _ => None,
        })
        .unwrap();
        config.apply(&env).unwrap();
        assert_eq!((config.threads, config.memory_limit), (5, Some(1 << 30)));
        config
            .apply(&Overrides {
                data_dir: Some("from-flag".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("from-flag"));
        assert_eq!(config.threads, 5);
    }

    #[test]
    fn bad_values_are_rejected_with_the_key() {
        let err =
            Overrides::from_env(|k| (k == "TENURE_THREADS").then(|| "many".into())).unwrap_err();
        assert!(err.to_string().contains("TENURE_THREADS"), "{err}");
        let mut config = Config::default();
        let err = config
            .apply_file_text("thread = 2", Path::new("t.toml"))
            .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        config.threads = 0;
        assert!(config.validate().is_err());
        let mut config = Config::default();
        config
            .apply(&Overrides {
                device: Some("gpu".into()),
                ..Default::default()
            })
            .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("\"gpu\" is not a device"), "{err}");
        config.device = "cuda:1".into();
        config.validate().unwrap();
    }
}
