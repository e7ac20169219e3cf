//! A failed unit of work: one row of the `failures` table.

use std::fmt;

use docstream_models::error::CallError;

/// Why a unit of work failed. The names are stable: they land in
/// `failures.error_kind` and users filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The object is larger than `extract.max_input_bytes`.
    TooLarge,
    /// Decompressing the document would exceed `extract.max_decompressed_bytes`.
    DecompressionLimit,
    /// The document nests deeper than `extract.max_depth`.
    TooDeep,
    /// Extraction ran longer than `extract.timeout_secs`.
    Timeout,
    /// Extraction needed more than `extract.max_memory_mb`.
    MemoryLimit,
    /// The bytes do not parse as the format they claim to be.
    Corrupt,
    /// No extractor handles this format.
    Unsupported,
    /// The file has no bytes.
    Empty,
    /// The document parsed but holds no text.
    NoText,
    /// Invalid UTF-8 was replaced with U+FFFD; the document still landed.
    InvalidUtf8,
    /// A container member's path is absolute or climbs out with `..` (a
    /// zip-slip path); the member was not read.
    UnsafePath,
    /// Pages or images needed OCR and Tesseract is not installed. A warning
    /// when the rest of the document landed.
    OcrUnavailable,
    /// The object could not be read from storage.
    Read,
    /// An event named an object outside `[kafka] allowed_objects` (or its
    /// tenant's prefixes); it was not read.
    Forbidden,
    /// A SQL stage failed on this document.
    Stage,
    /// An extractor crashed; a bug worth reporting.
    Internal,
    /// The model endpoint kept answering 429 until retries ran out.
    ModelRateLimited,
    /// The model endpoint did not answer within `timeout_secs`.
    ModelTimeout,
    /// The endpoint was unreachable, answered 5xx, or its circuit was open.
    ModelUnavailable,
    /// The endpoint refused this input (4xx other than 408/429).
    ModelRejected,
    /// The response was not the JSON the API promises.
    ModelMalformed,
    /// The model's output did not validate against its schema, even after a repair attempt.
    ModelInvalidOutput,
    /// A Kafka message that is not JSON or breaks schemas/document_event.schema.json.
    MalformedEvent,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::TooLarge => "too_large",
            ErrorKind::DecompressionLimit => "decompression_limit",
            ErrorKind::TooDeep => "too_deep",
            ErrorKind::Timeout => "timeout",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Empty => "empty",
            ErrorKind::NoText => "no_text",
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::UnsafePath => "unsafe_path",
            ErrorKind::OcrUnavailable => "ocr_unavailable",
            ErrorKind::Read => "read",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Stage => "stage",
            ErrorKind::Internal => "internal",
            ErrorKind::ModelRateLimited => "model_rate_limited",
            ErrorKind::ModelTimeout => "model_timeout",
            ErrorKind::ModelUnavailable => "model_unavailable",
            ErrorKind::ModelRejected => "model_rejected",
            ErrorKind::ModelMalformed => "model_malformed",
            ErrorKind::ModelInvalidOutput => "model_invalid_output",
            ErrorKind::MalformedEvent => "malformed_event",
        }
    }

    /// Kinds recorded next to a document that still landed.
    pub const WARNINGS: [ErrorKind; 1] = [ErrorKind::InvalidUtf8];

    /// Kinds a later run retries by default: the endpoint may answer then.
    pub const RETRYABLE: [ErrorKind; 3] = [
        ErrorKind::ModelRateLimited,
        ErrorKind::ModelTimeout,
        ErrorKind::ModelUnavailable,
    ];

    /// The kinds a SQL stage fails with.
    pub const STAGE_KINDS: [ErrorKind; 7] = [
        ErrorKind::Stage,
        ErrorKind::ModelRateLimited,
        ErrorKind::ModelTimeout,
        ErrorKind::ModelUnavailable,
        ErrorKind::ModelRejected,
        ErrorKind::ModelMalformed,
        ErrorKind::ModelInvalidOutput,
    ];

    pub fn is_retryable(kind: &str) -> bool {
        Self::RETRYABLE.iter().any(|k| k.as_str() == kind)
    }
}

/// The `failures` kind of a model call that failed for good.
impl From<&CallError> for ErrorKind {
    fn from(e: &CallError) -> Self {
        match e {
            CallError::Status { status: 429, .. } => ErrorKind::ModelRateLimited,
            CallError::Status { status, .. } if *status >= 500 || *status == 408 => {
                ErrorKind::ModelUnavailable
            }
            CallError::Status { .. } => ErrorKind::ModelRejected,
            CallError::Timeout(_) => ErrorKind::ModelTimeout,
            CallError::Connect(_) | CallError::CircuitOpen(_) => ErrorKind::ModelUnavailable,
            CallError::Malformed(_) => ErrorKind::ModelMalformed,
            CallError::InvalidOutput(_) => ErrorKind::ModelInvalidOutput,
            CallError::Local(_) => ErrorKind::ModelUnavailable,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `failures.stage` of an object that could not be read.
pub const READ_STAGE: &str = "read";
/// `failures.stage` of bytes that could not be extracted.
pub const EXTRACT_STAGE: &str = "extract";

/// One row for the `failures` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub doc_id: String,
    pub content_hash: String,
    pub source_uri: String,
    pub stage: String,
    pub kind: ErrorKind,
    pub error: String,
    pub attempts: i32,
    /// The failed SQL stage's fingerprint; `None` before the stages.
    pub stage_fingerprint: Option<String>,
}

/// The failures as a batch for the `failures` table.
pub fn to_batch(
    failures: &[Failure],
    failed_at: chrono::DateTime<chrono::Utc>,
) -> deltalake::arrow::error::Result<deltalake::arrow::array::RecordBatch> {
    use std::sync::Arc;

    use deltalake::arrow::array::{ArrayRef, Int32Array, StringArray, TimestampMicrosecondArray};

    use crate::contract::tables::FINGERPRINT;

    let strings = |f: fn(&Failure) -> &str| -> ArrayRef {
        Arc::new(failures.iter().map(|x| Some(f(x))).collect::<StringArray>())
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("doc_id", strings(|f| &f.doc_id)),
        ("content_hash", strings(|f| &f.content_hash)),
        ("stage", strings(|f| &f.stage)),
        ("error_kind", strings(|f| f.kind.as_str())),
        ("error", strings(|f| &f.error)),
        (
            "attempts",
            Arc::new(failures.iter().map(|f| f.attempts).collect::<Int32Array>()),
        ),
        ("source_uri", strings(|f| &f.source_uri)),
        (
            FINGERPRINT,
            Arc::new(
                failures
                    .iter()
                    .map(|f| f.stage_fingerprint.as_deref())
                    .collect::<StringArray>(),
            ),
        ),
        (
            "failed_at",
            Arc::new(
                TimestampMicrosecondArray::from(vec![failed_at.timestamp_micros(); failures.len()])
                    .with_timezone("UTC"),
            ),
        ),
    ];
    crate::contract::tables::contract_batch("failures", columns)
}

#[cfg(test)]
mod tests {
    use super::ErrorKind::*;

    #[test]
    fn serialized_kinds_are_the_table_names() {
        for kind in [
            TooLarge,
            MemoryLimit,
            NoText,
            InvalidUtf8,
            ModelRateLimited,
            MalformedEvent,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
