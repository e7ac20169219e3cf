//! Engine-free UDF logic for docstream.
//!
//! Plain Rust on strings and numbers: no datafusion, arrow or deltalake here, so
//! the same functions can be adapted to DataFusion (in the main crate) and to
//! Arroyo's plugin ABI (under `udfs/arroyo/`). The model client those
//! adapters call is its own crate, `docstream-models`.

pub mod chunk;
pub mod pii;
pub mod tokens;

pub use chunk::{chunk_text, Chunk, ChunkError, ChunkParams};
pub use pii::redact_pii;
pub use tokens::{count_tokens, Encoding, UnknownEncoding};
