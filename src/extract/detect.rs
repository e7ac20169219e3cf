//! Format detection: magic bytes first, then the extension, then a sniff.

use super::ExtractError;
use crate::contract::failure::ErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
}

impl Format {
    pub fn mime(self) -> &'static str {
        match self {
            Format::Text => "text/plain",
            Format::Markdown => "text/markdown",
            Format::Html => "text/html",
            Format::Pdf => "application/pdf",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
        }
    }

    /// Whether the format is text we decode and parse in one linear pass,
    /// in time and memory (not a container of compressed parts).
    pub fn is_text(self) -> bool {
        matches!(self, Format::Text | Format::Markdown | Format::Html)
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text file",
            Format::Markdown => "markdown file",
            Format::Html => "html page",
            Format::Pdf => "pdf",
            Format::Docx => "docx",
        }
    }
}

/// Binary formats we recognise but do not extract, by magic bytes.
const UNSUPPORTED_MAGIC: &[(&[u8], &str)] = &[
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (
        b"\xd0\xcf\x11\xe0",
        "a legacy Office (OLE) file; save it as .docx",
    ),
    (b"7z\xbc\xaf", "a 7-zip archive"),
];

pub fn detect(bytes: &[u8], name: &str) -> Result<Format, ExtractError> {
    let ext = extension(name);
    let head = &bytes[..bytes.len().min(1024)];
    if find(head, b"%PDF-").is_some() {
        return Ok(Format::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return Ok(Format::Docx);
    }
    if let Some((_, what)) = UNSUPPORTED_MAGIC.iter().find(|(m, _)| bytes.starts_with(m)) {
        return Err(ExtractError::new(
            ErrorKind::Unsupported,
            format!("{what} is not a supported document format"),
        ));
    }
    match ext.as_str() {
        "pdf" | "docx" => {
            return Err(ExtractError::new(
                ErrorKind::Corrupt,
                format!("named .{ext} but the content does not start like a {ext} file"),
            ))
        }
        "md" | "markdown" => return Ok(Format::Markdown),
        "html" | "htm" | "xhtml" => return Ok(Format::Html),
        _ => {}
    }
    if looks_like_html(head) {
        return Ok(Format::Html);
    }
    let sample = &bytes[..bytes.len().min(8192)];
    if sample.contains(&0) && !has_utf16_bom(bytes) {
        return Err(ExtractError::new(
            ErrorKind::Unsupported,
            format!(
                "binary content{} is not a supported document format (txt, md, html, pdf, docx)",
                if ext.is_empty() {
                    String::new()
                } else {
                    format!(" in a .{ext} file")
                }
            ),
        ));
    }
    Ok(Format::Text)
}

fn extension(name: &str) -> String {
    let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
    match file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

fn looks_like_html(head: &[u8]) -> bool {
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let lower = head[start..].to_ascii_lowercase();
    lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html")
}

pub(super) fn has_utf16_bom(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\xff\xfe") || bytes.starts_with(b"\xfe\xff")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_beats_extension() {
        assert_eq!(detect(b"%PDF-1.4 ...", "a.txt").unwrap(), Format::Pdf);
        assert_eq!(detect(b"PK\x03\x04....", "report").unwrap(), Format::Docx);
        assert_eq!(
            detect(b"<!DOCTYPE html><p>x", "page").unwrap(),
            Format::Html
        );
        assert_eq!(detect(b"# Title", "notes.MD").unwrap(), Format::Markdown);
        assert_eq!(detect(b"plain words", "x.txt").unwrap(), Format::Text);
    }

    #[test]
    fn lies_and_binaries_are_errors() {
        let e = detect(b"random bytes", "fake.pdf").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        let e = detect(b"\x89PNG\r\n", "x.txt").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        let e = detect(b"ab\0cd", "blob.bin").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
    }
}
