//! `docstream serve-models`.

use std::time::Duration;

use anyhow::{Context, Result};
use docstream_models::provider::{ProviderConfig, ProviderKind};

use super::resolved::Resolved;
use super::values::seconds;
use crate::models::backend::Backend;
use crate::models::local::KNOWN;
use crate::models::server::{serve, Served};

/// Serve the local models behind the OpenAI-compatible API.
///
/// Other tools (and docstream's `openai` provider) can then use them like
/// Ollama: POST /v1/embeddings and /v1/chat/completions, GET /v1/models.
/// `response_format: {type: json_schema}` constrains generation with a grammar.
/// An embeddings request takes at most 2048 inputs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream serve-models --addr 127.0.0.1:8080\n  \
    curl -s localhost:8080/v1/embeddings -H 'content-type: application/json' -d '{\"model\":\"all-MiniLM-L6-v2\",\"input\":[\"hello\"]}'\n  \
    curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' -d '{\"model\":\"SmolLM2-135M-Instruct\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}'\n  \
    DOCSTREAM_MODELS_TOKEN=s3cret docstream serve-models --addr 0.0.0.0:8080   # clients send Authorization: Bearer s3cret")]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,

    /// Context window for the chat model, in tokens.
    #[arg(long, default_value_t = 2048)]
    pub context_tokens: usize,

    /// Cap on generated tokens per request.
    #[arg(long, default_value_t = 512)]
    pub max_output_tokens: usize,

    /// Require `Authorization: Bearer <token>` on every request. Set it in
    /// the environment, not on the command line, where `ps` shows it.
    #[arg(long, env = "DOCSTREAM_MODELS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Seconds a request waits for its model's turn before a 503: each
    /// model runs one request at a time.
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = seconds)]
    pub queue_timeout: f64,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let p = &r.pipeline;
        let mut served = Vec::new();
        for m in KNOWN {
            let config = ProviderConfig {
                kind: ProviderKind::Local,
                model: m.name.to_string(),
                context_tokens: if m.embedding {
                    256
                } else {
                    self.context_tokens
                },
                ..ProviderConfig::default()
            };
            let backend = Backend::open(m.name, &config, &p.models)?;
            served.push(Served {
                id: m.name.to_string(),
                backend,
                max_output_tokens: self.max_output_tokens,
            });
        }
        let listener = tokio::net::TcpListener::bind(&self.addr)
            .await
            .with_context(|| format!("cannot listen on {}; is the port in use?", self.addr))?;
        let addr = listener.local_addr()?;
        println!(
            "serving {} on http://{addr}/v1",
            KNOWN.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        );
        serve(
            listener,
            served,
            self.token.filter(|t| !t.is_empty()),
            Duration::from_secs_f64(self.queue_timeout),
        )
        .await
    }
}
