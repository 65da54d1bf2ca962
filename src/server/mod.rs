//! The PostgreSQL wire-protocol server (`tenure serve`).
//!
//! Built on `pgwire` (the protocol), `arrow-pg` (Arrow values to PostgreSQL's text and
//! binary formats, parameters back) and `datafusion-pg-catalog` (pg_catalog and its SQL
//! rewrites, installed by the engine). What tenure adds lives here:
//! - [`startup`]: connection limit, database name, trust or SCRAM authentication, the
//!   session;
//! - [`query`]: the simple and extended protocols over the engine, execution off the
//!   connection's task, cancellation, statement_timeout, NOTICE progress;
//! - [`session`]: per-connection state (settings from [`crate::pg::settings`], the
//!   transaction block, cursors, the running statement);
//! - [`copy`]: COPY TO STDOUT / FROM STDIN;
//! - [`encode`]: result rows in PostgreSQL's text and binary formats, batch by batch;
//! - [`sqlstate`]: error codes.

pub mod audit;
mod copy;
mod cursor;
pub mod encode;
mod query;
mod session;
pub mod sqlstate;
mod startup;

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{ClientInfo, ErrorHandler, PgWireServerHandlers, RandomPidSecretKeyGenerator};
use pgwire::error::PgWireError;
use pgwire::messages::cancel::CancelRequest;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::config::{Config, User};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// How long a shutdown waits for running statements before it stops them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What every connection shares.
pub struct Shared {
    engine: Arc<Engine>,
    /// The runtime statements execute on, apart from the connections' tasks.
    cpu: tokio::runtime::Handle,
    compat: PostgresCompatibilityParser,
    sessions: session::Sessions,
    users: Vec<User>,
    /// The SCRAM verifiers of `users`, made once at start: every login is then checked
    /// against a verifier, the same work whoever logs in.
    user_verifiers: Arc<Vec<(String, String)>>,
    max_connections: usize,
    pids: Arc<RandomPidSecretKeyGenerator>,
    /// Connections still starting up (TLS, startup message, authentication).
    handshakes: AtomicUsize,
    /// Authenticated sessions; max_connections bounds these.
    sessions_open: AtomicUsize,
    /// Keys of the salts an unknown user's login is answered with: the same salt for the
    /// same name (as a real role's is), unpredictable, new with each start.
    mock_salts: std::collections::hash_map::RandomState,
    /// Sessions per role with a CONNECTION LIMIT.
    role_sessions: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    require_tls: bool,
    authentication_timeout: Duration,
    log_statement: crate::config::LogStatement,
    /// Statements running or streaming rows; shutdown waits for them.
    running: AtomicUsize,
    idle: Notify,
    shutting_down: AtomicBool,
}

impl Shared {
    fn sessions_open(&self) -> usize {
        self.sessions_open.load(Ordering::SeqCst)
    }

    /// Most connections that may be starting up at once; past it a new socket is closed at
    /// once. Handshakes end within authentication_timeout, so idle sockets cannot hold
    /// these for long, and they never take the places of authenticated sessions.
    fn max_handshakes(&self) -> usize {
        (self.max_connections * 2).max(64)
    }

    fn authentication(&self) -> &'static str {
        if self.users.is_empty() {
            "trust (loopback)"
        } else {
            "scram-sha-256"
        }
    }

    fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// A server's settings, taken from the configuration.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: String,
    pub max_connections: usize,
    pub users: Vec<User>,
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    pub require_tls: bool,
    pub authentication_timeout: Duration,
    /// Which statements the audit log records (see [`audit`]).
    pub log_statement: crate::config::LogStatement,
}

impl ServerOptions {
    pub fn from_config(config: &Config) -> ServerOptions {
        ServerOptions {
            listen: config.listen.clone(),
            max_connections: config.max_connections,
            users: config.users.clone(),
            tls: config.tls_cert.clone().zip(config.tls_key.clone()),
            require_tls: config.require_tls,
            authentication_timeout: config.authentication_timeout,
            log_statement: config.log_statement,
        }
    }
}

/// A bound, not yet serving, server: binding first lets callers learn the address (port 0
/// picks a free one) before connections arrive.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
}

impl Server {
    /// Checks the options and binds the listening socket. `cpu` is the runtime statements
    /// run on.
    pub async fn bind(
        engine: Arc<Engine>,
        options: &ServerOptions,
        cpu: tokio::runtime::Handle,
    ) -> Result<Server> {
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host(&options.listen)
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "cannot resolve listen address {}: {e}",
                    options.listen
                ))
            })?
            .collect();
        if options.users.is_empty()
            && let Some(address) = addresses.iter().find(|a| !a.ip().is_loopback())
        {
            return Err(Error::Config(format!(
                "refusing to listen on {address} without authentication: clients there \
                 would be trusted. Add password users ([[users]] name/password in \
                 tenure.toml) or listen on 127.0.0.1"
            )));
        }
        let tls = match &options.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        let listener = TcpListener::bind(addresses.as_slice())
            .await
            .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", options.listen)))?;
        let shared = Arc::new(Shared {
            engine,
            cpu,
            compat: PostgresCompatibilityParser::new(),
            sessions: Default::default(),
            users: options.users.clone(),
            user_verifiers: Arc::new(
                options
                    .users
                    .iter()
                    .map(|u| (u.name.clone(), crate::access::scram::verifier(&u.password)))
                    .collect(),
            ),
            max_connections: options.max_connections,
            pids: Arc::new(RandomPidSecretKeyGenerator::default()),
            handshakes: AtomicUsize::new(0),
            sessions_open: AtomicUsize::new(0),
            role_sessions: Default::default(),
            mock_salts: std::collections::hash_map::RandomState::new(),
            require_tls: options.require_tls,
            authentication_timeout: options.authentication_timeout,
            log_statement: options.log_statement,
            running: AtomicUsize::new(0),
            idle: Notify::new(),
            shutting_down: AtomicBool::new(false),
        });
        Ok(Server {
            listener,
            tls,
            shared,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` completes; then stops accepting, lets running statements
    /// finish (up to 30 seconds, then stops them) and returns.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let queries = Arc::new(query::QueryHandler {
            shared: self.shared.clone(),
        });
        tracing::info!(
            listen = %self.listener.local_addr()?,
            tls = self.tls.is_some(),
            require_tls = self.shared.require_tls,
            authentication = self.shared.authentication(),
            max_connections = self.shared.max_connections,
            "tenure is accepting PostgreSQL connections"
        );
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of descriptors and the like: log, back off, go on.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Some(slot) = Slot::handshake(&self.shared) else {
                        tracing::warn!(%peer, "connection refused: too many clients starting up");
                        continue;
                    };
                    let _ = socket.set_nodelay(true);
                    let handlers = Arc::new(Handlers {
                        shared: self.shared.clone(),
                        queries: queries.clone(),
                        slot: slot.clone(),
                    });
                    tokio::spawn(serve_connection(socket, peer, self.tls.clone(), handlers, slot));
                }
            }
        }
        self.drain().await;
        Ok(())
    }

    async fn drain(&self) {
        let shared = &self.shared;
        shared.shutting_down.store(true, Ordering::SeqCst);
        let running = shared.running.load(Ordering::SeqCst);
        tracing::info!(
            running,
            "shutting down: no new connections; waiting for running statements"
        );
        let wait = async {
            while shared.running.load(Ordering::SeqCst) > 0 {
                let idle = shared.idle.notified();
                if shared.running.load(Ordering::SeqCst) == 0 {
                    break;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, wait).await.is_err() {
            tracing::warn!("statements still running after {DRAIN_TIMEOUT:?}; stopping them");
            for session in shared.sessions.live() {
                session.stop(None, session::StopReason::Shutdown);
            }
        }
    }
}

/// One connection from accept to close. The slot it holds is released on every way out
/// (the end of the protocol loop, an error, a panic, the authentication timeout), since
/// dropping it releases it.
async fn serve_connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    handlers: Arc<Handlers>,
    slot: Arc<Slot>,
) {
    use futures::FutureExt;
    tracing::debug!(%peer, "connection opened");
    let timeout = handlers.shared.authentication_timeout;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    let watch_slot = slot.clone();
    let connection =
        std::panic::AssertUnwindSafe(pgwire::tokio::process_socket(socket, tls, handlers))
            .catch_unwind();
    let unauthenticated_for_too_long = async {
        tokio::time::sleep(timeout).await;
        if slot.authenticated() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        ended = connection => match ended {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(%peer, "connection ended with an error: {e}"),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::warn!(%peer, "connection closed after a panic in its task: {message}");
            }
        },
        () = unauthenticated_for_too_long => {
            tracing::info!(%peer, ?timeout, "connection closed: not authenticated within authentication_timeout");
        }
        () = watch_for_hangup(fd, &watch_slot) => {
            tracing::info!(%peer, "client connection lost while a statement ran; statement stopped");
        }
    }
    drop(slot);
    tracing::debug!(%peer, "connection closed");
}

/// How often a connection whose session runs a statement checks that its client is still
/// there (PostgreSQL's client_connection_check_interval). Nothing reads the socket while a
/// statement computes its first rows, so without the check a client that went away would
/// leave its statement running to the end.
const CLIENT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Completes once the peer of `fd` has hung up while the slot's session ran a statement,
/// after stopping that statement. `fd` stays open for as long as this is polled: the
/// connection's future owns the socket and is dropped only after this one.
async fn watch_for_hangup(fd: std::os::fd::RawFd, slot: &Slot) {
    let mut ticks = tokio::time::interval(CLIENT_CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(session) = slot.session.get().and_then(std::sync::Weak::upgrade) else {
            continue;
        };
        if !session.is_running() || !peer_hung_up(fd) {
            continue;
        }
        session.stop(None, session::StopReason::Disconnected);
        return;
    }
}

/// Whether the peer closed the connection (POLLRDHUP), or it failed; never blocks.
fn peer_hung_up(fd: std::os::fd::RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd and a zero timeout; `fd` is the connection's open socket.
    let ready = unsafe { libc::poll(&raw mut poll, 1, 0) };
    ready > 0 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// A connection's place: first among the handshakes, then (once authenticated) among the
/// sessions that max_connections bounds. Dropping it gives the place back.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    authenticated: AtomicBool,
    /// The session, once authenticated (for the hang-up check).
    pub(crate) session: std::sync::OnceLock<std::sync::Weak<session::Session>>,
    /// The role whose CONNECTION LIMIT this connection counts against.
    limited_role: std::sync::OnceLock<String>,
}

impl Slot {
    /// A place among the handshakes, if there is one.
    fn handshake(shared: &Arc<Shared>) -> Option<Arc<Slot>> {
        let max = shared.max_handshakes();
        shared
            .handshakes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Arc::new(Slot {
            shared: shared.clone(),
            authenticated: AtomicBool::new(false),
            session: std::sync::OnceLock::new(),
            limited_role: std::sync::OnceLock::new(),
        }))
    }

    /// Moves the connection from the handshakes to the sessions; false when
    /// max_connections sessions are open already.
    pub(crate) fn authenticate(&self) -> bool {
        let shared = &self.shared;
        let max = shared.max_connections;
        if self.authenticated() {
            return true;
        }
        if shared
            .sessions_open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return false;
        }
        shared.handshakes.fetch_sub(1, Ordering::SeqCst);
        self.authenticated.store(true, Ordering::SeqCst);
        true
    }

    fn authenticated(&self) -> bool {
        self.authenticated.load(Ordering::SeqCst)
    }

    /// Counts this connection against `role`'s CONNECTION LIMIT; false when the role holds
    /// `limit` sessions already.
    pub(crate) fn hold_role(&self, role: &str, limit: u32) -> bool {
        if self.limited_role.get().is_some() {
            return true;
        }
        let mut held = self
            .shared
            .role_sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let count = held.entry(role.to_string()).or_default();
        if *count >= limit {
            return false;
        }
        *count += 1;
        let _ = self.limited_role.set(role.to_string());
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let counter = if self.authenticated() {
            &self.shared.sessions_open
        } else {
            &self.shared.handshakes
        };
        counter.fetch_sub(1, Ordering::SeqCst);
        if let Some(role) = self.limited_role.get() {
            let mut held = self
                .shared
                .role_sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(count) = held.get_mut(role) {
                *count = count.saturating_sub(1);
            }
        }
    }
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor> {
    let open = |path: &std::path::Path| {
        File::open(path)
            .map(BufReader::new)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
    };
    let certs = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::Config(format!(
                "{}: not a PEM certificate chain: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| Error::Config(format!("{}: {e}", key.display())))?
        .ok_or_else(|| Error::Config(format!("{}: no private key found", key.display())))?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(format!("TLS certificate and key do not match: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The handlers of one connection (pgwire asks for them once per connection).
struct Handlers {
    shared: Arc<Shared>,
    queries: Arc<query::QueryHandler>,
    slot: Arc<Slot>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::new(startup::Startup::new(
            self.shared.clone(),
            self.slot.clone(),
        ))
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        Arc::new(query::copy_in::CopyInHandler {
            shared: self.shared.clone(),
        })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(Cancel {
            shared: self.shared.clone(),
        })
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }
}

/// CancelRequest: stops what the session named by (pid, secret key) is running.
struct Cancel {
    shared: Arc<Shared>,
}

#[async_trait]
impl CancelHandler for Cancel {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let cancelled = self
            .shared
            .sessions
            .cancel(request.pid, &request.secret_key.to_bytes());
        tracing::info!(pid = request.pid, cancelled, "cancel request");
    }
}

/// Logs errors sent to clients; messages never carry secrets (passwords are not echoed).
/// A failed password check gets the same words whether or not the user exists (pgwire
/// names the user of the SCRAM message, which clients leave empty).
struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C: ClientInfo>(&self, client: &C, error: &mut PgWireError) {
        if let PgWireError::InvalidPassword(_) = error {
            let user = client
                .metadata()
                .get(pgwire::api::METADATA_USER)
                .cloned()
                .unwrap_or_default();
            audit::login(&user, &client.socket_addr(), false);
            *error = startup::password_failed(&user);
        }
        tracing::info!(peer = %client.socket_addr(), "error: {error}");
    }
}
