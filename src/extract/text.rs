//! Plain text, and the decoding and clean-up shared by the text formats.

use docstream_udfs::chunk::PAGE_BREAK;

use super::RawText;

/// Decodes bytes as UTF-8 (or UTF-16 with a BOM), replacing invalid sequences
/// with U+FFFD. Returns the text and the number of replacements.
pub(super) fn decode(bytes: &[u8]) -> (String, usize) {
    if super::detect::has_utf16_bom(bytes) {
        let little = bytes.starts_with(b"\xff\xfe");
        let units = bytes[2..].chunks_exact(2).map(|p| {
            if little {
                u16::from_le_bytes([p[0], p[1]])
            } else {
                u16::from_be_bytes([p[0], p[1]])
            }
        });
        let mut invalid = bytes[2..].len() % 2;
        let text = char::decode_utf16(units)
            .map(|c| {
                c.unwrap_or_else(|_| {
                    invalid += 1;
                    char::REPLACEMENT_CHARACTER
                })
            })
            .collect();
        return (text, invalid);
    }
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut text = String::with_capacity(bytes.len());
    let mut invalid = 0;
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            invalid += 1;
            text.push(char::REPLACEMENT_CHARACTER);
        }
    }
    (text, invalid)
}

pub(super) fn extract(text: &str) -> RawText {
    RawText {
        text: text.to_string(),
        title: None,
    }
}

/// Normalises line endings, strips control characters and trailing spaces, and
/// collapses runs of blank lines to one, so paragraphs read the same whatever
/// the source format.
pub(super) fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    let mut breaks = 0;
    for (page, page_text) in text.split(PAGE_BREAK).enumerate() {
        breaks += usize::from(page > 0);
        for line in page_text.split('\n') {
            let line = line.trim_end();
            if line.is_empty() {
                blank_run += 1;
                continue;
            }
            // A page break stands alone between paragraphs, so a chunk
            // knows the pages its words are on.
            for _ in 0..breaks {
                if !out.is_empty() {
                    out.push_str("\n\n");
                }
                out.push(PAGE_BREAK);
                blank_run = 1;
            }
            breaks = 0;
            if !out.is_empty() {
                out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
            }
            blank_run = 0;
            out.extend(
                line.chars()
                    .filter(|c| !c.is_control() || *c == '\t')
                    .map(|c| if c == '\u{a0}' { ' ' } else { c }),
            );
        }
    }
    out
}

/// Collapses whitespace into single spaces and drops control characters
/// (a title's escape sequences would drive the terminal that prints it).
pub(super) fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first non-empty line, cut to a title's length.
pub(super) fn first_line(text: &str) -> Option<String> {
    const MAX_TITLE_CHARS: usize = 200;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(MAX_TITLE_CHARS).collect())
}

/// The file name without folders and extension, as a title.
pub(super) fn file_stem(name: &str) -> Option<String> {
    let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let stem = file.rsplit_once('.').map_or(file, |(stem, _)| stem);
    // `logs.tar.gz` is called `logs`.
    let stem = stem.strip_suffix(".tar").unwrap_or(stem);
    Some(one_line(stem)).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_decoding_counts_replacements() {
        let (text, invalid) = decode(b"caf\xc3\xa9 \xff\xfe ok \xc3");
        assert_eq!(invalid, 3);
        assert!(text.starts_with("café "));
        assert!(text.contains('\u{fffd}'));
        assert_eq!(decode("\u{feff}hi".as_bytes()), ("hi".to_string(), 0));
        let utf16: Vec<u8> = [0xff, 0xfe, b'h', 0, b'i', 0].to_vec();
        assert_eq!(decode(&utf16), ("hi".to_string(), 0));
    }

    #[test]
    fn titles_lose_control_characters() {
        assert_eq!(
            one_line("Q3\u{1b}]0;pwned\u{7} report\n"),
            "Q3 ]0;pwned report"
        );
    }

    #[test]
    fn tidy_keeps_paragraphs() {
        assert_eq!(tidy("a  \r\nb\n\n\n\nc\u{0}\n"), "a\nb\n\nc");
    }

    #[test]
    fn tidy_keeps_page_breaks_between_paragraphs() {
        assert_eq!(
            tidy("\u{c}\nfirst\n\u{c}x\n\u{c}\n\u{c}\nlast\u{c}"),
            "\u{c}\n\nfirst\n\n\u{c}\n\nx\n\n\u{c}\n\n\u{c}\n\nlast"
        );
    }
}
