//! `docstream watch`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use sha2::{Digest, Sha256};

use super::kafka_args::KafkaArgs;
use super::resolved::Resolved;
use super::signal::shutdown_signal;
use super::values::seconds;
use crate::jobs::publish::Publisher;
use crate::jobs::watch::Watch;
use crate::sources::bucket::Bucket;
use crate::storage::parse_location;

/// Poll a bucket prefix and publish one event per new or changed object
/// (by key, etag or last-modified, and size), keyed by doc_id.
///
/// What was published is kept in a state file, so a restarted watch never
/// re-publishes an unchanged object.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream watch s3://inbox/ --brokers localhost:9092 --topic documents\n  \
    docstream watch s3://inbox/ --s3-endpoint http://127.0.0.1:9000 --interval 5\n  \
    docstream watch ./inbox --once --state ./watch-state.json")]
pub struct Args {
    /// Folder, file:// or s3:// / gs:// / az:// prefix to watch.
    pub source: String,

    /// Seconds between polls.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub interval: f64,

    /// Poll once and exit.
    #[arg(long)]
    pub once: bool,

    /// State file. Default: .docstream/watch-<hash of source and topic>.json
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Tenant for the events.
    #[arg(long)]
    pub tenant: Option<String>,

    #[command(flatten)]
    pub kafka: KafkaArgs,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let kafka = self.kafka.apply(r.pipeline.kafka.clone())?;
        let storage = r.storage;
        let url = parse_location(&self.source)?;
        let state = self.state.unwrap_or_else(|| {
            let id = Sha256::digest(format!("{url}|{}|{}", kafka.brokers, kafka.topic));
            PathBuf::from(".docstream").join(format!("watch-{}.json", hex::encode(&id[..8])))
        });
        let watch = Watch {
            bucket: Bucket::open(&url, &storage)?,
            publisher: Publisher::new(&kafka)?,
            tenant: self.tenant,
            interval: Duration::from_secs_f64(self.interval.max(0.1)),
            state,
        };
        let sent = watch.run(self.once, shutdown_signal()).await?;
        println!("watch stopped: published {sent} events to {}", kafka.topic);
        Ok(())
    }
}
