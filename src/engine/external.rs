//! External tables: data registered where it lives (local files or S3), never copied, and
//! the rule on which local paths a statement may name.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{CreateExternalTable, Statement as DFStatement};
use datafusion::sql::planner::object_name_to_table_reference;
use deltalake::DeltaTableBuilder;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use url::Url;

use super::{Engine, Output};
use crate::catalog::{ExternalTable, QualifiedName, Relation};
use crate::error::{Error, Result};
use crate::storage::ManagedTable;

/// Which local paths statements may read or write.
#[derive(Debug, Clone, PartialEq)]
pub enum PathAccess {
    /// Any path the process can reach: the embedded shell, run by the machine's own user.
    Unrestricted,
    /// Only paths under these directories: clients of the server.
    Roots(Vec<PathBuf>),
}

/// Option keys that configure S3 access rather than the file format. They are kept in the
/// catalog (so the table works after a restart) but never handed to DataFusion's format
/// options.
const AWS_OPTION_PREFIX: &str = "aws.";

impl Engine {
    pub(super) async fn create_external_table(
        &self,
        session: &SessionContext,
        create: CreateExternalTable,
    ) -> Result<Output> {
        if create.temporary || create.unbounded {
            return Err(Error::unsupported(
                "TEMPORARY and UNBOUNDED external tables are not supported",
            ));
        }
        if !create.order_exprs.is_empty() || !create.constraints.is_empty() {
            return Err(Error::unsupported(
                "WITH ORDER and constraints on external tables are not supported",
            ));
        }
        let name = self.qualify(&object_name_to_table_reference(create.name.clone(), true)?)?;
        let mut locations = Vec::new();
        for location in &create.locations {
            locations.push(self.normalize_location(location)?);
        }
        let definition = ExternalTable {
            format: create.file_type.to_uppercase(),
            location: locations.join("\n"),
            columns: create.columns.iter().map(|c| c.to_string()).collect(),
            partition_columns: create.table_partition_cols.clone(),
            options: create
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
        };
        let mut catalog = self.lock_catalog(session).await?;
        catalog.require_schema(&name.schema)?;
        let previous = catalog.get(&name).cloned();
        match &previous {
            Some(_) if create.if_not_exists => return Ok(Output::command("CREATE EXTERNAL TABLE")),
            Some(Relation::External(_)) if create.or_replace => {}
            Some(existing) => return Err(existing.already_exists(&name)),
            None => {}
        }
        let ctx = catalog.ctx().clone();
        self.register_external(&ctx, &name, &definition).await?;
        let mut next = catalog.clone();
        next.put(name.clone(), Relation::External(definition));
        if let Err(e) = self.replace_catalog(&mut catalog, next) {
            Self::deregister_in(&ctx, &name)?;
            return Err(e);
        }
        if previous.is_some() {
            self.rebuild_views(&ctx, &catalog).await;
        }
        Ok(Output::command("CREATE EXTERNAL TABLE"))
    }

    /// Makes a local location absolute (so the catalog means the same thing from any working
    /// directory) and checks it against the allowed roots; leaves URLs with a scheme alone.
    fn normalize_location(&self, location: &str) -> Result<String> {
        match local_path(location) {
            Some(path) => {
                let absolute = absolute(&path)?;
                self.check_local_path(&absolute)?;
                let mut text = absolute.to_string_lossy().into_owned();
                if location.ends_with('/') && !text.ends_with('/') {
                    text.push('/');
                }
                Ok(text)
            }
            None => Ok(location.to_string()),
        }
    }

    /// Fails unless the statement may touch `target` (a path or URL).
    pub(super) fn check_path_access(&self, target: &str) -> Result<()> {
        match local_path(target) {
            Some(path) => self.check_local_path(&absolute(&path)?),
            None => Ok(()),
        }
    }

    fn check_local_path(&self, path: &Path) -> Result<()> {
        let PathAccess::Roots(roots) = &self.access else {
            return Ok(());
        };
        // Resolve symbolic links in the part of the path that exists, so a link inside a root
        // cannot point outside it.
        let resolved = resolve_existing_prefix(path);
        for root in roots {
            let root = absolute(root)?;
            let root = root.canonicalize().unwrap_or(root);
            if resolved.starts_with(&root) {
                return Ok(());
            }
        }
        Err(Error::PermissionDenied(format!(
            "{} is outside the directories this server may read ({}); \
             set allowed_roots in tenure.toml",
            path.display(),
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Registers an external table with DataFusion from its catalog definition.
    /// Registers an external table in the catalog of `ctx` (the shared one or a block's).
    pub(super) async fn register_external(
        &self,
        ctx: &SessionContext,
        name: &QualifiedName,
        table: &ExternalTable,
    ) -> Result<()> {
        let aws_options: HashMap<String, String> = table
            .options
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(AWS_OPTION_PREFIX)?;
                Some((key.to_string(), unquote(v)))
            })
            .collect();
        let locations: Vec<&str> = table.location.split('\n').collect();
        let mut stores = HashMap::new();
        for location in &locations {
            if let Some(url) = s3_url(location)? {
                let store = s3_store(&url, &aws_options)?;
                let bucket_url = Url::parse(&format!("s3://{}", url.host_str().unwrap_or("")))
                    .map_err(|e| Error::invalid(format!("invalid location {location}: {e}")))?;
                ctx.register_object_store(&bucket_url, store.clone());
                stores.insert(location.to_string(), store);
            }
        }
        if table.format == "DELTA" {
            let [location] = locations.as_slice() else {
                return Err(Error::invalid(
                    "a DELTA external table has exactly one location",
                ));
            };
            let url = match local_path(location) {
                Some(path) => Url::from_directory_path(&path)
                    .map_err(|()| Error::invalid(format!("invalid location {location}")))?,
                None => Url::parse(location)
                    .map_err(|e| Error::invalid(format!("invalid location {location}: {e}")))?,
            };
            let mut builder = DeltaTableBuilder::from_url(url.clone())?;
            if let Some(store) = stores.get(*location) {
                register_s3_log_stores();
                builder = builder.with_storage_backend(store.clone(), url.clone());
            }
            let delta = builder.load().await.map_err(|e| {
                Error::invalid(format!("cannot open Delta table at {location}: {e}"))
            })?;
            let provider = ManagedTable::from_loaded(url, delta, true).await?;
            return Self::register_in(ctx, name, provider);
        }
        let sql = external_table_sql(name, table);
        let mut statements = self.parse(&sql)?;
        let Some(crate::sql::Statement::DataFusion(DFStatement::CreateExternalTable(mut create))) =
            statements.pop()
        else {
            return Err(Error::Catalog(format!(
                "cannot re-create external table {name}"
            )));
        };
        create
            .options
            .retain(|(k, _)| !k.starts_with(AWS_OPTION_PREFIX));
        create.or_replace = true;
        let state = ctx.state();
        let plan = state
            .statement_to_plan(DFStatement::CreateExternalTable(create))
            .await?;
        ctx.execute_logical_plan(plan).await?;
        Ok(())
    }
}

/// The SQL that re-creates `table` as `name`.
fn external_table_sql(name: &QualifiedName, table: &ExternalTable) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut sql = format!(
        "CREATE EXTERNAL TABLE {}.{}.{} ",
        quote(super::CATALOG_NAME),
        quote(&name.schema),
        quote(&name.name)
    );
    if !table.columns.is_empty() {
        sql.push_str(&format!("({}) ", table.columns.join(", ")));
    }
    sql.push_str(&format!("STORED AS {} ", table.format));
    if !table.partition_columns.is_empty() {
        let columns: Vec<String> = table.partition_columns.iter().map(|c| quote(c)).collect();
        sql.push_str(&format!("PARTITIONED BY ({}) ", columns.join(", ")));
    }
    let locations: Vec<String> = table.location.split('\n').map(literal).collect();
    match locations.as_slice() {
        [one] => sql.push_str(&format!("LOCATION {one}")),
        many => sql.push_str(&format!("LOCATION ({})", many.join(", "))),
    }
    if !table.options.is_empty() {
        let options: Vec<String> = table
            .options
            .iter()
            .map(|(k, v)| format!("{} {v}", literal(k)))
            .collect();
        sql.push_str(&format!(" OPTIONS ({})", options.join(", ")));
    }
    sql
}

/// The local path a location names, or `None` for a URL with another scheme.
fn local_path(location: &str) -> Option<PathBuf> {
    if let Some(rest) = location.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    match location.split_once("://") {
        Some((scheme, _))
            if scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+') =>
        {
            None
        }
        _ => Some(PathBuf::from(location)),
    }
}

/// `path` made absolute against the working directory, with `.` and `..` removed lexically.
fn absolute(path: &Path) -> Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut clean = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    Ok(clean)
}

/// Canonicalizes the longest existing ancestor of `path` and appends the rest.
fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut resolved = existing.canonicalize().unwrap_or(existing);
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    resolved
}

fn s3_url(location: &str) -> Result<Option<Url>> {
    if !location.starts_with("s3://") && !location.starts_with("s3a://") {
        return Ok(None);
    }
    let url = Url::parse(location)
        .map_err(|e| Error::invalid(format!("invalid location {location}: {e}")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(format!(
            "location {location} names no bucket"
        )));
    }
    Ok(Some(url))
}

/// An S3 store for the bucket of `url`: credentials and endpoint from the usual `AWS_*`
/// environment variables, overridden by `aws.*` OPTIONS (access_key_id, secret_access_key,
/// session_token, region, endpoint, allow_http).
fn s3_store(url: &Url, options: &HashMap<String, String>) -> Result<Arc<dyn ObjectStore>> {
    let bucket = url.host_str().unwrap_or_default();
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in options {
        let config_key = key
            .parse()
            .map_err(|_| Error::invalid(format!("unknown S3 option aws.{key}")))?;
        builder = builder.with_config(config_key, value);
    }
    let store = builder
        .build()
        .map_err(|e| Error::invalid(format!("cannot configure S3 for {url}: {e}")))?;
    Ok(Arc::new(store))
}

/// delta-rs reads a table through a "log store" chosen by URL scheme, and knows only file://
/// and memory:// unless its S3 crate (with the AWS SDK) is compiled in. tenure hands it an
/// S3 object store of its own (credentials from OPTIONS or the environment), so delta-rs's
/// default log store is all S3 reads need; tenure never writes external tables.
struct S3LogStores;

impl LogStoreFactory for S3LogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_s3_log_stores() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        for scheme in ["s3://", "s3a://"] {
            // Both literals are valid URLs.
            let url = Url::parse(scheme).expect("a valid scheme URL");
            logstore_factories()
                .entry(url)
                .or_insert_with(|| Arc::new(S3LogStores));
        }
    });
}

/// The text of a SQL literal as stored in the catalog (`'abc'` -> `abc`).
fn unquote(literal: &str) -> String {
    match literal
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
    {
        Some(inner) => inner.replace("''", "'"),
        None => literal.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_and_urls_are_told_apart() {
        assert_eq!(
            local_path("/data/x.parquet"),
            Some(PathBuf::from("/data/x.parquet"))
        );
        assert_eq!(local_path("rel/x.csv"), Some(PathBuf::from("rel/x.csv")));
        assert_eq!(local_path("file:///data/x"), Some(PathBuf::from("/data/x")));
        assert_eq!(local_path("s3://bucket/key"), None);
    }

    #[test]
    fn parent_components_cannot_escape_lexically() {
        let path = absolute(Path::new("/srv/import/../../etc/passwd")).unwrap();
        assert_eq!(path, PathBuf::from("/etc/passwd"));
    }

    #[test]
    fn stored_literals_unquote() {
        assert_eq!(unquote("'it''s'"), "it's");
        assert_eq!(unquote("true"), "true");
    }
}
