//! Where documents come from: bucket listings, Kafka events, bucket
//! changes, and uploads waiting in the spool.

pub mod bucket;
pub mod event;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod kafka_config;
pub mod object_policy;
pub mod object_reader;
pub mod spool;
