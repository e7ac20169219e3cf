//! Continuous ingestion against a real Kafka-protocol broker (tansu), a real
//! S3-compatible server and a lake on disk. A test binary of its own, so
//! these CPU-heavy tests never run beside the model tests, whose throughput
//! ratios they would skew.

// Shared with tests/it; each binary uses part of it.
#[allow(dead_code)]
#[path = "../it/harness.rs"]
mod harness;

mod broker;
mod ingest;
mod moto;
mod serve_publish;
mod writers;
