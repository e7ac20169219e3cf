//! ODT: the paragraphs, headings and tables of `content.xml`, without the
//! text that tracked changes deleted.

use super::flow::Flow;
use super::package::Package;
use super::table::CellBudget;
use super::xml::{self, Node, Skip};
use super::{ExtractError, Limits, RawText};

pub(super) fn extract(bytes: &[u8], limits: &Limits) -> Result<RawText, ExtractError> {
    let mut package = Package::open(bytes, limits)?;
    let content = package.require("content.xml", "odt")?;
    let title = meta_title(&mut package);
    let mut budget = CellBudget::new(limits);
    let mut flow = Flow::new(&mut budget);
    let mut skip = Skip::default();
    xml::walk(&content, "content.xml", limits, |node| {
        if skip.covers(&node, |e| xml::local(e) == "tracked-changes") {
            return Ok(());
        }
        text_rules(&node, &mut flow)
    })?;
    Ok(RawText {
        text: flow.text,
        title,
    })
}

/// `dc:title` from an OpenDocument package's `meta.xml`.
pub(super) fn meta_title(package: &mut Package<'_>) -> Option<String> {
    let meta = package.read("meta.xml").ok().flatten()?;
    xml::text_of(&meta, "title", package.limits())
}

/// The OpenDocument text elements, shared by odt and odp: paragraphs,
/// headings, spaces, tabs, breaks and tables.
pub(super) fn text_rules(node: &Node<'_>, flow: &mut Flow<'_>) -> Result<(), ExtractError> {
    match node {
        Node::Open(e) if xml::local(e) == "table" => flow.table_start(),
        Node::Empty(e) => match xml::local(e) {
            "s" => {
                let spaces = xml::attr(e, "c").and_then(|c| c.parse().ok()).unwrap_or(1);
                flow.push(&" ".repeat(spaces.min(64)));
            }
            "tab" => flow.push("\t"),
            "line-break" => flow.line_break(),
            "p" | "h" => flow.paragraph_end(),
            "table-cell" | "covered-table-cell" => flow.cell_end(),
            _ => {}
        },
        Node::Close(name) => match *name {
            "p" | "h" => flow.paragraph_end(),
            "table-cell" | "covered-table-cell" => flow.cell_end(),
            "table-row" => flow.row_end()?,
            "table" => flow.table_end(),
            _ => {}
        },
        Node::Text(t) => flow.push(t),
        Node::Open(_) => {}
    }
    Ok(())
}
