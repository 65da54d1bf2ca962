//! tenure: an analytical database for customer-lifecycle analytics, built on Apache
//! DataFusion with Delta Lake storage.
//!
//! Modules, from the outside in:
//! - [`cli`]: the `tenure` command line (`sql`, `demo`, `serve`) and the SQL shell;
//! - [`engine`]: one DataFusion session over the data directory; runs statements, carrying
//!   out those that change stored state itself;
//! - [`catalog`]: the persistent catalog of schemas, tables, views and external tables;
//! - [`storage`]: managed tables as Delta Lake tables;
//! - [`datadir`]: the data directory, its lock and atomic file replacement;
//! - [`config`]: `tenure.toml`, environment and flags as one typed [`config::Config`];
//! - [`demo`]: the deterministic demo e-commerce world with known latent structure (crate
//!   tenure-demo, built optimised even in dev builds);
//! - [`lifecycle`]: loading the demo world and the lifecycle views shipped in `sql/`;
//! - [`sql`]: splitting scripts and parsing tenure's own statements (CREATE/DROP MODEL);
//! - [`model_store`]: the model registry on disk and the cache the scoring functions share;
//! - [`pg`]: PostgreSQL compatibility short of the wire: pg_catalog, catalog functions,
//!   rewrites of drivers' SQL, session settings, version strings;
//! - [`server`]: the PostgreSQL wire-protocol server (`tenure serve`).

pub mod access;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod engine;
pub mod error;
pub mod lifecycle;
pub mod model_store;
pub mod pg;
pub mod qualified_name;
pub mod server;
pub mod sql;
pub mod storage;

/// Every tenure process (the binary, its tests and benchmarks) allocates through mimalloc:
/// tensors and Arrow buffers of a few megabytes are allocated and freed at a high rate, and
/// glibc's malloc maps and unmaps each of them; the page faults that follow took a fifth of a
/// sequence model's training epoch and almost half of its scoring time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (its index in mimalloc 3's `mi_option_t`, which
/// libmimalloc-sys does not name): how long freed memory stays committed before it goes back
/// to the operating system.
const MIMALLOC_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes freed memory go back to the operating system at once. A server's blocking threads
/// come and go with the load, and the pages of a thread that exits are purged only after the
/// delay (10 ms by default) by a thread that frees into them, which may never happen: after
/// 40 clients for a minute (benches/load_test.py) the server stayed at 577 MiB instead of
/// 259 MiB. Call before the server starts its threads.
///
/// (Capping the runtimes' blocking threads instead deadlocks: delta-kernel lists the Delta
/// log from a blocking thread and waits for object_store, whose local listing needs another
/// blocking thread; at 200 clients every one was taken by a waiting listing.)
pub fn release_freed_memory_promptly() {
    // SAFETY: sets one option of the global allocator; done before the runtimes start,
    // as mimalloc asks of option changes.
    unsafe { libmimalloc_sys::mi_option_set(MIMALLOC_PURGE_DELAY, 0) };
}

/// The demo world (crate tenure-demo), under its old path.
pub use tenure_demo as demo;

pub use config::Config;

/// Stack size of the threads that parse, plan and run statements. Passes over a syntax
/// tree recurse once per level, so a deep but legal statement needs more than the 2 MiB a
/// thread gets by default; [`sql::limits`] bounds the depth this must hold. The memory is
/// reserved, not committed: a thread touches only what it uses.
pub const STATEMENT_STACK_SIZE: usize = 64 << 20;
pub use engine::{Engine, Output, PathAccess, Progress, ProgressSender};
pub use error::{Error, Result};
