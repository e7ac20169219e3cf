//! `docstream serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};
use tokio::sync::{watch, Notify};

use super::resolved::{extraction_isolation, Resolved};
use super::signal::shutdown_signal;
use super::sql_doors::{gate, sql_only, DoorArgs, Doors};
use super::stage_args::StageArgs;
use crate::doors::sessions::Sessions;
use crate::doors::tokens::Tokens;
#[cfg(feature = "kafka")]
use crate::jobs::publish::Publisher;
#[cfg(feature = "kafka")]
use crate::jobs::upload_publisher::UploadPublisher;
use crate::jobs::uploads::UploadLander;
use crate::serve::jobs::JobBoard;
use crate::serve::state::{AppState, Metrics};
use crate::serve::{erasure_channel, serve, Landing};
use crate::sources::object_policy::ObjectPolicy;
use crate::sources::object_reader::ObjectReader;
use crate::sources::spool::Spool;

/// Run docstream as a service: an HTTP API and a web page for uploads,
/// live progress, documents, search and answers.
///
/// Each upload is stored durably before the server answers 202, then lands
/// through the same stages as `backfill`, in batches that share model
/// calls; a server killed at any moment lands every accepted upload after
/// a restart, once. With --tokens, each token sees one tenant's documents
/// (or all, for "*"); without, the server listens on loopback only.
/// Limits are set in the pipeline file's [serve] section.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream serve                                    # http://127.0.0.1:8080/, ./lake\n  \
    docstream serve --stages documents,chunks          # no model calls\n  \
    docstream serve --addr 0.0.0.0:8080 --tokens tokens.toml --lake s3://lake/\n  \
    curl -F file=@contract.pdf http://127.0.0.1:8080/v1/documents\n  \
    curl -N http://127.0.0.1:8080/v1/jobs/$JOB/events\n  \
    docstream serve --brokers kafka:9092 --topic documents   # workers: docstream ingest --topic documents\n  \
    curl 'http://127.0.0.1:8080/v1/search?q=vendor+delay&k=5'\n  \
    curl -H 'Authorization: Bearer s3cret-a' -d '{\"sql\": \"SELECT count(*) FROM documents\"}' \\\n       -H 'content-type: application/json' http://127.0.0.1:8080/v1/query\n  \
    docstream serve --flight-addr 127.0.0.1:50051      # Arrow Flight SQL for ADBC, JDBC, pandas, Polars\n  \
    docstream serve --pg-addr 127.0.0.1:5433 --tokens tokens.toml\n  \
    docstream serve --sql-only --flight-addr 127.0.0.1:50051 --lake s3://lake/   # SQL doors alone\n  \
    psql \"host=127.0.0.1 port=5433 user=acme password=s3cret-a\" -c 'SELECT count(*) FROM documents'\n\n\
    tokens.toml:\n  \
    [[token]]\n  \
    token = \"s3cret-a\"        # or sha256 = \"<hex of the token's SHA-256>\"\n  \
    tenant = \"acme\"           # \"*\" sees every tenant")]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,

    #[command(flatten)]
    pub doors: DoorArgs,

    /// Serve only the SQL doors (--flight-addr, --pg-addr) over the lake:
    /// no HTTP API, no uploads; the session follows the lake as other
    /// processes write it.
    #[arg(long)]
    pub sql_only: bool,

    /// Tokens file (TOML): each token's tenant. Without one, every caller
    /// sees everything, so the server listens on loopback only.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,

    /// Folder for accepted uploads waiting to land. Default: [serve] spool,
    /// else `_spool` under a local lake, else ./docstream-spool.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,

    /// Tenant of uploads from a server without tokens, or from an admin
    /// token that names none. Default: the pipeline's source.tenant.
    #[arg(long)]
    pub tenant: Option<String>,

    #[command(flatten)]
    pub stages: StageArgs,

    /// Publish accepted uploads as document events on this topic, for a
    /// fleet of `docstream ingest` workers to land, instead of landing them
    /// here. Jobs are followed in the lake. Brokers: --brokers, else the
    /// pipeline's kafka.brokers.
    #[cfg(feature = "kafka")]
    #[arg(long, requires = "brokers")]
    pub topic: Option<String>,

    /// Kafka bootstrap servers, with --topic.
    #[cfg(feature = "kafka")]
    #[arg(long, value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let tokens = self
            .tokens
            .as_deref()
            .map(Tokens::load)
            .transpose()?
            .map(Arc::new);
        let doors = Doors::resolve(&self.doors, tokens.is_some(), &r.pipeline.serve).await?;
        if self.sql_only {
            return sql_only(&r, doors, tokens).await;
        }
        let addr = resolve(&self.addr, "--addr", tokens.is_some()).await?;
        let (runner, models) = r.runner_with_models(&self.stages.stages)?;
        let p = &r.pipeline;
        let spool_dir = self
            .spool
            .or(p.serve.spool.as_ref().map(PathBuf::from))
            .or_else(|| r.lake.to_file_path().ok().map(|l| l.join("_spool")))
            .unwrap_or_else(|| PathBuf::from("docstream-spool"));
        let spool = Arc::new(Spool::open(&spool_dir)?);
        let objects = ObjectPolicy::new("serve", &p.serve.allowed_objects, &p.serve.tenant_objects)
            .context("[serve] allowed_objects or tenant_objects")?
            .closed_when_empty();
        let mut tables: Vec<String> = runner.tables().iter().map(|t| t.to_string()).collect();
        tables.push("failures".into());
        let (erase_tx, erase_rx) = erasure_channel();
        let state = Arc::new(AppState {
            config: p.serve.clone(),
            tokens,
            default_tenant: self.tenant.unwrap_or_else(|| p.source.tenant.clone()),
            spool: spool.clone(),
            objects: ObjectReader::new(r.storage.clone(), objects),
            jobs: Arc::new(JobBoard::new(tables)),
            wake: Arc::new(Notify::new()),
            landed: watch::Sender::new(0),
            sessions: Arc::new(Sessions::new(
                r.lake.clone(),
                r.storage.clone(),
                models.embedder,
                p.analytics.clone(),
            )),
            answerer: models.answerer,
            min_similarity: p.analytics.min_similarity,
            gate: Arc::new(gate(&p.serve)),
            metrics: Metrics::default(),
            ready: AtomicBool::new(false),
            erasures: erase_tx,
            openapi: OnceLock::new(),
        });
        let lander = UploadLander {
            spool: spool.clone(),
            lake: r.lake.clone(),
            storage: r.storage.clone(),
            runner,
            limits: p.extract.clone(),
            parallelism: match p.source.parallelism {
                0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
                n => n,
            },
            isolation: extraction_isolation(),
            batch: p.batch,
            upkeep: p.lake.clone(),
            indexes: p.indexes.clone(),
        };
        let listener = bind(addr, "--addr").await?;
        let addr = listener.local_addr()?;
        println!(
            "docstream serving http://{addr}/ — lake {}, spool {} ({} waiting){}",
            r.lake,
            spool_dir.display(),
            state.spool.waiting(),
            if state.tokens.is_some() {
                ", tokens required"
            } else {
                ""
            }
        );
        doors
            .open(&state.sessions, &state.tokens, &state.gate)
            .await?;
        #[cfg(feature = "kafka")]
        if let Some(topic) = self.topic {
            let mut kafka = p.kafka.clone();
            kafka.topic = topic;
            if let Some(brokers) = self.brokers {
                kafka.brokers = brokers;
            }
            let publisher = UploadPublisher {
                spool,
                publisher: Publisher::new(&kafka)?,
                lake: r.lake.clone(),
                storage: r.storage.clone(),
                batch: p.batch,
            };
            println!(
                "uploads go to topic {} on {} for ingest workers",
                kafka.topic, kafka.brokers
            );
            let landing = Landing::Publish(publisher);
            return serve(listener, state, landing, erase_rx, shutdown_signal()).await;
        }
        let landing = Landing::InProcess(Box::new(lander));
        serve(listener, state, landing, erase_rx, shutdown_signal()).await
    }
}

/// The socket address `addr` (given as `flag`) names; a host name is
/// looked up. Without tokens only loopback addresses are allowed.
pub(super) async fn resolve(addr: &str, flag: &str, tokens: bool) -> Result<SocketAddr> {
    let resolved = match addr.parse() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host(addr)
            .await
            .with_context(|| format!("{flag} {addr}: give HOST:PORT, e.g. 127.0.0.1:8080"))?
            .next()
            .with_context(|| format!("{flag} {addr} resolves to no address"))?,
    };
    if !tokens && !resolved.ip().is_loopback() {
        bail!(
            "without --tokens, every caller would see every document, so serve listens on loopback only; give --tokens FILE to listen on {resolved} ({flag})"
        );
    }
    Ok(resolved)
}

pub(super) async fn bind(addr: SocketAddr, flag: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}; is the port in use? Pick another with {flag}")
    })
}
