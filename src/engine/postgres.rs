//! PostgreSQL compatibility of the engine's SQL: pg_catalog (from datafusion-pg-catalog) with
//! its functions (`current_database()`, `format_type()`, `pg_table_is_visible()`, ...), and a
//! `version()` that reads like PostgreSQL's, which drivers parse. Installed for every session,
//! the CLI's included, so a catalog query gives the same answer in `tenure sql` as over the
//! wire.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};

use super::CATALOG_NAME;
use crate::error::{Error, Result};

/// Schemas clients may not create or drop: tenure's system tables and PostgreSQL's.
pub const RESERVED_SCHEMAS: &[&str] = &[super::SYSTEM_SCHEMA, "pg_catalog", "information_schema"];

/// `roles`: the users clients may log in as, shown in pg_roles (psql's `\du`).
pub fn install(ctx: &SessionContext, roles: Vec<String>) -> Result<()> {
    datafusion_pg_catalog::setup_pg_catalog(ctx, CATALOG_NAME, Roles { names: roles })
        .map_err(|e| Error::Catalog(format!("cannot set up pg_catalog: {e}")))?;
    let version = crate::server::version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(version.clone()))))),
    ));
    Ok(())
}

/// The login roles pg_roles lists. Every user may do everything: tenure has no privileges yet.
#[derive(Debug, Clone)]
struct Roles {
    names: Vec<String>,
}

#[async_trait::async_trait]
impl PgCatalogContextProvider for Roles {
    async fn roles(&self) -> Vec<String> {
        self.names.clone()
    }

    async fn role(&self, name: &str) -> Option<Role> {
        self.names.iter().any(|n| n == name).then(|| Role {
            name: name.to_string(),
            is_superuser: true,
            can_login: true,
            can_create_db: false,
            can_create_role: false,
            can_create_user: false,
            can_replication: false,
            grants: Vec::new(),
            inherited_roles: Vec::new(),
        })
    }
}
