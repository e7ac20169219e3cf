//! Model providers for docstream: the engine-free client from
//! `docstream-udfs` (batching, adaptive concurrency, retries, fallback,
//! structured output), plus what only this process has: in-process models,
//! the response cache, usage rows, and `serve-models`.

pub mod backend;
pub mod cache;
pub mod config;
pub mod grammar;
pub mod hub;
pub mod local;
pub mod server;
pub mod usage;

pub use docstream_udfs::models::{
    chain, endpoint, error, estimate_tokens, limiter, openai, schema, tasks,
};
