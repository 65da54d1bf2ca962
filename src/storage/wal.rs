//! The write-ahead log of a managed table's small appends.
//!
//! A small INSERT is not a Delta commit of its own: its rows are appended here, made durable
//! with one `fdatasync` shared by every append that arrived meanwhile (group commit), and only
//! then acknowledged and made visible to readers, from memory (the table's write buffer). The
//! buffer later goes to Delta Lake as one file in one commit, which records the last log
//! sequence number it holds as a Delta application transaction (`txn` action, app id
//! [`WAL_APP_ID`]); log segments wholly below that number are then deleted.
//!
//! After a crash, opening the table replays every record above the number its Delta log
//! records, so an acknowledged append is never lost and never applied twice. A torn record at
//! the end of the last segment (the crash came mid-write, so it was never acknowledged) is cut
//! off.
//!
//! Layout: `tables/<dir>/_tenure_wal/<first seq, 20 digits>.wal` (Delta Lake and its VACUUM
//! ignore directories starting with `_`). A record is
//! `magic u32 | payload length u32 | crc32 of seq and payload u32 | seq u64 | payload`
//! (little-endian), its payload one Arrow IPC stream.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};

/// Delta application-transaction id under which a flush records its last sequence number.
pub const WAL_APP_ID: &str = "tenure.write_ahead_log";

/// Directory of a table's log, inside the table's directory.
pub const WAL_DIR: &str = "_tenure_wal";

const MAGIC: u32 = 0x5457_414c; // "TWAL"
const HEADER: usize = 20;
/// A record larger than this is corruption, not data (appends above the buffer limit go
/// straight to Delta files).
const MAX_PAYLOAD: usize = 1 << 30;

/// One table's log. Appends are blocking calls (file writes and `fdatasync`): run them on a
/// blocking thread.
pub struct Wal {
    dir: PathBuf,
    /// The segment appends go to; its lock is held while a group is written and applied.
    active: Mutex<Active>,
    /// Appends waiting for the next group write.
    pending: Mutex<Vec<Pending>>,
}

struct Active {
    file: File,
    path: PathBuf,
    /// Sequence number the next record gets.
    next_seq: u64,
    /// Earlier segments, with the last sequence number each holds.
    sealed: Vec<(PathBuf, u64)>,
    /// Set when a write failed in a way that leaves the segment's end unknown.
    broken: Option<String>,
}

struct Pending {
    payload: Vec<u8>,
    batches: Vec<RecordBatch>,
    done: Arc<OnceLock<std::result::Result<u64, String>>>,
}

/// Records found when a log is opened: (sequence number, rows), oldest first.
pub type Replayed = Vec<(u64, Vec<RecordBatch>)>;

impl Wal {
    /// Opens the log in `table_dir`, returning the records above `flushed` (the sequence
    /// number the table's Delta log records) to buffer again. Sealed segments that hold
    /// nothing above `flushed` are deleted; appends go to a new segment.
    pub fn open(table_dir: &Path, flushed: u64) -> Result<(Wal, Replayed)> {
        let dir = table_dir.join(WAL_DIR);
        std::fs::create_dir_all(&dir)?;
        let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)?
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let first = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".wal")?
                    .parse()
                    .ok()?;
                Some((first, path))
            })
            .collect();
        segments.sort();
        let mut replayed = Vec::new();
        let mut sealed = Vec::new();
        let mut last_seq = flushed;
        let count = segments.len();
        for (index, (_, path)) in segments.into_iter().enumerate() {
            let (records, valid_len) = read_segment(&path)?;
            let file_len = std::fs::metadata(&path)?.len();
            if valid_len < file_len {
                if index + 1 < count {
                    return Err(Error::Catalog(format!(
                        "write-ahead log segment {} is damaged at byte {valid_len} and is not \
                         the last one; refusing to open the table without it",
                        path.display()
                    )));
                }
                // The tail of the last segment was being written when the process died: that
                // append was never acknowledged.
                tracing::warn!(
                    segment = %path.display(),
                    "cutting off {} bytes of an unfinished write-ahead log record",
                    file_len - valid_len
                );
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(valid_len)?;
                file.sync_all()?;
            }
            let segment_last = records.last().map(|(seq, _)| *seq);
            for (seq, batches) in records {
                if seq > flushed {
                    replayed.push((seq, batches));
                }
                last_seq = last_seq.max(seq);
            }
            match segment_last {
                Some(last) if last > flushed => sealed.push((path, last)),
                _ => std::fs::remove_file(&path)?,
            }
        }
        let next_seq = last_seq + 1;
        let path = segment_path(&dir, next_seq);
        let file = create_segment(&dir, &path)?;
        let wal = Wal {
            dir,
            active: Mutex::new(Active {
                file,
                path,
                next_seq,
                sealed,
                broken: None,
            }),
            pending: Mutex::new(Vec::new()),
        };
        Ok((wal, replayed))
    }

    /// Appends `batches` as one record and returns once it is durable, with its sequence
    /// number. `apply` is called with each durable record of the group in sequence order,
    /// under the log's lock, before any of them returns: the caller makes them visible there,
    /// so readers see appends in log order and a flush never misses one.
    pub fn append(
        &self,
        batches: Vec<RecordBatch>,
        apply: &dyn Fn(u64, Vec<RecordBatch>),
    ) -> Result<u64> {
        let payload = encode(&batches)?;
        if payload.len() > MAX_PAYLOAD {
            return Err(Error::Internal(
                "an append too large for the write-ahead log".into(),
            ));
        }
        let done = Arc::new(OnceLock::new());
        self.pending
            .lock()
            .expect("lock poisoned by a panic")
            .push(Pending {
                payload,
                batches,
                done: done.clone(),
            });
        let mut active = self.active.lock().expect("lock poisoned by a panic");
        // A writer that held the lock before us may have written our record with its group.
        if done.get().is_none() {
            let group =
                std::mem::take(&mut *self.pending.lock().expect("lock poisoned by a panic"));
            write_group(&mut active, group, apply);
        }
        drop(active);
        match done.get() {
            Some(Ok(seq)) => Ok(*seq),
            Some(Err(message)) => Err(Error::Internal(message.clone())),
            None => Err(Error::Internal(
                "write-ahead log append was not written".into(),
            )),
        }
    }

    /// Starts a new segment and calls `take` under the log's lock, so that what `take`
    /// reads of the buffer is exactly every record up to the returned sequence number.
    pub fn rotate<T>(&self, take: impl FnOnce() -> T) -> Result<(u64, T)> {
        let mut active = self.active.lock().expect("lock poisoned by a panic");
        let through = active.next_seq - 1;
        let taken = take();
        if let Some(reason) = &active.broken {
            return Err(Error::Internal(format!(
                "write-ahead log of this table is unusable: {reason}"
            )));
        }
        let path = segment_path(&self.dir, active.next_seq);
        if path == active.path {
            // Nothing was appended since the last rotation: keep the empty segment.
            return Ok((through, taken));
        }
        active.file = create_segment(&self.dir, &path)?;
        let closed = std::mem::replace(&mut active.path, path);
        active.sealed.push((closed, through));
        Ok((through, taken))
    }

    /// Deletes the sealed segments whose records are all at or below `flushed` (now in the
    /// table's Delta log).
    pub fn release(&self, flushed: u64) {
        let mut active = self.active.lock().expect("lock poisoned by a panic");
        active.sealed.retain(|(path, last)| {
            if *last > flushed {
                return true;
            }
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(
                    "cannot remove write-ahead log segment {}: {e}",
                    path.display()
                );
            }
            false
        });
    }
}

/// Writes one group of appends with a single write and `fdatasync`, then applies and answers
/// each. On failure every append of the group fails and the segment is cut back to where the
/// group began, so that nothing unacknowledged is replayed later.
fn write_group(active: &mut Active, group: Vec<Pending>, apply: &dyn Fn(u64, Vec<RecordBatch>)) {
    if let Some(reason) = &active.broken {
        let message = format!("write-ahead log of this table is unusable: {reason}");
        for pending in group {
            let _ = pending.done.set(Err(message.clone()));
        }
        return;
    }
    let first = active.next_seq;
    let mut bytes = Vec::with_capacity(group.iter().map(|p| p.payload.len() + HEADER).sum());
    for (offset, pending) in group.iter().enumerate() {
        let seq = first + offset as u64;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&seq.to_le_bytes());
        hasher.update(&pending.payload);
        bytes.extend_from_slice(&MAGIC.to_le_bytes());
        bytes.extend_from_slice(&(pending.payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&hasher.finalize().to_le_bytes());
        bytes.extend_from_slice(&seq.to_le_bytes());
        bytes.extend_from_slice(&pending.payload);
    }
    let start = active.file.metadata().map(|m| m.len());
    let written = active
        .file
        .write_all(&bytes)
        .and_then(|()| active.file.sync_data());
    if let Err(e) = written {
        let message = format!("cannot write the write-ahead log: {e}");
        tracing::error!("{message}");
        let restored = start.and_then(|len| {
            active.file.set_len(len)?;
            active.file.sync_data()
        });
        if let Err(e) = restored {
            active.broken = Some(format!("a failed write could not be undone: {e}"));
        }
        for pending in group {
            let _ = pending.done.set(Err(message.clone()));
        }
        return;
    }
    active.next_seq = first + group.len() as u64;
    for (offset, pending) in group.into_iter().enumerate() {
        let seq = first + offset as u64;
        apply(seq, pending.batches);
        let _ = pending.done.set(Ok(seq));
    }
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

/// Creates an empty segment (or opens an empty one left by a crash) and makes its directory
/// entry durable.
fn create_segment(dir: &Path, path: &Path) -> Result<File> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

fn encode(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| Error::Internal("an empty append".into()))?;
    let mut writer = StreamWriter::try_new(Vec::new(), &schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    Ok(writer.into_inner()?)
}

fn decode(payload: &[u8]) -> Result<Vec<RecordBatch>> {
    let reader = StreamReader::try_new(payload, None)?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// The records of a segment and the length of its valid prefix (shorter than the file when
/// its last record is torn or damaged).
fn read_segment(path: &Path) -> Result<(Replayed, u64)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while data.len() - at >= HEADER {
        let word = |i: usize| u32::from_le_bytes(data[at + i..at + i + 4].try_into().unwrap());
        let (magic, len, crc) = (word(0), word(4) as usize, word(8));
        let seq = u64::from_le_bytes(data[at + 12..at + 20].try_into().unwrap());
        if magic != MAGIC || len > MAX_PAYLOAD || data.len() - at - HEADER < len {
            break;
        }
        let payload = &data[at + HEADER..at + HEADER + len];
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&seq.to_le_bytes());
        hasher.update(payload);
        if hasher.finalize() != crc {
            break;
        }
        let Ok(batches) = decode(payload) else {
            break;
        };
        records.push((seq, batches));
        at += HEADER + len;
    }
    Ok((records, at as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    fn values(replayed: &Replayed) -> Vec<(u64, i64)> {
        replayed
            .iter()
            .flat_map(|(seq, batches)| {
                batches.iter().flat_map(move |b| {
                    let column = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                    column
                        .values()
                        .iter()
                        .map(move |v| (*seq, *v))
                        .collect::<Vec<_>>()
                })
            })
            .collect()
    }

    #[test]
    fn replays_what_was_not_flushed_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, replayed) = Wal::open(dir.path(), 0).unwrap();
        assert!(replayed.is_empty());
        let applied = Mutex::new(Vec::new());
        let apply = |seq: u64, _: Vec<RecordBatch>| applied.lock().unwrap().push(seq);
        assert_eq!(wal.append(vec![batch(&[1])], &apply).unwrap(), 1);
        assert_eq!(wal.append(vec![batch(&[2, 3])], &apply).unwrap(), 2);
        let (through, ()) = wal.rotate(|| ()).unwrap();
        assert_eq!(through, 2);
        assert_eq!(wal.append(vec![batch(&[4])], &apply).unwrap(), 3);
        assert_eq!(*applied.lock().unwrap(), vec![1, 2, 3]);
        drop(wal);

        // Record 1 reached Delta; 2 and 3 did not.
        let (wal, replayed) = Wal::open(dir.path(), 1).unwrap();
        assert_eq!(values(&replayed), vec![(2, 2), (2, 3), (3, 4)]);
        // A torn record at the end of the newest segment is dropped, the rest kept.
        let newest = std::fs::read_dir(dir.path().join(WAL_DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max()
            .unwrap();
        drop(wal);
        std::fs::write(
            &newest,
            [
                1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
            ],
        )
        .unwrap();
        let (wal, replayed) = Wal::open(dir.path(), 1).unwrap();
        assert_eq!(values(&replayed), vec![(2, 2), (2, 3), (3, 4)]);
        // Sequence numbers continue after the replayed ones.
        assert_eq!(wal.append(vec![batch(&[5])], &|_, _| {}).unwrap(), 4);
        // Once everything is flushed, the sealed segments go.
        let (through, ()) = wal.rotate(|| ()).unwrap();
        wal.release(through);
        drop(wal);
        let (_wal, replayed) = Wal::open(dir.path(), through).unwrap();
        assert!(replayed.is_empty());
        let left = std::fs::read_dir(dir.path().join(WAL_DIR)).unwrap().count();
        assert_eq!(left, 1, "only the active segment is left");
    }

    #[test]
    fn concurrent_appends_get_distinct_sequence_numbers_in_apply_order() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), 0).unwrap();
        let wal = Arc::new(wal);
        let applied = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (wal, applied) = (wal.clone(), applied.clone());
                std::thread::spawn(move || {
                    (0..50)
                        .map(|i| {
                            let apply =
                                |seq: u64, _: Vec<RecordBatch>| applied.lock().unwrap().push(seq);
                            wal.append(vec![batch(&[t * 1000 + i])], &apply).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        seqs.sort();
        assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
        assert_eq!(*applied.lock().unwrap(), (1..=400).collect::<Vec<_>>());
        drop(wal);
        let (_, replayed) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(replayed.len(), 400);
    }
}
