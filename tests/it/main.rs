//! Integration tests against the real binary, a real lake on disk, a real
//! S3-compatible server (s3s-fs) and delta-rs's Python reader. The Kafka
//! tests are their own binary (tests/kafka).

mod analytics;
mod arroyo;
mod backfill;
mod extraction;
mod harness;
mod interop;
mod kill_rerun;
mod models;
mod s3;
