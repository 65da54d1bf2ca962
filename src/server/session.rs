//! One client connection's state: its DataFusion session, its settings, its transaction block
//! and the statement it is running (so a CancelRequest or statement_timeout can stop it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use datafusion::prelude::SessionContext;
use tokio::task::AbortHandle;

use crate::engine::plan_cache::PlanKey;
use crate::pg::settings::Settings;

/// Where the session is with respect to `BEGIN ... COMMIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transaction {
    /// Autocommit: every statement is its own transaction.
    Idle,
    /// Inside BEGIN ... COMMIT.
    Open,
    /// Inside a block where a statement failed: everything but COMMIT / ROLLBACK is refused.
    Failed,
}

/// Why a running statement was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Cancelled,
    Timeout,
    Shutdown,
    /// The client's connection closed while the statement ran.
    Disconnected,
}

impl StopReason {
    pub fn message(self) -> &'static str {
        match self {
            StopReason::Cancelled => "canceling statement due to user request",
            StopReason::Timeout => "canceling statement due to statement timeout",
            StopReason::Shutdown => "terminating connection due to administrator command",
            StopReason::Disconnected => "connection to client lost",
        }
    }
}

/// The statement a session is running.
struct Running {
    id: u64,
    abort: AbortHandle,
    stopped: Option<StopReason>,
    /// Told when the statement is stopped: the client is answered at once, even while the
    /// statement's task has not yet reached a point where the abort takes effect.
    stop_signal: Arc<tokio::sync::Notify>,
}

pub struct Session {
    /// The client's own session over the shared catalog.
    base: SessionContext,
    pub settings: Arc<Mutex<Settings>>,
    transaction: Mutex<Transaction>,
    /// Once the open transaction block has written: its session, where its statements run
    /// (see Engine::begin). Dropping it rolls the block back.
    block: Mutex<Option<SessionContext>>,
    /// Writes that succeeded in the open block.
    block_writes: AtomicU64,
    /// Savepoints of the open transaction block, oldest first, with the block's write count
    /// when each was set.
    savepoints: Mutex<Vec<(String, u64)>>,
    /// Open cursors (DECLARE ... CURSOR).
    cursors: Mutex<super::cursor::Cursors>,
    /// A `COPY ... FROM STDIN` collecting the client's data.
    copy_in: Mutex<Option<super::copy::CopyIn>>,
    running: Mutex<Option<Running>>,
    next_statement: AtomicU64,
    /// Counts the statements other than queries this session has run (SET datafusion.*,
    /// DDL, ...): a kept physical plan is reused only under the generation it was made in.
    generation: AtomicU64,
}

impl Session {
    pub fn new(ctx: SessionContext, mut settings: Settings) -> Session {
        if let Some(limit) = crate::engine::session_memory::session_memory_limit(&ctx) {
            settings.bind_memory_limit(limit);
        }
        Session {
            base: ctx,
            settings: Arc::new(Mutex::new(settings)),
            transaction: Mutex::new(Transaction::Idle),
            block: Mutex::new(None),
            block_writes: AtomicU64::new(0),
            savepoints: Mutex::new(Vec::new()),
            cursors: Mutex::default(),
            copy_in: Mutex::new(None),
            running: Mutex::new(None),
            next_statement: AtomicU64::new(1),
            generation: AtomicU64::new(0),
        }
    }

    /// What a kept physical plan must have been made for to run in this session now.
    pub fn plan_key(&self) -> PlanKey {
        PlanKey {
            session: self.ctx().session_id(),
            generation: self.generation.load(Ordering::Relaxed),
        }
    }

    /// A statement that may change how queries plan has run.
    pub fn new_generation(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.settings.lock().expect("settings lock poisoned")
    }

    /// Where this session's statements are planned and run: the open block's session once
    /// the block has written, the client's own otherwise.
    pub fn ctx(&self) -> SessionContext {
        match self.block.lock().expect("block lock poisoned").as_ref() {
            Some(block) => block.clone(),
            None => self.base.clone(),
        }
    }

    /// The client's own session, outside any transaction block.
    pub fn base(&self) -> &SessionContext {
        &self.base
    }

    /// Whether the open transaction block has started writing.
    pub fn has_block(&self) -> bool {
        self.block.lock().expect("block lock poisoned").is_some()
    }

    pub fn set_block(&self, block: SessionContext) {
        *self.block.lock().expect("block lock poisoned") = Some(block);
    }

    /// Ends the writing block: the caller commits or rolls back what it returns.
    pub fn take_block(&self) -> Option<SessionContext> {
        self.block_writes.store(0, Ordering::Relaxed);
        self.block.lock().expect("block lock poisoned").take()
    }

    /// Counts a write that succeeded inside the open block.
    pub fn note_write(&self) {
        self.block_writes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn block_writes(&self) -> u64 {
        self.block_writes.load(Ordering::Relaxed)
    }

    pub fn transaction(&self) -> Transaction {
        *self.transaction.lock().expect("transaction lock poisoned")
    }

    pub fn set_transaction(&self, state: Transaction) {
        *self.transaction.lock().expect("transaction lock poisoned") = state;
        if state == Transaction::Idle {
            self.savepoints().clear();
        }
    }

    pub fn copy_in(&self) -> std::sync::MutexGuard<'_, Option<super::copy::CopyIn>> {
        self.copy_in.lock().expect("copy lock poisoned")
    }

    pub fn cursors(&self) -> std::sync::MutexGuard<'_, super::cursor::Cursors> {
        self.cursors.lock().expect("cursors lock poisoned")
    }

    pub fn savepoints(&self) -> std::sync::MutexGuard<'_, Vec<(String, u64)>> {
        self.savepoints.lock().expect("savepoints lock poisoned")
    }

    /// Marks the open transaction block failed (after an error inside it).
    pub fn fail_transaction(&self) {
        let mut state = self.transaction.lock().expect("transaction lock poisoned");
        if *state == Transaction::Open {
            *state = Transaction::Failed;
        }
    }

    /// Records that the statement behind `abort` is running; returns its id.
    /// Records the statement now running; returns its id and the signal its stop sends.
    pub fn start(&self, abort: AbortHandle) -> (u64, Arc<tokio::sync::Notify>) {
        let id = self.next_statement.fetch_add(1, Ordering::Relaxed);
        let stop_signal = Arc::new(tokio::sync::Notify::new());
        *self.running.lock().expect("running lock poisoned") = Some(Running {
            id,
            abort,
            stopped: None,
            stop_signal: stop_signal.clone(),
        });
        (id, stop_signal)
    }

    /// The statement `id` finished (or its client stopped reading); returns why it was
    /// stopped, if it was.
    pub fn finish(&self, id: u64) -> Option<StopReason> {
        let mut running = self.running.lock().expect("running lock poisoned");
        match running.as_ref() {
            Some(r) if r.id == id => running.take().and_then(|r| r.stopped),
            _ => None,
        }
    }

    /// Why statement `id` was stopped, if it was.
    pub fn stop_reason(&self, id: u64) -> Option<StopReason> {
        let running = self.running.lock().expect("running lock poisoned");
        running
            .as_ref()
            .filter(|r| r.id == id)
            .and_then(|r| r.stopped)
    }

    /// Whether a statement is running (or streaming its rows).
    pub fn is_running(&self) -> bool {
        self.running
            .lock()
            .expect("running lock poisoned")
            .is_some()
    }

    /// Stops the running statement (only statement `id` when given). True if one was running.
    pub fn stop(&self, id: Option<u64>, reason: StopReason) -> bool {
        let mut running = self.running.lock().expect("running lock poisoned");
        match running.as_mut() {
            Some(r) if id.is_none_or(|id| id == r.id) && r.stopped.is_none() => {
                r.stopped = Some(reason);
                r.abort.abort();
                // A stored permit: the waiter may not be waiting yet.
                r.stop_signal.notify_one();
                true
            }
            _ => false,
        }
    }
}

/// A session's (backend pid, secret key), as BackendKeyData gave them to the client.
type SessionKey = (i32, Vec<u8>);

/// Every open session by (backend pid, secret key), for CancelRequest, the connection limit
/// and shutdown.
#[derive(Default)]
pub struct Sessions {
    by_key: Mutex<HashMap<SessionKey, Weak<Session>>>,
}

impl Sessions {
    pub fn register(&self, pid: i32, secret: Vec<u8>, session: &Arc<Session>) {
        let mut map = self.by_key.lock().expect("sessions lock poisoned");
        map.retain(|_, s| s.strong_count() > 0);
        map.insert((pid, secret), Arc::downgrade(session));
    }

    /// Cancels what session (pid, secret) is running; an unknown key is ignored, as
    /// PostgreSQL does, so a client cannot probe for sessions.
    pub fn cancel(&self, pid: i32, secret: &[u8]) -> bool {
        let session = self
            .by_key
            .lock()
            .expect("sessions lock poisoned")
            .get(&(pid, secret.to_vec()))
            .and_then(Weak::upgrade);
        session.is_some_and(|s| s.stop(None, StopReason::Cancelled))
    }

    /// Sessions still open.
    pub fn live(&self) -> Vec<Arc<Session>> {
        self.by_key
            .lock()
            .expect("sessions lock poisoned")
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }
}
