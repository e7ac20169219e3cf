//! The model client: everything between a UDF and an OpenAI-compatible
//! endpoint. Batching by count and tokens, adaptive concurrency, retries with
//! backoff, `Retry-After` and a circuit breaker, provider fallback, structured
//! output with schema validation and one repair, map-reduce over long texts.
//!
//! Caching, usage accounting and in-process models belong to the caller,
//! through `chain::ChainHooks` and `endpoint::ModelBackend`.

pub mod chain;
pub mod coalesce;
pub mod endpoint;
pub mod error;
pub mod limiter;
pub mod openai;
pub mod provider;
pub mod schema;
pub mod standalone;
pub mod tasks;

/// Token estimate for budgets and usage when the provider reports none:
/// tiktoken's cl100k_base, counted with bpe-openai.
pub fn estimate_tokens(text: &str) -> usize {
    docstream_udfs::count_tokens(text, docstream_udfs::Encoding::Cl100kBase)
}
