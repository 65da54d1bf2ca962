//! Secrets in the engine: CREATE / DROP SECRET, the credentials of external tables (a named
//! secret, one whose scope covers the location, or their own OPTIONS sealed), the sealing
//! of clear credentials left by older catalogs, and `tenure.secrets`, which shows every
//! secret without its credentials.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, BooleanArray, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::system_tables::SystemRows;
use super::transaction::CatalogGuard;
use super::{Engine, Output};
use crate::access::secrets::{SecretKey, StoredSecret, is_credential_option};
use crate::access::statement::AccessStatement;
use crate::catalog::{CatalogState, ExternalTable, QualifiedName, Relation, SavedCatalog};
use crate::config::SecretKeySource;
use crate::error::{Error, Result};
use crate::pg::sqlstate::SqlState;

/// Option keys of an external table that configure S3 rather than the file format.
pub(super) const AWS_OPTION_PREFIX: &str = "aws.";

/// The option naming the secret an external table uses: `OPTIONS ('secret' 'lake')`.
const SECRET_OPTION: &str = "secret";

/// What the table's own sealed credentials are bound to. Not the table's name: a renamed
/// table keeps its credentials.
const TABLE_SEAL_OWNER: &str = "external table options";

/// The key that seals secrets, loaded when first needed (a default key file is made only
/// then) and kept.
#[derive(Debug)]
pub(super) struct SecretKeeper {
    source: SecretKeySource,
    data_dir: std::path::PathBuf,
    key: Mutex<Option<Arc<SecretKey>>>,
}

impl SecretKeeper {
    pub(super) fn new(source: SecretKeySource, data_dir: std::path::PathBuf) -> Self {
        SecretKeeper {
            source,
            data_dir,
            key: Mutex::new(None),
        }
    }

    /// The key; a default key file that does not exist is made only where `may_create`
    /// (nothing is sealed yet), since otherwise a new key could open nothing and would
    /// seal new secrets apart from the old.
    fn key(&self, may_create: bool) -> Result<Arc<SecretKey>> {
        let mut key = self.key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = key.as_ref() {
            return Ok(key.clone());
        }
        let source = match &self.source {
            SecretKeySource::File { path, create: true } if !may_create => {
                if !path.exists() {
                    return Err(Error::Config(format!(
                        "the catalog holds sealed credentials but the key file {} is missing; \
                         put back the key that sealed them (or name it in secret_key_file)",
                        path.display()
                    )));
                }
                &SecretKeySource::File {
                    path: path.clone(),
                    create: false,
                }
            }
            source => source,
        };
        let loaded = Arc::new(SecretKey::load(source, &self.data_dir)?);
        *key = Some(loaded.clone());
        Ok(loaded)
    }
}

/// The S3 configuration an external table is registered with.
pub(super) struct S3Access {
    /// `aws.*` options without the prefix, values unquoted.
    pub options: HashMap<String, String>,
    /// The server's environment gives the credentials (PROVIDER credential_chain).
    pub from_environment: bool,
}

impl Engine {
    /// CREATE SECRET and DROP SECRET (a superuser's; checked by the caller).
    pub(super) async fn execute_secret(
        &self,
        catalog: &mut CatalogGuard,
        statement: AccessStatement,
        owner: &str,
    ) -> Result<Output> {
        let tag = statement.tag();
        // Tables' S3 stores live in the registry every session shares, which a block
        // could not take back at ROLLBACK.
        if catalog.block().is_some() {
            return Err(Error::state(
                SqlState::ActiveSqlTransaction,
                format!("{tag} cannot run inside a transaction block"),
            ));
        }
        let mut next = catalog.clone();
        match statement {
            AccessStatement::CreateSecret {
                name,
                or_replace,
                if_not_exists,
                options,
            } => {
                let existing = next.secrets.iter().position(|s| s.name == name);
                if existing.is_some() && if_not_exists {
                    return Ok(Output::command(tag));
                }
                if existing.is_some() && !or_replace {
                    return Err(Error::AlreadyExists {
                        kind: "secret",
                        name,
                    });
                }
                if name.is_empty() || name.len() > 63 {
                    return Err(Error::invalid(format!("\"{name}\" is not a secret name")));
                }
                let secret = StoredSecret::from_options(&name, owner, &options.0, || {
                    self.sealing_key(&next)
                })?;
                match existing {
                    Some(at) => next.secrets[at] = secret,
                    None => next.secrets.push(secret),
                }
                if existing.is_some() {
                    // The tables that use it take the new credentials, all or none.
                    if let Err(e) = self.reregister_users_of(catalog, &next, &name).await {
                        self.reregister_users_of(catalog, catalog, &name)
                            .await
                            .unwrap_or_else(|e| tracing::warn!("{e}"));
                        return Err(e);
                    }
                }
                self.replace_catalog(catalog, next)?;
                if existing.is_some() {
                    let ctx = catalog.ctx().clone();
                    self.rebuild_views(&ctx, catalog).await;
                }
            }
            AccessStatement::DropSecret { name, if_exists } => {
                let Some(at) = next.secrets.iter().position(|s| s.name == name) else {
                    if if_exists {
                        return Ok(Output::command(tag));
                    }
                    return Err(Error::NotFound {
                        kind: "secret",
                        name,
                    });
                };
                let users = tables_using(&next, &name);
                if !users.is_empty() {
                    return Err(Error::state(
                        SqlState::DependentObjectsStillExist,
                        format!(
                            "cannot drop secret {name} because external tables use it: {}; \
                             drop them first",
                            users
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                next.secrets.remove(at);
                self.replace_catalog(catalog, next)?;
            }
            other => {
                return Err(Error::Internal(format!(
                    "{} is not a secret statement",
                    other.tag()
                )));
            }
        }
        Ok(Output::command(tag))
    }

    /// The key, to open what is sealed.
    fn opening_key(&self) -> Result<Arc<SecretKey>> {
        self.secrets.key(false)
    }

    /// The key, to seal something new into `state`: made where the default key file does
    /// not exist yet and `state` holds nothing sealed.
    fn sealing_key(&self, state: &CatalogState) -> Result<Arc<SecretKey>> {
        let sealed = state.secrets.iter().any(|s| s.credentials.is_some())
            || state
                .relations
                .iter()
                .any(|(_, r)| matches!(r, Relation::External(t) if t.sealed_options.is_some()));
        self.secrets.key(!sealed)
    }

    /// Registers again, with secret `name` as `state` has it, the external tables that use
    /// it, whose S3 stores hold the credentials it had before CREATE OR REPLACE SECRET.
    async fn reregister_users_of(
        &self,
        catalog: &CatalogGuard,
        state: &CatalogState,
        name: &str,
    ) -> Result<()> {
        for table in tables_using(state, name) {
            if let Some(Relation::External(definition)) = state.get(&table) {
                self.register_external(catalog.ctx(), &table, definition, &state.secrets)
                    .await
                    .map_err(|e| {
                        Error::invalid(format!(
                            "external table {table} cannot use secret {name} as given: {e}"
                        ))
                    })?;
            }
        }
        Ok(())
    }

    /// Takes the credentials out of a new external table's OPTIONS: the `secret` option
    /// becomes the table's secret, inline `aws.*` credentials are sealed, and an S3 table
    /// given neither uses the secret whose scope covers its location.
    pub(super) fn bind_credentials(
        &self,
        table: &mut ExternalTable,
        state: &CatalogState,
    ) -> Result<()> {
        let secrets = &state.secrets;
        let mut named = None;
        let mut inline = BTreeMap::new();
        let mut kept = Vec::new();
        for (option, value) in std::mem::take(&mut table.options) {
            if option.eq_ignore_ascii_case(SECRET_OPTION) {
                named = Some(unquote(&value));
            } else if is_sealed_option(&option) {
                inline.insert(option, value);
            } else {
                kept.push((option, value));
            }
        }
        table.options = kept;
        if let Some(name) = named {
            if !inline.is_empty() {
                return Err(Error::invalid(
                    "give an external table's credentials in its secret or in its OPTIONS, \
                     not both",
                ));
            }
            let found = secrets
                .iter()
                .find(|s| s.name == name)
                .or_else(|| secrets.iter().find(|s| s.name == name.to_lowercase()))
                .ok_or_else(|| Error::NotFound {
                    kind: "secret",
                    name: name.clone(),
                })?;
            table.secret = Some(found.name.clone());
        } else if !inline.is_empty() {
            table.sealed_options = Some(self.sealing_key(state)?.seal(TABLE_SEAL_OWNER, &inline)?);
        } else if let Some(first) = table.location.split('\n').next()
            && !table
                .options
                .iter()
                .any(|(o, _)| o.eq_ignore_ascii_case("aws.endpoint"))
        {
            // A table that names its own endpoint is not signed with a scope's keys.
            table.secret = secrets
                .iter()
                .filter_map(|s| Some((s.scope_match(first)?, s)))
                .max_by_key(|(length, _)| *length)
                .map(|(_, s)| s.name.clone());
        }
        Ok(())
    }

    /// The S3 options an external table is registered with: its secret's, then its own.
    pub(super) fn s3_access(
        &self,
        name: &QualifiedName,
        table: &ExternalTable,
        secrets: &[StoredSecret],
    ) -> Result<S3Access> {
        let mut options = HashMap::new();
        let mut from_environment = false;
        if let Some(secret_name) = &table.secret {
            let secret = secrets
                .iter()
                .find(|s| &s.name == secret_name)
                .ok_or_else(|| {
                    Error::Catalog(format!(
                        "external table {name} uses secret {secret_name}, which does not exist"
                    ))
                })?;
            options.extend(secret.aws_options(|| self.opening_key())?);
            from_environment = secret.uses_environment();
        }
        let mut own: Vec<(String, String)> = table.options.clone();
        if let Some(sealed) = &table.sealed_options {
            own.extend(self.opening_key()?.open(TABLE_SEAL_OWNER, sealed)?);
        }
        for (option, value) in own {
            if let Some(key) = option.strip_prefix(AWS_OPTION_PREFIX) {
                options.insert(key.to_string(), unquote(&value));
            }
        }
        Ok(S3Access {
            options,
            from_environment,
        })
    }

    /// `tenure rekey`: seals every secret and every external table's credentials again
    /// with the key in `new_key_file` (made where it does not exist), in one catalog write;
    /// (secrets, tables) resealed. The configured key must open them all, or nothing
    /// changes.
    pub async fn reseal_secrets(&self, new_key_file: &std::path::Path) -> Result<(usize, usize)> {
        let new = SecretKey::load(
            &SecretKeySource::File {
                path: new_key_file.to_path_buf(),
                create: true,
            },
            &self.secrets.data_dir,
        )?;
        let mut catalog = self.lock_catalog(&self.ctx).await?;
        let mut next = catalog.clone();
        let sealed_secrets = next
            .secrets
            .iter()
            .filter(|s| s.credentials.is_some())
            .count();
        let sealed_tables = next
            .relations
            .iter()
            .filter(|(_, r)| matches!(r, Relation::External(t) if t.sealed_options.is_some()))
            .count();
        if sealed_secrets + sealed_tables == 0 {
            return Ok((0, 0));
        }
        let old = self.opening_key()?;
        for secret in &mut next.secrets {
            secret.reseal(&old, &new)?;
        }
        for (_, relation) in &mut next.relations {
            if let Relation::External(table) = relation
                && let Some(sealed) = &table.sealed_options
            {
                let values = old.open(TABLE_SEAL_OWNER, sealed)?;
                table.sealed_options = Some(new.seal(TABLE_SEAL_OWNER, &values)?);
            }
        }
        self.replace_catalog(&mut catalog, next)?;
        Ok((sealed_secrets, sealed_tables))
    }

    /// Seals the clear credentials that catalogs written before secrets kept in external
    /// tables' OPTIONS. Without a key they stay as they are, and the log says so.
    pub(super) fn seal_clear_credentials(&self, catalog: &mut CatalogGuard) {
        let clear: Vec<QualifiedName> = catalog
            .relations
            .iter()
            .filter_map(|(name, relation)| match relation {
                Relation::External(t) if t.options.iter().any(|(o, _)| is_sealed_option(o)) => {
                    Some(name.clone())
                }
                _ => None,
            })
            .collect();
        if clear.is_empty() {
            return;
        }
        let names = clear
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let sealed = (|| -> Result<()> {
            let key = self.sealing_key(catalog)?;
            let mut next = catalog.clone();
            for (_, relation) in &mut next.relations {
                let Relation::External(table) = relation else {
                    continue;
                };
                let mut values = match &table.sealed_options {
                    Some(sealed) => key.open(TABLE_SEAL_OWNER, sealed)?,
                    None => BTreeMap::new(),
                };
                let (credentials, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut table.options)
                    .into_iter()
                    .partition(|(o, _)| is_sealed_option(o));
                table.options = kept;
                if credentials.is_empty() {
                    continue;
                }
                values.extend(credentials);
                table.sealed_options = Some(key.seal(TABLE_SEAL_OWNER, &values)?);
            }
            self.replace_catalog(catalog, next)
        })();
        match sealed {
            Ok(()) => tracing::info!("sealed the S3 credentials kept in clear by {names}"),
            Err(e) => tracing::warn!(
                "the catalog keeps S3 credentials of {names} in clear, and they cannot be \
                 sealed: {e}"
            ),
        }
    }
}

/// Whether an external table's option is a credential to seal: an `aws.*` option whose
/// name says so (access_key_id, secret_access_key, session_token).
fn is_sealed_option(option: &str) -> bool {
    option.starts_with(AWS_OPTION_PREFIX) && is_credential_option(option)
}

/// The external tables that use secret `name`.
fn tables_using(state: &crate::catalog::CatalogState, name: &str) -> Vec<QualifiedName> {
    state
        .relations
        .iter()
        .filter_map(|(table, relation)| match relation {
            Relation::External(t) if t.secret.as_deref() == Some(name) => Some(table.clone()),
            _ => None,
        })
        .collect()
}

/// A SQL string literal's text (`'it''s'` is `it's`); anything else as written.
pub(super) fn unquote(literal: &str) -> String {
    match literal
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
    {
        Some(inner) => inner.replace("''", "'"),
        None => literal.to_string(),
    }
}

/// `tenure.secrets`: every secret's name, type, provider, scope, region and endpoint, and
/// whether it holds credentials; never the credentials.
#[derive(Debug)]
pub struct SecretsTable {
    pub catalog: SavedCatalog,
}

impl SystemRows for SecretsTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("provider", DataType::Utf8, false),
            Field::new("scope", DataType::Utf8, true),
            Field::new("region", DataType::Utf8, true),
            Field::new("endpoint", DataType::Utf8, true),
            Field::new("has_credentials", DataType::Boolean, false),
            Field::new("owner", DataType::Utf8, false),
        ]))
    }

    fn columns(&self) -> Vec<ArrayRef> {
        let state = self.catalog.get();
        let secrets = &state.secrets;
        let text = |f: fn(&StoredSecret) -> Option<&str>| -> ArrayRef {
            Arc::new(StringArray::from_iter(secrets.iter().map(f)))
        };
        vec![
            text(|s| Some(&s.name)),
            text(|s| Some(&s.kind)),
            text(|s| Some(&s.provider)),
            text(|s| s.scope.as_deref()),
            text(|s| s.settings.get("region").map(String::as_str)),
            text(|s| s.settings.get("endpoint").map(String::as_str)),
            Arc::new(BooleanArray::from_iter(
                secrets.iter().map(|s| Some(s.credentials.is_some())),
            )),
            text(|s| Some(&s.owner)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_literals_unquote() {
        assert_eq!(unquote("'it''s'"), "it's");
        assert_eq!(unquote("true"), "true");
    }

    #[test]
    fn only_aws_credentials_are_sealed() {
        for sealed in [
            "aws.access_key_id",
            "aws.secret_access_key",
            "aws.session_token",
        ] {
            assert!(is_sealed_option(sealed), "{sealed}");
        }
        for clear in ["aws.region", "aws.endpoint", "format.has_header", "secret"] {
            assert!(!is_sealed_option(clear), "{clear}");
        }
    }
}
