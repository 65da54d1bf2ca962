//! Cursors: `DECLARE name CURSOR [WITH HOLD] FOR query`, `FETCH [FORWARD] [n | ALL] FROM
//! name`, `MOVE` (the same, without the rows) and `CLOSE name | ALL`, which psql's `FETCH_COUNT` and psycopg2's named cursors use
//! to read a large result a piece at a time.
//!
//! A cursor's query runs like any statement, as a task on the execution runtime that hands
//! batches through a channel of two; each FETCH takes as many rows as it asks for, so the
//! result is never held in memory. Cursors read forward only (NO SCROLL). Without WITH HOLD
//! a cursor lives until its transaction block ends; a held one until CLOSE or the end of
//! the session (it keeps reading the table versions its query started on).

use std::collections::HashMap;

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::Error;

/// One declared cursor.
pub struct Cursor {
    /// The result columns with PostgreSQL's names (the batches may name them otherwise).
    pub names: SchemaRef,
    batches: mpsc::Receiver<Result<RecordBatch, Error>>,
    /// Rows received from the query that no FETCH has returned yet.
    pending: Option<RecordBatch>,
    task: AbortHandle,
    hold: bool,
    /// Declared in the open transaction block (so ROLLBACK removes it even WITH HOLD).
    in_block: bool,
}

impl Cursor {
    pub fn new(
        names: SchemaRef,
        batches: mpsc::Receiver<Result<RecordBatch, Error>>,
        task: AbortHandle,
        hold: bool,
        in_block: bool,
    ) -> Cursor {
        Cursor {
            names,
            batches,
            pending: None,
            task,
            hold,
            in_block,
        }
    }

    /// The next `limit` rows (all that are left when `None`); fewer at the end, none after.
    pub async fn fetch(&mut self, limit: Option<usize>) -> Result<RecordBatch, Error> {
        let mut parts = Vec::new();
        self.take(limit, |batch| parts.push(batch)).await?;
        match parts.first() {
            Some(first) => Ok(concat_batches(&first.schema(), &parts)?),
            None => Ok(RecordBatch::new_empty(self.names.clone())),
        }
    }

    /// MOVE: skips the next `limit` rows (all when `None`) without keeping them; returns
    /// how many there were.
    pub async fn advance(&mut self, limit: Option<usize>) -> Result<usize, Error> {
        self.take(limit, drop).await
    }

    /// Hands the next `limit` rows to `each`, batch by batch; returns how many.
    async fn take(
        &mut self,
        limit: Option<usize>,
        mut each: impl FnMut(RecordBatch),
    ) -> Result<usize, Error> {
        let mut rows = 0;
        while limit.is_none_or(|limit| rows < limit) {
            let batch = match self.pending.take() {
                Some(batch) => batch,
                None => match self.batches.recv().await {
                    Some(batch) => batch?,
                    None => break,
                },
            };
            let wanted = limit.map_or(batch.num_rows(), |limit| limit - rows);
            if batch.num_rows() > wanted {
                self.pending = Some(batch.slice(wanted, batch.num_rows() - wanted));
                each(batch.slice(0, wanted));
                rows += wanted;
            } else {
                rows += batch.num_rows();
                each(batch);
            }
        }
        Ok(rows)
    }
}

impl Drop for Cursor {
    /// Closing a cursor stops its query.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A session's cursors by name.
#[derive(Default)]
pub struct Cursors {
    by_name: HashMap<String, Cursor>,
}

impl Cursors {
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn insert(&mut self, name: String, cursor: Cursor) {
        self.by_name.insert(name, cursor);
    }

    /// Takes cursor `name` out for a FETCH (put it back with [`Cursors::insert`]).
    pub fn take(&mut self, name: &str) -> Option<Cursor> {
        self.by_name.remove(name)
    }

    pub fn schema(&self, name: &str) -> Option<SchemaRef> {
        self.by_name.get(name).map(|c| c.names.clone())
    }

    /// CLOSE name; false when there is no such cursor.
    pub fn close(&mut self, name: &str) -> bool {
        self.by_name.remove(name).is_some()
    }

    pub fn close_all(&mut self) {
        self.by_name.clear();
    }

    /// The transaction block ended: cursors without HOLD close; on ROLLBACK so do those
    /// declared in the block.
    pub fn end_block(&mut self, committed: bool) {
        self.by_name
            .retain(|_, cursor| cursor.hold && (committed || !cursor.in_block));
        for cursor in self.by_name.values_mut() {
            cursor.in_block = false;
        }
    }
}
