//! Integration tests against the real binary, a real lake on disk, a real
//! S3-compatible server (s3s-fs) and delta-rs's Python reader. The Kafka
//! tests are their own binary (tests/kafka).

#[cfg(feature = "local-models")]
mod analytics;
mod arroyo;
mod backfill;
mod cli;
mod containers;
mod extraction;
mod formats;
mod harness;
mod interop;
mod kill_rerun;
mod lineage;
#[cfg(feature = "local-models")]
mod models;
mod ocr;
mod pdf_file;
mod s3;
mod search_index;
mod serve;
#[cfg(feature = "local-models")]
mod sql_doors;
#[cfg(feature = "local-models")]
mod vector_index;
