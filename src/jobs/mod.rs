//! The jobs users run, each wiring sources, extraction, stages and sinks.

pub mod arroyo_deploy;
pub mod backfill;
pub mod document;
pub mod event_batch;
pub mod ingest;
pub mod publish;
pub mod watch;
