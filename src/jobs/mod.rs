//! The jobs users run, each wiring sources, extraction, stages and sinks.

pub mod arroyo_deploy;
pub mod backfill;
pub mod document;
pub mod extract_pool;
#[cfg(feature = "kafka")]
pub mod ingest;
#[cfg(feature = "kafka")]
pub mod publish;
#[cfg(feature = "kafka")]
pub mod watch;
