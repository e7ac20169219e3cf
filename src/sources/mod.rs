//! Where documents come from: bucket listings, Kafka events, bucket changes.

pub mod bucket;
pub mod event;
pub mod kafka;
