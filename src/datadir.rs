//! The data directory and the lock that makes one process its owner.
//!
//! Layout:
//! ```text
//! tenure-data/
//!   tenure.lock      exclusive advisory lock held for the life of the process; holds its PID
//!   catalog.json     schemas, tables, views and external tables (replaced atomically)
//!   tables/<id>/     one Delta Lake table per managed table
//!   import/          default root for paths that server clients may read
//!   tmp/             spill files of queries over the memory limit
//! ```

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// An opened, locked data directory. The lock is released when this is dropped or the
/// process dies (the OS drops advisory locks with the file descriptor, even on SIGKILL).
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

/// Whether `dir` holds a tenure data directory (every opened one has its lock file).
fn is_data_dir(dir: &Path) -> bool {
    dir.join("tenure.lock").is_file() || dir.join("catalog.json").is_file()
}

/// Checks, before a command opens `root`, that it is what the user meant: an existing tenure
/// data directory, or an empty directory; with `create` also a path that does not exist yet
/// (or a directory to initialise). Never a file, and never a directory inside another
/// tenure data directory (a `--data-dir` typo that lands in its `tables/`).
pub fn check_before_open(root: &Path, create: bool) -> Result<()> {
    let shown = root.display();
    if root.exists() && !root.is_dir() {
        return Err(Error::Config(format!(
            "data directory {shown} is a file, not a directory"
        )));
    }
    let absolute = std::path::absolute(root)?;
    if let Some(owner) = absolute.ancestors().skip(1).find(|a| is_data_dir(a)) {
        return Err(Error::Config(format!(
            "{shown} is inside the tenure data directory {}; give that directory, or one \
             outside it, as --data-dir",
            owner.display()
        )));
    }
    if create || is_data_dir(root) {
        return Ok(());
    }
    if !root.exists() {
        return Err(Error::Config(format!(
            "data directory {shown} does not exist; check --data-dir (or TENURE_DATA_DIR), \
             create the demo world there with `tenure --data-dir {shown} demo`, or add \
             --create to start an empty database"
        )));
    }
    let empty = std::fs::read_dir(root)?.next().is_none();
    if !empty {
        return Err(Error::Config(format!(
            "{shown} is not a tenure data directory (it has no tenure.lock or catalog.json); \
             check --data-dir, or add --create to make it one"
        )));
    }
    Ok(())
}

impl DataDir {
    /// Creates the directory if needed and takes its lock; fails with
    /// [`Error::DataDirInUse`] when another process holds it.
    pub fn open(root: &Path) -> Result<DataDir> {
        std::fs::create_dir_all(root).map_err(|e| {
            Error::Config(format!(
                "cannot create data directory {}: {e}",
                root.display()
            ))
        })?;
        let root = root.canonicalize()?;
        // Owner-only, as PostgreSQL requires of its data directory: the catalog holds
        // credentials and the tables hold customer data.
        let mode = std::fs::metadata(&root)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).map_err(
                |e| {
                    Error::Config(format!(
                        "cannot make data directory {} private (mode 0700): {e}",
                        root.display()
                    ))
                },
            )?;
            tracing::info!(dir = %root.display(), "data directory made private (was mode {mode:o}, now 0700)");
        }
        let lock_path = root.join("tenure.lock");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)?;
        // A lock this process held a moment ago can still look taken: a child that another
        // thread is spawning shares the descriptor from fork until exec closes it. So when
        // the recorded owner is this process, try again for a short while before giving up.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let mut pid = String::new();
                    lock.seek(SeekFrom::Start(0))?;
                    let _ = lock.read_to_string(&mut pid);
                    let pid = match pid.trim() {
                        "" => "unknown".to_string(),
                        p => p.to_string(),
                    };
                    let ours = pid == std::process::id().to_string();
                    if !ours || std::time::Instant::now() >= deadline {
                        return Err(Error::DataDirInUse { dir: root, pid });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(TryLockError::Error(e)) => return Err(e.into()),
            }
        }
        lock.set_len(0)?;
        lock.seek(SeekFrom::Start(0))?;
        writeln!(lock, "{}", std::process::id())?;
        lock.sync_all()?;
        for sub in ["tables", "import", "tmp"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        Ok(DataDir { root, _lock: lock })
    }

    /// The absolute path of the directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where trained models are stored.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    /// Where managed Delta tables live.
    pub fn tables_dir(&self) -> PathBuf {
        self.root.join("tables")
    }

    /// Temporary tables, one directory per client session; emptied at every start.
    pub fn temp_tables_dir(&self) -> PathBuf {
        self.root.join("temp_tables")
    }

    /// Where query spill files go.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The catalog file.
    pub fn catalog_path(&self) -> PathBuf {
        self.root.join("catalog.json")
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new file: write a
/// temporary sibling, fsync it, rename it over `path`, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    {
        // Owner-only: the catalog holds external tables' S3 credentials.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_reports_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        let err = DataDir::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is in use by process"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        DataDir::open(dir.path()).expect("the lock is released on drop");
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }
}
