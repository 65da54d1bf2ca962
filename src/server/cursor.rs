//! Cursors: `DECLARE name [SCROLL] CURSOR [WITH HOLD] FOR query`, `FETCH [direction] FROM
//! name`, `MOVE` (the same, without the rows) and `CLOSE name | ALL`, which psql's
//! `FETCH_COUNT`, psycopg's named cursors and pgjdbc's fetch size use to read a large result
//! a piece at a time.
//!
//! A cursor's query runs like any statement, as a task on the execution runtime that hands
//! batches through a channel of two; each FETCH takes as many rows as it asks for. A cursor
//! without SCROLL reads forward only (a step back is 55000, as from PostgreSQL's NO SCROLL
//! cursors) and never holds its result in memory. A SCROLL cursor keeps the rows it has read,
//! so that FETCH PRIOR, BACKWARD, ABSOLUTE, RELATIVE, FIRST and LAST can return to them; it
//! reads ahead only as far as a step needs (to the end for LAST or a negative ABSOLUTE).
//! Without WITH HOLD a cursor lives until its transaction block ends; a held one until CLOSE
//! or the end of the session (it keeps reading the table versions its query started on).

use std::collections::HashMap;

use arrow::array::UInt32Array;
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::query::batch::Batch;
use crate::Error;
use crate::pg::sqlstate::SqlState;
use crate::sql::fetch::Direction;

/// One declared cursor.
pub struct Cursor {
    /// The result columns with PostgreSQL's names (the batches may name them otherwise).
    pub names: SchemaRef,
    batches: mpsc::Receiver<Batch>,
    /// Rows received from the query that no FETCH has passed yet (forward-only cursors).
    pending: Option<RecordBatch>,
    /// SCROLL cursors: every row received so far.
    kept: Option<Vec<RecordBatch>>,
    /// Rows received so far.
    received: u64,
    /// Whether the query has sent its last row.
    finished: bool,
    /// PostgreSQL's cursor position: 0 before the first row, n on the n-th row, and one past
    /// the last row once a step has gone beyond it.
    position: u64,
    task: AbortHandle,
    hold: bool,
    /// Declared in the open transaction block (so ROLLBACK removes it even WITH HOLD).
    in_block: bool,
}

impl Cursor {
    pub fn new(
        names: SchemaRef,
        batches: mpsc::Receiver<Batch>,
        task: AbortHandle,
        hold: bool,
        scroll: bool,
        in_block: bool,
    ) -> Cursor {
        Cursor {
            names,
            batches,
            pending: None,
            kept: scroll.then(Vec::new),
            received: 0,
            finished: false,
            position: 0,
            task,
            hold,
            in_block,
        }
    }

    /// The rows of one FETCH: in the order PostgreSQL returns them (nearest first when
    /// going backward); none past either end.
    pub async fn fetch(&mut self, direction: Direction) -> Result<RecordBatch, Error> {
        let mut parts = Vec::new();
        self.step(direction, |batch| parts.push(batch)).await?;
        match parts.first() {
            Some(first) => Ok(concat_batches(&first.schema(), &parts)?),
            None => Ok(RecordBatch::new_empty(self.names.clone())),
        }
    }

    /// MOVE: the same step as FETCH without keeping the rows; returns how many there were.
    pub async fn advance(&mut self, direction: Direction) -> Result<usize, Error> {
        self.step(direction, drop).await
    }

    /// Takes one step, handing the rows it passes to `each`; returns how many.
    async fn step(
        &mut self,
        direction: Direction,
        each: impl FnMut(RecordBatch),
    ) -> Result<usize, Error> {
        if self.kept.is_some() {
            return self.scroll(direction, each).await;
        }
        match direction {
            Direction::Forward(limit) => self.forward(limit, each).await,
            // Forward to a later row: skip to just before it.
            Direction::Absolute(n) if n > 0 && n.unsigned_abs() > self.position => {
                self.forward(Some(n.unsigned_abs() - self.position - 1), drop)
                    .await?;
                self.forward(Some(1), each).await
            }
            Direction::Relative(n) if n > 0 => {
                self.forward(Some(n.unsigned_abs() - 1), drop).await?;
                self.forward(Some(1), each).await
            }
            _ => Err(Error::state(
                SqlState::ObjectNotInPrerequisiteState,
                "cursor can only scan forward (declare it SCROLL to go back)",
            )),
        }
    }

    /// A forward-only cursor's next `limit` rows (all that are left when `None`).
    async fn forward(
        &mut self,
        limit: Option<u64>,
        mut each: impl FnMut(RecordBatch),
    ) -> Result<usize, Error> {
        let mut rows = 0u64;
        while limit.is_none_or(|limit| rows < limit) {
            let batch = match self.pending.take() {
                Some(batch) => batch,
                None => match self.receive().await? {
                    Some(batch) => batch,
                    None => break,
                },
            };
            let size = batch.num_rows() as u64;
            let wanted = limit.map_or(size, |limit| limit - rows);
            if size > wanted {
                let wanted = wanted as usize;
                self.pending = Some(batch.slice(wanted, batch.num_rows() - wanted));
                each(batch.slice(0, wanted));
                rows += wanted as u64;
            } else {
                rows += size;
                each(batch);
            }
        }
        self.position += rows;
        if limit.is_none_or(|limit| rows < limit) {
            // Ran off the end: the position is past the last row.
            self.position = self.received + 1;
        }
        Ok(rows as usize)
    }

    /// The query's next batch (kept for a SCROLL cursor); `None` after the last.
    async fn receive(&mut self) -> Result<Option<RecordBatch>, Error> {
        if self.finished {
            return Ok(None);
        }
        loop {
            match self.batches.recv().await {
                Some(Batch::Next(batch)) => {
                    let batch = batch?;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    self.received += batch.num_rows() as u64;
                    if let Some(kept) = &mut self.kept {
                        kept.push(batch.clone());
                    }
                    return Ok(Some(batch));
                }
                // Done, or the query's task ended without saying so (it is the cursor's own
                // and stops only when the cursor is closed).
                Some(Batch::Done) | None => {
                    self.finished = true;
                    return Ok(None);
                }
            }
        }
    }

    /// A SCROLL cursor: reads until row `row` (1-based) has arrived, or the end; whether it has.
    async fn read_to(&mut self, row: u64) -> Result<bool, Error> {
        while self.received < row {
            if self.receive().await?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A SCROLL cursor's step, in PostgreSQL's terms of its position.
    async fn scroll(
        &mut self,
        direction: Direction,
        mut each: impl FnMut(RecordBatch),
    ) -> Result<usize, Error> {
        // The rows first..=last (1-based, last >= first - 1), in the order given.
        let (first, last, backward) = match direction {
            Direction::Forward(limit) => {
                let from = self.position + 1;
                let all = match limit {
                    Some(n) => self.read_to(self.position.saturating_add(n)).await?,
                    None => {
                        while self.receive().await?.is_some() {}
                        false
                    }
                };
                // On the last row returned, or past the end when the rows ran out.
                let (to, position) = match limit {
                    Some(n) if all => (self.position + n, self.position + n),
                    _ => (self.received, self.received + 1),
                };
                self.position = position;
                (from, to, false)
            }
            Direction::Backward(limit) => {
                // From the row before the current one (the last, when past the end).
                let to = self.position.saturating_sub(1);
                // On the last row returned, or before the first when the rows ran out.
                let (from, position) = match limit {
                    Some(n) if n <= to => (to + 1 - n, to + 1 - n),
                    _ => (1, 0),
                };
                self.position = position;
                (from, to, true)
            }
            Direction::Absolute(n) | Direction::Relative(n) => {
                let target = match direction {
                    Direction::Absolute(n) if n < 0 => {
                        while self.receive().await?.is_some() {}
                        self.received as i64 + 1 + n
                    }
                    Direction::Absolute(n) => n,
                    _ => self.position as i64 + n,
                };
                if target <= 0 {
                    self.position = 0;
                    return Ok(0);
                }
                let target = target as u64;
                if !self.read_to(target).await? {
                    self.position = self.received + 1;
                    return Ok(0);
                }
                self.position = target;
                (target, target, false)
            }
        };
        if last < first {
            return Ok(0);
        }
        let rows = self.kept_rows(first, last)?;
        let count = rows.num_rows();
        if backward {
            let reversed = UInt32Array::from_iter_values((0..count as u32).rev());
            each(take_record_batch(&rows, &reversed)?);
        } else {
            each(rows);
        }
        Ok(count)
    }

    /// Kept rows first..=last (1-based), in order.
    fn kept_rows(&self, first: u64, last: u64) -> Result<RecordBatch, Error> {
        let kept = self.kept.as_deref().unwrap_or_default();
        let mut parts = Vec::new();
        let mut start = 1u64;
        for batch in kept {
            let end = start + batch.num_rows() as u64; // one past this batch's last row
            if end > first && start <= last {
                let from = first.max(start) - start;
                let to = (last + 1).min(end) - start;
                parts.push(batch.slice(from as usize, (to - from) as usize));
            }
            start = end;
        }
        Ok(concat_batches(&self.names_of(kept), &parts)?)
    }

    /// The batches' own schema (their names may differ from `names`).
    fn names_of(&self, kept: &[RecordBatch]) -> SchemaRef {
        kept.first()
            .map_or_else(|| self.names.clone(), |b| b.schema())
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
