//! One document version, from bytes to `extracted` rows: shared by the
//! jobs that read files (backfill) and events (ingest). A container
//! (archive, mailbox, email with attachments) brings its files along as
//! child documents, each extracted under the same guards.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::extract_pool::{Ended, ExtractPool};
use crate::contract::extracted::ExtractedDoc;
use crate::contract::failure::{self, ErrorKind, Failure};
use crate::contract::identity::{child_doc_id, content_hash};
use crate::extract::worker::panic_message;
use crate::extract::{extract, ExtractError, Extracted, Limits, Member};

/// What is known about a document version before extraction.
#[derive(Debug, Clone)]
pub struct Origin {
    pub doc_id: String,
    pub tenant: String,
    pub source_uri: String,
    pub content_hash: String,
    pub event_time: Option<DateTime<Utc>>,
    /// A title given by the producer wins over the extracted one.
    pub title: Option<String>,
    /// Lands in `documents.metadata`, with the format added.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The container this document was found in, if any.
    pub parent_doc_id: Option<String>,
    /// Containers around this document: 0 for a top-level one.
    pub depth: usize,
}

impl Origin {
    /// A top-level document.
    pub fn new(doc_id: String, tenant: String, source_uri: String, content_hash: String) -> Self {
        Self {
            doc_id,
            tenant,
            source_uri,
            content_hash,
            event_time: None,
            title: None,
            metadata: serde_json::Map::new(),
            parent_doc_id: None,
            depth: 0,
        }
    }

    pub fn failure(&self, stage: &str, kind: ErrorKind, error: impl Into<String>) -> Failure {
        Failure {
            doc_id: self.doc_id.clone(),
            content_hash: self.content_hash.clone(),
            source_uri: self.source_uri.clone(),
            stage: stage.to_string(),
            kind,
            error: error.into(),
            attempts: 1,
            stage_fingerprint: None,
        }
    }

    /// A member of this document, found at `path` in it. A member that was
    /// not read keeps the container's content hash: its failure row is
    /// then per container version.
    fn child(&self, member: &Member, event_time: Option<DateTime<Utc>>) -> Self {
        let hash = match &member.content {
            Ok(bytes) => content_hash(bytes),
            Err(_) => self.content_hash.clone(),
        };
        let mut metadata = serde_json::Map::new();
        metadata.insert("member_path".into(), member.path.clone().into());
        if let Ok(bytes) = &member.content {
            metadata.insert("size".into(), bytes.len().into());
        }
        Self {
            doc_id: child_doc_id(&self.doc_id, &member.path),
            tenant: self.tenant.clone(),
            source_uri: format!("{}!/{}", self.source_uri, member.path),
            content_hash: hash,
            event_time,
            title: None,
            metadata,
            parent_doc_id: Some(self.doc_id.clone()),
            depth: self.depth + 1,
        }
    }
}

/// A document version and what lands with it.
#[derive(Debug, Default)]
pub struct Landing {
    /// The rows for `extracted`: the children first, the document last, so
    /// that a batch cut between them never lands a parent without them.
    pub docs: Vec<ExtractedDoc>,
    /// Rows for documents that landed with a problem (invalid UTF-8, pages
    /// without OCR).
    pub warnings: Vec<Failure>,
    /// Rows for children that did not land.
    pub failed: Vec<Failure>,
}

impl Landing {
    /// The document itself (the last row).
    pub fn document(&self) -> Option<&ExtractedDoc> {
        self.docs.last()
    }

    /// The doc ids of its children, grandchildren and so on.
    pub fn descendants(&self) -> impl Iterator<Item = &str> {
        let n = self.docs.len().saturating_sub(1);
        self.docs[..n].iter().map(|d| d.doc_id.as_str())
    }

    /// Every row this document and its children add to `failures`.
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.warnings.iter().chain(&self.failed)
    }
}

/// Files left to read in one top-level document's tree of containers: the
/// limits hold over all its nesting levels, not per container.
struct Budget {
    members: u64,
    bytes: u64,
}

impl Budget {
    fn new(limits: &Limits) -> Self {
        Self {
            members: limits.max_members,
            bytes: limits.max_decompressed_bytes,
        }
    }

    /// The limits for one more extraction in the tree.
    fn limits(&self, limits: &Limits) -> Limits {
        Limits {
            max_members: self.members,
            max_decompressed_bytes: self.bytes,
            ..limits.clone()
        }
    }

    fn spend(&mut self, members: &[Member]) {
        let bytes: u64 = members
            .iter()
            .filter_map(|m| m.content.as_ref().ok())
            .map(|b| b.len() as u64)
            .sum();
        self.members = self.members.saturating_sub(members.len() as u64);
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

/// Extracts `bytes` in `pool` under the extraction limits, and its members
/// if it is a container. `Err` is the document's own failure row.
pub async fn extract_document(
    origin: Origin,
    bytes: Bytes,
    name: String,
    limits: Limits,
    pool: &ExtractPool,
) -> Result<Landing, Box<Failure>> {
    let run = |bytes, name, limits| pool.extract(bytes, name, limits);
    land(
        origin,
        bytes,
        name,
        &limits,
        &mut Budget::new(&limits),
        &run,
    )
    .await
}

/// Extracts small documents on the calling thread, for batches of many
/// short texts where a blocking task per document would cost more than the
/// work. Callers bound the input size: every format's extractor is linear
/// in it, so no timeout is needed. A crashing extractor fails only its
/// document.
pub fn extract_small(
    origin: Origin,
    bytes: &[u8],
    name: &str,
    limits: &Limits,
) -> Result<Landing, Box<Failure>> {
    let run = |bytes: Bytes, name: String, limits: Limits| {
        std::future::ready(Ended::Done(extract(&bytes, &name, &limits)))
    };
    guarded(origin, |origin| {
        let bytes = Bytes::copy_from_slice(bytes);
        let mut budget = Budget::new(limits);
        futures::executor::block_on(land(origin, bytes, name.into(), limits, &mut budget, &run))
    })
}

/// `work` on the document, or its `internal` failure row when it panics.
fn guarded(
    origin: Origin,
    work: impl FnOnce(Origin) -> Result<Landing, Box<Failure>>,
) -> Result<Landing, Box<Failure>> {
    let spare = origin.clone();
    std::panic::catch_unwind(AssertUnwindSafe(|| work(origin))).unwrap_or_else(|panic| {
        let e = ExtractError::crashed(&panic_message(&*panic));
        Err(Box::new(spare.failure(
            failure::EXTRACT_STAGE,
            e.kind,
            e.message,
        )))
    })
}

/// One document and, depth first, the members it holds.
async fn land<F, Fut>(
    origin: Origin,
    bytes: Bytes,
    name: String,
    limits: &Limits,
    budget: &mut Budget,
    run: &F,
) -> Result<Landing, Box<Failure>>
where
    F: Fn(Bytes, String, Limits) -> Fut,
    Fut: Future<Output = Ended>,
{
    let mut extracted = match run(bytes, name, budget.limits(limits))
        .await
        .into_result(limits)
    {
        Ok(x) => x,
        Err(e) => {
            return Err(Box::new(origin.failure(
                failure::EXTRACT_STAGE,
                e.kind,
                e.message,
            )))
        }
    };
    let members = std::mem::take(&mut extracted.members);
    budget.spend(&members);
    let parent = origin.clone();
    let (doc, warning) = finish(origin, extracted);
    let mut landing = Landing::default();
    landing.warnings.extend(warning);
    for member in members {
        let child = parent.child(&member, doc.event_time);
        let content = match member.content {
            Err(e) => Err(e),
            Ok(_) if child.depth > limits.max_nesting => Err(ExtractError::new(
                ErrorKind::TooDeep,
                format!(
                    "containers nest more than {} deep (extract.max_nesting)",
                    limits.max_nesting
                ),
            )),
            Ok(bytes) => Ok(bytes),
        };
        let bytes = match content {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                landing
                    .failed
                    .push(child.failure(failure::EXTRACT_STAGE, e.kind, e.message));
                continue;
            }
        };
        match Box::pin(land(child, bytes, member.name, limits, budget, run)).await {
            Ok(found) => {
                landing.docs.extend(found.docs);
                landing.warnings.extend(found.warnings);
                landing.failed.extend(found.failed);
            }
            Err(f) => landing.failed.push(*f),
        }
    }
    landing.docs.push(doc);
    Ok(landing)
}

/// The `extracted` row for an extraction's result, and its warning row.
fn finish(origin: Origin, extracted: Extracted) -> (ExtractedDoc, Option<Failure>) {
    let skipped_pages = extracted.ocr.as_ref().map_or(&[][..], |r| &r.skipped[..]);
    let warning = if extracted.invalid_utf8 > 0 {
        let msg = format!(
            "{} invalid UTF-8 sequence(s) replaced with U+FFFD; the document landed",
            extracted.invalid_utf8
        );
        Some(origin.failure(failure::EXTRACT_STAGE, ErrorKind::InvalidUtf8, msg))
    } else if !skipped_pages.is_empty() {
        let msg = format!(
            "pages {skipped_pages:?} have no text layer and tesseract is not installed, so they were left out; the rest landed. Install Debian's tesseract-ocr to read them"
        );
        Some(origin.failure(failure::EXTRACT_STAGE, ErrorKind::OcrUnavailable, msg))
    } else {
        None
    };
    let mut metadata = origin.metadata;
    metadata.insert("format".into(), extracted.format.name().into());
    metadata.insert("invalid_utf8".into(), extracted.invalid_utf8.into());
    // A message's own Date beats the file's modification time.
    let event_time = extracted
        .email
        .as_ref()
        .and_then(|e| e.sent_at)
        .or(origin.event_time);
    if let Some(email) = &extracted.email {
        metadata.insert(
            "email".into(),
            serde_json::to_value(email).unwrap_or_default(),
        );
    }
    if let Some(report) = extracted.ocr.as_ref().filter(|r| !r.pages.is_empty()) {
        metadata.insert(
            "ocr".into(),
            serde_json::json!({"pages": report.pages, "confidence": report.confidence}),
        );
    }
    let doc = ExtractedDoc {
        doc_id: origin.doc_id,
        tenant: origin.tenant,
        source_uri: origin.source_uri,
        content_hash: origin.content_hash,
        mime: extracted.format.mime().to_string(),
        title: origin.title.or(extracted.title),
        text: extracted.text,
        event_time,
        ingested_at: Utc::now(),
        metadata: serde_json::Value::Object(metadata).to_string(),
        parent_doc_id: origin.parent_doc_id,
    };
    (doc, warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin::new("d".into(), "t".into(), "file:///d.txt".into(), "h".into())
    }

    #[test]
    fn a_panicking_extractor_fails_its_document_only() {
        let failed = guarded(origin(), |_| panic!("boom")).unwrap_err();
        assert_eq!(failed.kind, ErrorKind::Internal);
        assert!(failed.error.contains("boom"), "{}", failed.error);
        assert_eq!(failed.doc_id, "d");
    }
}
