//! `docstream ingest`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::kafka_args::KafkaArgs;
use super::resolved::{extraction_isolation, Resolved};
use super::signal::shutdown_signal;
use super::stage_args::StageArgs;
use super::values::seconds;
use crate::indexes::config::IndexesConfig;
use crate::jobs::ingest::event_batch::EventReader;
use crate::jobs::ingest::metrics::Metrics;
use crate::jobs::ingest::Ingest;
use crate::sinks::lake::LakeConfig;
use crate::sources::object_policy::ObjectPolicy;

/// Consume document events from Kafka into the lake, exactly once.
///
/// Run one or many: workers with the same --group split the topic's
/// partitions and take over a dead worker's partitions. Each table commit
/// records the Kafka offsets it holds, so a killed worker resumes exactly
/// where the lake stands. SIGTERM finishes the open batch, commits, and
/// leaves the group.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream ingest --brokers localhost:9092 --topic documents --group docstream --lake ./lake\n  \
    docstream ingest --lake s3://lake/ --s3-endpoint http://127.0.0.1:9000 --metrics-addr 0.0.0.0:9464\n  \
    docstream ingest --stages documents,chunks --batch-rows 50000     # no model calls, big files\n  \
    docstream ingest --exit-when-idle 10     # drain the topic, then stop\n  \
    curl -s localhost:9464/metrics | grep consumer_lag")]
pub struct Args {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Consumer group: workers in one group share the partitions. Default: the pipeline's kafka.group.
    #[arg(long)]
    pub group: Option<String>,

    /// Tenant for events that name none. Default: the pipeline's source.tenant.
    #[arg(long)]
    pub tenant: Option<String>,

    /// Close a micro-batch after this many events.
    #[arg(long, value_name = "N")]
    pub batch_rows: Option<usize>,

    /// Close a micro-batch after this many seconds (bounds latency under low traffic).
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub batch_age: Option<f64>,

    /// Larger events become failures rows. Default: the pipeline's kafka.max_event_bytes.
    #[arg(long, value_name = "BYTES")]
    pub max_event_bytes: Option<usize>,

    /// Serve Prometheus metrics on this address (/metrics).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Compact each table's small files in the background every N batches
    /// (0 = never). Default: the pipeline's lake.compact_every_commits.
    #[arg(long, value_name = "N")]
    pub compact_every: Option<u64>,

    /// Bring the search indexes up to date in the background every N
    /// batches (0 = never). Default: the pipeline's indexes.update_every_batches.
    #[arg(long, value_name = "N")]
    pub index_every: Option<u64>,

    /// Exit once no event arrived for this many seconds after partitions were assigned.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub exit_when_idle: Option<f64>,

    #[command(flatten)]
    pub stages: StageArgs,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let runner = r.runner(&self.stages.stages)?;
        let p = &r.pipeline;
        let mut kafka = self.kafka.apply(p.kafka.clone())?;
        if let Some(g) = self.group {
            kafka.group = g;
        }
        if let Some(max) = self.max_event_bytes {
            kafka.max_event_bytes = max;
        }
        let mut batch = p.batch;
        if let Some(rows) = self.batch_rows {
            batch.max_rows = rows;
        }
        if let Some(age) = self.batch_age {
            batch.max_age_secs = age;
        }
        let metrics = Arc::new(Metrics::default());
        if let Some(addr) = self.metrics_addr {
            metrics.serve(addr).await?;
        }
        let parallelism = match p.source.parallelism {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()) * 4,
            n => n,
        };
        let job = Ingest {
            reader: EventReader::new(
                kafka.topic.clone(),
                self.tenant.unwrap_or(p.source.tenant.clone()),
                p.extract.clone(),
                kafka.max_event_bytes,
                parallelism,
                r.storage.clone(),
                ObjectPolicy::new("kafka", &kafka.allowed_objects, &kafka.tenant_objects)
                    .context("[kafka] allowed_objects or tenant_objects")?,
            )
            .with_isolation(extraction_isolation()),
            kafka,
            pipeline: p.name.clone(),
            lake: r.lake.clone(),
            storage: r.storage.clone(),
            upkeep: LakeConfig {
                compact_every_commits: self.compact_every.unwrap_or(p.lake.compact_every_commits),
                ..p.lake.clone()
            },
            indexes: IndexesConfig {
                update_every_batches: self.index_every.unwrap_or(p.indexes.update_every_batches),
                ..p.indexes.clone()
            },
            batch,
            runner,
            metrics,
            exit_when_idle: self.exit_when_idle.map(Duration::from_secs_f64),
        };
        let s = job.run(shutdown_signal()).await?;
        let rate = s
            .rate()
            .map(|r| format!(" at {r:.1} events/s"))
            .unwrap_or_default();
        println!(
            "ingest stopped: {} events in {} batches{rate} — {} upserts, {} deletes, {} failure rows — into {}",
            s.events, s.batches, s.upserts, s.deletes, s.failures, r.lake
        );
        Ok(())
    }
}
