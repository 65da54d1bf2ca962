//! PostgreSQL compatibility of the engine's SQL: pg_catalog (from datafusion-pg-catalog) with
//! its functions (`current_database()`, `format_type()`, `pg_table_is_visible()`, ...), and a
//! `version()` that reads like PostgreSQL's, which drivers parse. Installed for every session,
//! the CLI's included, so a catalog query gives the same answer in `tenure sql` as over the
//! wire.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::{SchemaProvider, TableProvider, view::ViewTable};

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};

mod relations;

use super::udf_args::{like_arguments, row_count};
use super::version_string;
use crate::catalog::CATALOG_NAME;
use crate::catalog::SavedCatalog;
use crate::error::{Error, Result};
use relations::RELATION_VIEWS;

/// `roles`: the users clients may log in as, shown in pg_roles (psql's `\du`).
/// `catalog`: the saved catalog, whose keys and comments pg_constraint, pg_index, pg_class
/// and pg_description show.
pub async fn install(
    ctx: &SessionContext,
    roles: Vec<String>,
    catalog: SavedCatalog,
    system_schemas: &'static [&'static str],
) -> Result<()> {
    let oracle = super::privileges::Oracle {
        catalog: catalog.clone(),
        builtin: roles.clone().into(),
        role: None,
        system_schemas,
    };
    datafusion_pg_catalog::setup_pg_catalog(ctx, CATALOG_NAME, Roles { names: roles })
        .map_err(|e| Error::Catalog(format!("cannot set up pg_catalog: {e}")))?;
    // Before the catalog views, which call them.
    register_driver_functions(ctx);
    super::json::install(ctx);
    super::privileges::register_catalog_functions(ctx, &oracle);
    super::privileges::register(ctx, &oracle);
    super::keys::register(ctx, catalog.clone());
    super::oids::register(ctx, catalog.clone());
    super::views::register(ctx, catalog);
    super::format::register(ctx);
    super::sizes::register(ctx);
    override_catalog_views(ctx).await?;
    let version = version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version.clone(),
            ))))
        }),
    ));
    Ok(())
}

/// pg_tables and pg_views as PostgreSQL defines them, over pg_class: datafusion-pg-catalog
/// lists views in pg_tables and has an empty pg_views, so dbt, which reads both to learn
/// whether a relation is a table or a view, took every view for a table. pg_settings with
/// the preset settings drivers read from it (pgjdbc: max_index_keys).
///
/// pg_constraint and pg_index come from `tenure.keys` (keys and indexes of managed tables;
/// datafusion-pg-catalog's are fixed rows of PostgreSQL's own catalogs), as do pg_class's
/// index rows (see `relations.rs`).
/// pg_description adds the comments of `COMMENT ON` (`tenure.comments`) to PostgreSQL's own;
/// pg_attrdef and pg_attribute.atthasdef show column defaults (`tenure.defaults`), whose
/// text `pg_get_expr` returns.
/// A key's index and constraint oids come from its names (`KeyConstraint::index_oid`),
/// which `pg_get_indexdef` and `pg_get_constraintdef` decode. conkey, confkey and indkey are
/// smallint arrays, so the subscripts and unnest that pgjdbc and SQLAlchemy use work;
/// indoption is an int2vector's text (`'0 0'`), which SQLAlchemy parses, and the server
/// rewrites pgjdbc's subscripts of it to `tenure_int2vector_element`.
/// tenure_relation_sizes (not in PostgreSQL) gives `tenure.table_sizes` by pg_class oid, for
/// the server's rewrite of `pg_table_size(oid)` and friends. tenure_table_constraints,
/// tenure_key_column_usage and tenure_referential_constraints are information_schema's
/// views of the keys, which the server reads for `information_schema.table_constraints` and
/// the others (DataFusion answers information_schema itself, without those views). Keys are
/// informational, so `enforced` is 'NO'. tenure_columns, which the server reads for
/// `information_schema.columns`, lists pg_attribute's columns (temporary tables' too, whose
/// columns dbt's snapshots read) with PostgreSQL's type names (`integer`,
/// `timestamp without time zone`, `ARRAY`), precisions, 1-based positions and defaults (dbt
/// reads column types there).
///
/// pg_policy (tenure's row policies, from `tenure.policies`), pg_event_trigger,
/// pg_db_role_setting and pg_statistic_ext (empty in tenure) have their array columns as
/// arrays (datafusion-pg-catalog keeps them as text), which
/// psql's `\dp`, `\dy`, `\drds` and `\dX` pass to array_to_string and ANY. pg_amproc's
/// `amproc` is a pg_proc oid (datafusion-pg-catalog has the function's name; psql's `\dAp`
/// joins pg_proc on it).
const CATALOG_VIEWS: [(&str, &str); 25] = [
    (
        "pg_default_acl",
        "SELECT oid, defaclrole, defaclnamespace, defaclobjtype, defaclacl \
         FROM tenure.default_privileges",
    ),
    (
        "tenure_table_privileges",
        "SELECT grantor, grantee, CAST('tenure' AS VARCHAR) AS table_catalog, table_schema, \
                table_name, privilege_type, is_grantable, CAST('NO' AS VARCHAR) AS with_hierarchy \
         FROM tenure.table_grants WHERE column_name IS NULL",
    ),
    (
        "tenure_role_table_grants",
        "SELECT grantor, grantee, CAST('tenure' AS VARCHAR) AS table_catalog, table_schema, \
                table_name, privilege_type, is_grantable, CAST('NO' AS VARCHAR) AS with_hierarchy \
         FROM tenure.table_grants WHERE grantee <> 'PUBLIC' AND column_name IS NULL",
    ),
    (
        "tenure_column_privileges",
        "SELECT grantor, grantee, CAST('tenure' AS VARCHAR) AS table_catalog, table_schema, \
                table_name, column_name, privilege_type, is_grantable \
         FROM tenure.table_grants WHERE column_name IS NOT NULL",
    ),
    (
        "pg_roles",
        "SELECT rolname, rolsuper, rolinherit, rolsuper AS rolcreaterole, \
                CAST(false AS BOOLEAN) AS rolcreatedb, rolcanlogin, \
                CAST(false AS BOOLEAN) AS rolreplication, rolconnlimit, \
                CASE WHEN has_password THEN '********' END AS rolpassword, \
                CAST(NULL AS TIMESTAMP) AS rolvaliduntil, rolsuper AS rolbypassrls, \
                CAST(NULL AS VARCHAR[]) AS rolconfig, oid \
         FROM tenure.roles",
    ),
    (
        "pg_authid",
        "SELECT r.oid, r.rolname, r.rolsuper, r.rolinherit, r.rolsuper AS rolcreaterole, \
                CAST(false AS BOOLEAN) AS rolcreatedb, r.rolcanlogin, \
                CAST(false AS BOOLEAN) AS rolreplication, r.rolsuper AS rolbypassrls, \
                r.rolconnlimit, p.rolpassword, \
                CAST(NULL AS TIMESTAMP) AS rolvaliduntil \
         FROM tenure.roles r LEFT JOIN tenure.role_passwords p ON p.oid = r.oid",
    ),
    (
        "pg_auth_members",
        "SELECT roleid, member, \
                CAST(0 AS INT) AS grantor, CAST(false AS BOOLEAN) AS admin_option, \
                CAST(true AS BOOLEAN) AS inherit_option, CAST(true AS BOOLEAN) AS set_option \
         FROM tenure.role_members",
    ),
    (
        "pg_amproc",
        "SELECT a.oid, a.amprocfamily, a.amproclefttype, a.amprocrighttype, a.amprocnum, \
                tenure_oid(COALESCE(p.oid, 0), 'regproc') AS amproc \
         FROM pg_catalog.pg_amproc a \
         LEFT JOIN (SELECT proname, min(oid) AS oid FROM pg_catalog.pg_proc GROUP BY proname) p \
           ON p.proname = a.amproc",
    ),
    (
        "pg_policy",
        "SELECT oid, polname, polrelid, polcmd, polpermissive, polroles, polqual, polwithcheck \
         FROM tenure.policies",
    ),
    (
        "pg_event_trigger",
        "SELECT oid, evtname, evtevent, evtowner, evtfoid, evtenabled, \
                CAST(NULL AS VARCHAR[]) AS evttags \
         FROM pg_catalog.pg_event_trigger",
    ),
    (
        "pg_db_role_setting",
        "SELECT setdatabase, setrole, CAST(NULL AS VARCHAR[]) AS setconfig \
         FROM pg_catalog.pg_db_role_setting",
    ),
    (
        "pg_statistic_ext",
        "SELECT oid, stxrelid, stxname, stxnamespace, stxowner, stxkeys, stxstattarget, \
                CAST(NULL AS VARCHAR[]) AS stxkind, stxexprs \
         FROM pg_catalog.pg_statistic_ext",
    ),
    (
        "tenure_table_constraints",
        "SELECT CAST('tenure' AS VARCHAR) AS constraint_catalog, \
                k.table_schema AS constraint_schema, k.constraint_name, \
                CAST('tenure' AS VARCHAR) AS table_catalog, k.table_schema, k.table_name, \
                k.constraint_type, CAST('NO' AS VARCHAR) AS is_deferrable, \
                CAST('NO' AS VARCHAR) AS initially_deferred, CAST('NO' AS VARCHAR) AS enforced, \
                CASE WHEN k.constraint_type = 'FOREIGN KEY' THEN CAST(NULL AS VARCHAR) \
                     ELSE 'YES' END AS nulls_distinct \
         FROM tenure.keys k \
         WHERE k.constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')",
    ),
    (
        "tenure_key_column_usage",
        "SELECT CAST('tenure' AS VARCHAR) AS constraint_catalog, u.constraint_schema, \
                u.constraint_name, CAST('tenure' AS VARCHAR) AS table_catalog, u.table_schema, \
                u.table_name, u.column_name, CAST(u.ordinal_position AS INT) AS ordinal_position, \
                CAST(array_position(r.columns, u.referenced_column) AS INT) \
                  AS position_in_unique_constraint \
         FROM (SELECT k.table_schema AS constraint_schema, k.constraint_name, k.table_schema, \
                      k.table_name, k.references_schema, k.references_table, k.references_key, \
                      unnest(k.columns) AS column_name, \
                      unnest(range(1, CAST(cardinality(k.columns) AS BIGINT) + 1)) \
                        AS ordinal_position, \
                      unnest(coalesce(k.references_columns, k.columns)) AS referenced_column \
               FROM tenure.keys k \
               WHERE k.constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')) u \
         LEFT JOIN tenure.keys r ON r.table_schema = u.references_schema \
              AND r.table_name = u.references_table AND r.constraint_name = u.references_key",
    ),
    (
        "tenure_referential_constraints",
        "SELECT CAST('tenure' AS VARCHAR) AS constraint_catalog, \
                k.table_schema AS constraint_schema, k.constraint_name, \
                CAST('tenure' AS VARCHAR) AS unique_constraint_catalog, \
                k.references_schema AS unique_constraint_schema, \
                k.references_key AS unique_constraint_name, \
                CAST('NONE' AS VARCHAR) AS match_option, \
                CAST('NO ACTION' AS VARCHAR) AS update_rule, \
                CAST('NO ACTION' AS VARCHAR) AS delete_rule \
         FROM tenure.keys k WHERE k.constraint_type = 'FOREIGN KEY'",
    ),
    (
        "tenure_columns",
        "SELECT CAST('tenure' AS VARCHAR) AS table_catalog, n.nspname AS table_schema, \
                c.relname AS table_name, a.attname AS column_name, \
                CAST(a.attnum AS INT) AS ordinal_position, \
                d.column_default, \
                CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable, \
                CASE WHEN t.typname = 'varchar' THEN 'character varying' \
                     WHEN t.typname IN ('json', 'jsonb') THEN t.typname \
                     WHEN t.typcategory = 'A' THEN 'ARRAY' \
                     ELSE format_type(a.atttypid, NULL) END AS data_type, \
                CAST(CASE WHEN t.typname = 'varchar' AND a.atttypmod > 4 \
                          THEN a.atttypmod - 4 END AS INT) AS character_maximum_length, \
                CAST(NULL AS INT) AS character_octet_length, \
                CAST(CASE t.typname WHEN 'int2' THEN 16 WHEN 'int4' THEN 32 WHEN 'int8' THEN 64 \
                     WHEN 'float4' THEN 24 WHEN 'float8' THEN 53 \
                     WHEN 'numeric' THEN CASE WHEN a.atttypmod > 4 \
                                              THEN (a.atttypmod - 4) / 65536 END \
                     END AS INT) AS numeric_precision, \
                CAST(CASE WHEN t.typname IN ('int2', 'int4', 'int8', 'float4', 'float8') THEN 2 \
                     WHEN t.typname = 'numeric' THEN 10 END AS INT) AS numeric_precision_radix, \
                CAST(CASE WHEN t.typname IN ('int2', 'int4', 'int8') THEN 0 \
                     WHEN t.typname = 'numeric' AND a.atttypmod > 4 \
                     THEN (a.atttypmod - 4) % 65536 END AS INT) AS numeric_scale, \
                CAST(CASE WHEN t.typname = 'date' THEN 0 \
                     WHEN t.typname IN ('timestamp', 'timestamptz', 'time', 'interval') THEN 6 \
                     END AS INT) AS datetime_precision, \
                CAST(NULL AS VARCHAR) AS interval_type, \
                CAST('tenure' AS VARCHAR) AS udt_catalog, \
                CAST('pg_catalog' AS VARCHAR) AS udt_schema, t.typname AS udt_name, \
                CAST('NO' AS VARCHAR) AS is_identity, \
                CAST('NEVER' AS VARCHAR) AS is_generated, \
                CAST('YES' AS VARCHAR) AS is_updatable \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         LEFT JOIN tenure.defaults d ON d.table_schema = n.nspname \
              AND d.table_name = c.relname AND d.column_name = a.attname",
    ),
    (
        "tenure_relation_sizes",
        "SELECT c.oid AS relid, s.bytes \
         FROM tenure.table_sizes s \
         JOIN pg_catalog.pg_namespace n ON n.nspname = s.table_schema \
         JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = s.table_name \
         WHERE c.relkind = 'r'",
    ),
    (
        "pg_tables",
        "SELECT n.nspname AS schemaname, c.relname AS tablename, \
                CAST('tenure' AS VARCHAR) AS tableowner, CAST(NULL AS VARCHAR) AS tablespace, \
                false AS hasindex, false AS hasrules, false AS hastriggers, \
                false AS rowsecurity \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p')",
    ),
    (
        "pg_views",
        "SELECT n.nspname AS schemaname, c.relname AS viewname, \
                CAST('tenure' AS VARCHAR) AS viewowner, \
                tenure_view_definition(n.nspname, c.relname) AS definition \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'v'",
    ),
    (
        // No foreign servers, so no user mappings (psql's `\deu`).
        "pg_user_mappings",
        "SELECT CAST(NULL AS INT) AS umid, CAST(NULL AS INT) AS srvid, \
                CAST(NULL AS VARCHAR) AS srvname, CAST(NULL AS INT) AS umuser, \
                CAST(NULL AS VARCHAR) AS usename, CAST(NULL AS VARCHAR) AS umoptions \
         WHERE false",
    ),
    (
        "pg_settings",
        "SELECT name, setting, CAST(NULL AS VARCHAR) AS unit, \
                CAST('Preset Options' AS VARCHAR) AS category, \
                CAST(NULL AS VARCHAR) AS short_desc, CAST(NULL AS VARCHAR) AS extra_desc, \
                CAST('internal' AS VARCHAR) AS context, vartype, \
                CAST('default' AS VARCHAR) AS source, CAST(NULL AS VARCHAR) AS min_val, \
                CAST(NULL AS VARCHAR) AS max_val, CAST(NULL AS VARCHAR) AS enumvals, \
                setting AS boot_val, setting AS reset_val, CAST(NULL AS VARCHAR) AS sourcefile, \
                CAST(NULL AS INT) AS sourceline, false AS pending_restart \
         FROM (VALUES ('standard_conforming_strings', 'on', 'bool'), \
                      ('integer_datetimes', 'on', 'bool'), \
                      ('server_encoding', 'UTF8', 'string'), \
                      ('max_identifier_length', '63', 'integer'), \
                      ('max_index_keys', '32', 'integer'), \
                      ('max_function_args', '100', 'integer'), \
                      ('block_size', '8192', 'integer')) AS preset(name, setting, vartype)",
    ),
    (
        "pg_index",
        "SELECT tenure_key_oid(k.table_schema, k.table_name, k.constraint_name) AS indexrelid, \
                c.oid AS indrelid, \
                CAST(array_length(k.positions) AS SMALLINT) AS indnatts, \
                CAST(array_length(k.positions) AS SMALLINT) AS indnkeyatts, \
                k.constraint_type <> 'INDEX' AS indisunique, false AS indnullsnotdistinct, \
                k.constraint_type = 'PRIMARY KEY' AS indisprimary, false AS indisexclusion, \
                true AS indimmediate, false AS indisclustered, true AS indisvalid, \
                false AS indcheckxmin, true AS indisready, true AS indislive, \
                false AS indisreplident, k.positions AS indkey, \
                array_repeat(CAST(0 AS INT), array_length(k.positions)) AS indcollation, \
                array_repeat(CAST(0 AS INT), array_length(k.positions)) AS indclass, \
                array_to_string(array_repeat(0, array_length(k.positions)), ' ') \
                  AS indoption, \
                CAST(NULL AS VARCHAR) AS indexprs, CAST(NULL AS VARCHAR) AS indpred \
         FROM tenure.keys k \
         JOIN pg_catalog.pg_namespace n ON n.nspname = k.table_schema \
         JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = k.table_name \
         WHERE c.relkind = 'r' AND k.constraint_type <> 'FOREIGN KEY'",
    ),
    (
        "pg_constraint",
        "SELECT tenure_key_oid(k.table_schema, k.table_name, k.constraint_name) + 1 AS oid, \
                k.constraint_name AS conname, n.oid AS connamespace, \
                CASE k.constraint_type WHEN 'PRIMARY KEY' THEN 'p' WHEN 'UNIQUE' THEN 'u' \
                     ELSE 'f' END AS contype, \
                false AS condeferrable, false AS condeferred, true AS convalidated, \
                c.oid AS conrelid, 0 AS contypid, \
                CASE WHEN k.constraint_type = 'FOREIGN KEY' \
                     THEN tenure_key_oid(k.references_schema, k.references_table, \
                                         k.references_key) \
                     ELSE tenure_key_oid(k.table_schema, k.table_name, k.constraint_name) \
                END AS conindid, \
                0 AS conparentid, COALESCE(r.oid, 0) AS confrelid, \
                CASE WHEN k.constraint_type = 'FOREIGN KEY' THEN 'a' ELSE ' ' END \
                  AS confupdtype, \
                CASE WHEN k.constraint_type = 'FOREIGN KEY' THEN 'a' ELSE ' ' END \
                  AS confdeltype, \
                CASE WHEN k.constraint_type = 'FOREIGN KEY' THEN 's' ELSE ' ' END \
                  AS confmatchtype, \
                true AS conislocal, CAST(0 AS SMALLINT) AS coninhcount, true AS connoinherit, \
                k.positions AS conkey, k.references_positions AS confkey, \
                CAST(NULL AS VARCHAR) AS conpfeqop, CAST(NULL AS VARCHAR) AS conppeqop, \
                CAST(NULL AS VARCHAR) AS conffeqop, CAST(NULL AS VARCHAR) AS confdelsetcols, \
                CAST(NULL AS VARCHAR) AS conexclop, CAST(NULL AS VARCHAR) AS conbin \
         FROM tenure.keys k \
         JOIN pg_catalog.pg_namespace n ON n.nspname = k.table_schema \
         JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = k.table_name \
         LEFT JOIN (SELECT rn.nspname, rc.relname, rc.oid \
                    FROM pg_catalog.pg_namespace rn \
                    JOIN pg_catalog.pg_class rc ON rc.relnamespace = rn.oid \
                    WHERE rc.relkind = 'r') r \
           ON r.nspname = k.references_schema AND r.relname = k.references_table \
         WHERE c.relkind = 'r' \
           AND k.constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')",
    ),
    (
        "pg_description",
        "SELECT objoid, classoid, objsubid, description FROM pg_catalog.pg_description \
         UNION ALL \
         SELECT c.oid, pc.oid, CAST(COALESCE(a.attnum, 0) AS INT), m.comment \
         FROM tenure.comments m \
         JOIN pg_catalog.pg_namespace n ON n.nspname = m.table_schema \
         JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = m.table_name \
         LEFT JOIN pg_catalog.pg_attribute a \
           ON a.attrelid = c.oid AND a.attname = m.column_name \
         CROSS JOIN (SELECT c2.oid FROM pg_catalog.pg_class c2 \
                     JOIN pg_catalog.pg_namespace n2 ON n2.oid = c2.relnamespace \
                     WHERE n2.nspname = 'pg_catalog' AND c2.relname = 'pg_class') pc",
    ),
    (
        "pg_attrdef",
        "SELECT tenure_key_oid(d.table_schema, d.table_name, '.default.' || d.column_name) + 1 \
                  AS oid, \
                c.oid AS adrelid, a.attnum AS adnum, d.column_default AS adbin \
         FROM tenure.defaults d \
         JOIN pg_catalog.pg_namespace n ON n.nspname = d.table_schema \
         JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = d.table_name \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = d.column_name \
         WHERE c.relkind = 'r'",
    ),
];

/// Replaces tenure's pg_catalog schema with one that answers [`RELATION_VIEWS`] and
/// [`CATALOG_VIEWS`] itself and everything else from datafusion-pg-catalog.
async fn override_catalog_views(ctx: &SessionContext) -> Result<()> {
    let catalog = ctx
        .catalog(CATALOG_NAME)
        .ok_or_else(|| Error::Catalog("the tenure catalog is not registered".into()))?;
    let inner = catalog
        .schema("pg_catalog")
        .ok_or_else(|| Error::Catalog("pg_catalog is not registered".into()))?;
    let mut overrides = HashMap::new();
    // In two rounds: the second's views read the first's.
    for views in [&RELATION_VIEWS[..], &CATALOG_VIEWS[..]] {
        for (name, sql) in views {
            let plan = ctx.state().create_logical_plan(sql).await?;
            let view: Arc<dyn TableProvider> =
                Arc::new(ViewTable::new(plan, Some(sql.to_string())));
            overrides.insert(name.to_string(), view);
        }
        catalog.register_schema(
            "pg_catalog",
            Arc::new(PgCatalogOverrides {
                inner: inner.clone(),
                overrides: overrides.clone(),
            }),
        )?;
    }
    Ok(())
}

/// A pg_catalog schema with some tables replaced.
#[derive(Debug)]
struct PgCatalogOverrides {
    inner: Arc<dyn SchemaProvider>,
    overrides: HashMap<String, Arc<dyn TableProvider>>,
}

#[async_trait::async_trait]
impl SchemaProvider for PgCatalogOverrides {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(
        &self,
        name: &str,
    ) -> datafusion::common::Result<Option<Arc<dyn TableProvider>>> {
        match self.overrides.get(name) {
            Some(table) => Ok(Some(table.clone())),
            None => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.overrides.contains_key(name) || self.inner.table_exist(name)
    }
}

/// The built-in superusers, for datafusion-pg-catalog; pg_roles itself is tenure's view over
/// `tenure.roles` (see [`CATALOG_VIEWS`]).
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

/// Functions drivers call in their catalog queries that pg_catalog does not provide.
fn register_driver_functions(ctx: &SessionContext) {
    let constants: [(&str, &[usize], ScalarValue); 12] = [
        // psql's `\df` describes functions it lists; tenure's functions are built in, like
        // pg_catalog's, and `\df` lists only the user's (none).
        ("pg_get_function_result", &[1], ScalarValue::Utf8(None)),
        ("pg_get_function_arguments", &[1], ScalarValue::Utf8(None)),
        (
            "pg_get_function_identity_arguments",
            &[1],
            ScalarValue::Utf8(None),
        ),
        // psql's `\l+` and `\db`: no size is reported for the database, no tablespace
        // has a location of its own; `\do`, `\dO`: every operator is visible, UTF8 is 6.
        ("pg_database_size", &[1], ScalarValue::Int64(None)),
        ("pg_tablespace_size", &[1], ScalarValue::Int64(None)),
        (
            "pg_tablespace_location",
            &[1],
            ScalarValue::Utf8(Some(String::new())),
        ),
        ("pg_char_to_encoding", &[1], ScalarValue::Int32(Some(6))),
        (
            "getdatabaseencoding",
            &[0],
            ScalarValue::Utf8(Some("UTF8".into())),
        ),
        // Comments on shared objects (databases, roles): none.
        ("shobj_description", &[2], ScalarValue::Utf8(None)),
        // dbt docs generate: tenure has no temporary schemas.
        (
            "pg_is_other_temp_schema",
            &[1],
            ScalarValue::Boolean(Some(false)),
        ),
        // SQLAlchemy reads column identity through it; tenure has no sequences.
        ("pg_get_serial_sequence", &[2], ScalarValue::Utf8(None)),
        // psql's `\d` lists a table's triggers when it has foreign keys (PostgreSQL enforces
        // them with triggers); tenure has none, so pg_trigger is empty and no oid names one.
        ("pg_get_triggerdef", &[1, 2], ScalarValue::Utf8(None)),
    ];
    // One database, one search path: every object is visible (psql's `\d` commands).
    let visible = [
        "pg_collation_is_visible",
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_opclass_is_visible",
        "pg_opfamily_is_visible",
        "pg_conversion_is_visible",
        "pg_operator_is_visible",
        "pg_statistics_obj_is_visible",
        "pg_ts_config_is_visible",
        "pg_ts_dict_is_visible",
        "pg_ts_parser_is_visible",
        "pg_ts_template_is_visible",
    ]
    .map(|name| (name, &[1][..], ScalarValue::Boolean(Some(true))));
    for (name, arities, value) in constants.into_iter().chain(visible) {
        if datafusion::execution::FunctionRegistry::udf(ctx, name).is_err() {
            ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
                Constant::new(name, arities, value),
            ));
        }
    }
    ctx.register_udf(create_udf(
        CHECKED_REGCLASS,
        vec![DataType::Int32, DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(checked_regclass),
    ));
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        EagerIf::new(),
    ));
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        ExpandArray::new(),
    ));
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        PgGetExpr::new(),
    ));
    ctx.register_udf(create_udf(
        INT2VECTOR_ELEMENT,
        vec![DataType::Utf8, DataType::Int64],
        DataType::Int16,
        Volatility::Immutable,
        Arc::new(int2vector_element),
    ));
}

/// `pg_get_expr(expression, relation [, pretty])`: the expression's text. pg_attrdef.adbin
/// holds a default's SQL here, where PostgreSQL keeps a parse tree that pg_get_expr
/// deparses (datafusion-pg-catalog's returns '' for everything).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgGetExpr {
    signature: datafusion::logical_expr::Signature,
}

impl PgGetExpr {
    fn new() -> PgGetExpr {
        PgGetExpr {
            signature: datafusion::logical_expr::Signature::variadic_any(Volatility::Stable),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for PgGetExpr {
    fn name(&self) -> &str {
        "pg_get_expr"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::common::Result<DataType> {
        if !(2..=3).contains(&args.len()) {
            return datafusion::common::plan_err!(
                "pg_get_expr takes 2 or 3 arguments, not {}",
                args.len()
            );
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        args.args[0].cast_to(&DataType::Utf8, None)
    }
}

/// The name of [`checked_regclass`].
pub const CHECKED_REGCLASS: &str = "tenure_checked_regclass";

/// `tenure_checked_regclass(oid, name)`: the oid that a `'name'::regclass` cast looked up, or
/// PostgreSQL's error when there is no such relation (a NULL name stays NULL).
fn checked_regclass(args: &[ColumnarValue]) -> datafusion::common::Result<ColumnarValue> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int32Type;
    let rows = row_count(args);
    let oids = args[0].to_array(rows)?;
    let names = args[1].to_array(rows)?;
    let (oids, names) = (oids.as_primitive::<Int32Type>(), names.as_string::<i32>());
    if let Some(row) = (0..rows).find(|&row| oids.is_null(row) && !names.is_null(row)) {
        return Err(datafusion::error::DataFusionError::External(Box::new(
            Error::NotFound {
                kind: "relation",
                name: format!("\"{}\"", names.value(row)),
            },
        )));
    }
    like_arguments(args, Arc::new(oids.clone()))
}

/// The name of [`int2vector_element`].
pub const INT2VECTOR_ELEMENT: &str = "tenure_int2vector_element";

/// `tenure_int2vector_element(vector, i)`: element `i` (from 0, as PostgreSQL subscripts an
/// int2vector) of an int2vector's text `'0 1'`; NULL past its end.
fn int2vector_element(args: &[ColumnarValue]) -> datafusion::common::Result<ColumnarValue> {
    use datafusion::arrow::array::{Array, AsArray, Int16Array};
    use datafusion::arrow::datatypes::Int64Type;
    let rows = row_count(args);
    let vectors = args[0].to_array(rows)?;
    let vectors = vectors.as_string::<i32>();
    let indices = args[1].to_array(rows)?;
    let indices = indices.as_primitive::<Int64Type>();
    let values = (0..rows).map(|row| {
        if vectors.is_null(row) || indices.is_null(row) {
            return None;
        }
        let index = usize::try_from(indices.value(row)).ok()?;
        vectors
            .value(row)
            .split_whitespace()
            .nth(index)?
            .parse::<i16>()
            .ok()
    });
    Ok(ColumnarValue::Array(Arc::new(Int16Array::from_iter(
        values,
    ))))
}

/// `tenure_expand_array(array)`: the elements of a smallint array (or of an int2vector's
/// text, `'1 2'`) as a list of `{x, n}` structs, element and 1-based position: what
/// PostgreSQL's `information_schema._pg_expandarray` returns row by row. The server's
/// rewrite unnests it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: datafusion::logical_expr::Signature,
}

impl ExpandArray {
    fn new() -> ExpandArray {
        ExpandArray {
            signature: datafusion::logical_expr::Signature::any(1, Volatility::Immutable),
        }
    }

    fn element_fields() -> datafusion::arrow::datatypes::Fields {
        use datafusion::arrow::datatypes::Field;
        vec![
            Field::new("x", DataType::Int16, true),
            Field::new("n", DataType::Int32, false),
        ]
        .into()
    }

    /// The argument as a smallint list, or as text (an int2vector's `'1 2'`, `'{1,2}'`).
    fn normalise(
        value: &datafusion::arrow::array::ArrayRef,
    ) -> datafusion::common::Result<datafusion::arrow::array::ArrayRef> {
        use datafusion::arrow::compute::cast;
        use datafusion::arrow::datatypes::Field;
        Ok(match value.data_type() {
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => cast(
                value,
                &DataType::List(Arc::new(Field::new("item", DataType::Int16, true))),
            )?,
            _ => cast(value, &DataType::Utf8)?,
        })
    }

    /// The elements of row `row` of a [`ExpandArray::normalise`]d argument.
    fn elements(
        value: &datafusion::arrow::array::ArrayRef,
        row: usize,
    ) -> datafusion::common::Result<Option<Vec<Option<i16>>>> {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::datatypes::Int16Type;
        if value.is_null(row) {
            return Ok(None);
        }
        if let DataType::List(_) = value.data_type() {
            let items = value.as_list::<i32>().value(row);
            return Ok(Some(items.as_primitive::<Int16Type>().iter().collect()));
        }
        let text = value.as_string::<i32>().value(row);
        text.trim_matches(|c| c == '{' || c == '}')
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<i16>().map(Some).map_err(|_| {
                    datafusion::error::DataFusionError::Execution(format!(
                        "_pg_expandarray: {s:?} is not a smallint"
                    ))
                })
            })
            .collect::<datafusion::common::Result<Vec<_>>>()
            .map(Some)
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "tenure_expand_array"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::List(Arc::new(
            datafusion::arrow::datatypes::Field::new(
                "item",
                DataType::Struct(Self::element_fields()),
                true,
            ),
        )))
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        use datafusion::arrow::array::{Int16Builder, Int32Builder, ListBuilder, StructBuilder};
        let rows = args.number_rows;
        let value = Self::normalise(&args.args[0].to_array(rows)?)?;
        let fields = Self::element_fields();
        let mut list = ListBuilder::new(StructBuilder::new(
            fields.clone(),
            vec![
                Box::new(Int16Builder::new()) as Box<dyn datafusion::arrow::array::ArrayBuilder>,
                Box::new(Int32Builder::new()),
            ],
        ))
        .with_field(Arc::new(datafusion::arrow::datatypes::Field::new(
            "item",
            DataType::Struct(fields),
            true,
        )));
        for row in 0..rows {
            match Self::elements(&value, row)? {
                None => list.append_null(),
                Some(elements) => {
                    let structs = list.values();
                    for (i, x) in elements.into_iter().enumerate() {
                        structs
                            .field_builder::<Int16Builder>(0)
                            .expect("x is smallint")
                            .append_option(x);
                        structs
                            .field_builder::<Int32Builder>(1)
                            .expect("n is integer")
                            .append_value(i as i32 + 1);
                        structs.append(true);
                    }
                    list.append(true);
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(list.finish())))
    }
}

/// The name of [`EagerIf`], which the server's rewrite of drivers' catalog queries calls.
pub const EAGER_IF: &str = "tenure_if";

/// `tenure_if(condition, value)`: `value` where `condition` is true, NULL elsewhere. Unlike
/// `CASE WHEN condition THEN value END` both arguments are always evaluated, which lets
/// DataFusion plan correlated subqueries in them (see the server's
/// `eager_catalog_case_subqueries`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct EagerIf {
    signature: datafusion::logical_expr::Signature,
}

impl EagerIf {
    fn new() -> EagerIf {
        EagerIf {
            signature: datafusion::logical_expr::Signature::any(2, Volatility::Immutable),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for EagerIf {
    fn name(&self) -> &str {
        EAGER_IF
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(args[1].clone())
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        use datafusion::arrow::array::{Array, BooleanArray, new_null_array};
        use datafusion::arrow::compute::{cast, kernels::zip::zip, prep_null_mask_filter};
        let rows = args.number_rows;
        let condition = cast(&args.args[0].to_array(rows)?, &DataType::Boolean)?;
        let condition = condition
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("cast to Boolean gives a BooleanArray");
        let value = args.args[1].to_array(rows)?;
        let nulls = new_null_array(value.data_type(), rows);
        let mask = if condition.null_count() > 0 {
            prep_null_mask_filter(condition)
        } else {
            condition.clone()
        };
        Ok(ColumnarValue::Array(zip(&mask, &value, &nulls)?))
    }
}

/// A function of any `arity` arguments that always returns `value`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: &'static str,
    value: ScalarValue,
    signature: datafusion::logical_expr::Signature,
}

impl Constant {
    fn new(name: &'static str, arities: &[usize], value: ScalarValue) -> Constant {
        use datafusion::logical_expr::{Signature, TypeSignature};
        let signatures = arities
            .iter()
            .map(|&n| match n {
                0 => TypeSignature::Nullary,
                n => TypeSignature::Any(n),
            })
            .collect();
        Constant {
            name,
            value,
            signature: Signature::one_of(signatures, Volatility::Stable),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(
        &self,
        _: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}
