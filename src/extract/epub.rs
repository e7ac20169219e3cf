//! EPUB: the book's xhtml chapters in spine (reading) order, each read by
//! the html extractor, and the title from the package document.

use super::package::{resolve, Package};
use super::xml::{self, Node};
use super::{html, ExtractError, Limits, RawText};
use crate::contract::failure::ErrorKind;

const CONTAINER: &str = "META-INF/container.xml";

pub(super) fn extract(bytes: &[u8], limits: &Limits) -> Result<RawText, ExtractError> {
    let mut package = Package::open(bytes, limits)?;
    let container = package.require(CONTAINER, "epub")?;
    let mut root = None;
    xml::walk(&container, CONTAINER, limits, |node| {
        if let Node::Open(e) | Node::Empty(e) = node {
            if xml::local(e) == "rootfile" && root.is_none() {
                root = xml::attr(e, "full-path");
            }
        }
        Ok(())
    })?;
    let opf_path = root.and_then(|p| resolve("", &p)).ok_or_else(|| {
        ExtractError::new(ErrorKind::Corrupt, "the epub names no package document")
    })?;
    let opf = package.require(&opf_path, "epub")?;
    let dir = opf_path.rsplit_once('/').map_or("", |(d, _)| d);
    let mut manifest: Vec<(String, String)> = Vec::new();
    let mut spine: Vec<String> = Vec::new();
    let mut title = String::new();
    let mut in_title = false;
    xml::walk(&opf, &opf_path, limits, |node| {
        match node {
            Node::Open(e) | Node::Empty(e) => match xml::local(e) {
                "item" => {
                    if let (Some(id), Some(href)) = (xml::attr(e, "id"), xml::attr(e, "href")) {
                        manifest.push((id, href));
                    }
                }
                "itemref" => spine.extend(xml::attr(e, "idref")),
                "title" => in_title = title.is_empty(),
                _ => {}
            },
            Node::Close(_) => in_title = false,
            Node::Text(t) if in_title => title.push_str(t),
            Node::Text(_) => {}
        }
        Ok(())
    })?;
    let mut text = String::new();
    for idref in &spine {
        let Some((_, href)) = manifest.iter().find(|(id, _)| id == idref) else {
            continue;
        };
        let href = href.split('#').next().unwrap_or_default();
        let Some(part) = resolve(dir, href) else {
            continue;
        };
        if let Some(xhtml) = package.read(&part)? {
            text.push_str(&html::extract(&xhtml, limits)?.text);
            text.push_str("\n\n");
        }
    }
    Ok(RawText {
        text,
        title: Some(title).filter(|t| !t.trim().is_empty()),
    })
}
