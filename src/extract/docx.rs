//! DOCX: the paragraphs of `word/document.xml`, read out of the zip under a
//! decompression budget, since a docx is a zip and zip bombs are real.

use std::io::{Cursor, Read};

use quick_xml::events::Event;
use quick_xml::Reader;
use zip::ZipArchive;

use super::{decompression_limit, too_deep, ExtractError, Limits, RawText};
use crate::contract::failure::ErrorKind;

/// A docx has a dozen parts; thousands of entries is a hostile archive.
const MAX_ENTRIES: usize = 10_000;

pub(super) fn extract(bytes: &[u8], limits: &Limits) -> Result<RawText, ExtractError> {
    let mut zip = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| ExtractError::new(ErrorKind::Corrupt, format!("not a readable zip: {e}")))?;
    if zip.len() > MAX_ENTRIES {
        return Err(ExtractError::new(
            ErrorKind::Corrupt,
            format!("zip has {} entries, more than a docx ever needs", zip.len()),
        ));
    }
    let mut budget = limits.max_decompressed_bytes;
    let body = read_part(&mut zip, "word/document.xml", &mut budget, limits)?.ok_or_else(|| {
        ExtractError::new(
            ErrorKind::Unsupported,
            "a zip archive without word/document.xml is not a docx",
        )
    })?;
    let core_title = read_part(&mut zip, "docProps/core.xml", &mut budget, limits)
        .ok()
        .flatten()
        .and_then(|xml| core_title(&xml));
    Ok(RawText {
        text: document_text(&body, limits)?,
        title: core_title,
    })
}

/// Reads one part, charging its real decompressed size against `budget`.
fn read_part(
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    name: &str,
    budget: &mut u64,
    limits: &Limits,
) -> Result<Option<String>, ExtractError> {
    let file = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => {
            return Err(ExtractError::new(
                ErrorKind::Corrupt,
                format!("cannot open {name}: {e}"),
            ))
        }
    };
    // The declared size can lie, so the read itself is capped too.
    if file.size() > *budget {
        return Err(decompression_limit(limits));
    }
    let mut out = Vec::new();
    file.take(*budget + 1).read_to_end(&mut out).map_err(|e| {
        ExtractError::new(ErrorKind::Corrupt, format!("cannot inflate {name}: {e}"))
    })?;
    if out.len() as u64 > *budget {
        return Err(decompression_limit(limits));
    }
    *budget -= out.len() as u64;
    String::from_utf8(out)
        .map(Some)
        .map_err(|_| ExtractError::new(ErrorKind::Corrupt, format!("{name} is not UTF-8 XML")))
}

/// Text of `w:t` runs; paragraphs end with a blank line, tabs and breaks kept.
fn document_text(xml: &str, limits: &Limits) -> Result<String, ExtractError> {
    let mut reader = Reader::from_str(xml);
    let mut text = String::with_capacity(xml.len() / 4);
    let mut depth = 0usize;
    let mut in_text = false;
    loop {
        let event = reader.read_event().map_err(|e| {
            ExtractError::new(
                ErrorKind::Corrupt,
                format!(
                    "word/document.xml is malformed at byte {}: {e}",
                    reader.buffer_position()
                ),
            )
        })?;
        match event {
            Event::Start(e) => {
                depth += 1;
                if depth > limits.max_depth {
                    return Err(too_deep(limits));
                }
                in_text = e.local_name().as_ref() == "t";
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                in_text = false;
                if e.local_name().as_ref() == "p" {
                    text.push_str("\n\n");
                }
            }
            Event::Empty(e) => match e.local_name().as_ref() {
                "tab" => text.push('\t'),
                "br" | "cr" => text.push('\n'),
                "p" => text.push_str("\n\n"),
                _ => {}
            },
            Event::Text(t) if in_text => text.push_str(&t.xml10_content()),
            Event::CData(t) if in_text => text.push_str(&t),
            Event::GeneralRef(r) if in_text => {
                if let Some(c) = super::html::entity(&r) {
                    text.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(text)
}

/// `dc:title` from `docProps/core.xml`.
fn core_title(xml: &str) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    let mut in_title = false;
    let mut title = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => in_title = e.local_name().as_ref() == "title",
            Event::End(_) if in_title => break,
            Event::Text(t) if in_title => title.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_title => title.extend(super::html::entity(&r)),
            Event::Eof => break,
            _ => {}
        }
    }
    Some(title).filter(|t| !t.trim().is_empty())
}
