//! `[providers.NAME]` in pipeline files: one model behind one endpoint.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible HTTP endpoint: OpenAI, vLLM, Ollama, llama.cpp, TEI.
    Openai,
    /// Small real models run in-process (MiniLM embeddings, SmolLM2 generation).
    Local,
}

/// What to do with an embedding input longer than the model's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LongInput {
    /// Keep the first `context_tokens` tokens and record a warning.
    Truncate,
    /// Embed each window and average the vectors.
    Split,
}

/// One model behind one endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Model id sent to the endpoint, and recorded in the tables.
    pub model: String,
    /// e.g. `https://api.openai.com/v1`; `openai` only.
    pub base_url: String,
    /// Name of the environment variable holding the API key (never the key).
    pub api_key_env: Option<String>,
    /// Weights for `local` models; defaults to the models folder.
    pub path: Option<PathBuf>,
    /// Embedding dimension (embedding models only).
    pub dims: Option<usize>,
    /// The model's context window, in tokens.
    pub context_tokens: usize,
    /// Cap on generated tokens per chat request.
    pub max_output_tokens: usize,
    pub max_inputs_per_request: usize,
    pub max_tokens_per_request: usize,
    /// Upper bound on requests in flight; the adaptive limit moves below it.
    pub max_in_flight: usize,
    pub timeout_secs: f64,
    /// Retries after the first attempt, with exponential backoff (1 s, 4 s, 16 s).
    pub retries: u32,
    pub backoff_base_secs: f64,
    /// Consecutive failed requests that open the circuit.
    pub circuit_failures: u32,
    pub circuit_open_secs: f64,
    pub long_input: LongInput,
    /// Send `response_format: json_schema` (OpenAI, vLLM, Ollama, llama.cpp).
    pub json_schema: bool,
    pub price_input_per_1m: f64,
    pub price_output_per_1m: f64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            kind: ProviderKind::Openai,
            model: String::new(),
            base_url: "https://api.openai.com/v1".into(),
            api_key_env: None,
            path: None,
            dims: None,
            context_tokens: 8192,
            max_output_tokens: 512,
            max_inputs_per_request: 2048,
            max_tokens_per_request: 300_000,
            max_in_flight: 8,
            timeout_secs: 60.0,
            retries: 3,
            backoff_base_secs: 1.0,
            circuit_failures: 5,
            circuit_open_secs: 30.0,
            long_input: LongInput::Truncate,
            json_schema: true,
            price_input_per_1m: 0.0,
            price_output_per_1m: 0.0,
        }
    }
}

/// Share of a backoff that is randomised, either way.
const JITTER: f64 = 0.25;

impl ProviderConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs.max(0.001))
    }

    /// Backoff before retry `attempt` (1-based): base × 4^(attempt-1), ±25% jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let jitter = 1.0 - JITTER + fastrand::f64() * 2.0 * JITTER;
        Duration::from_secs_f64((self.backoff_secs(attempt) * jitter).max(0.0))
    }

    fn backoff_secs(&self, attempt: u32) -> f64 {
        self.backoff_base_secs * 4f64.powi(attempt.saturating_sub(1) as i32)
    }

    /// The longest one request can take: every attempt times out, and each
    /// retry waits the longest backoff.
    pub fn longest_request(&self) -> Duration {
        let attempts = self.retries + 1;
        let backoff: f64 = (1..attempts)
            .map(|a| self.backoff_secs(a) * (1.0 + JITTER))
            .sum();
        self.timeout() * attempts + Duration::from_secs_f64(backoff.max(0.0))
    }

    pub fn cost_usd(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.price_input_per_1m
            + output_tokens as f64 * self.price_output_per_1m)
            / 1e6
    }
}
