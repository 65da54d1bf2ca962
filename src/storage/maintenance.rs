//! Keeping managed tables fast to read: write buffers flushed to Delta Lake, small files
//! compacted, files no snapshot needs vacuumed. A background task ([`run`]) does all three by
//! itself; `OPTIMIZE` and `VACUUM` do the last two on demand.
//!
//! Each step is one Delta commit made with the table's commits held, so readers keep reading
//! the snapshot they started with and are never blocked; appends go on into the write buffer
//! meanwhile; UPDATE and DELETE of the same table wait. A crash at any point leaves either the
//! commit or nothing: files written for a commit that never happened are removed by a later
//! VACUUM, and the write-ahead log still holds every buffered append.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::operations::optimize::Metrics as OptimizeMetrics;
use deltalake::operations::vacuum::VacuumMode;

use super::ManagedTable;
use crate::error::Result;

/// The write buffer goes to Delta Lake when it holds this many rows ...
pub const FLUSH_ROWS: usize = 100_000;
/// ... or this many bytes of Arrow memory ...
pub const FLUSH_BYTES: usize = 32 << 20;
/// ... or its oldest append is this old.
pub const FLUSH_AFTER: Duration = Duration::from_secs(1);

/// A data file smaller than this is small: it is compacted with others.
pub const SMALL_FILE_BYTES: i64 = 16 << 20;
/// Compaction starts by itself once a table has this many small files ...
pub const COMPACT_AT_SMALL_FILES: usize = 10;
/// ... or has two and no commit for this long (a stream of appends has ended).
pub const COMPACT_WHEN_QUIET: Duration = Duration::from_secs(5);
/// Size of the files compaction writes.
pub const COMPACTED_FILE_BYTES: u64 = 128 << 20;

/// How often the background task looks at every table.
const TICK: Duration = Duration::from_millis(200);
/// After a step fails on a table, the background task leaves it alone this long.
const BACKOFF: Duration = Duration::from_secs(5);

/// What compaction did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Compaction {
    pub files_removed: u64,
    pub files_added: u64,
}

impl From<OptimizeMetrics> for Compaction {
    fn from(metrics: OptimizeMetrics) -> Self {
        Compaction {
            files_removed: metrics.num_files_removed,
            files_added: metrics.num_files_added,
        }
    }
}

impl ManagedTable {
    /// Whether the write buffer is due to be flushed.
    pub fn flush_due(&self) -> bool {
        let state = self.state.read().expect("lock poisoned by a panic");
        let buffer = &state.buffer;
        buffer.rows >= FLUSH_ROWS
            || buffer.bytes >= FLUSH_BYTES
            || buffer.oldest.is_some_and(|t| t.elapsed() >= FLUSH_AFTER)
    }

    /// Live data files in the current Delta version, and how many of them are small.
    pub fn data_files(&self) -> (usize, usize) {
        let table = self.table();
        let Ok(snapshot) = table.snapshot() else {
            return (0, 0);
        };
        let mut files = 0;
        let mut small = 0;
        for file in snapshot.log_data().iter() {
            files += 1;
            if file.size() < SMALL_FILE_BYTES {
                small += 1;
            }
        }
        (files, small)
    }

    /// Rewrites the table's small files into few large ones (Delta Lake's OPTIMIZE), after
    /// flushing the write buffer. `always`: even below the automatic threshold.
    pub async fn compact(&self, always: bool) -> Result<Compaction> {
        let _commits = self.commits.lock().await;
        self.flush_locked().await?;
        let (_, small) = self.data_files();
        if small < 2 || (!always && small < COMPACT_AT_SMALL_FILES) {
            return Ok(Compaction::default());
        }
        let (table, metrics) = self
            .table()
            .optimize()
            .with_target_size(NonZeroU64::new(COMPACTED_FILE_BYTES).expect("non-zero"))
            .await?;
        self.install(table).await?;
        Ok(metrics.into())
    }

    /// Deletes the files that no version newer than `retention` ago needs: files compaction,
    /// UPDATE or DELETE replaced, and files of writes that never committed. Returns how
    /// many were deleted.
    pub async fn vacuum(&self, retention: Duration) -> Result<usize> {
        let _commits = self.commits.lock().await;
        let retention = chrono::Duration::from_std(retention)
            .map_err(|e| crate::Error::invalid(format!("vacuum retention: {e}")))?;
        let (table, metrics) = self
            .table()
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_mode(VacuumMode::Full)
            .await?;
        self.install(table).await?;
        Ok(metrics.files_deleted.len())
    }
}

/// Per-table bookkeeping of the background task.
#[derive(Default)]
struct Upkeep {
    /// Not before this instant (after a failure).
    paused_until: Option<Instant>,
    /// The Delta version seen at the last look.
    version: Option<u64>,
    /// When the first commit not yet covered by a vacuum was seen, and the last commit.
    pending_since: Option<Instant>,
    last_change: Option<Instant>,
    last_vacuum: Option<Instant>,
}

/// The background task: every [`TICK`], for each table `tables` lists, flushes a due write
/// buffer, compacts once there are [`COMPACT_AT_SMALL_FILES`] small files (or two, once no
/// commit came for [`COMPACT_WHEN_QUIET`]), and vacuums (at
/// most every `vacuum_every`) once a commit it has not vacuumed after is `retention` old. A
/// table is vacuumed at least once after it opens, which removes what a crash left. Ends
/// when `tables` returns `None` (the engine is gone).
pub async fn run(
    tables: impl Fn() -> Option<Vec<Arc<ManagedTable>>>,
    retention: Duration,
    vacuum_every: Duration,
) {
    let mut upkeep: std::collections::HashMap<String, Upkeep> = Default::default();
    loop {
        tokio::time::sleep(TICK).await;
        let Some(tables) = tables() else {
            return;
        };
        upkeep.retain(|url, _| tables.iter().any(|t| t.url().as_str() == url));
        for table in tables {
            let entry = upkeep
                .entry(table.url().to_string())
                .or_insert_with(|| Upkeep {
                    // Opened (or created) now: anything a crash left is older than this.
                    pending_since: Some(Instant::now()),
                    version: table.table().version(),
                    ..Upkeep::default()
                });
            if entry.paused_until.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            if let Err(e) = upkeep_one(&table, entry, retention, vacuum_every).await {
                tracing::error!(table = %table.url(), "background maintenance failed: {e}");
                entry.paused_until = Some(Instant::now() + BACKOFF);
            }
        }
    }
}

async fn upkeep_one(
    table: &ManagedTable,
    upkeep: &mut Upkeep,
    retention: Duration,
    vacuum_every: Duration,
) -> Result<()> {
    if table.flush_due() {
        table.flush().await?;
    }
    let small = table.data_files().1;
    let quiet = upkeep
        .last_change
        .is_none_or(|t| t.elapsed() >= COMPACT_WHEN_QUIET);
    if small >= COMPACT_AT_SMALL_FILES || (small >= 2 && quiet) {
        let compaction = table.compact(true).await?;
        tracing::debug!(
            table = %table.url(),
            removed = compaction.files_removed,
            added = compaction.files_added,
            "compacted"
        );
    }
    let version = table.table().version();
    if version != upkeep.version {
        let now = Instant::now();
        upkeep.version = version;
        upkeep.pending_since.get_or_insert(now);
        upkeep.last_change = Some(now);
    }
    let due = upkeep
        .pending_since
        .is_some_and(|since| since.elapsed() >= retention)
        && upkeep
            .last_vacuum
            .is_none_or(|t| t.elapsed() >= vacuum_every);
    if due {
        let deleted = table.vacuum(retention).await?;
        tracing::debug!(table = %table.url(), deleted, "vacuumed");
        let now = Instant::now();
        upkeep.last_vacuum = Some(now);
        upkeep.version = table.table().version();
        // Commits within the retention period before now are not covered yet.
        upkeep.pending_since = upkeep
            .last_change
            .filter(|change| now.duration_since(*change) < retention);
    }
    Ok(())
}
