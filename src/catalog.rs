//! The persistent catalog: which schemas, tables, views and external tables exist.
//!
//! It is one JSON document (`catalog.json`) replaced atomically on every change, so a crash
//! leaves the previous or the next version, never a mix. Table data is not here: managed
//! tables are Delta Lake tables under `tables/<id>/`, whose own log makes each write atomic.
//! The catalog is changed only after the data it points to is committed, so a crash between
//! the two leaves an unreferenced table directory (removed at the next start), never a
//! catalog entry without data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::datadir::write_atomically;
use crate::error::{Error, Result};
pub use crate::qualified_name::{CATALOG_NAME, DEFAULT_SCHEMA, QualifiedName};

/// The version of the catalog file format this build reads and writes.
pub const CATALOG_FORMAT: u32 = 1;

/// One entry of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Relation {
    /// A Delta Lake table owned by tenure, stored in `tables/<dir>`.
    Managed { dir: String },
    /// Data that lives elsewhere, registered by `CREATE EXTERNAL TABLE`.
    External(ExternalTable),
    /// A view; `sql` is its defining query.
    View { sql: String },
}

impl Relation {
    /// The error for creating `name` where this relation already is.
    pub fn already_exists(&self, name: &QualifiedName) -> Error {
        let kind = match self {
            Relation::View { .. } => "view",
            Relation::Managed { .. } | Relation::External(_) => "table",
        };
        Error::AlreadyExists {
            kind,
            name: name.to_string(),
        }
    }
}

/// The persisted form of `CREATE EXTERNAL TABLE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalTable {
    /// PARQUET, CSV, JSON or DELTA (upper case).
    pub format: String,
    pub location: String,
    /// Column definitions as SQL, e.g. `id BIGINT NOT NULL`; empty to infer the schema.
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub partition_columns: Vec<String>,
    /// OPTIONS as (key, SQL literal) pairs, in the order given, less the credentials.
    #[serde(default)]
    pub options: Vec<(String, String)>,
    /// The named secret ([`CatalogState::secrets`]) whose S3 settings and credentials the
    /// table uses: named in OPTIONS ('secret' 'name') or the one whose scope covers its
    /// location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Credentials given in the table's own OPTIONS (`aws.secret_access_key`, ...): their
    /// (key, SQL literal) pairs, sealed (see [`crate::access::secrets`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_options: Option<crate::access::secrets::Sealed>,
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogState {
    pub format: u32,
    /// Schemas besides the built-in `public`.
    pub schemas: Vec<String>,
    /// Relations in creation order (views are re-created in this order at start-up).
    pub relations: Vec<(QualifiedName, Relation)>,
    /// Counter for managed table directory names, never reused.
    pub next_table_id: u64,
    /// Primary, unique and foreign keys of managed tables, in creation order. They are
    /// informational (recorded for pg_catalog and the tools that read it, not enforced),
    /// as in BigQuery or Snowflake; the NOT NULL of a primary key's columns is enforced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyConstraint>,
    /// `COMMENT ON TABLE / VIEW / COLUMN`, shown in pg_description.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comments: Vec<Comment>,
    /// Column defaults of managed tables (`DEFAULT expr`), used by INSERT and COPY FROM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defaults: Vec<ColumnDefault>,
    /// pg_catalog oids of the relations and schemas above (pg_class, pg_namespace, the
    /// table oid of a result column), so that clients which keep them across connections
    /// see the same ones after a restart. Catalogs written before oids were kept get them
    /// when loaded, in creation order.
    #[serde(default)]
    pub oids: Oids,
    /// Roles, owners and privileges (see [`crate::access`]).
    #[serde(default)]
    pub access: crate::access::AccessState,
    /// Named secrets (`CREATE SECRET`), their credentials sealed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<crate::access::secrets::StoredSecret>,
}

/// See [`CatalogState::oids`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Oids {
    /// The next oid to hand out: a dropped relation's oid is not handed out again until the
    /// counter wraps at 1e9.
    next: u32,
    relations: Vec<(QualifiedName, u32)>,
    schemas: Vec<(String, u32)>,
}

impl Default for Oids {
    fn default() -> Self {
        Oids {
            next: FIRST_USER_OID,
            relations: Vec::new(),
            schemas: Vec::new(),
        }
    }
}

/// PostgreSQL's first oid for user objects (`FirstNormalObjectId`).
pub const FIRST_USER_OID: u32 = 16384;

/// The oid of `public` in every PostgreSQL database.
pub const PUBLIC_NAMESPACE_OID: u32 = 2200;

impl Oids {
    /// The kept oid of the relation `name`, if it is in the catalog.
    pub fn relation(&self, name: &QualifiedName) -> Option<u32> {
        self.relations
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, oid)| *oid)
    }

    /// The relations and their kept oids.
    pub fn relations(&self) -> impl Iterator<Item = (&QualifiedName, u32)> {
        self.relations.iter().map(|(name, oid)| (name, *oid))
    }

    /// The kept oid of the schema `name` (`public`'s is PostgreSQL's), if it is in the catalog.
    pub fn schema(&self, name: &str) -> Option<u32> {
        if name == DEFAULT_SCHEMA {
            return Some(PUBLIC_NAMESPACE_OID);
        }
        self.schemas
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, oid)| *oid)
    }

    fn allocate(&mut self) -> u32 {
        let oid = self.next;
        // Past the top of the range kept oids may use, wrap as PostgreSQL's counter does;
        // the catalog would need two billion creations to get there.
        self.next = if oid >= LAST_KEPT_OID {
            FIRST_USER_OID
        } else {
            oid + 1
        };
        oid
    }
}

/// Kept oids stay below 1e9: above are the oids derived from names, of keys
/// ([`key_index_oid`]) and of the relations the catalog does not keep (see
/// `pg::oids`).
const LAST_KEPT_OID: u32 = 999_999_999;

/// `column DEFAULT sql` of a managed table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDefault {
    pub table: QualifiedName,
    pub column: String,
    /// The expression as written (SQL), planned again when the table is opened.
    pub sql: String,
}

/// The comment on a relation (`column` None) or on one of its columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub relation: QualifiedName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub text: String,
}

/// A `PRIMARY KEY`, `UNIQUE` or `FOREIGN KEY` constraint of a managed table, or an index
/// (`CREATE INDEX`, recorded but not built: scans are fast without one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyConstraint {
    pub table: QualifiedName,
    /// Unique among the constraints of the table's schema, as PostgreSQL names the index
    /// of a key (`orders_pkey`, `orders_email_key`, `orders_customer_id_fkey`).
    pub name: String,
    pub kind: KeyKind,
    /// The key's columns, in key order, with their 1-based positions in the table.
    pub columns: Vec<String>,
    pub positions: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyKind {
    PrimaryKey,
    Unique,
    ForeignKey {
        /// The referenced table and its key (a primary or unique key of it).
        references: QualifiedName,
        columns: Vec<String>,
        positions: Vec<u16>,
    },
    Index {
        unique: bool,
    },
}

impl KeyConstraint {
    /// The pg_catalog oid of the key's index (even, in [1e9, 2e9)); the constraint's is one
    /// more. Derived from the key's schema, table and name, so it is stable and needs no
    /// counter; two keys collide with odds of about one in 5e8.
    pub fn index_oid(&self) -> i32 {
        key_index_oid(&self.table.schema, &self.table.name, &self.name)
    }
}

/// See [`KeyConstraint::index_oid`].
pub fn key_index_oid(schema: &str, table: &str, name: &str) -> i32 {
    1_000_000_000 + 2 * (name_hash(&[schema, table, name]) % 500_000_000) as i32
}

/// FNV-1a of names, each ended by a zero byte: the same on every machine and in every
/// release, as oids derived from it must be.
pub fn name_hash(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

impl KeyKind {
    /// Whether a foreign key may reference it (PostgreSQL's rule: a unique key or index).
    pub fn is_unique(&self) -> bool {
        matches!(
            self,
            KeyKind::PrimaryKey | KeyKind::Unique | KeyKind::Index { unique: true }
        )
    }

    /// How `tenure.keys` names the kind.
    pub fn name(&self) -> &'static str {
        match self {
            KeyKind::PrimaryKey => "PRIMARY KEY",
            KeyKind::Unique => "UNIQUE",
            KeyKind::ForeignKey { .. } => "FOREIGN KEY",
            KeyKind::Index { unique: false } => "INDEX",
            KeyKind::Index { unique: true } => "UNIQUE INDEX",
        }
    }
}

impl Default for CatalogState {
    fn default() -> Self {
        CatalogState {
            format: CATALOG_FORMAT,
            schemas: Vec::new(),
            relations: Vec::new(),
            next_table_id: 1,
            keys: Vec::new(),
            comments: Vec::new(),
            defaults: Vec::new(),
            oids: Oids::default(),
            access: Default::default(),
            secrets: Vec::new(),
        }
    }
}

impl CatalogState {
    pub fn get(&self, name: &QualifiedName) -> Option<&Relation> {
        self.relations
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r)
    }

    pub fn contains_schema(&self, schema: &str) -> bool {
        schema == "public" || self.schemas.iter().any(|s| s == schema)
    }

    /// Fails unless `schema` exists.
    pub fn require_schema(&self, schema: &str) -> Result<()> {
        if self.contains_schema(schema) {
            Ok(())
        } else {
            Err(Error::NotFound {
                kind: "schema",
                name: schema.to_string(),
            })
        }
    }

    /// Adds or replaces `name`. A replaced entry keeps its position.
    pub fn put(&mut self, name: QualifiedName, relation: Relation) {
        match self.relations.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = relation,
            None => self.relations.push((name, relation)),
        }
    }

    pub fn remove(&mut self, name: &QualifiedName) -> Option<Relation> {
        let index = self.relations.iter().position(|(n, _)| n == name)?;
        Some(self.relations.remove(index).1)
    }

    /// Relations in `schema`.
    pub fn in_schema<'a>(&'a self, schema: &'a str) -> impl Iterator<Item = &'a QualifiedName> {
        self.relations
            .iter()
            .map(|(n, _)| n)
            .filter(move |n| n.schema == schema)
    }

    /// The keys of `table`.
    pub fn keys_of<'a>(
        &'a self,
        table: &'a QualifiedName,
    ) -> impl Iterator<Item = &'a KeyConstraint> {
        self.keys.iter().filter(move |k| k.table == *table)
    }

    /// Forgets what belongs to the relation `name`, which is being dropped or replaced: its
    /// keys, the foreign keys that reference it (as PostgreSQL's `DROP TABLE ... CASCADE`
    /// drops them), its comments and column defaults.
    pub fn forget(&mut self, name: &QualifiedName) {
        self.keys.retain(|k| {
            k.table != *name
                && !matches!(&k.kind, KeyKind::ForeignKey { references, .. } if references == name)
        });
        self.comments.retain(|c| c.relation != *name);
        self.defaults.retain(|d| d.table != *name);
    }

    /// Sets (or with `text` None removes) the comment on `relation` or its `column`.
    pub fn set_comment(
        &mut self,
        relation: &QualifiedName,
        column: Option<String>,
        text: Option<String>,
    ) {
        self.comments
            .retain(|c| !(c.relation == *relation && c.column == column));
        if let Some(text) = text {
            self.comments.push(Comment {
                relation: relation.clone(),
                column,
                text,
            });
        }
    }

    /// Gives every relation and schema without an oid one, and forgets the oids of those
    /// that are gone. Called before each save, so a relation has its oid from the statement
    /// that created it on.
    pub fn assign_oids(&mut self) {
        let oids = &mut self.oids;
        // A hand-edited file must not make the counter hand out an oid in use.
        let highest = oids
            .relations
            .iter()
            .map(|(_, oid)| *oid)
            .chain(oids.schemas.iter().map(|(_, oid)| *oid))
            .max();
        if let Some(highest) = highest
            && (oids.next <= highest || oids.next > LAST_KEPT_OID)
        {
            oids.next = highest
                .saturating_add(1)
                .clamp(FIRST_USER_OID, LAST_KEPT_OID);
        }
        if oids.next < FIRST_USER_OID {
            oids.next = FIRST_USER_OID;
        }
        oids.relations
            .retain(|(name, _)| self.relations.iter().any(|(n, _)| n == name));
        oids.schemas.retain(|(name, _)| self.schemas.contains(name));
        for schema in &self.schemas {
            if oids.schema(schema).is_none() {
                let oid = oids.allocate();
                oids.schemas.push((schema.clone(), oid));
            }
        }
        for (name, _) in &self.relations {
            if oids.relation(name).is_none() {
                let oid = oids.allocate();
                oids.relations.push((name.clone(), oid));
            }
        }
    }

    /// Moves the keys, comments, defaults and oid of `from`, and the references to it, to
    /// `to`.
    pub fn rename_metadata(&mut self, from: &QualifiedName, to: &QualifiedName) {
        self.access.rename(
            &crate::access::Object::Table(from.clone()),
            &crate::access::Object::Table(to.clone()),
        );
        for (name, _) in &mut self.oids.relations {
            if name == from {
                *name = to.clone();
            }
        }
        for comment in &mut self.comments {
            if comment.relation == *from {
                comment.relation = to.clone();
            }
        }
        for default in &mut self.defaults {
            if default.table == *from {
                default.table = to.clone();
            }
        }
        for key in &mut self.keys {
            if key.table == *from {
                key.table = to.clone();
            }
            if let KeyKind::ForeignKey { references, .. } = &mut key.kind
                && references == from
            {
                *references = to.clone();
            }
        }
    }

    /// A fresh directory name for a managed table.
    pub fn allocate_table_dir(&mut self) -> String {
        let id = self.next_table_id;
        self.next_table_id += 1;
        format!("t{id:06}")
    }

    /// Directory names referenced by managed tables.
    pub fn managed_dirs(&self) -> BTreeMap<&str, &QualifiedName> {
        self.relations
            .iter()
            .filter_map(|(n, r)| match r {
                Relation::Managed { dir } => Some((dir.as_str(), n)),
                _ => None,
            })
            .collect()
    }
}

/// Reads and writes the catalog file.
#[derive(Debug)]
pub struct CatalogStore {
    path: PathBuf,
    saved: SavedCatalog,
}

/// The catalog as last loaded or saved, for readers that must not wait for the catalog
/// lock (pg_catalog's keys and comments: a transaction block holds the lock until it ends).
#[derive(Debug, Clone, Default)]
pub struct SavedCatalog(Arc<RwLock<Arc<CatalogState>>>);

impl SavedCatalog {
    pub fn get(&self) -> Arc<CatalogState> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, state: &CatalogState) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state.clone());
    }
}

impl CatalogStore {
    pub fn new(path: &Path) -> Self {
        CatalogStore {
            path: path.to_path_buf(),
            saved: SavedCatalog::default(),
        }
    }

    pub fn saved(&self) -> SavedCatalog {
        self.saved.clone()
    }

    /// Loads the catalog; a missing file is an empty catalog, a corrupt one an error (never
    /// silently replaced, so nothing is lost).
    pub fn load(&self) -> Result<CatalogState> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CatalogState::default());
            }
            Err(e) => return Err(e.into()),
        };
        let state: CatalogState = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Catalog(format!(
                "{} is not a valid catalog: {e}",
                self.path.display()
            ))
        })?;
        if state.format > CATALOG_FORMAT {
            return Err(Error::Catalog(format!(
                "{} has format {} but this tenure reads format {CATALOG_FORMAT} at most; \
                 upgrade tenure",
                self.path.display(),
                state.format
            )));
        }
        let mut state = state;
        state.assign_oids();
        self.saved.set(&state);
        Ok(state)
    }

    /// Replaces the catalog file atomically.
    pub fn save(&self, state: &CatalogState) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| Error::Catalog(format!("cannot encode catalog: {e}")))?;
        write_atomically(&self.path, &bytes)?;
        self.saved.set(state);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::new(&dir.path().join("catalog.json"));
        assert_eq!(store.load().unwrap(), CatalogState::default());
        let mut state = CatalogState::default();
        state.schemas.push("truth".into());
        let table_dir = state.allocate_table_dir();
        state.put(
            QualifiedName::new("public", "t"),
            Relation::Managed { dir: table_dir },
        );
        state.put(
            QualifiedName::new("public", "v"),
            Relation::View {
                sql: "SELECT 1".into(),
            },
        );
        state.put(
            QualifiedName::new("public", "t"),
            Relation::Managed { dir: "t9".into() },
        );
        // The engine gives oids before each save; a catalog saved without them gets them
        // when loaded, the same ones.
        let mut with_oids = state.clone();
        with_oids.assign_oids();
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), with_oids);
        store.save(&with_oids).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded, with_oids);
        assert_eq!(
            loaded.oids.relation(&QualifiedName::new("public", "v")),
            Some(16386)
        );
        assert_eq!(
            loaded.relations[0].0.name, "t",
            "replacing keeps the position"
        );
        assert_eq!(loaded.next_table_id, 2);
    }

    #[test]
    fn corrupt_catalog_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.json");
        std::fs::write(&path, b"{ not json").unwrap();
        let err = CatalogStore::new(&path).load().unwrap_err().to_string();
        assert!(err.contains("is not a valid catalog"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"{ not json");
    }
}
