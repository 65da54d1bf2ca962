//! tenure-udfs: tenure's SQL functions as DataFusion scalar and table functions.
//!
//! Each function lives in a module named after it. The model-scoring functions
//! (`churn_score`, `segment`, `p_alive`, ...) arrive with the model issues; they turn Arrow
//! columns into one tensor per batch and call `tenure-models`.

use datafusion::prelude::SessionContext;

/// Registers all of tenure's functions with `ctx`. None exist yet; the engine calls this so
/// that every session gets them as they arrive.
pub fn register_all(ctx: &SessionContext) {
    let _ = ctx;
}
