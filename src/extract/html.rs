//! HTML: visible text only.
//!
//! A single forward scan with an explicit element stack, so nesting depth is
//! counted (and capped) instead of recursed into; script, style and other
//! non-visible elements are skipped whole.

use super::{too_deep, ExtractError, Limits, RawText};

/// Elements whose content is never shown as text.
const HIDDEN: &[&str] = &[
    "script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object",
];
/// Elements that never have content or an end tag.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];
/// Elements whose end tag is optional and that close a sibling of the same name.
const SELF_CLOSING_SIBLINGS: &[&str] = &["p", "li", "dt", "dd", "tr", "td", "th", "option"];
/// Elements that separate paragraphs.
const PARAGRAPH: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "aside",
    "nav",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "dl",
    "figure",
    "form",
    "hr",
    "address",
];
/// Elements that start a new line.
const LINE: &[&str] = &["br", "li", "tr", "dt", "dd", "caption", "figcaption"];

pub(super) fn extract(html: &str, limits: &Limits) -> Result<RawText, ExtractError> {
    let mut out = Output::default();
    let mut stack: Vec<String> = Vec::new();
    let mut title: Option<String> = None;
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            out.text(rest, &stack);
            break;
        };
        out.text(&rest[..lt], &stack);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |i| &after[i + 3..]);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            rest = rest.find('>').map_or("", |i| &rest[i + 1..]);
            continue;
        }
        let Some(tag) = Tag::parse(rest) else {
            // A lone '<' is text.
            out.text("<", &stack);
            rest = &rest[1..];
            continue;
        };
        rest = &rest[tag.len..];
        let name = tag.name.as_str();
        if tag.closing {
            if let Some(pos) = stack.iter().rposition(|n| n == name) {
                stack.truncate(pos);
            }
            out.block_break(name);
            continue;
        }
        out.block_break(name);
        if name == "title" {
            let end = find_ci(rest, "</title").unwrap_or(rest.len());
            title.get_or_insert_with(|| decode_entities(&rest[..end]));
            rest = &rest[end..];
            continue;
        }
        if HIDDEN.contains(&name) && name != "head" {
            // Raw text elements: skip to the matching end tag.
            let end = find_ci(rest, &format!("</{name}")).unwrap_or(rest.len());
            rest = &rest[end..];
            if let Some(t) = Tag::parse(rest) {
                rest = &rest[t.len..];
            }
            continue;
        }
        if VOID.contains(&name) || tag.self_closing {
            continue;
        }
        if SELF_CLOSING_SIBLINGS.contains(&name) && stack.last().is_some_and(|top| top == name) {
            stack.pop();
        }
        stack.push(tag.name);
        if stack.len() > limits.max_depth {
            return Err(too_deep(limits));
        }
    }
    Ok(RawText {
        text: out.text,
        title,
    })
}

#[derive(Default)]
struct Output {
    text: String,
    pending_space: bool,
}

impl Output {
    fn text(&mut self, raw: &str, stack: &[String]) {
        if raw.is_empty() || stack.iter().any(|n| HIDDEN.contains(&n.as_str())) {
            return;
        }
        let decoded = decode_entities(raw);
        if stack.iter().any(|n| n == "pre") {
            self.text.push_str(&decoded);
            return;
        }
        for (i, word) in decoded.split_ascii_whitespace().enumerate() {
            let at_line_start = self.text.is_empty() || self.text.ends_with('\n');
            if (i > 0
                || self.pending_space
                || decoded.starts_with(|c: char| c.is_ascii_whitespace()))
                && !at_line_start
            {
                self.text.push(' ');
            }
            self.text.push_str(word);
            self.pending_space = false;
        }
        if decoded.ends_with(|c: char| c.is_ascii_whitespace()) {
            self.pending_space = true;
        }
    }

    fn block_break(&mut self, name: &str) {
        let brk = if PARAGRAPH.contains(&name) {
            "\n\n"
        } else if LINE.contains(&name) {
            "\n"
        } else {
            return;
        };
        self.text.push_str(brk);
        self.pending_space = false;
    }
}

struct Tag {
    name: String,
    closing: bool,
    self_closing: bool,
    /// Bytes from '<' to just past '>'.
    len: usize,
}

impl Tag {
    fn parse(s: &str) -> Option<Tag> {
        let bytes = s.as_bytes();
        let mut i = 1;
        let closing = bytes.get(i) == Some(&b'/');
        if closing {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-') {
            i += 1;
        }
        if i == name_start || !bytes[name_start].is_ascii_alphabetic() {
            return None;
        }
        let name = s[name_start..i].to_ascii_lowercase();
        // Attributes: skip to '>' outside quotes.
        let mut quote = None;
        while i < bytes.len() {
            match (quote, bytes[i]) {
                (None, b'"' | b'\'') => quote = Some(bytes[i]),
                (Some(q), b) if b == q => quote = None,
                (None, b'>') => {
                    return Some(Tag {
                        name,
                        closing,
                        self_closing: bytes[i - 1] == b'/',
                        len: i + 1,
                    })
                }
                _ => {}
            }
            i += 1;
        }
        Some(Tag {
            name,
            closing,
            self_closing: false,
            len: s.len(),
        })
    }
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    let needle = needle.as_bytes();
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// Decodes character references: numeric ones and the common named ones.
pub(super) fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map(|i| i + 1)
            .unwrap_or(rest.len());
        match entity(&rest[1..end]) {
            Some(c) => {
                out.push(c);
                rest = &rest[end..];
                rest = rest.strip_prefix(';').unwrap_or(rest);
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character an entity name (without `&` and `;`) stands for.
pub(super) fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code).filter(|c| *c != '\0');
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "mdash" => '—',
        "ndash" => '–',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "euro" => '€',
        "pound" => '£',
        "middot" => '·',
        "bull" => '•',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(html: &str) -> RawText {
        extract(html, &Limits::default()).unwrap()
    }

    #[test]
    fn visible_text_only() {
        let raw = text(
            "<!DOCTYPE html><html><head><title>Q3 &amp; Plan</title>\
             <style>p{color:red}</style><script>var x = '<p>hidden</p>';</script></head>\
             <body><h1>Heading</h1><p>First <b>bold</b> para.<p>Second&nbsp;one &#x263A;\
             <!-- a comment --><noscript>no</noscript><br>line</body></html>",
        );
        assert_eq!(raw.title.as_deref(), Some("Q3 & Plan"));
        let t = super::super::text::tidy(&raw.text);
        assert_eq!(
            t,
            "Heading\n\nFirst bold para.\n\nSecond\u{a0}one ☺\nline".replace('\u{a0}', " ")
        );
        assert!(!t.contains("hidden") && !t.contains("color") && !t.contains("no\n"));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let deep = "<div>".repeat(200_000);
        let err = extract(&deep, &Limits::default()).unwrap_err();
        assert_eq!(err.kind, crate::contract::failure::ErrorKind::TooDeep);
        // Closed nesting within the limit is fine.
        let ok = format!("{}x{}", "<span>".repeat(100), "</span>".repeat(100));
        assert_eq!(text(&ok).text.trim(), "x");
    }

    #[test]
    fn unclosed_siblings_do_not_count_as_depth() {
        let list = format!("<ul>{}</ul>", "<li>item".repeat(5000));
        assert!(extract(&list, &Limits::default()).is_ok());
    }

    #[test]
    fn broken_markup_does_not_panic() {
        for s in [
            "<",
            "<<>>",
            "<a href='x",
            "</",
            "&#xFFFFFFFF; &#0; &bogus;",
            "<p\u{e9}>é<",
        ] {
            let _ = extract(s, &Limits::default());
        }
        assert_eq!(decode_entities("a &lt; b &bogus; &#65;"), "a < b &bogus; A");
    }
}
