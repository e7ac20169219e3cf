//! Format detection: magic bytes first (for a zip, the parts it holds), then
//! the extension, then a sniff.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use super::ExtractError;
use crate::contract::failure::ErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Text,
    Markdown,
    Html,
    Csv,
    Tsv,
    Json,
    Ndjson,
    Pdf,
    Docx,
    Odt,
    Rtf,
    Pptx,
    Odp,
    Xlsx,
    Ods,
    Epub,
    Email,
    Mbox,
    Zip,
    Tar,
    Gzip,
    Png,
    Jpeg,
    Tiff,
}

impl Format {
    pub fn mime(self) -> &'static str {
        match self {
            Format::Text => "text/plain",
            Format::Markdown => "text/markdown",
            Format::Html => "text/html",
            Format::Csv => "text/csv",
            Format::Tsv => "text/tab-separated-values",
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Pdf => "application/pdf",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            Format::Odt => "application/vnd.oasis.opendocument.text",
            Format::Rtf => "application/rtf",
            Format::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
            Format::Odp => "application/vnd.oasis.opendocument.presentation",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            Format::Epub => "application/epub+zip",
            Format::Email => "message/rfc822",
            Format::Mbox => "application/mbox",
            Format::Zip => "application/zip",
            Format::Tar => "application/x-tar",
            Format::Gzip => "application/gzip",
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
            Format::Tiff => "image/tiff",
        }
    }

    /// Whether the format is text we decode and parse in one linear pass,
    /// in time and memory (not a container of compressed parts).
    pub fn is_text(self) -> bool {
        matches!(
            self,
            Format::Text
                | Format::Markdown
                | Format::Html
                | Format::Csv
                | Format::Tsv
                | Format::Json
                | Format::Ndjson
        )
    }

    /// Whether the title comes from the file name: data has no first line
    /// a person would call a title.
    pub(super) fn titled_by_name(self) -> bool {
        matches!(
            self,
            Format::Csv
                | Format::Tsv
                | Format::Json
                | Format::Ndjson
                | Format::Xlsx
                | Format::Ods
                | Format::Mbox
                | Format::Zip
                | Format::Tar
                | Format::Gzip
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text file",
            Format::Markdown => "markdown file",
            Format::Html => "html page",
            Format::Csv => "csv file",
            Format::Tsv => "tsv file",
            Format::Json => "json file",
            Format::Ndjson => "ndjson file",
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Odt => "odt",
            Format::Rtf => "rtf",
            Format::Pptx => "pptx",
            Format::Odp => "odp",
            Format::Xlsx => "xlsx",
            Format::Ods => "ods",
            Format::Epub => "epub",
            Format::Email => "email",
            Format::Mbox => "mailbox",
            Format::Zip => "zip archive",
            Format::Tar => "tar archive",
            Format::Gzip => "gzip file",
            Format::Png => "png image",
            Format::Jpeg => "jpeg image",
            Format::Tiff => "tiff image",
        }
    }
}

/// Extensions of formats recognised by their content alone: a file that
/// claims one and does not start like it is damaged, not plain text.
const BINARY_EXTENSIONS: &[&str] = &[
    "pdf", "docx", "odt", "rtf", "pptx", "odp", "xlsx", "ods", "epub", "png", "jpg", "jpeg", "tif",
    "tiff", "zip", "tar", "gz", "tgz",
];

/// Images, read by OCR.
const IMAGE_MAGIC: &[(&[u8], Format)] = &[
    (b"\x89PNG\r\n\x1a\n", Format::Png),
    (b"\xff\xd8\xff", Format::Jpeg),
    (b"II*\0", Format::Tiff),
    (b"MM\0*", Format::Tiff),
];

/// Binary formats we recognise but do not extract, by magic bytes.
const UNSUPPORTED_MAGIC: &[(&[u8], &str)] = &[
    (b"GIF8", "a GIF image"),
    (
        b"\xd0\xcf\x11\xe0",
        "a legacy Office (OLE) file (.doc, .xls, .ppt); save it as .docx, .xlsx or .pptx",
    ),
    (b"7z\xbc\xaf", "a 7-zip archive"),
];

pub fn detect(bytes: &[u8], name: &str) -> Result<Format, ExtractError> {
    let ext = extension(name);
    let head = &bytes[..bytes.len().min(1024)];
    if find(head, b"%PDF-").is_some() {
        return Ok(Format::Pdf);
    }
    if bytes.starts_with(b"{\\rtf") {
        return Ok(Format::Rtf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return package_format(bytes, &ext);
    }
    if bytes.starts_with(b"PK\x05\x06") {
        return Ok(Format::Zip);
    }
    if bytes.starts_with(b"\x1f\x8b") {
        return Ok(Format::Gzip);
    }
    if bytes.get(257..262) == Some(b"ustar") {
        return Ok(Format::Tar);
    }
    if looks_like_mbox(sample_of(bytes), &ext) {
        return Ok(Format::Mbox);
    }
    if let Some((_, format)) = IMAGE_MAGIC.iter().find(|(m, _)| bytes.starts_with(m)) {
        return Ok(*format);
    }
    if let Some((_, what)) = UNSUPPORTED_MAGIC.iter().find(|(m, _)| bytes.starts_with(m)) {
        return Err(ExtractError::new(
            ErrorKind::Unsupported,
            format!("{what} is not a supported document format"),
        ));
    }
    if BINARY_EXTENSIONS.contains(&ext.as_str()) {
        return Err(ExtractError::new(
            ErrorKind::Corrupt,
            format!("named .{ext} but the content does not start like a {ext} file"),
        ));
    }
    let sample = sample_of(bytes);
    if sample.contains(&0) && !has_utf16_bom(bytes) {
        return Err(ExtractError::new(
            ErrorKind::Unsupported,
            format!(
                "binary content{} is not a supported document format ({SUPPORTED})",
                if ext.is_empty() {
                    String::new()
                } else {
                    format!(" in a .{ext} file")
                }
            ),
        ));
    }
    Ok(match ext.as_str() {
        "eml" => Format::Email,
        "md" | "markdown" => Format::Markdown,
        "html" | "htm" | "xhtml" => Format::Html,
        "csv" => Format::Csv,
        "tsv" | "tab" => Format::Tsv,
        "json" => Format::Json,
        "ndjson" | "jsonl" => Format::Ndjson,
        _ if looks_like_html(head) => Format::Html,
        _ if looks_like_email(sample) => Format::Email,
        _ => Format::Text,
    })
}

const SUPPORTED: &str = "txt, md, html, csv, tsv, json, ndjson, eml, mbox, pdf, docx, odt, rtf, pptx, odp, xlsx, ods, epub, png, jpeg, tiff, zip, tar, tar.gz";

fn sample_of(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(8192)]
}

/// A zip is a document package when it holds the parts of one: the
/// OpenDocument and EPUB `mimetype` first, then the OOXML main parts.
fn package_format(bytes: &[u8], ext: &str) -> Result<Format, ExtractError> {
    let mut zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        let named = if ext.is_empty() {
            String::new()
        } else {
            format!(" named .{ext}")
        };
        ExtractError::new(
            ErrorKind::Corrupt,
            format!("a damaged zip{named} (truncated?): {e}"),
        )
    })?;
    if let Ok(file) = zip.by_name("mimetype") {
        let mut mimetype = String::new();
        if file.take(128).read_to_string(&mut mimetype).is_ok() {
            let found = match mimetype.trim() {
                "application/vnd.oasis.opendocument.text" => Some(Format::Odt),
                "application/vnd.oasis.opendocument.presentation" => Some(Format::Odp),
                "application/vnd.oasis.opendocument.spreadsheet" => Some(Format::Ods),
                "application/epub+zip" => Some(Format::Epub),
                _ => None,
            };
            if let Some(format) = found {
                return Ok(format);
            }
        }
    }
    let main_parts = [
        ("word/document.xml", Format::Docx),
        ("ppt/presentation.xml", Format::Pptx),
        ("xl/workbook.xml", Format::Xlsx),
    ];
    if let Some((_, format)) = main_parts
        .iter()
        .find(|(part, _)| zip.index_for_name(part).is_some())
    {
        return Ok(*format);
    }
    // Other document packages (Visio, ODF drawings, ...) are one document
    // each, not archives of files to land.
    if zip.index_for_name("[Content_Types].xml").is_some()
        || zip.index_for_name("mimetype").is_some()
    {
        return Err(ExtractError::new(
            ErrorKind::Unsupported,
            format!("a document package that is not one of the supported formats ({SUPPORTED})"),
        ));
    }
    Ok(Format::Zip)
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

/// A mailbox starts with a `From ` separator line, then a message.
fn looks_like_mbox(sample: &[u8], ext: &str) -> bool {
    let Some(rest) = sample.strip_prefix(b"From ") else {
        return false;
    };
    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
        return false;
    };
    ext == "mbox" || looks_like_email(&rest[end + 1..])
}

/// A message starts with header lines, at least two of them ones every mail
/// has, before the first blank line.
fn looks_like_email(sample: &[u8]) -> bool {
    const MAIL_HEADERS: &[&str] = &[
        "from",
        "to",
        "date",
        "subject",
        "message-id",
        "received",
        "mime-version",
        "return-path",
    ];
    let text = String::from_utf8_lossy(sample);
    let mut known = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            return known >= 2;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((name, _)) = line.split_once(':') else {
            return false;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return false;
        }
        known += usize::from(MAIL_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
    }
    false
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
        let e = detect(b"GIF89a", "x.txt").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert_eq!(
            detect(b"\x89PNG\r\n\x1a\n..", "x.txt").unwrap(),
            Format::Png
        );
        let e = detect(b"ab\0cd", "blob.bin").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        let e = detect(b"ab\0cd", "table.csv").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        let e = detect(b"PK\x03\x04 cut short", "deck.pptx").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        assert_eq!(detect(b"a,b\n1,2", "t.CSV").unwrap(), Format::Csv);
        let mail = b"Received: by x\r\nFrom: a@b.c\r\nSubject: hi\r\n\r\nbody";
        assert_eq!(detect(mail, "message").unwrap(), Format::Email);
        assert_eq!(detect(b"Note: this is\nplain", "n").unwrap(), Format::Text);
    }

    #[test]
    fn archives_and_mailboxes_are_found_by_content() {
        assert_eq!(detect(b"PK\x05\x06\0\0\0\0", "x").unwrap(), Format::Zip);
        assert_eq!(detect(b"\x1f\x8b\x08\0", "x.txt").unwrap(), Format::Gzip);
        let mut tar = vec![b'a'; 1024];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect(&tar, "notes.txt").unwrap(), Format::Tar);
        let mbox = b"From a@b.c Mon Jan  1 00:00:00 2024\nFrom: a@b.c\nSubject: hi\n\nbody";
        assert_eq!(detect(mbox, "mail").unwrap(), Format::Mbox);
        let prose = b"From the desk of the director\nplain words";
        assert_eq!(detect(prose, "memo").unwrap(), Format::Text);
        let e = detect(b"just words", "backup.tar").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
    }
}
