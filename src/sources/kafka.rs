//! Kafka: client settings, a producer for document events, and a group
//! consumer that starts each assigned partition where the lake says.
//!
//! Plain Kafka protocol only (Apache Kafka, Redpanda, MSK); no transactions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::kafka_config::KafkaConfig;

impl KafkaConfig {
    pub fn client(&self) -> Result<ClientConfig> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set(
            "message.max.bytes",
            (self.max_event_bytes + (1 << 20)).to_string(),
        );
        for (key, value) in &self.properties {
            let value = match value.strip_prefix("env:") {
                Some(var) => std::env::var(var).with_context(|| {
                    format!(
                        "kafka property {key} names environment variable {var}, which is not set"
                    )
                })?,
                None => value.clone(),
            };
            c.set(key, value);
        }
        Ok(c)
    }

    pub fn producer(&self) -> Result<FutureProducer> {
        let mut c = self.client()?;
        self.defaults(&mut c, &[("linger.ms", "20"), ("compression.type", "lz4")]);
        c.create()
            .with_context(|| format!("cannot create a Kafka producer for {}", self.brokers))
    }

    /// Sets the properties the user did not set.
    fn defaults(&self, c: &mut ClientConfig, defaults: &[(&str, &str)]) {
        for (key, value) in defaults {
            if !self.properties.contains_key(*key) {
                c.set(*key, *value);
            }
        }
    }
}

/// Sends one event keyed by `key` and waits for the broker's acknowledgement.
pub async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) -> Result<()> {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(60),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| anyhow::anyhow!(e))
        .with_context(|| {
            format!("cannot publish to topic {topic}: is the broker up and the topic created?")
        })
}

/// A message, copied out of the consumer's buffer.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Milliseconds since the epoch, from the producer or the broker.
    pub timestamp_ms: Option<i64>,
}

/// A change of this consumer's partitions, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Assignment {
    /// Partitions now ours, each starting at the offset given (none: Kafka's
    /// committed offset, else the earliest).
    Assigned(HashMap<i32, Option<i64>>),
    Revoked(Vec<i32>),
    /// The start offsets could not be read; the consumer must stop.
    Failed(String),
}

/// Decides where newly assigned partitions start. Runs inside the
/// rebalance, before fetching begins, so no message is read from a stale
/// position.
pub type StartOffsets = Box<dyn Fn(&[i32]) -> Result<HashMap<i32, Option<i64>>> + Send + Sync>;

/// Runs before partitions are given up, inside the rebalance: the place to
/// finish work on them.
pub type OnRevoke = Box<dyn Fn(&[i32]) + Send + Sync>;

pub struct GroupContext {
    topic: String,
    start_offsets: StartOffsets,
    on_revoke: OnRevoke,
    changes: Mutex<Vec<Assignment>>,
    /// Wakes the consumer's owner when `changes` gains an entry.
    changed: tokio::sync::Notify,
    lag: Mutex<HashMap<i32, i64>>,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut lag = self.lag.lock().unwrap_or_else(|p| p.into_inner());
        lag.clear();
        for (p, s) in &topic.partitions {
            if *p >= 0 && s.consumer_lag >= 0 {
                lag.insert(*p, s.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let change = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                match (self.start_offsets)(&partitions) {
                    Ok(starts) => {
                        for (p, start) in &starts {
                            if let Some(offset) = start {
                                let _ = tpl.set_partition_offset(
                                    &self.topic,
                                    *p,
                                    Offset::Offset(*offset),
                                );
                            }
                        }
                        Assignment::Assigned(starts)
                    }
                    Err(e) => Assignment::Failed(format!("{e:#}")),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                (self.on_revoke)(&partitions);
                Assignment::Revoked(partitions)
            }
            other => Assignment::Failed(format!("rebalance failed: {other:?}")),
        };
        let applied = match &change {
            Assignment::Assigned(_) => consumer.assign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(e) = applied {
            tracing::error!("cannot apply the partition assignment: {e}");
        }
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(change);
        self.changed.notify_one();
    }
}

/// A consumer in a group, reading one topic, committing offsets only when told.
pub struct GroupConsumer {
    consumer: StreamConsumer<GroupContext>,
    context: Arc<GroupContext>,
    topic: String,
}

impl GroupConsumer {
    pub fn subscribe(
        config: &KafkaConfig,
        start_offsets: StartOffsets,
        on_revoke: OnRevoke,
    ) -> Result<Self> {
        let context = GroupContext {
            topic: config.topic.clone(),
            start_offsets,
            on_revoke,
            changes: Mutex::new(Vec::new()),
            changed: tokio::sync::Notify::new(),
            lag: Mutex::new(HashMap::new()),
        };
        let mut c = config.client()?;
        let fetch_max = (config.max_event_bytes + (1 << 20)).to_string();
        config.defaults(
            &mut c,
            &[
                ("auto.offset.reset", "earliest"),
                ("statistics.interval.ms", "5000"),
                ("fetch.message.max.bytes", &fetch_max),
            ],
        );
        let consumer: StreamConsumer<GroupContext> = c
            .set("group.id", &config.group)
            // Offsets are committed only after the lake holds the batch.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Eager rebalancing: every partition is revoked, then assigned
            // with its start offset, in one step.
            .set("partition.assignment.strategy", "range,roundrobin")
            .create_with_context(context)
            .with_context(|| format!("cannot create a Kafka consumer for {}", config.brokers))?;
        consumer
            .subscribe(&[&config.topic])
            .with_context(|| format!("cannot subscribe to topic {}", config.topic))?;
        let context = consumer.context().clone();
        Ok(Self {
            consumer,
            context,
            topic: config.topic.clone(),
        })
    }

    /// The next message. Rebalances run inside this call.
    pub async fn recv(&self) -> Result<Record, KafkaError> {
        let m = self.consumer.recv().await?;
        Ok(Record {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            timestamp_ms: m.timestamp().to_millis(),
        })
    }

    /// Resolves when partitions changed (in a `recv` that may still be waiting
    /// for its first message).
    pub async fn changed(&self) {
        self.context.changed.notified().await
    }

    /// Partition changes since the last call.
    pub fn changes(&self) -> Vec<Assignment> {
        std::mem::take(
            &mut *self
                .context
                .changes
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// Consumer lag per partition, from librdkafka's statistics.
    pub fn lag(&self) -> HashMap<i32, i64> {
        self.context
            .lag
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Commits `next` (partition → next offset to read) as the group's
    /// position: a hint for tools; the lake's markers are the truth.
    pub fn commit(&self, next: &HashMap<i32, i64>) -> Result<()> {
        if next.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (p, offset) in next {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*offset))?;
        }
        self.consumer
            .commit(&tpl, rdkafka::consumer::CommitMode::Async)
            .context("cannot commit offsets to Kafka")
    }

    /// Leaves the group, so the others take over at once.
    pub fn leave(&self) {
        self.consumer.unsubscribe();
        // Serve the revoke callback before closing.
        let _ = self.changes();
    }
}
