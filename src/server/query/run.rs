//! Running the engine's work for a client: each statement in a task of its own on the CPU
//! runtime, its first answer awaited here (with NOTICE messages for training progress in the
//! meantime), its batches encoded as the client reads them. statement_timeout,
//! CancelRequest and shutdown stop the task ([`Running`]).

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use pgwire::api::ClientInfo;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyResponse, QueryResponse, Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::CopyData;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::batch::Batch;
use super::plan::{Planned, bind, plan, returns_rows, values_empty};
use super::transaction::open_block;
use super::{QueryHandler, engine_error};
use crate::engine::plan_cache::{self, PlanCache, PlanKey};
use crate::engine::{Engine, Output, Progress};
use crate::error::Error;
use crate::pg::sqlstate::SqlState;
use crate::server::session::{Session, StopReason, Transaction};
use crate::server::startup::user_error;
use crate::server::{Shared, copy, encode, sqlstate};
use crate::sql::{Route, Statement, route};

/// Batches a statement's task may compute ahead of the connection sending them.
const BATCHES_AHEAD: usize = 2;

/// What runs on the CPU runtime.
pub(super) enum Work {
    /// A plan made in the session (parameters bound), with PostgreSQL's column names.
    Plan(LogicalPlan, SchemaRef),
    /// A prepared query without parameters: its kept physical plan when still valid under
    /// `key`, else the plan made from `plan` (and kept when it can be).
    Prepared {
        plan: LogicalPlan,
        names: SchemaRef,
        physical: Arc<PlanCache>,
        key: PlanKey,
    },
    /// A statement the engine runs from its syntax.
    Statement(Arc<Statement>),
}

/// A statement's first answer.
pub(super) enum First {
    Command {
        tag: &'static str,
        rows: Option<u64>,
    },
    Rows(SchemaRef),
}

/// A statement's task, from [`QueryHandler::start`].
pub(super) struct Started {
    pub(super) first: oneshot::Receiver<Result<First, Error>>,
    pub(super) batches: mpsc::Receiver<Batch>,
    /// Training progress, for statements the engine runs from their syntax.
    pub(super) progress: Option<mpsc::UnboundedReceiver<Progress>>,
    pub(super) task: AbortHandle,
}

impl QueryHandler {
    /// Runs a statement for the engine: from its plan (made again when out of date, bound to
    /// the parameters, kept for re-runs) or from its syntax.
    pub(super) async fn run<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        statement: &Arc<Statement>,
        planned: Option<&Planned>,
        parameters: Option<ParamValues>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let route = Route::of(statement);
        if session.transaction() == Transaction::Open && route.outside_blocks_only() {
            // Model versions and table upkeep are not part of the catalog a block commits.
            let what = if route == Route::Model {
                "CREATE MODEL and DROP MODEL"
            } else {
                "VACUUM and OPTIMIZE"
            };
            let mut info = sqlstate::error(
                SqlState::ActiveSqlTransaction,
                format!("{what} cannot run inside a transaction block"),
            );
            info.hint =
                Some("run it outside BEGIN ... COMMIT (autocommit mode in your driver)".into());
            return Err(user_error(info));
        }
        // Also here, not only before planning: a statement prepared before BEGIN
        // may run inside the block.
        let writes_in_block =
            session.transaction() == Transaction::Open && route::writes_in_block(statement);
        if writes_in_block {
            open_block(&self.shared.engine, session).await?;
        }
        // A plan made before a change to the catalog, or outside the transaction
        // block that now runs it, is made again (PostgreSQL re-plans such
        // statements too).
        let replanned;
        let planned = match planned {
            Some(planned) if !planned.current(&self.shared.engine, session) => {
                replanned = plan(&self.shared.engine, session, statement)
                    .await
                    .map_err(engine_error)?;
                replanned.as_ref()
            }
            planned => planned,
        };
        let work = match (planned, parameters) {
            (Some(planned), parameters) => {
                let plan = match parameters {
                    Some(values) if !planned.parameters.is_empty() => bind(planned, &values)?,
                    _ if returns_rows(&planned.plan) => {
                        return self
                            .execute(
                                client,
                                session,
                                Work::Prepared {
                                    plan: planned.plan.clone(),
                                    names: planned.schema.clone(),
                                    physical: planned.physical.clone(),
                                    key: session.plan_key(),
                                },
                                format,
                                None,
                            )
                            .await;
                    }
                    _ => planned.plan.clone(),
                };
                Work::Plan(plan, planned.schema.clone())
            }
            (None, Some(values)) if !values_empty(&values) => {
                return Err(user_error(sqlstate::error(
                    SqlState::FeatureNotSupported,
                    "this statement does not take parameters",
                )));
            }
            (None, _) => Work::Statement(with_session_device(session, statement)),
        };
        let queries = matches!(&work, Work::Plan(plan, _) if returns_rows(plan));
        let response = self.execute(client, session, work, format, None).await;
        if writes_in_block && response.is_ok() {
            session.note_write();
        }
        if !queries {
            session.new_generation();
        }
        response
    }

    /// Starts `work` on the CPU runtime. Its first answer (a command's tag, or a result's
    /// columns) goes out once the first batches are queued or the work has to wait; the
    /// batches follow through a channel of [`BATCHES_AHEAD`]. Shared by statements and
    /// cursors.
    pub(super) fn start(&self, session: &Session, work: Work) -> Started {
        let (first_tx, first_rx) = oneshot::channel::<Result<First, Error>>();
        let (batch_tx, batch_rx) = mpsc::channel::<Batch>(BATCHES_AHEAD);
        // Only statements the engine runs from their syntax (CREATE MODEL) report progress;
        // a channel for the others would cost a wake-up when it closes.
        let (progress_tx, progress_rx) = match work {
            Work::Statement(_) => {
                let (tx, rx) = mpsc::unbounded_channel::<Progress>();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        let engine = self.shared.engine.clone();
        let ctx = session.ctx();
        let task = self.shared.cpu.spawn(async move {
            let output = match work {
                Work::Plan(plan, names) => engine
                    .execute_plan_in(&ctx, plan)
                    .await
                    .map(|output| (output, Some(names))),
                Work::Prepared {
                    plan,
                    names,
                    physical,
                    key,
                } => run_prepared(&engine, &ctx, plan, &physical, key)
                    .await
                    .map(|output| (output, Some(names))),
                Work::Statement(statement) => {
                    let statement = Arc::unwrap_or_clone(statement);
                    engine
                        .execute_in(&ctx, statement, progress_tx.as_ref())
                        .await
                        .map(|output| (output, None))
                }
            };
            drop(progress_tx);
            match output {
                Err(e) => {
                    let _ = first_tx.send(Err(e));
                }
                Ok((Output::Command { tag, rows }, _)) => {
                    let _ = first_tx.send(Ok(First::Command { tag, rows }));
                }
                Ok((Output::Rows(mut stream), names)) => {
                    // The planned names, unless the engine answered with other columns.
                    let schema = match names {
                        Some(names) if names.fields().len() == stream.schema().fields().len() => {
                            names
                        }
                        _ => stream.schema(),
                    };
                    // The answer goes out once the first batches are in the channel, or as
                    // soon as the query has to wait: a small result then reaches the
                    // connection in one wake-up, a large one starts streaming at once.
                    let mut first_tx = Some(first_tx);
                    let mut queued = 0;
                    loop {
                        let item = match stream.next().now_or_never() {
                            Some(item) if queued < BATCHES_AHEAD => item,
                            ready => {
                                if let Some(tx) = first_tx.take()
                                    && tx.send(Ok(First::Rows(schema.clone()))).is_err()
                                {
                                    return;
                                }
                                match ready {
                                    Some(item) => item,
                                    None => stream.next().await,
                                }
                            }
                        };
                        let (message, last) = match item {
                            Some(Ok(batch)) => (Batch::Next(Ok(batch)), false),
                            Some(Err(e)) => (Batch::Next(Err(e.into())), true),
                            None => (Batch::Done, true),
                        };
                        if batch_tx.send(message).await.is_err() {
                            return;
                        }
                        queued += 1;
                        if last {
                            break;
                        }
                    }
                    if let Some(tx) = first_tx.take() {
                        let _ = tx.send(Ok(First::Rows(schema)));
                    }
                }
            }
        });
        Started {
            first: first_rx,
            batches: batch_rx,
            progress: progress_rx,
            task: task.abort_handle(),
        }
    }

    /// Runs `work` on the CPU runtime and waits until it has a first answer: a command's
    /// tag, or a result's schema (its rows then stream through the returned response, as
    /// DataRows, or as CopyData for `COPY ... TO STDOUT` when `copy` is given).
    pub(super) async fn execute<C>(
        &self,
        client: &mut C,
        session: &Arc<Session>,
        work: Work,
        format: &Format,
        copy: Option<&copy::CopyFormat>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Started {
            first: mut first_rx,
            batches: batch_rx,
            progress: mut progress_rx,
            task,
        } = self.start(session, work);
        let (id, stop_signal) = session.start(task);
        let guard = Running::new(self.shared.clone(), session.clone(), id, stop_signal);
        if let Some(timeout) = session.settings().statement_timeout() {
            let session = Arc::downgrade(session);
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(session) = session.upgrade() {
                    session.stop(Some(id), StopReason::Timeout);
                }
            });
        }

        // Training sends progress while it runs: forward it as NOTICE messages. A stop
        // (cancel, timeout, shutdown, hang-up) answers the client at once: the task may be
        // inside a stretch of work that does not yield (planning, an optimizer pass), where
        // its abort takes effect only later.
        let first = loop {
            tokio::select! {
                first = &mut first_rx => break first,
                () = guard.stop_signal.notified() => return Err(guard.stopped_error()),
                Some(progress) = async {
                    match progress_rx.as_mut() {
                        Some(progress_rx) => progress_rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.notice(client, "NOTICE", SqlState::SuccessfulCompletion, &progress.to_string()).await?;
                    client.flush().await?;
                }
            }
        };
        match first {
            Ok(Ok(First::Command { tag, rows })) => {
                drop(guard);
                let tag = match (tag, rows) {
                    ("INSERT", Some(n)) => Tag::new("INSERT").with_oid(0).with_rows(n as usize),
                    (tag, Some(n)) => Tag::new(tag).with_rows(n as usize),
                    (tag, None) => Tag::new(tag),
                };
                Ok(Response::Execution(tag))
            }
            Ok(Ok(First::Rows(schema))) => {
                let options = Arc::new(session.settings().format_options());
                if let Some(copy) = copy {
                    let column_format = if copy.kind == copy::Kind::Binary {
                        Format::UnifiedBinary
                    } else {
                        Format::UnifiedText
                    };
                    let fields = Arc::new(crate::server::encode::pg_fields(
                        &schema,
                        &column_format,
                        Some(options),
                    )?);
                    let header: Vec<CopyData> = copy::header(&fields, copy).into_iter().collect();
                    let code = copy.code();
                    let copy = copy.clone();
                    let columns = fields.len();
                    let data = encoded_stream(batch_rx, guard, header, move |batch| {
                        match copy::encode_batch(&fields, &copy, &batch) {
                            Ok(rows) => Box::new(rows.into_iter().map(Ok)),
                            Err(e) => Box::new(std::iter::once(Err(e))),
                        }
                    });
                    return Ok(Response::CopyOut(CopyResponse::new(code, columns, data)));
                }
                let fields = Arc::new(crate::server::encode::pg_fields(
                    &schema,
                    format,
                    Some(options),
                )?);
                let encoding = fields.clone();
                let rows =
                    encoded_stream(
                        batch_rx,
                        guard,
                        Vec::new(),
                        move |batch| match encode::data_rows(&encoding, &batch) {
                            Ok(rows) => Box::new(rows.into_iter().map(Ok)),
                            Err(e) => Box::new(std::iter::once(Err(e))),
                        },
                    );
                Ok(Response::Query(QueryResponse::new(fields, rows)))
            }
            Ok(Err(e)) => Err(engine_error(e)),
            // The task was aborted (cancel, timeout) or panicked before answering.
            Err(_) => Err(guard.stopped_error()),
        }
    }

    /// A NOTICE (or WARNING) message to the client.
    pub(super) async fn notice<C>(
        &self,
        client: &mut C,
        severity: &str,
        state: SqlState,
        message: &str,
    ) -> PgWireResult<()>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let info = ErrorInfo::new(
            severity.to_string(),
            state.code().to_string(),
            message.to_string(),
        );
        client
            .feed(PgWireBackendMessage::NoticeResponse(info.into()))
            .await?;
        Ok(())
    }
}

/// `SET tenure.device = 'cuda:0'` (or 'cpu') applies to the session's trainings that do not
/// name a device in their OPTIONS; unset, the engine trains on the server's device.
fn with_session_device(session: &Session, statement: &Arc<Statement>) -> Arc<Statement> {
    let Statement::CreateModel(create) = statement.as_ref() else {
        return statement.clone();
    };
    let Some(device) = session
        .settings()
        .changed("tenure.device")
        .map(str::to_string)
    else {
        return statement.clone();
    };
    let mut create = create.clone();
    create.default_device(&device);
    Arc::new(Statement::CreateModel(create))
}

/// Runs a prepared query without parameters from its kept physical plan when that is still
/// valid, else plans it (keeping the plan when it can be run again).
async fn run_prepared(
    engine: &Engine,
    ctx: &SessionContext,
    plan: LogicalPlan,
    physical: &PlanCache,
    key: PlanKey,
) -> Result<Output, Error> {
    if let Some((kept, task)) = physical.get(&key) {
        return engine.execute_physical(kept, task);
    }
    // The snapshots before planning: a commit in between makes the kept plan miss next
    // time rather than read stale data.
    let snapshots = plan_cache::snapshots(&plan);
    let (made, task) = engine.physical_plan_in(ctx, &plan).await?;
    if let Some(snapshots) = snapshots
        && plan_cache::rerunnable(&made)
    {
        physical.put(key, made.clone(), task.clone(), snapshots);
    }
    engine.execute_physical(made, task)
}

/// One running statement, until its rows are sent or dropped: keeps the server's count of
/// running statements (shutdown waits for it) and clears the session's cancel slot.
struct Running {
    shared: Arc<Shared>,
    session: Arc<Session>,
    id: u64,
    /// Told when the statement is stopped (`Session::stop`).
    stop_signal: Arc<tokio::sync::Notify>,
}

impl Running {
    fn new(
        shared: Arc<Shared>,
        session: Arc<Session>,
        id: u64,
        stop_signal: Arc<tokio::sync::Notify>,
    ) -> Running {
        shared.running.fetch_add(1, Ordering::SeqCst);
        Running {
            stop_signal,
            shared,
            session,
            id,
        }
    }

    /// The error for a statement that ended without finishing.
    fn stopped_error(&self) -> PgWireError {
        match self.session.stop_reason(self.id) {
            Some(reason) => user_error(sqlstate::error(
                if reason == StopReason::Shutdown {
                    SqlState::AdminShutdown
                } else {
                    SqlState::QueryCanceled
                },
                reason.message(),
            )),
            None => user_error(sqlstate::error(
                SqlState::InternalError,
                "the statement ended unexpectedly",
            )),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.session.finish(self.id);
        if self.shared.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.idle.notify_waiters();
        }
    }
}

/// One batch's messages.
type Encoded<T> = Box<dyn Iterator<Item = PgWireResult<T>> + Send>;

/// The result's messages as the client receives them (DataRow or CopyData), encoded batch
/// by batch with `encode`.
fn encoded_stream<T: Send + 'static>(
    batches: mpsc::Receiver<Batch>,
    running: Running,
    first: Vec<T>,
    encode: impl FnMut(RecordBatch) -> Encoded<T> + Send + 'static,
) -> impl Stream<Item = PgWireResult<T>> + Send {
    struct State<T, E> {
        batches: mpsc::Receiver<Batch>,
        pending: Option<Box<dyn Iterator<Item = PgWireResult<T>> + Send>>,
        running: Option<Running>,
        encode: E,
    }
    let state = State {
        batches,
        pending: Some(Box::new(first.into_iter().map(Ok))),
        running: Some(running),
        encode,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(pending) = state.pending.as_mut() {
                if let Some(item) = pending.next() {
                    return Some((item, state));
                }
                state.pending = None;
            }
            let running = state.running.as_ref()?;
            // A stop answers at once here too: the statement's tasks may be in work that
            // does not yield, where their abort takes effect only later.
            let next = tokio::select! {
                next = state.batches.recv() => next,
                () = running.stop_signal.notified() => None,
            };
            match next {
                Some(Batch::Next(Ok(batch))) => state.pending = Some((state.encode)(batch)),
                Some(Batch::Next(Err(e))) => {
                    state.running = None;
                    return Some((Err(engine_error(e)), state));
                }
                // Dropping the state ends the statement (its `Running` guard).
                Some(Batch::Done) => return None,
                None => {
                    let error = running.stopped_error();
                    state.running = None;
                    return Some((Err(error), state));
                }
            }
        }
    })
}
