//! Connection start: the connection limit, the database name, authentication (trust on
//! loopback, or SCRAM-SHA-256 with the users from the configuration), the ParameterStatus
//! messages and the new session.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, ScramAuth};
use pgwire::api::auth::{
    AuthSource, LoginInfo, Password, ServerParameterProvider, StartupHandler,
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, METADATA_DATABASE, METADATA_USER, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::session::Session;
use super::sqlstate;
use super::{Shared, Slot};
use crate::engine::CATALOG_NAME;
use crate::pg::settings::Settings;
use crate::pg::sqlstate::SqlState;

use crate::pg::DEFAULT_USER;

/// One connection's startup. A fresh one per connection: the SCRAM exchange keeps state.
pub struct Startup {
    shared: Arc<Shared>,
    /// This connection's place: a handshake until authentication makes it a session.
    slot: Arc<Slot>,
    scram: SASLAuthStartupHandler<Parameters>,
    /// Whether this connection logs in with a password, decided from its user name.
    uses_password: std::sync::OnceLock<bool>,
}

impl Startup {
    pub fn new(shared: Arc<Shared>, slot: Arc<Slot>) -> Startup {
        let mut auth = ScramAuth::new(Arc::new(Passwords {
            users: shared.user_verifiers.clone(),
            engine: shared.engine.clone(),
            mock_salts: shared.mock_salts.clone(),
        }));
        auth.set_iterations(SCRAM_ITERATIONS);
        let (login_shared, login_slot) = (shared.clone(), slot.clone());
        let scram = SASLAuthStartupHandler::new(Arc::new(Parameters {
            engine: shared.engine.clone(),
        }))
        .with_login_check(Arc::new(move |user: &str| {
            admit_session(&login_shared, &login_slot, user)
        }))
        .with_scram(auth)
        .with_pid_secret_key_generator(shared.pids.clone());
        Startup {
            shared,
            slot,
            scram,
            uses_password: std::sync::OnceLock::new(),
        }
    }

    /// Whether `user` logs in with a password: always when tenure.toml has users, and for
    /// roles given a password. Without configured users the server listens on loopback
    /// only and trusts the local user and password-less roles, as PostgreSQL's `trust`.
    fn password_login(&self, user: &str) -> bool {
        !self.shared.users.is_empty()
            || self
                .shared
                .engine
                .catalog_version()
                .access
                .role(user)
                .is_some_and(|r| r.password.is_some())
    }

    /// Checks made before authentication, as PostgreSQL makes them.
    fn admit<C: ClientInfo>(&self, client: &C) -> PgWireResult<()> {
        if self.shared.shutting_down() {
            return Err(user_error(sqlstate::fatal(
                SqlState::CannotConnectNow,
                "the database system is shutting down",
            )));
        }
        if self.shared.require_tls && !client.is_secure() {
            return Err(user_error(sqlstate::fatal(
                SqlState::InvalidAuthorizationSpecification,
                "this server requires TLS: connect with sslmode=require (or verify-full)",
            )));
        }
        if self.shared.sessions_open() >= self.shared.max_connections {
            return Err(too_many(&self.shared));
        }
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        // PostgreSQL's default database is the user's name; tenure has one database.
        let database = client
            .metadata()
            .get(METADATA_DATABASE)
            .cloned()
            .unwrap_or_else(|| user.clone());
        if database != CATALOG_NAME && database != user {
            return Err(user_error(sqlstate::fatal(
                SqlState::InvalidCatalogName,
                format!(
                    "database \"{database}\" does not exist; tenure serves one database, \
                     \"{CATALOG_NAME}\""
                ),
            )));
        }
        if !self.password_login(&user) && user != DEFAULT_USER {
            let catalog = self.shared.engine.catalog_version();
            let message = match catalog.access.role(&user) {
                None => format!(
                    "role \"{user}\" does not exist; connect as \"{DEFAULT_USER}\" \
                     (or configure [[users]])"
                ),
                Some(role) if !role.login => {
                    format!("role \"{user}\" is not permitted to log in")
                }
                Some(_) => return Ok(()),
            };
            super::audit::login(&user, &client.socket_addr(), false);
            return Err(user_error(sqlstate::fatal(
                SqlState::InvalidAuthorizationSpecification,
                message,
            )));
        }
        Ok(())
    }

    /// After authentication: the session, registered for CancelRequest.
    fn open_session<C: ClientInfo>(&self, client: &C) -> PgWireResult<()> {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_else(|| DEFAULT_USER.to_string());
        admit_session(&self.shared, &self.slot, &user)?;
        let settings = startup_settings(client, &self.shared.engine);
        let session = Arc::new(Session::new(
            self.shared.engine.new_session_as(&user),
            settings,
        ));
        crate::pg::functions::register_session_functions(session.base(), &session.settings);
        let (pid, secret) = client.pid_and_secret_key();
        self.shared
            .sessions
            .register(pid, secret.to_bytes().to_vec(), &session);
        let _ = self.slot.session.set(Arc::downgrade(&session));
        client.session_extensions().insert(session);
        tracing::info!(
            peer = %client.socket_addr(),
            user = %user,
            pid,
            tls = client.is_secure(),
            "connection authenticated"
        );
        super::audit::login(&user, &client.socket_addr(), true);
        Ok(())
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(startup) = &message {
            // The checks read the startup parameters; the handlers below save them again.
            save_startup_parameters_to_metadata(client, startup);
            self.admit(client)?;
        }
        if let PgWireFrontendMessage::Startup(startup) = &message {
            let user = startup.parameters.get("user").cloned().unwrap_or_default();
            let _ = self.uses_password.set(self.password_login(&user));
        }
        if self.uses_password.get().copied().unwrap_or(true) {
            self.scram.on_startup(client, message).await?;
            if matches!(client.state(), PgWireConnectionState::ReadyForQuery)
                && client.session_extensions().get::<Arc<Session>>().is_none()
            {
                self.open_session(client)?;
            }
        } else if let PgWireFrontendMessage::Startup(startup) = &message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let (pid, secret) =
                pgwire::api::PidSecretKeyGenerator::generate(self.shared.pids.as_ref(), client);
            client.set_pid_and_secret_key(pid, secret);
            self.open_session(client)?;
            let parameters = Parameters {
                engine: self.shared.engine.clone(),
            };
            finish_authentication(client, &parameters).await?;
        }
        Ok(())
    }
}

fn too_many(shared: &Shared) -> PgWireError {
    user_error(sqlstate::fatal(
        SqlState::TooManyConnections,
        format!(
            "sorry, too many clients already (max_connections = {})",
            shared.max_connections
        ),
    ))
}

/// Admits an authenticated login as a session: within max_connections and the role's
/// CONNECTION LIMIT (each checked once per connection).
fn admit_session(shared: &Shared, slot: &Slot, user: &str) -> PgWireResult<()> {
    if !slot.authenticate() {
        return Err(too_many(shared));
    }
    let catalog = shared.engine.catalog_version();
    if let Some(limit) = catalog.access.role(user).and_then(|r| r.connection_limit)
        && !slot.hold_role(user, limit)
    {
        return Err(user_error(sqlstate::fatal(
            SqlState::TooManyConnections,
            format!("too many connections for role \"{user}\" (CONNECTION LIMIT {limit})"),
        )));
    }
    Ok(())
}

/// The session's starting settings: defaults, then the role's (`ALTER ROLE ... SET`), then
/// the client's startup parameters.
fn startup_settings<C: ClientInfo>(client: &C, engine: &crate::engine::Engine) -> Settings {
    let user = client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_else(|| DEFAULT_USER.to_string());
    let catalog = engine.catalog_version();
    let role_settings = catalog
        .access
        .role(&user)
        .map(|r| r.settings.as_slice())
        .unwrap_or_default();
    Settings::for_role(
        &user,
        role_settings.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        client
            .metadata()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// The ParameterStatus messages sent after authentication.
struct Parameters {
    engine: Arc<crate::engine::Engine>,
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        Some(
            startup_settings(client, &self.engine)
                .reported()
                .into_iter()
                .collect(),
        )
    }
}

/// Passwords for SCRAM: pgwire asks for what checks the login of the user logging in: the
/// verifier of a tenure.toml user's password, or a role's stored verifier.
struct Passwords {
    /// (name, verifier) of tenure.toml's users.
    users: Arc<Vec<(String, String)>>,
    engine: Arc<crate::engine::Engine>,
    mock_salts: std::collections::hash_map::RandomState,
}

impl Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Passwords({} users)", self.users.len())
    }
}

#[async_trait]
impl AuthSource for Passwords {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let name = login.user().unwrap_or_default();
        let catalog = self.engine.catalog_version();
        let verifier = match self.users.iter().find(|(user, _)| user == name) {
            Some((_, verifier)) => Some(verifier.as_str()),
            None => catalog
                .access
                .role(name)
                .filter(|role| role.login)
                .and_then(|role| role.password.as_deref()),
        };
        if let Some(secret) = verifier.and_then(|v| crate::access::scram::login_secret(v).ok()) {
            return Ok(secret);
        }
        // As PostgreSQL does, an unknown user (or a role that may not log in) goes through
        // the whole exchange against a verifier no password matches, and fails it as a
        // wrong password does: the replies (and their timing) do not tell which names exist.
        tracing::info!(user = %name, host = %login.host(), "login of an unknown user");
        use std::hash::BuildHasher;
        let salt: Vec<u8> = [0u8, 1]
            .iter()
            .flat_map(|half| self.mock_salts.hash_one((name, half)).to_le_bytes())
            .collect();
        let keys: [u8; 64] = std::array::from_fn(|_| rand::random());
        Ok(Password::scram_verifier(
            salt,
            SCRAM_ITERATIONS,
            &keys[..32],
            &keys[32..],
        ))
    }
}

/// The error for a failed password check, the same for unknown users and wrong passwords.
pub fn password_failed(user: &str) -> PgWireError {
    user_error(sqlstate::fatal(
        SqlState::InvalidPassword,
        format!("password authentication failed for user \"{user}\""),
    ))
}

pub fn user_error(info: pgwire::error::ErrorInfo) -> PgWireError {
    PgWireError::UserError(Box::new(info))
}
