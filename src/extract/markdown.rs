//! Markdown: the rendered text, without markup.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

use super::{too_deep, ExtractError, Limits, RawText};

pub(super) fn extract(md: &str, limits: &Limits) -> Result<RawText, ExtractError> {
    let mut text = String::with_capacity(md.len());
    let mut title: Option<String> = None;
    let mut heading: Option<String> = None;
    let mut depth = 0usize;
    for event in Parser::new(md) {
        match event {
            Event::Start(tag) => {
                depth += 1;
                if depth > limits.max_depth {
                    return Err(too_deep(limits));
                }
                if matches!(tag, Tag::Heading { .. }) && title.is_none() {
                    heading = Some(String::new());
                }
                if matches!(tag, Tag::Item) {
                    text.push('\n');
                }
            }
            Event::End(end) => {
                depth = depth.saturating_sub(1);
                match end {
                    TagEnd::Heading(_) => {
                        if let Some(h) = heading.take() {
                            title = Some(h);
                        }
                        text.push_str("\n\n");
                    }
                    TagEnd::Paragraph
                    | TagEnd::CodeBlock
                    | TagEnd::BlockQuote(_)
                    | TagEnd::List(_)
                    | TagEnd::Table => text.push_str("\n\n"),
                    TagEnd::TableRow | TagEnd::TableHead => text.push('\n'),
                    TagEnd::TableCell => text.push('\t'),
                    _ => {}
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
                text.push_str(&t);
            }
            Event::SoftBreak | Event::HardBreak => text.push('\n'),
            Event::Rule => text.push_str("\n\n"),
            _ => {}
        }
    }
    Ok(RawText { text, title })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_markup_and_finds_the_title() {
        let raw = extract(
            "# Launch *plan*\n\nWe ship **on time**.\n\n- one\n- two\n\n```\ncode()\n```\n<div>x</div>",
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(raw.title.as_deref(), Some("Launch plan"));
        let t = super::super::text::tidy(&raw.text);
        assert!(t.starts_with("Launch plan\n\nWe ship on time."), "{t}");
        assert!(t.contains("one\ntwo") && t.contains("code()"));
        assert!(!t.contains('*') && !t.contains("<div>"));
    }

    #[test]
    fn deep_quotes_are_refused() {
        let md = format!("{}x", "> ".repeat(2000));
        assert_eq!(
            extract(&md, &Limits::default()).unwrap_err().kind,
            crate::contract::failure::ErrorKind::TooDeep
        );
    }
}
