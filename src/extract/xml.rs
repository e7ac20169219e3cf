//! One forward pass over an XML part, with the depth guard, entity decoding
//! and error wording that every zip-packaged format (docx, pptx, xlsx, odf,
//! epub) shares. Each format keeps only its own element rules.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use quick_xml::XmlVersion;

use super::{too_deep, ExtractError, Limits};
use crate::contract::failure::ErrorKind;

/// What the walk hands to a format's rules, in document order.
pub(super) enum Node<'a> {
    Open(&'a BytesStart<'a>),
    /// An element written `<x/>`: opened and closed at once.
    Empty(&'a BytesStart<'a>),
    /// The local name of the element that ends.
    Close(&'a str),
    Text(&'a str),
}

/// Calls `visit` for each element and text run of `xml` (the part `part`).
pub(super) fn walk(
    xml: &str,
    part: &str,
    limits: &Limits,
    mut visit: impl FnMut(Node<'_>) -> Result<(), ExtractError>,
) -> Result<(), ExtractError> {
    let mut reader = Reader::from_str(xml);
    let mut depth = 0usize;
    let mut one_char = [0u8; 4];
    loop {
        let event = reader.read_event().map_err(|e| {
            ExtractError::new(
                ErrorKind::Corrupt,
                format!(
                    "{part} is malformed at byte {}: {e}",
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
                visit(Node::Open(&e))?;
            }
            Event::Empty(e) => visit(Node::Empty(&e))?,
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                visit(Node::Close(e.local_name().as_ref()))?;
            }
            Event::Text(t) => visit(Node::Text(&t.xml10_content()))?,
            Event::CData(t) => visit(Node::Text(&t.xml10_content()))?,
            Event::GeneralRef(r) => {
                if let Some(c) = super::html::entity(&r) {
                    visit(Node::Text(c.encode_utf8(&mut one_char)))?;
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// The element's name without its namespace prefix.
pub(super) fn local<'a>(e: &'a BytesStart<'_>) -> &'a str {
    e.local_name().into_inner()
}

/// The value of the attribute whose local name is `name`, whatever its prefix.
pub(super) fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// The value of a namespaced attribute (`r:id`) by its local name, for
/// elements that also carry an unprefixed attribute of that name.
pub(super) fn prefixed_attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.prefix().is_some() && a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// All text of `xml`, for small metadata parts (a title) where structure
/// does not matter. `None` when the part does not parse.
pub(super) fn text_of(xml: &str, element: &str, limits: &Limits) -> Option<String> {
    let mut inside = 0usize;
    let mut out = String::new();
    walk(xml, "metadata", limits, |node| {
        match node {
            Node::Open(e) if local(e) == element => inside += 1,
            Node::Close(name) if name == element => inside = inside.saturating_sub(1),
            Node::Text(t) if inside > 0 => out.push_str(t),
            _ => {}
        }
        Ok(())
    })
    .ok()?;
    Some(out).filter(|t| !t.trim().is_empty())
}

/// Tracks elements whose whole content a format ignores (deleted text in
/// tracked changes, phonetic guides, slide-number fields).
#[derive(Default)]
pub(super) struct Skip {
    depth: usize,
}

impl Skip {
    /// Whether `node` lies inside an ignored element; `starts` says whether
    /// an element begins one.
    pub fn covers(&mut self, node: &Node<'_>, starts: impl Fn(&BytesStart<'_>) -> bool) -> bool {
        match node {
            Node::Open(_) if self.depth > 0 => self.depth += 1,
            Node::Open(e) if starts(e) => self.depth = 1,
            Node::Close(_) if self.depth > 0 => {
                self.depth -= 1;
                return true;
            }
            Node::Empty(e) => return self.depth > 0 || starts(e),
            _ => {}
        }
        self.depth > 0
    }
}
