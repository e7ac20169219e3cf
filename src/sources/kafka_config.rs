//! `[kafka]` in pipeline files. Apart from the client, so pipeline files
//! with a `[kafka]` section load in builds without the `kafka` feature.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[kafka]` in the pipeline file; command-line flags override it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// Events larger than this become `failures` rows (stage `decode`).
    pub max_event_bytes: usize,
    /// Extra librdkafka properties, e.g. `"security.protocol" = "SASL_SSL"`.
    /// A value `env:NAME` is read from the environment variable NAME, so
    /// secrets stay out of the file.
    pub properties: BTreeMap<String, String>,
    /// Object prefixes events may name (`s3://inbox/`, `/srv/drop/`).
    /// Empty: any bucket, and no local files.
    pub allowed_objects: Vec<String>,
    /// Per tenant, the only prefixes its events may name.
    pub tenant_objects: BTreeMap<String, Vec<String>>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            topic: "documents".into(),
            group: "docstream".into(),
            max_event_bytes: 16 << 20,
            properties: BTreeMap::new(),
            allowed_objects: Vec::new(),
            tenant_objects: BTreeMap::new(),
        }
    }
}
