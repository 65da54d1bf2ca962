//! External tables: data registered where it lives (local files or S3), never copied, and
//! the rule on which local paths a statement may name.

use std::collections::HashMap;
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

use super::paths::parse_location;
use super::paths::{ConfinedFiles, Location, PathAccess};
use super::secrets::{AWS_OPTION_PREFIX, S3Access};
use super::{Engine, Output};
use crate::access::secrets::StoredSecret;
use crate::catalog::{ExternalTable, QualifiedName, Relation};
use crate::error::{Error, Result};
use crate::storage::ManagedTable;

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
        let mut definition = ExternalTable {
            format: create.file_type.to_uppercase(),
            location: locations.join("\n"),
            columns: create.columns.iter().map(|c| c.to_string()).collect(),
            partition_columns: create.table_partition_cols.clone(),
            options: create
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            secret: None,
            sealed_options: None,
        };
        let mut catalog = self.lock_catalog(session).await?;
        catalog.require_schema(&name.schema)?;
        self.bind_credentials(&mut definition, &catalog)?;
        let previous = catalog.get(&name).cloned();
        match &previous {
            Some(_) if create.if_not_exists => return Ok(Output::command("CREATE EXTERNAL TABLE")),
            Some(Relation::External(_)) if create.or_replace => {}
            Some(existing) => return Err(existing.already_exists(&name)),
            None => {}
        }
        let ctx = catalog.ctx().clone();
        self.register_external(&ctx, &name, &definition, &catalog.secrets)
            .await?;
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
    /// directory) and checks it against the allowed roots; S3 URLs are kept as written.
    fn normalize_location(&self, location: &str) -> Result<String> {
        match self.access.confine(location)? {
            Location::Local(path) => Ok(path.to_string_lossy().into_owned()),
            Location::S3(_) => Ok(location.to_string()),
        }
    }

    /// The target of `COPY ... TO` as DataFusion should see it: a local path confined to
    /// the roots, written out absolute; S3 only where the engine is not a server's (a
    /// server's clients have no S3 credentials of their own to write with yet).
    pub(super) fn copy_target(&self, target: &str) -> Result<String> {
        match self.access.confine(target)? {
            Location::Local(path) => Ok(path.to_string_lossy().into_owned()),
            Location::S3(url) => match &self.access {
                PathAccess::Unrestricted => {
                    let access = S3Access {
                        options: HashMap::new(),
                        from_environment: true,
                    };
                    let store = s3_store(&url, &access, &self.s3_policy())?;
                    self.ctx.register_object_store(&bucket_url(&url)?, store);
                    Ok(target.to_string())
                }
                PathAccess::Roots(_) => Err(Error::unsupported(
                    "COPY TO s3:// is not available to server clients: the server does not \
                     lend its S3 credentials; write to a local path under allowed_roots",
                )),
            },
        }
    }

    /// Registers an external table with DataFusion from its catalog definition.
    /// Registers an external table in the catalog of `ctx` (the shared one or a block's).
    pub(super) async fn register_external(
        &self,
        ctx: &SessionContext,
        name: &QualifiedName,
        table: &ExternalTable,
        secrets: &[StoredSecret],
    ) -> Result<()> {
        let locations: Vec<&str> = table.location.split('\n').collect();
        let policy = self.s3_policy();
        let mut stores = HashMap::new();
        // Each table's S3 store (with the credentials of its OPTIONS) is registered under a
        // URL scheme of its own, so no other table, and no COPY TO, is ever signed with
        // them; DataFusion reads the table through its rewritten locations.
        let table_scheme = store_scheme(name);
        let mut rewritten = Vec::new();
        let mut access = None;
        for location in &locations {
            match parse_location(location)? {
                Location::S3(url) => {
                    if access.is_none() {
                        access = Some(self.s3_access(name, table, secrets)?);
                    }
                    let access = access.as_ref().expect("set above");
                    let store = s3_store(&url, access, &policy)?;
                    let own = format!("{table_scheme}://{}", &url[url::Position::BeforeHost..]);
                    let own_url = Url::parse(&own)
                        .map_err(|e| Error::invalid(format!("invalid location {location}: {e}")))?;
                    ctx.register_object_store(&bucket_url(&own_url)?, store.clone());
                    stores.insert(location.to_string(), store);
                    rewritten.push(own);
                }
                Location::Local(_) => rewritten.push(location.to_string()),
            }
        }
        if table.format == "DELTA" {
            let [location] = locations.as_slice() else {
                return Err(Error::invalid(
                    "a DELTA external table has exactly one location",
                ));
            };
            let (url, store) = match parse_location(location)? {
                Location::Local(path) => {
                    let url = Url::from_directory_path(&path)
                        .map_err(|()| Error::invalid(format!("invalid location {location}")))?;
                    // A Delta log may name files by absolute URL: for a server's clients
                    // delta-rs reads through the confined store too.
                    let store: Option<Arc<dyn ObjectStore>> = match &self.access {
                        PathAccess::Roots(_) => Some(Arc::new(ConfinedFiles::new(
                            self.access.clone(),
                            Vec::new(),
                        ))),
                        PathAccess::Unrestricted => None,
                    };
                    (url, store)
                }
                Location::S3(url) => {
                    register_s3_log_stores();
                    (url, stores.get(*location).cloned())
                }
            };
            let mut builder = DeltaTableBuilder::from_url(url.clone())?;
            if let Some(store) = store {
                builder = builder.with_storage_backend(store, url.clone());
            }
            let delta = builder.load().await.map_err(|e| {
                Error::invalid(format!("cannot open Delta table at {location}: {e}"))
            })?;
            let provider = ManagedTable::from_loaded(url, delta, true).await?;
            return Self::register_in(ctx, name, provider);
        }
        let sql = external_table_sql(
            name,
            &ExternalTable {
                location: rewritten.join("\n"),
                ..table.clone()
            },
        );
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

/// Which S3 endpoints and credentials a statement may use.
#[derive(Debug, Clone)]
pub(super) struct S3Policy {
    /// Whether the statement comes from a server's client.
    restricted: bool,
    /// Endpoints a server's clients may name in `aws.endpoint` (from the configuration).
    allowed_endpoints: Vec<String>,
}

impl Engine {
    pub(super) fn s3_policy(&self) -> S3Policy {
        S3Policy {
            restricted: matches!(self.access, PathAccess::Roots(_)),
            allowed_endpoints: self
                .config
                .s3_endpoints
                .iter()
                .map(|e| normalize_endpoint(e))
                .collect(),
        }
    }
}

fn normalize_endpoint(endpoint: &str) -> String {
    endpoint.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The object-store URL (scheme and bucket) of `url`.
fn bucket_url(url: &Url) -> Result<Url> {
    Url::parse(&format!(
        "{}://{}",
        url.scheme(),
        url.host_str().unwrap_or("")
    ))
    .map_err(|e| Error::invalid(format!("invalid location {url}: {e}")))
}

/// The URL scheme under which the S3 stores of table `name` are registered: tenure-s3-
/// and the name in hex (a scheme allows letters, digits, `+`, `-` and `.` only).
fn store_scheme(name: &QualifiedName) -> String {
    let hex: String = name
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("tenure-s3-{hex}")
}

/// An S3 store for the bucket of `url`, configured by the `aws.*` OPTIONS
/// (access_key_id, secret_access_key, session_token, region, endpoint, allow_http).
///
/// The server's own `AWS_*` environment (its credentials, region and endpoint) applies
/// only when the options name no endpoint: a table on an endpoint a client names is signed
/// with the credentials its options give, or not at all, never with the server's. For a
/// server's clients the endpoint must be one the configuration allows (`s3_endpoints`), so
/// that no client makes the server call an address of its choosing.
///
/// A secret with PROVIDER credential_chain (made by a superuser) asks for the server's
/// environment on any endpoint.
fn s3_store(url: &Url, access: &S3Access, policy: &S3Policy) -> Result<Arc<dyn ObjectStore>> {
    use object_store::aws::AmazonS3ConfigKey;
    let bucket = url.host_str().unwrap_or_default();
    let mut keys = Vec::new();
    for (key, value) in &access.options {
        let config_key: AmazonS3ConfigKey = key
            .parse()
            .map_err(|_| Error::invalid(format!("unknown S3 option aws.{key}")))?;
        keys.push((config_key, value));
    }
    let endpoint = keys
        .iter()
        .find_map(|(k, v)| matches!(k, AmazonS3ConfigKey::Endpoint).then(|| normalize_endpoint(v)));
    let mut builder = match &endpoint {
        None => AmazonS3Builder::from_env(),
        Some(endpoint) => {
            if policy.restricted && !policy.allowed_endpoints.contains(endpoint) {
                return Err(Error::PermissionDenied(format!(
                    "S3 endpoint {endpoint} is not one this server may call; its administrator \
                     lists the allowed ones in tenure.toml (s3_endpoints)"
                )));
            }
            if access.from_environment {
                AmazonS3Builder::from_env()
            } else {
                AmazonS3Builder::new()
            }
        }
    };
    builder = builder.with_bucket_name(bucket);
    let has_credentials = keys
        .iter()
        .any(|(k, _)| matches!(k, AmazonS3ConfigKey::AccessKeyId));
    if endpoint.is_some() && !has_credentials && !access.from_environment {
        builder = builder.with_skip_signature(true);
    }
    for (key, value) in keys {
        builder = builder.with_config(key, value);
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
