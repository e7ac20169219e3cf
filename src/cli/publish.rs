//! `docstream publish`.

use std::io::BufReader;

use anyhow::{Context, Result};

use super::kafka_args::KafkaArgs;
use super::resolved::Resolved;
use crate::jobs::publish::{ndjson, objects, Publisher};
use crate::sources::bucket::Bucket;
use crate::storage::parse_location;

/// Send document events to Kafka: one per object under a folder or bucket
/// prefix, or the events of an ndjson stream (see
/// schemas/document_event.schema.json). Events are keyed by doc_id.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream publish ./samples --brokers localhost:9092 --topic documents\n  \
    docstream publish s3://inbox/2026/ --s3-endpoint http://127.0.0.1:9000\n  \
    docstream publish ./notes --inline          # send text, for workers that cannot read ./notes\n  \
    docstream publish --ndjson events.ndjson\n  \
    echo '{\"op\":\"delete\",\"doc_id\":\"3f2a...\"}' | docstream publish --ndjson -")]
pub struct Args {
    /// Folder, file:// or s3:// / gs:// / az:// prefix whose objects to announce.
    #[arg(required_unless_present = "ndjson", conflicts_with = "ndjson")]
    pub source: Option<String>,

    /// Read events from this ndjson file ('-' for stdin) instead.
    #[arg(long, value_name = "FILE")]
    pub ndjson: Option<String>,

    /// Send text files' content inline instead of a reference to the object.
    #[arg(long)]
    pub inline: bool,

    /// Send ndjson lines as they are, even ones that are not valid events (to test consumers).
    #[arg(long, requires = "ndjson")]
    pub verbatim: bool,

    /// Tenant for the objects' events.
    #[arg(long)]
    pub tenant: Option<String>,

    #[command(flatten)]
    pub kafka: KafkaArgs,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let kafka = self.kafka.apply(r.pipeline.kafka.clone())?;
        let storage = r.storage;
        let events = match (&self.ndjson, &self.source) {
            (Some(file), _) if file == "-" => ndjson(std::io::stdin().lock(), self.verbatim)?,
            (Some(file), _) => {
                let f = std::fs::File::open(file).with_context(|| format!("cannot open {file}"))?;
                ndjson(BufReader::new(f), self.verbatim)?
            }
            (None, Some(source)) => {
                let bucket = Bucket::open(&parse_location(source)?, &storage)?;
                objects(&bucket, self.tenant.as_deref(), self.inline).await?
            }
            (None, None) => anyhow::bail!("give a folder or bucket to publish, or --ndjson FILE"),
        };
        let sent = Publisher::new(&kafka)?.send_all(events).await?;
        println!(
            "published {sent} events to {} on {}",
            kafka.topic, kafka.brokers
        );
        Ok(())
    }
}
