//! Integration tests against the real binary, a real lake on disk, a real
//! S3-compatible server (s3s-fs), a Kafka-protocol broker (tansu) and
//! delta-rs's Python reader.

mod backfill;
mod extraction;
mod harness;
mod interop;
mod kafka;
mod kill_rerun;
mod models;
mod s3;
