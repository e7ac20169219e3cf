//! The jobs users run, each wiring sources, extraction, stages and sinks.

pub mod backfill;
