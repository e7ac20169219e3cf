//! The jobs users run, each wiring sources, extraction, stages and sinks.

pub mod arroyo_deploy;
pub mod backfill;
pub mod commit;
pub mod document;
pub mod estimate;
pub mod extract_pool;
#[cfg(feature = "kafka")]
pub mod ingest;
#[cfg(feature = "kafka")]
pub mod publish;
pub mod recompute;
pub mod stage_runs;
pub mod upkeep;
#[cfg(feature = "kafka")]
pub mod upload_publisher;
pub mod uploads;
#[cfg(feature = "kafka")]
pub mod watch;
