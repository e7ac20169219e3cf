//! Broker and topic flags shared by `ingest`, `watch` and `publish`.

use crate::sources::kafka_config::KafkaConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (Apache Kafka, Redpanda, MSK). Default: the pipeline's kafka.brokers.
    #[arg(
        long,
        env = "DOCSTREAM_BROKERS",
        hide_env_values = true,
        value_name = "HOST:PORT,..."
    )]
    pub brokers: Option<String>,

    /// Topic of document events. Default: the pipeline's kafka.topic.
    #[arg(long)]
    pub topic: Option<String>,

    /// A librdkafka property, e.g. -X session.timeout.ms=10000. Repeatable;
    /// wins over the pipeline's kafka.properties.
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
}

impl KafkaArgs {
    /// The pipeline's `[kafka]` settings with these flags applied.
    pub fn apply(&self, mut config: KafkaConfig) -> anyhow::Result<KafkaConfig> {
        if let Some(b) = &self.brokers {
            config.brokers = b.clone();
        }
        if let Some(t) = &self.topic {
            config.topic = t.clone();
        }
        for property in &self.properties {
            let (key, value) = property.split_once('=').ok_or_else(|| {
                anyhow::anyhow!(
                    "-X {property}: write it as KEY=VALUE, e.g. -X session.timeout.ms=10000"
                )
            })?;
            config
                .properties
                .insert(key.trim().to_string(), value.trim().to_string());
        }
        Ok(config)
    }
}
