//! Registration of tenure's own SQL functions with an engine's session.

use crate::engine::Engine;

/// Registers every function of `tenure-udfs` with `engine`.
pub fn register(engine: &Engine) {
    tenure_udfs::register_all(engine.context());
}
