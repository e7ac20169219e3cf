//! Slide decks: pptx and odp. Each slide's text, then its speaker notes,
//! in presentation order under a `## Slide N` heading.

use super::flow::Flow;
use super::package::Package;
use super::table::CellBudget;
use super::xml::{self, Node, Skip};
use super::{docx, odt, ExtractError, Limits, RawText};
use docstream_udfs::chunk::PAGE_BREAK;

const PRESENTATION: &str = "ppt/presentation.xml";

pub(super) fn pptx(bytes: &[u8], limits: &Limits) -> Result<RawText, ExtractError> {
    let mut package = Package::open(bytes, limits)?;
    let presentation = package.require(PRESENTATION, "pptx")?;
    let mut order = Vec::new();
    xml::walk(&presentation, PRESENTATION, limits, |node| {
        if let Node::Open(e) | Node::Empty(e) = node {
            if xml::local(e) == "sldId" {
                order.extend(xml::prefixed_attr(e, "id"));
            }
        }
        Ok(())
    })?;
    let rels = package.relationships(PRESENTATION)?;
    let title = package.core_title();
    let mut budget = CellBudget::new(limits);
    let mut flow = Flow::new(&mut budget);
    for (n, id) in order.iter().enumerate() {
        // One page per slide, so page numbers are slide numbers.
        if n > 0 {
            flow.push(&format!("\n\n{PAGE_BREAK}\n\n"));
        }
        let Some(slide) = rels.iter().find(|r| &r.id == id && r.kind == "slide") else {
            continue;
        };
        flow.push(&format!("## Slide {}\n\n", n + 1));
        let xml = package.require(&slide.target, "pptx")?;
        drawing_text(&xml, &slide.target, limits, &mut flow)?;
        let notes = package
            .relationships(&slide.target)?
            .into_iter()
            .find(|r| r.kind == "notesSlide");
        if let Some(notes) = notes {
            if let Some(xml) = package.read(&notes.target)? {
                flow.push("Notes:\n\n");
                drawing_text(&xml, &notes.target, limits, &mut flow)?;
            }
        }
    }
    Ok(deck(flow.text, title))
}

/// Without a title in the metadata, a deck is titled by its first slide's
/// first line.
fn deck(text: String, title: Option<String>) -> RawText {
    let title = title.or_else(|| {
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("## Slide") && *l != "Notes:")
            .map(str::to_string)
    });
    RawText { text, title }
}

/// DrawingML text, by the OOXML rules. Fields (slide numbers, dates) are
/// left out: on a notes page they repeat what the heading says.
fn drawing_text(
    xml: &str,
    part: &str,
    limits: &Limits,
    flow: &mut Flow<'_>,
) -> Result<(), ExtractError> {
    let mut skip = Skip::default();
    let mut in_text = false;
    xml::walk(xml, part, limits, |node| {
        if skip.covers(&node, |e| xml::local(e) == "fld") {
            return Ok(());
        }
        docx::text_rules(&node, &mut in_text, flow)
    })
}

pub(super) fn odp(bytes: &[u8], limits: &Limits) -> Result<RawText, ExtractError> {
    let mut package = Package::open(bytes, limits)?;
    let content = package.require("content.xml", "odp")?;
    let title = odt::meta_title(&mut package);
    let mut budget = CellBudget::new(limits);
    let mut flow = Flow::new(&mut budget);
    let mut slides = 0usize;
    xml::walk(&content, "content.xml", limits, |node| {
        match &node {
            Node::Open(e) if xml::local(e) == "page" => {
                if slides > 0 {
                    flow.push(&format!("\n\n{PAGE_BREAK}\n\n"));
                }
                slides += 1;
                flow.push(&format!("\n\n## Slide {slides}\n\n"));
            }
            // The notes are a page's last child, so they follow its text.
            Node::Open(e) if xml::local(e) == "notes" => flow.push("\n\nNotes:\n\n"),
            _ => {}
        }
        odt::text_rules(&node, &mut flow)
    })?;
    Ok(deck(flow.text, title))
}
