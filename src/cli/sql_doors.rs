//! The SQL doors of `docstream serve`: `--flight-addr`, `--pg-addr`, and
//! `--sql-only` to serve them alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use super::resolved::Resolved;
use super::serve::{bind, resolve};
use super::signal::shutdown_signal;
use crate::doors::flight::{self, FlightDoor};
use crate::doors::gate::Gate;
use crate::doors::postgres::{self, PgDoor, TlsAcceptor};
use crate::doors::sessions::Sessions;
use crate::doors::tokens::Tokens;
use crate::serve::config::ServeConfig;

#[derive(Debug, clap::Args)]
pub struct DoorArgs {
    /// Also serve Arrow Flight SQL on this address (ADBC and JDBC
    /// drivers; bearer token, or basic auth with the token as password).
    #[arg(long, value_name = "HOST:PORT")]
    pub flight_addr: Option<String>,

    /// Also serve the Postgres wire protocol on this address (psql, BI
    /// tools, drivers; the tenant as user, its token as password). Off
    /// loopback it needs TLS: [serve] pg_tls_cert and pg_tls_key.
    #[arg(long, value_name = "HOST:PORT")]
    pub pg_addr: Option<String>,
}

/// How often a `--sql-only` server looks for new table versions.
const SQL_ONLY_REFRESH: Duration = Duration::from_secs(5);

/// The SQL doors' addresses, resolved, and the Postgres door's TLS.
pub(super) struct Doors {
    flight: Option<SocketAddr>,
    pg: Option<SocketAddr>,
    pg_tls: Option<TlsAcceptor>,
}

impl Doors {
    /// Checked before anything starts: a door that may not open stops
    /// the command.
    pub(super) async fn resolve(
        args: &DoorArgs,
        tokens: bool,
        config: &ServeConfig,
    ) -> Result<Self> {
        let mut resolved = Self {
            flight: None,
            pg: None,
            pg_tls: None,
        };
        if let Some(a) = &args.flight_addr {
            resolved.flight = Some(resolve(a, "--flight-addr", tokens).await?);
        }
        if let Some(a) = &args.pg_addr {
            let addr = resolve(a, "--pg-addr", tokens).await?;
            resolved.pg_tls = match (&config.pg_tls_cert, &config.pg_tls_key) {
                (Some(cert), Some(key)) => Some(postgres::tls(cert.as_ref(), key.as_ref())?),
                (None, None) => None,
                _ => bail!("[serve] pg_tls_cert and pg_tls_key go together: give both, or neither"),
            };
            if resolved.pg_tls.is_none() && !addr.ip().is_loopback() {
                bail!(
                    "Postgres clients send the token as a clear-text password, so --pg-addr {addr} needs TLS: set [serve] pg_tls_cert and pg_tls_key, or listen on loopback"
                );
            }
            resolved.pg = Some(addr);
        }
        Ok(resolved)
    }

    /// Binds each door and serves it in the background until shutdown.
    pub(super) async fn open(
        &self,
        sessions: &Arc<Sessions>,
        tokens: &Option<Arc<Tokens>>,
        gate: &Arc<Gate>,
    ) -> Result<()> {
        if let Some(addr) = self.flight {
            let listener = bind(addr, "--flight-addr").await?;
            println!("Arrow Flight SQL on grpc://{}", listener.local_addr()?);
            let door = FlightDoor {
                sessions: sessions.clone(),
                tokens: tokens.clone(),
                gate: gate.clone(),
            };
            tokio::spawn(async move {
                if let Err(e) = flight::serve(listener, door, shutdown_signal()).await {
                    tracing::error!(error = %format!("{e:#}"), "the Flight SQL door stopped");
                }
            });
        }
        if let Some(addr) = self.pg {
            let tls = self.pg_tls.clone();
            let listener = bind(addr, "--pg-addr").await?;
            println!(
                "Postgres wire on {}{}",
                listener.local_addr()?,
                if tls.is_some() { " (TLS)" } else { "" }
            );
            let door = PgDoor {
                sessions: sessions.clone(),
                tokens: tokens.clone(),
                gate: gate.clone(),
                tls,
            };
            tokio::spawn(async move {
                if let Err(e) = postgres::serve(listener, door, shutdown_signal()).await {
                    tracing::error!(error = %format!("{e:#}"), "the Postgres door stopped");
                }
            });
        }
        Ok(())
    }
}

/// `serve --sql-only`: the doors over the lake, following its versions.
pub(super) async fn sql_only(
    r: &Resolved,
    doors: Doors,
    tokens: Option<Arc<Tokens>>,
) -> Result<()> {
    if doors.flight.is_none() && doors.pg.is_none() {
        bail!("--sql-only serves the SQL doors: give --flight-addr, --pg-addr or both");
    }
    let p = &r.pipeline;
    let models = r.models(true, true, false)?;
    let sessions = Arc::new(Sessions::new(
        r.lake.clone(),
        r.storage.clone(),
        models.embedder,
        p.analytics.clone(),
    ));
    let gate = Arc::new(gate(&p.serve));
    doors.open(&sessions, &tokens, &gate).await?;
    println!("docstream serving SQL over lake {}", r.lake);
    let refresh = async {
        let mut tick = tokio::time::interval(SQL_ONLY_REFRESH);
        loop {
            tick.tick().await;
            sessions.mark_stale();
        }
    };
    tokio::select! {
        _ = refresh => Ok(()),
        _ = shutdown_signal() => Ok(()),
    }
}

/// The query limits of `config`, shared by every door.
pub(super) fn gate(config: &ServeConfig) -> Gate {
    Gate::new(
        config.max_concurrent_queries,
        config.query_timeout(),
        config.max_result_bytes(),
    )
}
