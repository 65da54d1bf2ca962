//! What a statement's task hands to the connection (or to a cursor) after its first answer.

use datafusion::arrow::record_batch::RecordBatch;

use crate::error::Error;

/// What a statement's task sends after its first answer: each batch, then Done. A channel
/// closed without Done means the task was stopped.
pub enum Batch {
    Next(Result<RecordBatch, Error>),
    Done,
}
