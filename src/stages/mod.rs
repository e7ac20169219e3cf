//! Pipeline files, the SQL stages and their UDFs, and micro-batching.

pub mod batcher;
pub mod extracted;
pub mod model_udfs;
pub mod pipeline;
pub mod runner;
pub mod udfs;
