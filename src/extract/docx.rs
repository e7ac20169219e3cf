//! DOCX: the paragraphs and tables of `word/document.xml`, in order. Its
//! text rules are OOXML's, shared with the slides of a pptx (DrawingML uses
//! the same local names for runs, paragraphs and tables).

use super::flow::Flow;
use super::package::Package;
use super::table::CellBudget;
use super::xml::{self, Node};
use super::{ExtractError, Limits, RawText};

const BODY: &str = "word/document.xml";

pub(super) fn extract(bytes: &[u8], limits: &Limits) -> Result<RawText, ExtractError> {
    let mut package = Package::open(bytes, limits)?;
    let body = package.require(BODY, "docx")?;
    let title = package.core_title();
    let mut budget = CellBudget::new(limits);
    let mut flow = Flow::new(&mut budget);
    let mut in_text = false;
    xml::walk(&body, BODY, limits, |node| {
        text_rules(&node, &mut in_text, &mut flow)
    })?;
    Ok(RawText {
        text: flow.text,
        title,
    })
}

/// OOXML text: `t` runs, paragraphs, tabs, breaks and tables. `in_text`
/// says whether the walk is inside a `t`.
pub(super) fn text_rules(
    node: &Node<'_>,
    in_text: &mut bool,
    flow: &mut Flow<'_>,
) -> Result<(), ExtractError> {
    match node {
        Node::Open(e) => match xml::local(e) {
            "t" => *in_text = true,
            "tbl" => flow.table_start(),
            _ => {}
        },
        Node::Close(name) => {
            *in_text = false;
            match *name {
                "p" => flow.paragraph_end(),
                "tc" => flow.cell_end(),
                "tr" => flow.row_end()?,
                "tbl" => flow.table_end(),
                _ => {}
            }
        }
        Node::Empty(e) => match xml::local(e) {
            "tab" => flow.push("\t"),
            "br" | "cr" => flow.line_break(),
            "p" => flow.paragraph_end(),
            _ => {}
        },
        Node::Text(t) if *in_text => flow.push(t),
        Node::Text(_) => {}
    }
    Ok(())
}
