//! Engine-free UDF logic for docstream.
//!
//! Plain Rust on strings and numbers: no datafusion, arrow or deltalake here, so
//! the same functions can be adapted to DataFusion (in the main crate) and to
//! Arroyo's plugin ABI (under `udfs/arroyo/`).

pub mod chunk;
pub mod tokens;

pub use chunk::{chunk_text, Chunk, ChunkError, ChunkParams};
pub use tokens::{count_tokens, Encoding, UnknownEncoding};
pub mod pii;
pub use pii::redact_pii;
