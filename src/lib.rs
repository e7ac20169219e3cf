//! docstream: documents → SQL stages with Rust UDFs → Delta Lake tables.
//!
//! The modules follow the dataflow: `sources` → `extract` → `stages` →
//! `sinks`, with `indexes` derived from the lake, `analytics` reading it,
//! `jobs` wiring it together, `serve` offering it over HTTP, and `doors`
//! offering its SQL to BI tools and notebooks.

pub mod analytics;
pub mod cli;
pub mod config;
pub mod contract;
pub mod doors;
pub mod extract;
pub mod functions;
pub mod indexes;
pub mod jobs;
pub mod lineage;
pub mod models;
pub mod serve;
pub mod sinks;
pub mod sources;
pub mod stages;
pub mod storage;
