//! Text extraction, one module per format, behind guards that make hostile
//! input fail fast instead of taking the process down.

mod archive;
mod delimited;
mod detect;
mod docx;
mod email;
mod epub;
mod flow;
mod html;
mod json;
mod markdown;
mod mbox;
mod ocr;
mod odt;
mod package;
mod pdf;
mod rtf;
mod sheets;
mod slides;
mod table;
mod text;
pub mod worker;
mod xml;

use std::time::Duration;

pub use detect::{detect, Format};
pub use email::EmailHeaders;
pub use ocr::{OcrMode, OcrReport};

use crate::contract::failure::ErrorKind;

/// The `[extract]` settings: guards applied to every document, and OCR.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
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
    /// Cells a document's tables (sheets, csv, docx tables) may hold.
    pub max_table_cells: u64,
    /// Files an archive, mailbox or email may hold, counted over all its
    /// nesting levels: each lands as a child document.
    pub max_members: u64,
    /// Containers inside containers (a zip in a zip is 2) read before the
    /// deeper ones fail with `too_deep`.
    pub max_nesting: usize,
    /// When pages and images are read by OCR.
    pub ocr: OcrMode,
    /// Tesseract languages, e.g. `["eng", "deu"]`; each needs Debian's
    /// `tesseract-ocr-<lang>` package.
    pub ocr_languages: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 64 << 20,
            max_decompressed_bytes: 256 << 20,
            max_depth: 512,
            timeout_secs: 30.0,
            max_memory_mb: 2048,
            max_table_cells: 1_000_000,
            max_members: 10_000,
            max_nesting: 4,
            ocr: OcrMode::Auto,
            ocr_languages: vec!["eng".into()],
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
    /// What OCR read or had to skip, for scanned pages and images.
    pub ocr: Option<OcrReport>,
    /// An email's headers.
    pub email: Option<Box<EmailHeaders>>,
    /// The files a container holds, to land as child documents.
    pub members: Vec<Member>,
}

/// A file inside a container: an archive member, a mailbox's message or an
/// email's attachment.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Unique within the container and stable across its versions: the
    /// archive path, `message/N` or `attachment/N`. Part of the child's id.
    pub path: String,
    /// The file name, for format detection and the title.
    pub name: String,
    /// The bytes, or why the member was not read (a path that escapes the
    /// archive, a file over `max_input_bytes`).
    pub content: Result<Vec<u8>, ExtractError>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
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
    let mut ocr = None;
    let mut email = None;
    let mut members = Vec::new();
    let (raw, invalid_utf8) = match format {
        Format::Email => {
            let (raw, headers, attachments) = email::extract(bytes, limits)?;
            email = Some(Box::new(headers));
            members = attachments;
            (raw, 0)
        }
        Format::Zip | Format::Tar | Format::Gzip | Format::Mbox => {
            let (raw, found) = match format {
                Format::Zip => archive::zip(bytes, limits)?,
                Format::Tar => archive::tar(bytes, limits)?,
                Format::Gzip => archive::gzip(bytes, name, limits)?,
                _ => mbox::extract(bytes, limits)?,
            };
            members = found;
            (raw, 0)
        }
        Format::Pdf => {
            let (raw, report) = pdf::extract(bytes, limits)?;
            ocr = report;
            (raw, 0)
        }
        Format::Png | Format::Jpeg | Format::Tiff => {
            let (raw, report) = ocr::image(bytes, limits)?;
            ocr = Some(report);
            (raw, 0)
        }
        Format::Docx => (docx::extract(bytes, limits)?, 0),
        Format::Odt => (odt::extract(bytes, limits)?, 0),
        Format::Rtf => (rtf::extract(bytes, limits)?, 0),
        Format::Pptx => (slides::pptx(bytes, limits)?, 0),
        Format::Odp => (slides::odp(bytes, limits)?, 0),
        Format::Xlsx => (sheets::xlsx(bytes, limits)?, 0),
        Format::Ods => (sheets::ods(bytes, limits)?, 0),
        Format::Epub => (epub::extract(bytes, limits)?, 0),
        text => {
            debug_assert!(text.is_text(), "{text:?} has no extractor");
            let (decoded, invalid) = text::decode(bytes);
            (text_format(text, &decoded, limits)?, invalid)
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
        .or_else(|| match format.titled_by_name() {
            true => text::file_stem(name),
            false => text::first_line(&body),
        });
    Ok(Extracted {
        format,
        text: body,
        title,
        invalid_utf8,
        ocr,
        email,
        members,
    })
}

/// The formats that are decoded text first.
fn text_format(format: Format, text: &str, limits: &Limits) -> Result<RawText, ExtractError> {
    let data = |text| RawText { text, title: None };
    Ok(match format {
        Format::Html => html::extract(text, limits)?,
        Format::Markdown => markdown::extract(text, limits)?,
        Format::Csv => data(delimited::extract(text, b',', limits)?),
        Format::Tsv => data(delimited::extract(text, b'\t', limits)?),
        Format::Json => data(json::json(text, limits)?),
        Format::Ndjson => data(json::ndjson(text, limits)?),
        _ => text::extract(text),
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
