//! Grids of cells (sheets, csv, docx and odt tables) written as markdown
//! tables, so a chunk keeps its rows and an LLM reads them as a table.
//! Every grid of one document draws on one cell budget.

use super::{ExtractError, Limits};
use crate::contract::failure::ErrorKind;

/// Cells a document may still add, from `extract.max_table_cells`.
pub(super) struct CellBudget {
    left: u64,
    limit: u64,
}

impl CellBudget {
    pub fn new(limits: &Limits) -> Self {
        Self {
            left: limits.max_table_cells,
            limit: limits.max_table_cells,
        }
    }

    /// Charges `cells` cells, or fails once the document holds too many.
    pub fn take(&mut self, cells: u64) -> Result<(), ExtractError> {
        self.ensure(cells)?;
        self.left -= cells;
        Ok(())
    }

    /// Fails unless `cells` more cells fit, before a caller builds them.
    pub fn ensure(&self, cells: u64) -> Result<(), ExtractError> {
        if cells <= self.left {
            return Ok(());
        }
        Err(ExtractError::new(
            ErrorKind::TooLarge,
            format!(
                "the tables hold more than {} cells; raise extract.max_table_cells in the pipeline file to accept it",
                self.limit
            ),
        ))
    }
}

/// Rows of cells; the first row is the header.
#[derive(Default)]
pub(super) struct Table {
    rows: Vec<Vec<String>>,
    width: usize,
}

impl Table {
    /// Adds a row, charging `budget` for every cell the markdown will hold:
    /// a wider row widens the rows before it too.
    pub fn push(&mut self, row: Vec<String>, budget: &mut CellBudget) -> Result<(), ExtractError> {
        let width = self.width.max(row.len());
        let widened = (width - self.width) as u64 * self.rows.len() as u64;
        budget.take(width as u64 + widened)?;
        self.width = width;
        self.rows.push(row);
        Ok(())
    }

    /// Appends the table to `out` as markdown, without the empty rows and
    /// the empty columns at the right; nothing when every cell is empty.
    pub fn write_markdown(&self, out: &mut String) {
        let width = self
            .rows
            .iter()
            .filter_map(|r| r.iter().rposition(|c| !c.trim().is_empty()))
            .max()
            .map_or(0, |last| last + 1);
        if width == 0 {
            return;
        }
        let rows = self
            .rows
            .iter()
            .filter(|r| r.iter().any(|c| !c.trim().is_empty()));
        for (i, row) in rows.enumerate() {
            out.push('|');
            for c in 0..width {
                out.push(' ');
                push_cell(out, row.get(c).map_or("", String::as_str));
                out.push_str(" |");
            }
            out.push('\n');
            if i == 0 {
                out.push('|');
                out.push_str(&" --- |".repeat(width));
                out.push('\n');
            }
        }
        out.push('\n');
    }
}

/// One cell on one line, with the pipes that would end it escaped.
fn push_cell(out: &mut String, cell: &str) {
    let mut words = cell.split_whitespace().peekable();
    while let Some(word) = words.next() {
        out.push_str(&word.replace('|', "\\|"));
        if words.peek().is_some() {
            out.push(' ');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn markdown_drops_empty_edges_and_escapes_pipes() {
        let mut budget = CellBudget::new(&Limits::default());
        let mut t = Table::default();
        t.push(row(&["Item", "Cost", ""]), &mut budget).unwrap();
        t.push(row(&["", "", ""]), &mut budget).unwrap();
        t.push(row(&["a|b", "12\n000"]), &mut budget).unwrap();
        let mut out = String::new();
        t.write_markdown(&mut out);
        assert_eq!(
            out,
            "| Item | Cost |\n| --- | --- |\n| a\\|b | 12 000 |\n\n"
        );
    }

    #[test]
    fn the_budget_is_shared_and_bounded() {
        let limits = Limits {
            max_table_cells: 5,
            ..Limits::default()
        };
        let mut budget = CellBudget::new(&limits);
        let mut t = Table::default();
        t.push(row(&["a", "b", "c"]), &mut budget).unwrap();
        let e = t.push(row(&["d", "e", "f"]), &mut budget).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
        // One narrow row and one wide one still cost the full grid.
        let mut budget = CellBudget::new(&limits);
        let mut t = Table::default();
        t.push(row(&["a"]), &mut budget).unwrap();
        t.push(row(&["a"]), &mut budget).unwrap();
        assert!(t.push(row(&["b", "c"]), &mut budget).is_err());
        assert!(e.message.contains("max_table_cells"));
    }
}
