//! The SQL stages: their configuration, the runner that plans them on
//! DataFusion (with every function of `functions`), and micro-batching.

pub mod batcher;
pub mod config;
pub mod fingerprint;
pub mod runner;
