//! One document version, from bytes to an `extracted` row: shared by the
//! jobs that read files (backfill) and events (ingest).

use std::panic::AssertUnwindSafe;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::extract_pool::{Ended, ExtractPool};
use crate::contract::extracted::ExtractedDoc;
use crate::contract::failure::{self, ErrorKind, Failure};
use crate::extract::worker::panic_message;
use crate::extract::{extract, ExtractError, Extracted, Limits};

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
}

impl Origin {
    pub fn failure(&self, stage: &str, kind: ErrorKind, error: impl Into<String>) -> Failure {
        Failure {
            doc_id: self.doc_id.clone(),
            content_hash: self.content_hash.clone(),
            source_uri: self.source_uri.clone(),
            stage: stage.to_string(),
            kind,
            error: error.into(),
            attempts: 1,
        }
    }
}

/// Extracts `bytes` in `pool` under the extraction limits. Returns the
/// document and, for documents that landed with a problem (invalid UTF-8),
/// a warning row.
pub async fn extract_document(
    origin: Origin,
    bytes: Bytes,
    name: String,
    limits: Limits,
    pool: &ExtractPool,
) -> Result<(ExtractedDoc, Option<Failure>), Box<Failure>> {
    let (kind, msg) = match pool.extract(bytes, name, limits.clone()).await {
        Ended::Done(result) => return finish(origin, result),
        Ended::TimedOut => (
            ErrorKind::Timeout,
            format!(
                "extraction took longer than {}s (extract.timeout_secs)",
                limits.timeout_secs
            ),
        ),
        Ended::OutOfMemory => (
            ErrorKind::MemoryLimit,
            format!(
                "extraction needed more than {} MB of memory and was stopped; raise extract.max_memory_mb in the pipeline file if the file is legitimate",
                limits.max_memory_mb
            ),
        ),
        Ended::Crashed(what) => {
            let e = ExtractError::crashed(&what);
            (e.kind, e.message)
        }
    };
    Err(Box::new(origin.failure(failure::EXTRACT_STAGE, kind, msg)))
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
) -> Result<(ExtractedDoc, Option<Failure>), Box<Failure>> {
    guarded(origin, |origin| {
        finish(origin, extract(bytes, name, limits))
    })
}

/// `work` on the document, or its `internal` failure row when it panics.
fn guarded(
    origin: Origin,
    work: impl FnOnce(Origin) -> Result<(ExtractedDoc, Option<Failure>), Box<Failure>>,
) -> Result<(ExtractedDoc, Option<Failure>), Box<Failure>> {
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

/// The `extracted` row for an extraction's result, or its failure row.
fn finish(
    origin: Origin,
    result: Result<Extracted, ExtractError>,
) -> Result<(ExtractedDoc, Option<Failure>), Box<Failure>> {
    let extracted = match result {
        Ok(x) => x,
        Err(e) => {
            return Err(Box::new(origin.failure(
                failure::EXTRACT_STAGE,
                e.kind,
                e.message,
            )))
        }
    };
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
    };
    Ok((doc, warning))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            doc_id: "d".into(),
            tenant: "t".into(),
            source_uri: "file:///d.txt".into(),
            content_hash: "h".into(),
            event_time: None,
            title: None,
            metadata: serde_json::Map::new(),
        }
    }

    #[test]
    fn a_panicking_extractor_fails_its_document_only() {
        let failed = guarded(origin(), |_| panic!("boom")).unwrap_err();
        assert_eq!(failed.kind, ErrorKind::Internal);
        assert!(failed.error.contains("boom"), "{}", failed.error);
        assert_eq!(failed.doc_id, "d");
    }
}
