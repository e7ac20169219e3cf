//! One document version, from bytes to an `extracted` row: shared by the
//! jobs that read files (backfill) and events (ingest).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use crate::contract::extracted::ExtractedDoc;
use crate::contract::failure::{self, ErrorKind, Failure};
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

/// How many extractions may run at once. Rust cannot stop a thread, so an
/// extraction that timed out keeps running; its slot is given back only
/// when its thread really ends, which keeps memory bounded by the slots
/// rather than by how many documents timed out.
#[derive(Debug, Clone)]
pub struct ExtractSlots(Arc<Semaphore>);

impl ExtractSlots {
    pub fn new(slots: usize) -> Self {
        Self(Arc::new(Semaphore::new(slots.max(1))))
    }

    /// Runs `work` on a blocking thread once a slot is free, waiting at most
    /// `timeout` for it (the wait for a slot does not count). `None` when it
    /// timed out; the thread keeps the slot until it ends.
    async fn run<T: Send + 'static>(
        &self,
        timeout: Duration,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<Result<T, tokio::task::JoinError>> {
        let permit = self.0.clone().acquire_owned().await;
        let job = tokio::task::spawn_blocking(move || {
            let _slot = permit;
            work()
        });
        tokio::time::timeout(timeout, job).await.ok()
    }
}

/// Extracts `bytes` on a blocking thread under the extraction timeout.
/// Returns the document and, for documents that landed with a problem
/// (invalid UTF-8), a warning row.
pub async fn extract_document(
    origin: Origin,
    bytes: Bytes,
    name: String,
    limits: Limits,
    slots: &ExtractSlots,
) -> Result<(ExtractedDoc, Option<Failure>), Box<Failure>> {
    let work = move || extract(&bytes, &name, &limits);
    match slots.run(limits.timeout(), work).await {
        None => {
            let msg = format!(
                "extraction took longer than {}s (extract.timeout_secs)",
                limits.timeout_secs
            );
            Err(Box::new(origin.failure(
                failure::EXTRACT_STAGE,
                ErrorKind::Timeout,
                msg,
            )))
        }
        Some(Err(panic)) => Err(Box::new(crashed(&origin, &panic.to_string()))),
        Some(Ok(result)) => finish(origin, result),
    }
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
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(Box::new(crashed(&spare, &what)))
    })
}

fn crashed(origin: &Origin, what: &str) -> Failure {
    let msg = format!("the extractor crashed ({what}); please report this file");
    origin.failure(failure::EXTRACT_STAGE, ErrorKind::Internal, msg)
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
    let warning = (extracted.invalid_utf8 > 0).then(|| {
        let msg = format!(
            "{} invalid UTF-8 sequence(s) replaced with U+FFFD; the document landed",
            extracted.invalid_utf8
        );
        origin.failure(failure::EXTRACT_STAGE, ErrorKind::InvalidUtf8, msg)
    });
    let mut metadata = origin.metadata;
    metadata.insert("format".into(), extracted.format.name().into());
    metadata.insert("invalid_utf8".into(), extracted.invalid_utf8.into());
    let doc = ExtractedDoc {
        doc_id: origin.doc_id,
        tenant: origin.tenant,
        source_uri: origin.source_uri,
        content_hash: origin.content_hash,
        mime: extracted.format.mime().to_string(),
        title: origin.title.or(extracted.title),
        text: extracted.text,
        event_time: origin.event_time,
        ingested_at: Utc::now(),
        metadata: serde_json::Value::Object(metadata).to_string(),
    };
    Ok((doc, warning))
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timed_out_extraction_keeps_its_slot_until_its_thread_ends() {
        let slots = ExtractSlots::new(1);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let stuck = slots.run(Duration::ZERO, move || wait.recv().is_ok()).await;
        assert!(stuck.is_none(), "timed out");
        // The stuck thread still holds the only slot.
        let next = slots.run(Duration::from_secs(60), || 7);
        let mut next = Box::pin(next);
        assert!((&mut next).now_or_never().is_none());
        release.send(()).unwrap();
        assert_eq!(next.await.unwrap().unwrap(), 7);
    }
}
