//! Document identity: which document a URI names, and which version of it
//! some bytes are. Backfill, events and uploads agree on these.

use sha2::{Digest, Sha256};

/// One document version: (doc_id, content_hash).
pub type DocKey = (String, String);

/// A document's id: hex of the first 16 bytes of sha256(source URI).
pub fn doc_id(uri: &str) -> String {
    hex::encode(&Sha256::digest(uri.as_bytes())[..16])
}

/// A version's id: hex of sha256(bytes).
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
