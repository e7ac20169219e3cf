//! Text extraction, one module per format, behind guards that make hostile
//! input fail fast instead of taking the process down.

mod detect;
mod docx;
mod html;
mod markdown;
mod pdf;
mod text;
pub mod worker;

use std::time::Duration;

pub use detect::{detect, Format};

use crate::contract::failure::ErrorKind;

/// Guards applied to every document.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Larger objects are not read at all.
    pub max_input_bytes: u64,
    /// Bound on bytes produced by decompression (docx parts, pdf streams).
    pub max_decompressed_bytes: u64,
    /// Deepest element nesting accepted in html, docx XML and markdown.
    pub max_depth: usize,
    /// Wall-clock budget for one document's extraction.
    pub timeout_secs: f64,
    /// Memory one extraction process may allocate; past it the process is
    /// stopped and the document fails with `memory_limit`.
    pub max_memory_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 64 << 20,
            max_decompressed_bytes: 256 << 20,
            max_depth: 512,
            timeout_secs: 30.0,
            max_memory_mb: 2048,
        }
    }
}

impl Limits {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs.max(0.001))
    }
}

/// Text pulled out of one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    pub format: Format,
    pub text: String,
    pub title: Option<String>,
    /// Invalid UTF-8 sequences replaced with U+FFFD.
    pub invalid_utf8: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExtractError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ExtractError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// An extractor that panicked: a bug, not the file's fault alone.
    pub fn crashed(what: &str) -> Self {
        Self::new(
            ErrorKind::Internal,
            format!("the extractor crashed ({what}); please report this file"),
        )
    }
}

/// Extracts text from `bytes`, using `name` (a path or URI) for its extension.
///
/// Synchronous and CPU-bound: callers run it on a blocking thread under
/// [`Limits::timeout`].
pub fn extract(bytes: &[u8], name: &str, limits: &Limits) -> Result<Extracted, ExtractError> {
    if bytes.is_empty() {
        return Err(ExtractError::new(ErrorKind::Empty, "the file is empty"));
    }
    if bytes.len() as u64 > limits.max_input_bytes {
        return Err(too_large(bytes.len() as u64, limits));
    }
    let format = detect(bytes, name)?;
    let (raw, invalid_utf8) = match format {
        Format::Pdf => (pdf::extract(bytes, limits)?, 0),
        Format::Docx => (docx::extract(bytes, limits)?, 0),
        Format::Html | Format::Markdown | Format::Text => {
            let (decoded, invalid) = text::decode(bytes);
            let raw = match format {
                Format::Html => html::extract(&decoded, limits)?,
                Format::Markdown => markdown::extract(&decoded, limits)?,
                _ => text::extract(&decoded),
            };
            (raw, invalid)
        }
    };
    let body = text::tidy(&raw.text);
    if body.trim().is_empty() {
        return Err(ExtractError::new(
            ErrorKind::NoText,
            format!("the {} holds no extractable text", format.name()),
        ));
    }
    let title = raw
        .title
        .map(|t| text::one_line(&t))
        .filter(|t| !t.is_empty())
        .or_else(|| text::first_line(&body));
    Ok(Extracted {
        format,
        text: body,
        title,
        invalid_utf8,
    })
}

/// What a format module returns before the shared clean-up.
#[derive(Debug)]
struct RawText {
    text: String,
    title: Option<String>,
}

pub(crate) fn too_large(size: u64, limits: &Limits) -> ExtractError {
    ExtractError::new(
        ErrorKind::TooLarge,
        format!(
            "{size} bytes is over the {} byte limit; raise extract.max_input_bytes in the pipeline file to accept it",
            limits.max_input_bytes
        ),
    )
}

fn too_deep(limits: &Limits) -> ExtractError {
    ExtractError::new(
        ErrorKind::TooDeep,
        format!(
            "nesting is deeper than {} levels (extract.max_depth)",
            limits.max_depth
        ),
    )
}

fn decompression_limit(limits: &Limits) -> ExtractError {
    ExtractError::new(
        ErrorKind::DecompressionLimit,
        format!(
            "decompressed content exceeds {} bytes (extract.max_decompressed_bytes); possibly a zip bomb",
            limits.max_decompressed_bytes
        ),
    )
}
