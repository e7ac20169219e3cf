//! docstream: documents → SQL stages with Rust UDFs → Delta Lake tables.
//!
//! The modules follow the dataflow: `sources` → `extract` → `stages` →
//! `sinks`, with `indexes` derived from the lake, `analytics` reading it,
//! `jobs` wiring it together, and `serve` offering it over HTTP.

pub mod analytics;
pub mod cli;
pub mod config;
pub mod contract;
pub mod extract;
pub mod functions;
pub mod indexes;
pub mod jobs;
pub mod models;
pub mod serve;
pub mod sinks;
pub mod sources;
pub mod stages;
pub mod storage;
