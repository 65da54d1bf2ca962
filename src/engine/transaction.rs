//! Transaction blocks that write: `BEGIN ... COMMIT` with DDL and DML, all or nothing.
//!
//! A block that only reads needs nothing from the engine. At its first write the block
//! ([`Engine::begin`]) takes the catalog lock, so other writers wait until it ends, and gets a
//! private copy of the catalog and a session whose tables are an overlay of the shared ones:
//!
//! - a table created in the block is a new Delta table in a directory that the saved catalog
//!   does not name, so no other session sees it, ROLLBACK deletes it, and after a crash the
//!   next start removes it like any unreferenced directory;
//! - a table that existed before the block is copied into such a directory on its first write
//!   in the block, and the block writes the copy. COMMIT points the catalog at the copy, after
//!   checking that no autocommit write reached the original since it was copied (40001);
//! - COMMIT saves the block's catalog with one atomic file replacement: a crash before it
//!   leaves everything as it was before BEGIN, after it everything the block did.
//!
//! Directories the block replaced or dropped are deleted only after COMMIT.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider,
};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{CATALOG_NAME, Engine, TemporaryTables};
use crate::catalog::{CatalogState, Relation};
use crate::error::{Error, Result};
use crate::storage::ManagedTable;

/// An open transaction block that has written. It lives in its session's configuration (a
/// DataFusion extension), so every statement planned in that session finds it.
pub struct Transaction {
    pub(super) block: Arc<Mutex<Block>>,
}

/// What a writing block has done so far.
pub(super) struct Block {
    /// The engine's catalog lock, held until COMMIT or ROLLBACK; `None` once the block ended.
    pub(super) committed: Option<OwnedMutexGuard<CatalogState>>,
    /// The catalog as this block sees it.
    pub(super) state: CatalogState,
    /// Table directories this block wrote (created or copied): deleted if it does not commit.
    pub(super) created: Vec<String>,
    /// Open tables of those directories.
    pub(super) tables: HashMap<String, Arc<ManagedTable>>,
    /// Tables existing before the block that it copied: (original directory, the original's
    /// change marker when it was copied, see [`ManagedTable::change_marker`]).
    pub(super) copies: Vec<(String, (Option<u64>, u64))>,
    /// Directories of the saved catalog the block dropped or replaced: deleted after COMMIT.
    pub(super) retired: Vec<String>,
    tables_dir: PathBuf,
}

impl Block {
    /// Whether `dir` was written by this block (and so is private to it).
    pub(super) fn owns(&self, dir: &str) -> bool {
        self.created.iter().any(|d| d == dir)
    }

    /// Deletes what the block wrote, then releases the catalog lock (so the next writer
    /// never sees the block's directories). Idempotent.
    fn abandon(&mut self) {
        let Some(_catalog_lock) = self.committed.take() else {
            return;
        };
        self.tables.clear();
        for dir in self.created.drain(..) {
            let path = self.tables_dir.join(&dir);
            if let Err(e) = std::fs::remove_dir_all(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                // Harmless: the next start removes directories no table uses.
                tracing::warn!("could not remove {}: {e}", path.display());
            }
        }
    }
}

impl Drop for Block {
    /// A block dropped without COMMIT (ROLLBACK, a closed connection) leaves nothing behind.
    fn drop(&mut self) {
        self.abandon();
    }
}

/// The open writing block of `ctx`, if any.
pub(super) fn transaction_of(ctx: &SessionContext) -> Option<Arc<Transaction>> {
    ctx.copied_config().get_extension::<Transaction>()
}

impl Engine {
    /// Starts the writing part of a transaction block of `session`: waits for the catalog
    /// lock and returns the session the block's statements run in (the caller's settings
    /// and functions, the block's catalog). Pass it to [`Engine::commit`] or
    /// [`Engine::rollback`]; dropping it rolls back.
    pub async fn begin(&self, session: &SessionContext) -> Result<SessionContext> {
        let committed = self.catalog.clone().lock_owned().await;
        let state = committed.clone();
        let mut own_schemas = state.schemas.clone();
        own_schemas.push(super::DEFAULT_SCHEMA.to_string());
        let catalogs = overlay(
            session.state().catalog_list(),
            &own_schemas,
            super::temporary::temporary_schema(session),
        )
        .await?;
        let transaction = Arc::new(Transaction {
            block: Arc::new(Mutex::new(Block {
                committed: Some(committed),
                state,
                created: Vec::new(),
                tables: HashMap::new(),
                copies: Vec::new(),
                retired: Vec::new(),
                tables_dir: self.data_dir.tables_dir(),
            })),
        });
        let base = session.state();
        let config = base.config().clone().with_extension(transaction);
        let state = SessionStateBuilder::new_from_existing(base)
            .with_config(config)
            .with_catalog_list(catalogs)
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// Commits the block of `session` (a session from [`Engine::begin`]). On an error the
    /// block is rolled back.
    pub async fn commit(&self, session: &SessionContext) -> Result<()> {
        let Some(transaction) = transaction_of(session) else {
            return Err(Error::invalid("no writing transaction block to commit"));
        };
        let mut block = transaction.block.lock().await;
        let result = self.publish(&mut block).await;
        block.abandon();
        if let Some(temporary) = TemporaryTables::of(session) {
            temporary.end_block(result.is_ok());
        }
        result
    }

    /// Rolls the block of `transaction` back: nothing it did remains (except writes to
    /// temporary tables made before, see [`super::temporary`]).
    pub async fn rollback(&self, transaction: &SessionContext) {
        if let Some(block) = transaction_of(transaction) {
            block.block.lock().await.abandon();
        }
        if let Some(temporary) = TemporaryTables::of(transaction) {
            temporary.end_block(false);
        }
    }

    /// Saves the block's catalog (the commit point) and makes its changes visible to every
    /// session.
    async fn publish(&self, block: &mut Block) -> Result<()> {
        if block.committed.is_none() {
            return Err(Error::invalid("the transaction block has already ended"));
        }
        for (dir, copied) in &block.copies {
            let Some(original) = self.managed_table(dir) else {
                continue;
            };
            if original.change_marker() != *copied {
                return Err(Error::SerializationFailure(
                    "could not serialize access due to concurrent update: a table this \
                     transaction wrote was changed by another session since"
                        .into(),
                ));
            }
        }
        self.store.save(&block.state)?;
        let after = block.state.clone();
        let before = std::mem::replace(
            &mut **block.committed.as_mut().expect("checked above"),
            after.clone(),
        );
        // From here on the block is committed: what follows only brings the shared session
        // up to date, and a failure is logged rather than reported as a failed COMMIT.
        for schema in &after.schemas {
            if let Err(e) = Self::ensure_schema_registered(&self.ctx, schema) {
                tracing::error!("after COMMIT: cannot register schema {schema}: {e}");
            }
        }
        let kept = after.managed_dirs();
        for (dir, table) in std::mem::take(&mut block.tables) {
            if kept.contains_key(dir.as_str()) {
                self.managed
                    .lock()
                    .expect("lock poisoned by a panic")
                    .insert(dir, table);
            }
        }
        for (name, relation) in &before.relations {
            if after.get(name) != Some(relation) {
                let _ = self.deregister(name);
            }
        }
        for (name, relation) in &after.relations {
            if before.get(name) == Some(relation) {
                continue;
            }
            let provider = match relation {
                Relation::View { .. } => continue,
                Relation::Managed { dir } => self
                    .managed_table(dir)
                    .map(|t| t as Arc<dyn datafusion::catalog::TableProvider>),
                Relation::External(_) => None,
            };
            let registered = match provider {
                Some(provider) => self.register(name, provider),
                None => match relation {
                    Relation::External(external) => {
                        self.register_external(&self.ctx, name, external, &after.secrets)
                            .await
                    }
                    _ => Err(Error::Catalog(format!("table {name} is not open"))),
                },
            };
            if let Err(e) = registered {
                tracing::error!("after COMMIT: cannot register {name}: {e}");
            }
        }
        for schema in &before.schemas {
            if !after.contains_schema(schema)
                && let Some(tenure) = self.ctx.catalog(CATALOG_NAME)
            {
                let _ = tenure.deregister_schema(schema, true);
            }
        }
        block.created.retain(|dir| !kept.contains_key(dir.as_str()));
        for dir in std::mem::take(&mut block.retired) {
            self.forget_managed_dir(&dir);
        }
        self.rebuild_views(&self.ctx, &after).await;
        Ok(())
    }
}

/// A catalog list for a block's session: tenure's own schemas are copies (so the block can
/// register and drop tables in them privately) holding the same tables; every other schema
/// (pg_catalog, tenure's system tables) and catalog is shared.
async fn overlay(
    shared: &Arc<dyn CatalogProviderList>,
    own_schemas: &[String],
    temporary: Option<(String, Arc<dyn datafusion::catalog::SchemaProvider>)>,
) -> Result<Arc<dyn CatalogProviderList>> {
    let list = MemoryCatalogProviderList::new();
    for catalog_name in shared.catalog_names() {
        let Some(catalog) = shared.catalog(&catalog_name) else {
            continue;
        };
        if catalog_name != CATALOG_NAME {
            list.register_catalog(catalog_name, catalog);
            continue;
        }
        let copy = MemoryCatalogProvider::new();
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            if !own_schemas.contains(&schema_name) {
                datafusion::catalog::CatalogProvider::register_schema(&copy, &schema_name, schema)?;
                continue;
            }
            let private = MemorySchemaProvider::new();
            for table_name in schema.table_names() {
                if let Some(table) = schema.table(&table_name).await? {
                    datafusion::catalog::SchemaProvider::register_table(
                        &private, table_name, table,
                    )?;
                }
            }
            datafusion::catalog::CatalogProvider::register_schema(
                &copy,
                &schema_name,
                Arc::new(private),
            )?;
        }
        if let Some((name, schema)) = &temporary {
            datafusion::catalog::CatalogProvider::register_schema(&copy, name, schema.clone())?;
        }
        list.register_catalog(catalog_name, Arc::new(copy));
    }
    Ok(Arc::new(list))
}

/// The catalog a statement changes, locked for it: the saved one (each change is saved at
/// once and seen by every session), or an open block's copy (saved at COMMIT).
pub(super) enum CatalogGuard {
    Saved {
        state: OwnedMutexGuard<CatalogState>,
        /// The engine's shared session, where tables are registered.
        ctx: SessionContext,
    },
    Block {
        block: OwnedMutexGuard<Block>,
        /// The block's session, where its tables are registered.
        ctx: SessionContext,
    },
}

impl CatalogGuard {
    /// The session whose catalog holds the tables of this catalog.
    pub(super) fn ctx(&self) -> &SessionContext {
        match self {
            CatalogGuard::Saved { ctx, .. } | CatalogGuard::Block { ctx, .. } => ctx,
        }
    }

    /// The open block, when the statement runs inside one.
    pub(super) fn block(&mut self) -> Option<&mut Block> {
        match self {
            CatalogGuard::Saved { .. } => None,
            CatalogGuard::Block { block, .. } => Some(block),
        }
    }
}

impl std::ops::Deref for CatalogGuard {
    type Target = CatalogState;

    fn deref(&self) -> &CatalogState {
        match self {
            CatalogGuard::Saved { state, .. } => state,
            CatalogGuard::Block { block, .. } => &block.state,
        }
    }
}

impl std::ops::DerefMut for CatalogGuard {
    fn deref_mut(&mut self) -> &mut CatalogState {
        match self {
            CatalogGuard::Saved { state, .. } => state,
            CatalogGuard::Block { block, .. } => &mut block.state,
        }
    }
}

impl Engine {
    /// Locks the catalog that statements of `ctx` change: its block's, or the saved one.
    pub(super) async fn lock_catalog(&self, ctx: &SessionContext) -> Result<CatalogGuard> {
        match transaction_of(ctx) {
            Some(transaction) => {
                let block = transaction.block.clone().lock_owned().await;
                if block.committed.is_none() {
                    return Err(Error::invalid("the transaction block has already ended"));
                }
                Ok(CatalogGuard::Block {
                    block,
                    ctx: ctx.clone(),
                })
            }
            None => Ok(CatalogGuard::Saved {
                state: self.catalog.clone().lock_owned().await,
                ctx: self.ctx.clone(),
            }),
        }
    }

    /// Makes `next` the catalog: saved at once outside a block, kept for COMMIT inside one.
    pub(super) fn replace_catalog(
        &self,
        catalog: &mut CatalogGuard,
        mut next: CatalogState,
    ) -> Result<()> {
        next.assign_oids();
        if let CatalogGuard::Saved { .. } = catalog {
            self.store.save(&next)?;
        }
        **catalog = next;
        Ok(())
    }
}
