//! PDF text: lopdf parses the file, bounding nesting and stream
//! decompression itself; our own content reader places the text, so that
//! columns read in order and ruled tables come out as markdown tables.
//! Pages without a text layer (scans) go through OCR, per `[extract] ocr`.

mod content;
mod fonts;
mod grid;
mod layout;
mod scan;

use docstream_udfs::chunk::PAGE_BREAK;
use lopdf::{Document, LoadOptions, ObjectId};

use super::ocr::{self, OcrMode, OcrReport};
use super::table::CellBudget;
use super::{decompression_limit, ExtractError, Limits, RawText};
use crate::contract::failure::ErrorKind;

pub(super) fn extract(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(RawText, Option<OcrReport>), ExtractError> {
    let budget = usize::try_from(limits.max_decompressed_bytes).unwrap_or(usize::MAX);
    let options = LoadOptions {
        max_decompressed_size: Some(budget),
        ..LoadOptions::default()
    };
    let doc = Document::load_mem_with_options(bytes, options).map_err(|e| classify(e, limits))?;
    let pages: Vec<(u32, ObjectId)> = doc.get_pages().into_iter().collect();
    if pages.is_empty() {
        return Err(ExtractError::new(
            ErrorKind::Corrupt,
            "the pdf has no readable pages (truncated or damaged?)",
        ));
    }
    let mut texts: Vec<String> = Vec::with_capacity(pages.len());
    let mut failed_pages = 0;
    let mut last_error = None;
    let mut used = 0usize;
    let mut cells = CellBudget::new(limits);
    for (_, id) in &pages {
        match content::read_page(&doc, *id, budget.saturating_sub(used)) {
            Ok(marks) => {
                let mut runs = marks.runs;
                let tables = grid::take_tables(&marks.rulings, &mut runs, &mut cells)?;
                let t = layout::page_text(runs, tables);
                used += t.len();
                texts.push(t);
            }
            Err(e) => {
                failed_pages += 1;
                last_error = Some(classify(e, limits));
                texts.push(String::new());
            }
        }
    }
    let report = read_scanned_pages(&doc, &pages, &mut texts, limits)?;
    let text = texts.join(&format!("\n{PAGE_BREAK}\n"));
    if failed_pages == pages.len() && report.as_ref().is_none_or(|r| r.pages.is_empty()) {
        return Err(last_error.unwrap_or_else(|| {
            ExtractError::new(ErrorKind::Corrupt, "no page of the pdf could be read")
        }));
    }
    if text.trim().is_empty() {
        if report.as_ref().is_some_and(|r| !r.skipped.is_empty()) {
            return Err(ocr::unavailable());
        }
        if doc.xref_recovery.is_some() {
            return Err(ExtractError::new(
                ErrorKind::Corrupt,
                "the pdf is damaged (truncated?): its cross-reference table had to be rebuilt and no text survived",
            ));
        }
    }
    if failed_pages > 0 {
        tracing::warn!(failed_pages, "skipped unreadable pdf pages");
    }
    Ok((
        RawText {
            text,
            title: info_title(&doc),
        },
        report,
    ))
}

/// OCR for the pages that need it: those without text under `auto`, all of
/// them under `force`. Their text replaces the page's.
fn read_scanned_pages(
    doc: &Document,
    pages: &[(u32, ObjectId)],
    texts: &mut [String],
    limits: &Limits,
) -> Result<Option<OcrReport>, ExtractError> {
    if limits.ocr == OcrMode::Off {
        return Ok(None);
    }
    let languages = limits.ocr_languages.join("+");
    let mut report = OcrReport {
        pages: Vec::new(),
        confidence: 0.0,
        skipped: Vec::new(),
    };
    let mut read_all = ocr::Recognized::default();
    for ((number, id), text) in pages.iter().zip(texts.iter_mut()) {
        if limits.ocr == OcrMode::Auto && !text.trim().is_empty() {
            continue;
        }
        let Some(image) = scan::page_image(doc, *id, limits) else {
            continue;
        };
        match ocr::recognize(&image, &languages) {
            Ok(read) => {
                *text = read.text;
                read_all.confidence_sum += read.confidence_sum;
                read_all.words += read.words;
                report.pages.push(*number);
            }
            Err(e) if e.kind == ErrorKind::OcrUnavailable && limits.ocr == OcrMode::Auto => {
                report.skipped.push(*number)
            }
            Err(e) if e.kind == ErrorKind::OcrUnavailable => return Err(e),
            Err(e) => tracing::warn!(page = number, error = %e, "OCR failed on a pdf page"),
        }
    }
    if report.pages.is_empty() && report.skipped.is_empty() {
        return Ok(None);
    }
    report.confidence = read_all.mean_confidence();
    Ok(Some(report))
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
