//! `docstream arroyo deploy`: the document pipeline as an Arroyo pipeline.
//! Fills `sql/arroyo/pipeline.sql` from the pipeline file and flags, adds the
//! UDF plugins' single-file sources, and posts both to Arroyo's API.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::config::Pipeline;

const QUERY: &str = include_str!("../../sql/arroyo/pipeline.sql");

/// Every UDF the query calls, as Arroyo compiles it: one file each.
pub const UDFS: [(&str, &str); 7] = [
    (
        "chunk_text",
        include_str!("../../udfs/arroyo/chunk_text/chunk_text.rs"),
    ),
    (
        "count_tokens",
        include_str!("../../udfs/arroyo/count_tokens/count_tokens.rs"),
    ),
    (
        "redact_pii",
        include_str!("../../udfs/arroyo/redact_pii/redact_pii.rs"),
    ),
    ("embed", include_str!("../../udfs/arroyo/embed/embed.rs")),
    (
        "summarize",
        include_str!("../../udfs/arroyo/summarize/summarize.rs"),
    ),
    (
        "extract_risks",
        include_str!("../../udfs/arroyo/extract_risks/extract_risks.rs"),
    ),
    (
        "extract_action_items",
        include_str!("../../udfs/arroyo/extract_action_items/extract_action_items.rs"),
    ),
];

/// What the query's `${...}` placeholders become.
pub struct Settings {
    pub name: String,
    pub parallelism: u32,
    pub values: BTreeMap<&'static str, String>,
}

impl Settings {
    /// Defaults from the pipeline file: its Kafka topic, lake, tenant,
    /// chunking parameters and the models its stages name.
    pub fn from_pipeline(p: &Pipeline) -> Self {
        let param = |stage: &str, key: &str, default: &str| {
            p.stages
                .iter()
                .find(|s| s.name == stage)
                .and_then(|s| s.params.get(key))
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| default.to_string())
        };
        let model = |stage: &str| {
            p.stages
                .iter()
                .find(|s| s.name == stage)
                .and_then(|s| s.providers.first())
                .and_then(|name| p.providers.get(name))
                .map(|c| c.model.clone())
                .unwrap_or_default()
        };
        let values = BTreeMap::from([
            ("brokers", p.kafka.brokers.clone()),
            ("topic", p.kafka.topic.clone()),
            ("group", format!("{}-arroyo", p.kafka.group)),
            ("tenant", p.source.tenant.clone()),
            ("lake", p.lake.uri.trim_end_matches('/').to_string()),
            ("max_tokens", param("chunks", "max_tokens", "512")),
            ("overlap", param("chunks", "overlap", "64")),
            ("encoding", param("chunks", "encoding", "cl100k_base")),
            ("embed_model", model("embeddings")),
            ("chat_model", model("summaries")),
            ("roll_seconds", "60".to_string()),
            ("storage", String::new()),
        ]);
        Self {
            name: p.name.clone(),
            parallelism: 1,
            values,
        }
    }

    /// Delta sink storage options (`aws_endpoint=http://minio:9000`), as the
    /// `'storage.KEY' = 'VALUE',` lines the query's sinks take.
    pub fn set_storage(&mut self, options: &[(String, String)]) {
        let lines: String = options
            .iter()
            .map(|(k, v)| format!("'storage.{k}' = '{}',\n    ", v.replace('\'', "''")))
            .collect();
        self.values.insert("storage", lines);
    }

    /// The request body for `POST /api/v1/pipelines`.
    pub fn payload(&self) -> Result<Value> {
        for (key, value) in &self.values {
            if value.is_empty() && !matches!(*key, "storage") {
                bail!("the Arroyo pipeline needs a value for {key}; set it in the pipeline file or with its flag");
            }
        }
        let mut query = QUERY.to_string();
        for (key, value) in &self.values {
            query = query.replace(&format!("${{{key}}}"), value);
        }
        if let Some(at) = query.find("${") {
            let name: String = query[at..].chars().take_while(|c| *c != '}').collect();
            bail!("sql/arroyo/pipeline.sql uses {name}}} and docstream has no value for it");
        }
        let udfs: Vec<Value> = UDFS
            .iter()
            .map(|(_, definition)| json!({"definition": definition, "language": "rust"}))
            .collect();
        Ok(json!({
            "name": self.name,
            "query": query,
            "udfs": udfs,
            "parallelism": self.parallelism,
        }))
    }
}

/// Posts `payload` to the Arroyo API at `api`; returns the pipeline's id.
pub async fn deploy(api: &str, payload: &Value) -> Result<String> {
    let url = format!("{}/api/v1/pipelines", api.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(payload.to_string())
        .send()
        .await
        .with_context(|| format!("cannot reach the Arroyo API at {url}; is the cluster up (docker compose up -d arroyo)?"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("Arroyo refused the pipeline (HTTP {status}): {body}\nCheck the UDFs compile in Arroyo's UI, and that its compiler has DOCSTREAM_UDFS and DOCSTREAM_MODELS set (see sql/arroyo/README.md).");
    }
    let reply: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    Ok(reply["id"]
        .as_str()
        .unwrap_or("(no id in the reply)")
        .to_string())
}
