//! Document identity: which document a URI names, and which version of it
//! some bytes are. Backfill, events and uploads agree on these.

use sha2::{Digest, Sha256};

/// One document version: (doc_id, content_hash).
pub type DocKey = (String, String);

/// A document's id: hex of the first 16 bytes of sha256(source URI).
pub fn doc_id(uri: &str) -> String {
    hex::encode(&Sha256::digest(uri.as_bytes())[..16])
}

/// The id of a file inside a container (an archive member, an attachment):
/// the parent's id plus the member's path in it, so it stays the same
/// across the parent's versions.
pub fn child_doc_id(parent_doc_id: &str, path: &str) -> String {
    doc_id(&format!("{parent_doc_id}!/{path}"))
}

/// A version's id: hex of sha256(bytes).
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
