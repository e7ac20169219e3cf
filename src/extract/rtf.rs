//! RTF: the body's text, without the destinations that hold none (font and
//! colour tables, style sheets, pictures, field instructions). A small
//! state machine of our own: the one RTF crate on crates.io tokenizes by
//! recursion over string slices, which hostile input turns into a stack
//! overflow or a slice panic. Groups are a stack we bound by `max_depth`.

use encoding_rs::{Encoding, WINDOWS_1252};

use super::{too_deep, ExtractError, Limits, RawText};

/// Destinations whose text is not the document's.
const SKIPPED: &[&str] = &[
    "fonttbl",
    "colortbl",
    "stylesheet",
    "info",
    "pict",
    "object",
    "header",
    "headerl",
    "headerr",
    "headerf",
    "footer",
    "footerl",
    "footerr",
    "footerf",
    "fldinst",
    "listtable",
    "listoverridetable",
    "revtbl",
    "rsidtbl",
    "themedata",
    "colorschememapping",
    "datastore",
    "latentstyles",
    "xmlnstbl",
    "generator",
    "filetbl",
];

#[derive(Clone, Copy, Default)]
struct Group {
    skip: bool,
    /// Inside `{\info{\title ...}}`.
    title: bool,
    /// In a table cell's paragraph (`\intbl`): a paragraph end is a space.
    in_table: bool,
    /// Fallback characters to drop after a `\u` (`\ucN`).
    uc: usize,
}

pub(super) fn extract(bytes: &[u8], limits: &Limits) -> Result<RawText, ExtractError> {
    let mut reader = Reader {
        bytes,
        at: 0,
        encoding: WINDOWS_1252,
        text: String::new(),
        title: String::new(),
        pending: Vec::new(),
    };
    let mut stack: Vec<Group> = Vec::new();
    let mut group = Group {
        uc: 1,
        ..Group::default()
    };
    // Fallback characters still to drop after a `\u`.
    let mut drop = 0usize;
    while let Some(&b) = bytes.get(reader.at) {
        reader.at += 1;
        match b {
            b'{' => {
                stack.push(group);
                if stack.len() > limits.max_depth {
                    return Err(too_deep(limits));
                }
                if bytes[reader.at..].starts_with(b"\\*") {
                    group.skip = true;
                }
            }
            b'}' => {
                reader.flush(group);
                group = stack.pop().unwrap_or_default();
                drop = 0;
            }
            b'\\' => {
                let Some(&next) = bytes.get(reader.at) else {
                    break;
                };
                if next.is_ascii_alphabetic() {
                    let (word, param) = reader.control_word();
                    if drop > 0 && word != "u" {
                        drop -= 1;
                        continue;
                    }
                    reader.word(word, param, &mut group, &mut drop);
                } else {
                    reader.at += 1;
                    if drop > 0 {
                        drop -= 1;
                        if next == b'\'' {
                            reader.at = (reader.at + 2).min(bytes.len());
                        }
                        continue;
                    }
                    match next {
                        b'\'' => {
                            let hex = bytes.get(reader.at..reader.at + 2).unwrap_or_default();
                            reader.at = (reader.at + 2).min(bytes.len());
                            let byte = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u8::from_str_radix(h, 16).ok());
                            if let (Some(byte), false) = (byte, group.skip) {
                                reader.pending.push(byte);
                            }
                        }
                        b'\r' | b'\n' => reader.push(group, "\n\n"),
                        b'~' => reader.push(group, " "),
                        b'_' => reader.push(group, "-"),
                        b'{' | b'}' | b'\\' => {
                            let c = [next];
                            reader.push(group, std::str::from_utf8(&c).unwrap_or_default())
                        }
                        _ => {}
                    }
                }
            }
            b'\r' | b'\n' => {}
            _ if drop > 0 => drop -= 1,
            _ if b < 0x80 => {
                let c = [b];
                reader.push(group, std::str::from_utf8(&c).unwrap_or_default());
            }
            _ if !group.skip => reader.pending.push(b),
            _ => {}
        }
    }
    reader.flush(group);
    Ok(RawText {
        text: reader.text,
        title: Some(reader.title).filter(|t| !t.trim().is_empty()),
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The code page of `\'hh` escapes and raw 8-bit bytes (`\ansicpgN`).
    encoding: &'static Encoding,
    text: String,
    title: String,
    /// Code-page bytes not decoded yet: a double-byte character spans two.
    pending: Vec<u8>,
}

impl<'a> Reader<'a> {
    /// A control word after its backslash: letters, an optional signed
    /// number, and the space that may end it.
    fn control_word(&mut self) -> (&'a str, Option<i32>) {
        let start = self.at;
        while self.at < self.bytes.len()
            && self.bytes[self.at].is_ascii_alphabetic()
            && self.at - start < 32
        {
            self.at += 1;
        }
        let bytes: &'a [u8] = self.bytes;
        let word = std::str::from_utf8(&bytes[start..self.at]).unwrap_or_default();
        let digits_start = self.at;
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        while self.at < self.bytes.len()
            && self.bytes[self.at].is_ascii_digit()
            && self.at - digits_start < 11
        {
            self.at += 1;
        }
        let param = std::str::from_utf8(&self.bytes[digits_start..self.at])
            .ok()
            .and_then(|p| p.parse().ok());
        if self.bytes.get(self.at) == Some(&b' ') {
            self.at += 1;
        }
        (word, param)
    }

    fn word(&mut self, word: &str, param: Option<i32>, group: &mut Group, drop: &mut usize) {
        match word {
            "ansicpg" => {
                let label = format!("windows-{}", param.unwrap_or(1252));
                self.encoding = Encoding::for_label(label.as_bytes()).unwrap_or(WINDOWS_1252);
            }
            // Inside the skipped `info`: the title is kept apart.
            "title" => group.title = true,
            "bin" => {
                let n = usize::try_from(param.unwrap_or(0)).unwrap_or(0);
                self.at = self.at.saturating_add(n).min(self.bytes.len());
            }
            "uc" => group.uc = usize::try_from(param.unwrap_or(1)).unwrap_or(1).min(8),
            "u" => {
                let code = param.unwrap_or(0);
                let code = if code < 0 { code + 65_536 } else { code };
                if let Some(c) = u32::try_from(code).ok().and_then(char::from_u32) {
                    let mut buf = [0u8; 4];
                    self.push(*group, c.encode_utf8(&mut buf));
                }
                *drop = group.uc;
            }
            "intbl" => group.in_table = true,
            "pard" => group.in_table = false,
            "par" if group.in_table => self.push(*group, " "),
            "par" | "sect" | "page" => self.push(*group, "\n\n"),
            // A table row as a markdown row: `| a | b |`.
            "trowd" => self.push(*group, "\n| "),
            "cell" => self.push(*group, " | "),
            "line" | "row" => self.push(*group, "\n"),
            "tab" => self.push(*group, "\t"),
            "emdash" => self.push(*group, "\u{2014}"),
            "endash" => self.push(*group, "\u{2013}"),
            "bullet" => self.push(*group, "\u{2022}"),
            "lquote" => self.push(*group, "\u{2018}"),
            "rquote" => self.push(*group, "\u{2019}"),
            "ldblquote" => self.push(*group, "\u{201c}"),
            "rdblquote" => self.push(*group, "\u{201d}"),
            w if SKIPPED.contains(&w) => group.skip = true,
            _ => {}
        }
    }

    fn push(&mut self, group: Group, s: &str) {
        self.flush(group);
        if group.title {
            self.title.push_str(s);
        } else if !group.skip {
            self.text.push_str(s);
        }
    }

    /// Decodes the pending code-page bytes into the text they belong to.
    fn flush(&mut self, group: Group) {
        if self.pending.is_empty() {
            return;
        }
        let (decoded, _, _) = self.encoding.decode(&self.pending);
        if group.title {
            self.title.push_str(&decoded);
        } else if !group.skip {
            self.text.push_str(&decoded);
        }
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(rtf: &str) -> RawText {
        extract(rtf.as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn body_text_without_tables_of_fonts_and_with_escapes() {
        let raw = text(
            r"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Times;}}{\info{\title Q3 memo}{\author Ana}}{\*\generator x;}\f0 Caf\'e9 costs\par \u8364?12 \{net\}\line done}",
        );
        assert_eq!(raw.text, "Café costs\n\n€12 {net}\ndone");
        assert_eq!(raw.title.as_deref(), Some("Q3 memo"));
    }

    #[test]
    fn deep_groups_are_refused() {
        let deep = "{".repeat(10_000);
        let e = extract(deep.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(e.kind, crate::contract::failure::ErrorKind::TooDeep);
    }
}
