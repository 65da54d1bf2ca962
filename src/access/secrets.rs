//! Secrets: S3 credentials kept in the catalog only sealed (AES-256-GCM) with a key that
//! lives outside the data directory, so that a copy of the data directory (a backup, a
//! stolen disk, a support bundle) holds no usable credential.
//!
//! Two things are sealed: named secrets (`CREATE SECRET`), and the credentials an external
//! table's OPTIONS give inline (`'aws.secret_access_key' '...'`), which are taken out of the
//! options and sealed with the table. Settings that are not credentials (region, endpoint,
//! scope) stay readable, so catalog views can show them.
//!
//! A secret's sealed credentials are bound to its name as additional authenticated data,
//! so they do not open as another secret's. A table's are bound to a constant, so that
//! they survive ALTER TABLE RENAME; moved to another table (by editing catalog.json) they
//! would open there, which gives nothing the editor of the catalog did not already hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::config::SecretKeySource;
use crate::error::{Error, Result};

/// Words in an option's name that mark its value as a credential: such options are never
/// kept in clear and never logged (see `sql/redact.rs`).
pub const CREDENTIAL_WORDS: [&str; 6] = [
    "secret",
    "password",
    "token",
    "access_key",
    "credential",
    "key_id",
];

/// The `aws.*` options that are settings, not credentials; every other `aws.*` option
/// (keys, tokens, SSE-C keys, ...) is treated as a credential.
const AWS_SETTINGS: [&str; 8] = [
    "region",
    "default_region",
    "endpoint",
    "allow_http",
    "virtual_hosted_style_request",
    "bucket",
    "skip_signature",
    "unsigned_payload",
];

/// Whether an option named `name` holds a credential.
pub fn is_credential_option(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if let Some(aws) = lower.strip_prefix("aws.") {
        return !AWS_SETTINGS.contains(&aws);
    }
    CREDENTIAL_WORDS.iter().any(|w| lower.contains(w))
}

/// The 256-bit key that seals secrets. Never printed.
pub struct SecretKey {
    key: LessSafeKey,
    /// Where it came from, for errors (`secret_key_file /etc/tenure/key`).
    origin: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.origin)
    }
}

const KEY_LEN: usize = 32;
const SEALED_PREFIX: &str = "aes256gcm:";

impl SecretKey {
    /// Loads the key `source` names. A key file that does not exist yet is made (random,
    /// owner-only) where the configuration left the default; a key inside `data_dir` is
    /// refused, since it would travel with what it protects.
    pub fn load(source: &SecretKeySource, data_dir: &Path) -> Result<SecretKey> {
        match source {
            SecretKeySource::None => Err(Error::Config(
                "no key to seal secrets with: set secret_key_file (a file holding 64 hex \
                 digits, e.g. from `openssl rand -hex 32`) or secret_key_env in tenure.toml"
                    .into(),
            )),
            SecretKeySource::Environment { variable, key } => {
                let origin = format!("secret_key_env {variable}");
                let text = key
                    .as_ref()
                    .ok_or_else(|| Error::Config(format!("{origin}: the variable is not set")))?;
                SecretKey::from_text(text.reveal(), origin)
            }
            SecretKeySource::File { path, create } => {
                let origin = format!("secret_key_file {}", path.display());
                refuse_inside(path, data_dir, &origin)?;
                let text = match std::fs::read_to_string(path) {
                    Ok(text) => text,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && *create => {
                        create_key_file(path)?;
                        tracing::info!("made a new key for secrets: {origin}");
                        std::fs::read_to_string(path)?
                    }
                    Err(e) => return Err(Error::Config(format!("{origin}: {e}"))),
                };
                warn_if_readable_by_others(path, &origin);
                SecretKey::from_text(&text, origin)
            }
        }
    }

    /// A key from 64 hex digits or 44 base64 characters.
    fn from_text(text: &str, origin: String) -> Result<SecretKey> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..KEY_LEN)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex digits"))
                .collect()
        } else {
            STANDARD.decode(text).unwrap_or_default()
        };
        if bytes.len() != KEY_LEN {
            return Err(Error::Config(format!(
                "{origin} does not hold a 256-bit key: write 64 hex digits (openssl rand -hex 32)"
            )));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| Error::Internal("AES-256-GCM refused a 32-byte key".into()))?;
        Ok(SecretKey {
            key: LessSafeKey::new(key),
            origin,
        })
    }

    /// Seals `values` for the entry `owner` (a secret's or a table's name).
    pub fn seal(&self, owner: &str, values: &BTreeMap<String, String>) -> Result<Sealed> {
        let mut buffer = serde_json::to_vec(values)
            .map_err(|e| Error::Internal(format!("cannot encode credentials: {e}")))?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| Error::Internal("no randomness for a nonce".into()))?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| Error::Internal("cannot seal credentials".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buffer);
        Ok(Sealed(format!("{SEALED_PREFIX}{}", STANDARD.encode(out))))
    }

    /// Opens what [`SecretKey::seal`] sealed for `owner`.
    pub fn open(&self, owner: &str, sealed: &Sealed) -> Result<BTreeMap<String, String>> {
        let cannot = || {
            Error::Config(format!(
                "cannot open the sealed credentials of {owner}: {} is not the key they were \
                 sealed with, or the catalog entry was altered",
                self.origin
            ))
        };
        let bytes = sealed
            .0
            .strip_prefix(SEALED_PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(cannot)?;
        let (nonce, sealed_bytes) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| cannot())?;
        let mut buffer = sealed_bytes.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut buffer)
            .map_err(|_| cannot())?;
        serde_json::from_slice(plain).map_err(|_| cannot())
    }
}

/// Sealed credentials as the catalog keeps them: `aes256gcm:` and base64 of the nonce, the
/// ciphertext and the tag.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(..)")
    }
}

fn refuse_inside(path: &Path, data_dir: &Path, origin: &str) -> Result<()> {
    let absolute = |p: &Path| -> PathBuf {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        // The nearest existing ancestor resolved, so links do not hide where the key is.
        let mut existing = p.as_path();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = parent;
                }
                _ => return p.clone(),
            }
        }
        let mut resolved = existing
            .canonicalize()
            .unwrap_or_else(|_| existing.to_path_buf());
        resolved.extend(rest.iter().rev());
        resolved
    };
    if absolute(path).starts_with(absolute(data_dir)) {
        return Err(Error::Config(format!(
            "{origin} is inside the data directory {}: the key must be kept apart from the \
             secrets it seals",
            data_dir.display()
        )));
    }
    Ok(())
}

/// Writes a new random key (64 hex digits) to `path`, readable by its owner only, failing
/// rather than replacing a file that appeared meanwhile.
fn create_key_file(path: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut key = [0u8; KEY_LEN];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| Error::Internal("no randomness".into()))?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{hex}\n").as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn warn_if_readable_by_others(path: &Path, origin: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!("{origin} can be read by other users; chmod 600 it");
    }
}

/// A named secret (`CREATE SECRET`), as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSecret {
    pub name: String,
    /// `s3`, the only type so far.
    pub kind: String,
    /// `config` (the credentials given) or `credential_chain` (the server's environment).
    pub provider: String,
    /// The locations it applies to when an external table names no secret
    /// (`s3://bucket/prefix`); the longest matching scope wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// S3 settings that are not credentials, as `aws.*` option names without the prefix
    /// (region, endpoint, allow_http, virtual_hosted_style_request).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// The credentials (access_key_id, secret_access_key, session_token), sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Sealed>,
    pub owner: String,
}

impl StoredSecret {
    /// A secret from CREATE SECRET's options (names upper-cased, values unquoted), its
    /// credentials sealed with `key`.
    pub fn from_options(
        name: &str,
        owner: &str,
        options: &[(String, String)],
        key: impl FnOnce() -> Result<std::sync::Arc<SecretKey>>,
    ) -> Result<StoredSecret> {
        let mut secret = StoredSecret {
            name: name.to_string(),
            kind: String::new(),
            provider: "config".to_string(),
            scope: None,
            settings: BTreeMap::new(),
            credentials: None,
            owner: owner.to_string(),
        };
        let mut credentials = BTreeMap::new();
        let mut use_ssl = None;
        for (option, value) in options {
            if options.iter().filter(|(o, _)| o == option).count() > 1 {
                return Err(Error::invalid(format!("option {option} is given twice")));
            }
            match option.as_str() {
                "TYPE" => secret.kind = value.to_ascii_lowercase(),
                "PROVIDER" => secret.provider = value.to_ascii_lowercase(),
                "SCOPE" => secret.scope = Some(value.clone()),
                "KEY_ID" => {
                    credentials.insert("access_key_id".to_string(), value.clone());
                }
                "SECRET" => {
                    credentials.insert("secret_access_key".to_string(), value.clone());
                }
                "SESSION_TOKEN" => {
                    credentials.insert("session_token".to_string(), value.clone());
                }
                "REGION" => {
                    secret.settings.insert("region".into(), value.clone());
                }
                "ENDPOINT" => {
                    secret.settings.insert("endpoint".into(), value.clone());
                }
                "URL_STYLE" => {
                    let virtual_hosted = match value.to_ascii_lowercase().as_str() {
                        "path" => "false",
                        "vhost" => "true",
                        other => {
                            return Err(Error::invalid(format!(
                                "URL_STYLE {other:?} is not path or vhost"
                            )));
                        }
                    };
                    secret
                        .settings
                        .insert("virtual_hosted_style_request".into(), virtual_hosted.into());
                }
                "USE_SSL" => use_ssl = Some(parse_bool(option, value)?),
                other => {
                    return Err(Error::invalid(format!(
                        "unknown secret option {other}; an s3 secret takes TYPE, PROVIDER, \
                         KEY_ID, SECRET, SESSION_TOKEN, REGION, ENDPOINT, URL_STYLE, USE_SSL \
                         and SCOPE"
                    )));
                }
            }
        }
        if secret.kind != "s3" {
            return Err(Error::invalid(if secret.kind.is_empty() {
                "a secret needs TYPE s3".to_string()
            } else {
                format!("secret TYPE {} is not supported; use s3", secret.kind)
            }));
        }
        match secret.provider.as_str() {
            "config" => {
                if credentials.contains_key("access_key_id")
                    != credentials.contains_key("secret_access_key")
                {
                    return Err(Error::invalid(
                        "an s3 secret needs both KEY_ID and SECRET, or neither (for a public \
                         bucket)",
                    ));
                }
            }
            "credential_chain" => {
                if !credentials.is_empty() {
                    return Err(Error::invalid(
                        "PROVIDER credential_chain takes its credentials from the server's \
                         environment: leave out KEY_ID, SECRET and SESSION_TOKEN",
                    ));
                }
            }
            other => {
                return Err(Error::invalid(format!(
                    "PROVIDER {other} is not config or credential_chain"
                )));
            }
        }
        if let Some(scope) = &secret.scope
            && !scope.starts_with("s3://")
        {
            return Err(Error::invalid(format!(
                "SCOPE {scope:?} is not an s3:// location"
            )));
        }
        if let Some(endpoint) = secret.settings.get("endpoint").cloned() {
            let endpoint = match (endpoint.contains("://"), use_ssl) {
                (true, _) => endpoint,
                (false, Some(false)) => format!("http://{endpoint}"),
                (false, _) => format!("https://{endpoint}"),
            };
            if endpoint.starts_with("http://") {
                secret.settings.insert("allow_http".into(), "true".into());
            }
            secret.settings.insert("endpoint".into(), endpoint);
        }
        if !credentials.is_empty() {
            secret.credentials = Some(key()?.seal(&secret.seal_owner(), &credentials)?);
        }
        Ok(secret)
    }

    /// Seals the secret's credentials with `new` instead of `old`.
    pub fn reseal(&mut self, old: &SecretKey, new: &SecretKey) -> Result<()> {
        if let Some(sealed) = &self.credentials {
            let values = old.open(&self.seal_owner(), sealed)?;
            self.credentials = Some(new.seal(&self.seal_owner(), &values)?);
        }
        Ok(())
    }

    /// What the secret's credentials are sealed for.
    fn seal_owner(&self) -> String {
        format!("secret {}", self.name)
    }

    /// Whether the server's own environment gives the credentials.
    pub fn uses_environment(&self) -> bool {
        self.provider == "credential_chain"
    }

    /// The `aws.*` options (without the prefix) this secret gives a table; `key` is asked
    /// for only where there are credentials to open.
    pub fn aws_options(
        &self,
        key: impl FnOnce() -> Result<std::sync::Arc<SecretKey>>,
    ) -> Result<BTreeMap<String, String>> {
        let mut options = self.settings.clone();
        if let Some(sealed) = &self.credentials {
            options.extend(key()?.open(&self.seal_owner(), sealed)?);
        }
        Ok(options)
    }

    /// Whether this secret's scope covers `location`, and how specifically (the scope's
    /// length).
    pub fn scope_match(&self, location: &str) -> Option<usize> {
        let scope = self.scope.as_deref()?;
        let rest = location.strip_prefix(scope)?;
        (rest.is_empty() || scope.ends_with('/') || rest.starts_with('/')).then_some(scope.len())
    }
}

fn parse_bool(option: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Ok(true),
        "false" | "off" | "0" => Ok(false),
        _ => Err(Error::invalid(format!("{option} takes true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hex_digit: char) -> SecretKey {
        SecretKey::from_text(&hex_digit.to_string().repeat(64), "test key".into()).unwrap()
    }

    fn values() -> BTreeMap<String, String> {
        BTreeMap::from([("secret_access_key".to_string(), "wJalr/xyz".to_string())])
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_owner() {
        let sealed = key('a').seal("secret s3", &values()).unwrap();
        assert!(!sealed.0.contains("wJalr"), "{}", sealed.0);
        assert_eq!(key('a').open("secret s3", &sealed).unwrap(), values());
        let wrong_key = key('b').open("secret s3", &sealed).unwrap_err();
        assert!(wrong_key.to_string().contains("not the key"), "{wrong_key}");
        // Moved to another entry, the same bytes do not open.
        assert!(key('a').open("secret other", &sealed).is_err());
        // Two seals of one value differ (fresh nonces).
        assert_ne!(sealed, key('a').seal("secret s3", &values()).unwrap());
        let mut tampered = sealed.0.clone();
        tampered.replace_range(20..21, if &sealed.0[20..21] == "A" { "B" } else { "A" });
        assert!(key('a').open("secret s3", &Sealed(tampered)).is_err());
    }

    #[test]
    fn keys_are_64_hex_digits_or_base64_of_32_bytes() {
        assert!(SecretKey::from_text(&"0f".repeat(32), "k".into()).is_ok());
        assert!(SecretKey::from_text(&STANDARD.encode([7u8; 32]), "k".into()).is_ok());
        for bad in ["", "abc", &"0f".repeat(16), &STANDARD.encode([7u8; 16])] {
            let err = SecretKey::from_text(bad, "secret_key_file k".into()).unwrap_err();
            assert!(err.to_string().contains("256-bit"), "{err}");
        }
    }

    #[test]
    fn a_missing_default_key_file_is_made_owner_only_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join("config/tenure/secret.key");
        let source = SecretKeySource::File {
            path: path.clone(),
            create: true,
        };
        let data = home.path().join("data");
        let sealed = SecretKey::load(&source, &data)
            .unwrap()
            .seal("t", &values())
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Loaded again, the same key opens what the first sealed.
        let again = SecretKey::load(&source, &data).unwrap();
        assert_eq!(again.open("t", &sealed).unwrap(), values());
        // A named file that does not exist is an error, not a new key.
        let named = SecretKeySource::File {
            path: home.path().join("nope.key"),
            create: false,
        };
        assert!(SecretKey::load(&named, &data).is_err());
        // A key inside the data directory is refused.
        let inside = SecretKeySource::File {
            path: data.join("key"),
            create: true,
        };
        let err = SecretKey::load(&inside, &data).unwrap_err().to_string();
        assert!(err.contains("inside the data directory"), "{err}");
        assert!(!data.join("key").exists());
    }

    #[test]
    fn secret_options_are_checked_and_credentials_sealed() {
        let k = std::sync::Arc::new(key('c'));
        let options = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let secret = StoredSecret::from_options(
            "s",
            "admin",
            &options(&[
                ("TYPE", "S3"),
                ("KEY_ID", "AKIA1"),
                ("SECRET", "wJalr/xyz"),
                ("REGION", "eu-west-1"),
                ("ENDPOINT", "minio:9000"),
                ("USE_SSL", "false"),
                ("URL_STYLE", "path"),
                ("SCOPE", "s3://bucket/sales"),
            ]),
            || Ok(k.clone()),
        )
        .unwrap();
        let stored = serde_json::to_string(&secret).unwrap();
        assert!(
            !stored.contains("wJalr") && !stored.contains("AKIA1"),
            "{stored}"
        );
        let aws = secret.aws_options(|| Ok(k.clone())).unwrap();
        assert_eq!(aws["secret_access_key"], "wJalr/xyz");
        assert_eq!(aws["endpoint"], "http://minio:9000");
        assert_eq!(aws["allow_http"], "true");
        assert_eq!(aws["virtual_hosted_style_request"], "false");
        assert_eq!(
            secret.scope_match("s3://bucket/sales/2024/x.parquet"),
            Some(17)
        );
        assert_eq!(secret.scope_match("s3://bucket/other"), None);
        assert_eq!(secret.scope_match("s3://bucket/sales-public/x"), None);
        assert_eq!(secret.scope_match("s3://bucket/sales"), Some(17));
        for (bad, says) in [
            (vec![("KEY_ID", "a"), ("SECRET", "b")], "TYPE s3"),
            (vec![("TYPE", "gcs")], "not supported"),
            (
                vec![("TYPE", "s3"), ("KEY_ID", "a")],
                "both KEY_ID and SECRET",
            ),
            (
                vec![("TYPE", "s3"), ("COLOUR", "red")],
                "unknown secret option",
            ),
            (
                vec![
                    ("TYPE", "s3"),
                    ("PROVIDER", "credential_chain"),
                    ("SECRET", "x"),
                ],
                "leave out",
            ),
            (vec![("TYPE", "s3"), ("SCOPE", "/etc")], "not an s3://"),
            (vec![("TYPE", "s3"), ("TYPE", "s3")], "twice"),
        ] {
            let err = StoredSecret::from_options("s", "a", &options(&bad), || Ok(k.clone()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
            assert!(!err.contains("wJalr"));
        }
    }
}
