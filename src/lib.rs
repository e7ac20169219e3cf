//! docstream: documents → SQL stages with Rust UDFs → Delta Lake tables.
//!
//! The modules follow the dataflow: `sources` → `extract` → `stages` →
//! `sinks`, with `indexes` derived from the lake, `analytics` reading it
//! and `jobs` wiring it together.

pub mod analytics;
pub mod cli;
pub mod config;
pub mod contract;
pub mod extract;
pub mod functions;
pub mod indexes;
pub mod jobs;
pub mod models;
pub mod sinks;
pub mod sources;
pub mod stages;
pub mod storage;
