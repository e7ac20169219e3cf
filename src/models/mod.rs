//! Model providers and everything between a stage and an endpoint:
//! batching, adaptive concurrency, retries, fallback, caching, structured
//! output and usage accounting.

pub mod backend;
pub mod cache;
pub mod chain;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod hub;
pub mod limiter;
pub mod local;
pub mod openai;
pub mod schema;
pub mod server;
pub mod tasks;
pub mod usage;

/// Token estimate for budgets and usage when the provider reports none:
/// tiktoken's cl100k_base, counted with bpe-openai.
pub fn estimate_tokens(text: &str) -> usize {
    docstream_udfs::count_tokens(text, docstream_udfs::Encoding::Cl100kBase)
}
