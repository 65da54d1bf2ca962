//! A memory limit per session (the `memory_limit` setting, which `ALTER ROLE r SET
//! memory_limit = '2GiB'` makes a ceiling for the role): every session's runtime has a pool
//! of its own in front of the engine's shared one. An operator that asks for memory past
//! the session's limit is refused as it would be past the server's (sorts, joins and
//! aggregations spill to disk, others fail with 53200), while the server's `memory_limit`
//! still bounds all sessions together.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionContext;

/// One session's share of the engine's memory pool.
#[derive(Debug)]
pub struct SessionMemoryPool {
    shared: Arc<dyn MemoryPool>,
    /// Bytes; `usize::MAX` for no limit of the session's own. Shared with the session's
    /// settings, which store `memory_limit` here whenever it changes.
    limit: Arc<AtomicUsize>,
    used: AtomicUsize,
}

impl SessionMemoryPool {
    fn new(shared: Arc<dyn MemoryPool>) -> Self {
        SessionMemoryPool {
            shared,
            limit: Arc::new(AtomicUsize::new(usize::MAX)),
            used: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Display for SessionMemoryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "session pool ({} bytes reserved) in front of {}",
            self.used.load(Ordering::Relaxed),
            self.shared
        )
    }
}

impl MemoryPool for SessionMemoryPool {
    fn name(&self) -> &str {
        "session"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
        self.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.shared.shrink(reservation, shrink);
        self.used.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let limit = self.limit.load(Ordering::Relaxed);
        let taken = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(additional).filter(|next| *next <= limit)
            });
        if let Err(used) = taken {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the session's memory_limit ({limit} bytes) is reached: {used} bytes in use \
                 and {additional} more asked for by {}",
                reservation.consumer().name()
            )));
        }
        if let Err(e) = self.shared.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        match self.limit.load(Ordering::Relaxed) {
            usize::MAX => self.shared.memory_limit(),
            limit => MemoryLimit::Finite(limit),
        }
    }
}

/// `runtime` with a session pool of its own in front of its shared pool.
pub(super) fn with_session_pool(runtime: &Arc<RuntimeEnv>) -> Arc<RuntimeEnv> {
    let mut own = RuntimeEnv::clone(runtime);
    own.memory_pool = Arc::new(SessionMemoryPool::new(runtime.memory_pool.clone()));
    Arc::new(own)
}

/// Where the memory limit of `session` (made by [`super::Engine::new_session`]) is kept,
/// in bytes (`usize::MAX` for none): the session's settings store `memory_limit` there
/// (see [`crate::pg::settings::Settings::bind_memory_limit`]). Memory already held is
/// kept; a new limit applies to what is asked for next.
pub fn session_memory_limit(session: &SessionContext) -> Option<Arc<AtomicUsize>> {
    session
        .runtime_env()
        .memory_pool
        .downcast_ref::<SessionMemoryPool>()
        .map(|pool| pool.limit.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    #[test]
    fn a_session_stops_at_its_limit_and_the_server_at_its_own() {
        let shared: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1000));
        let one: Arc<dyn MemoryPool> = Arc::new(SessionMemoryPool::new(shared.clone()));
        let other: Arc<dyn MemoryPool> = Arc::new(SessionMemoryPool::new(shared.clone()));
        one.downcast_ref::<SessionMemoryPool>()
            .unwrap()
            .limit
            .store(300, Ordering::Relaxed);
        let a = MemoryConsumer::new("sort").register(&one);
        a.try_grow(300).unwrap();
        let err = a.try_grow(1).unwrap_err().to_string();
        assert!(err.contains("memory_limit (300 bytes)"), "{err}");
        assert_eq!(shared.reserved(), 300);
        // The other session has no limit of its own, only the server's.
        let b = MemoryConsumer::new("join").register(&other);
        b.try_grow(700).unwrap();
        assert!(b.try_grow(1).is_err());
        assert_eq!(other.reserved(), 700);
        drop(a);
        assert_eq!(one.reserved(), 0);
        assert_eq!(shared.reserved(), 700);
    }
}
