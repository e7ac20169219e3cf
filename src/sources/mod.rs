//! Where documents come from: bucket listings, Kafka events, bucket changes.

pub mod bucket;
pub mod event;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod kafka_config;
pub mod object_policy;
