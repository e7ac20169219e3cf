//! The Postgres wire door, for psql, BI tools and every language's
//! Postgres driver. The tenant is the user and its token the password;
//! the password travels in clear text, so it is taken only over loopback
//! or TLS. Queries run in the caller's scoped session (see `pg_queries`).

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{
    ClientInfo, ConnectionHandle, ConnectionManager, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::tokio_rustls::rustls;
pub use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;

use super::gate::Gate;
use super::pg_queries::PgQueries;
use super::sessions::Sessions;
use super::tokens::{Access, Tokens};

/// Postgres wire over the lake's session.
pub struct PgDoor {
    pub sessions: Arc<Sessions>,
    /// `None`: every caller sees everything (loopback only).
    pub tokens: Option<Arc<Tokens>>,
    pub gate: Arc<Gate>,
    pub tls: Option<TlsAcceptor>,
}

/// A TLS acceptor from PEM files: the certificate chain and its key.
pub fn tls(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not make a server configuration")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `door` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    door: PgDoor,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let connections = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        queries: Arc::new(PgQueries::new(door.sessions, door.gate)),
        startup: Arc::new(TokenStartup {
            tokens: door.tokens,
            parameters: DefaultServerParameterProvider::default(),
            pids: RandomPidSecretKeyGenerator::default(),
            connections: connections.clone(),
        }),
        cancel: Arc::new(DefaultCancelHandler::new(connections)),
    });
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a Postgres connection");
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let (handlers, tls) = (handlers.clone(), door.tls.clone());
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!(%peer, error = %e, "a Postgres connection ended with an error");
            }
        });
    }
}

struct Handlers {
    queries: Arc<PgQueries>,
    startup: Arc<TokenStartup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// Checks the password as a token of the user's tenant (an admin token
/// with any user name), and keeps the caller's access on the connection.
struct TokenStartup {
    tokens: Option<Arc<Tokens>>,
    parameters: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
    connections: Arc<ConnectionManager>,
}

impl TokenStartup {
    async fn admit<C>(&self, client: &mut C, access: Access) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, key) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, key.clone());
        // Cancel requests (psql's Ctrl-C) find the connection by these.
        let (handle, guard) = self.connections.register(pid, key);
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert(guard);
        client.session_extensions().insert(access);
        finish_authentication(client, &self.parameters).await
    }
}

fn refuse(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message.into(),
    )))
}

#[async_trait]
impl StartupHandler for TokenStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.tokens.is_none() {
                    return self.admit(client, Access::All).await;
                }
                if !client.is_secure() && !client.socket_addr().ip().is_loopback() {
                    return Err(refuse(
                        "28000",
                        "connect with TLS (sslmode=require): the password is a token and travels in clear text otherwise",
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?.password;
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let access = self
                    .tokens
                    .as_ref()
                    .and_then(|t| t.access(&password))
                    .filter(|a| a.tenant().is_none_or(|t| t == user))
                    .cloned();
                match access {
                    Some(access) => self.admit(client, access).await,
                    None => Err(PgWireError::InvalidPassword(user)),
                }
            }
            _ => Ok(()),
        }
    }
}
