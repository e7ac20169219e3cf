//! PDF text via lopdf, which bounds nesting and stream decompression itself.

use lopdf::{Document, LoadOptions};

use super::{decompression_limit, ExtractError, Limits, RawText};
use crate::contract::failure::ErrorKind;

pub(super) fn extract(bytes: &[u8], limits: &Limits) -> Result<RawText, ExtractError> {
    let budget = usize::try_from(limits.max_decompressed_bytes).unwrap_or(usize::MAX);
    let options = LoadOptions {
        max_decompressed_size: Some(budget),
        ..LoadOptions::default()
    };
    let doc = Document::load_mem_with_options(bytes, options).map_err(|e| classify(e, limits))?;
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    if pages.is_empty() {
        return Err(ExtractError::new(
            ErrorKind::Corrupt,
            "the pdf has no readable pages (truncated or damaged?)",
        ));
    }
    let mut text = String::new();
    let mut failed_pages = 0;
    let mut last_error = None;
    for page in &pages {
        let remaining = budget.saturating_sub(text.len());
        match doc.extract_text_with_limit(&[*page], remaining) {
            Ok(t) => {
                text.push_str(&t);
                text.push_str("\n\n");
            }
            Err(e) => {
                failed_pages += 1;
                last_error = Some(classify(e, limits));
            }
        }
    }
    if failed_pages == pages.len() {
        return Err(last_error.unwrap_or_else(|| {
            ExtractError::new(ErrorKind::Corrupt, "no page of the pdf could be read")
        }));
    }
    if text.trim().is_empty() && doc.xref_recovery.is_some() {
        return Err(ExtractError::new(
            ErrorKind::Corrupt,
            "the pdf is damaged (truncated?): its cross-reference table had to be rebuilt and no text survived",
        ));
    }
    if failed_pages > 0 {
        tracing::warn!(failed_pages, "skipped unreadable pdf pages");
    }
    Ok(RawText {
        text,
        title: info_title(&doc),
    })
}

fn info_title(doc: &Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let dict = match info {
        lopdf::Object::Reference(id) => doc.get_dictionary(*id).ok()?,
        lopdf::Object::Dictionary(d) => d,
        _ => return None,
    };
    let title = dict.get(b"Title").ok()?;
    lopdf::decode_text_string(title).ok()
}

fn classify(e: lopdf::Error, limits: &Limits) -> ExtractError {
    match e {
        lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. }) => {
            decompression_limit(limits)
        }
        lopdf::Error::RecursionLimit | lopdf::Error::ReferenceLimit => super::too_deep(limits),
        lopdf::Error::Decryption(e) => ExtractError::new(
            ErrorKind::Unsupported,
            format!("encrypted pdf that cannot be opened without a password: {e}"),
        ),
        e => ExtractError::new(ErrorKind::Corrupt, format!("not a readable pdf: {e}")),
    }
}
