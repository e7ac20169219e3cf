//! The text of a word-processing or slide part as its XML walk produces it:
//! paragraphs, and tables collected cell by cell into markdown. A table
//! nested in a cell flattens into that cell.

use super::table::{CellBudget, Table};
use super::ExtractError;

pub(super) struct Flow<'b> {
    pub text: String,
    budget: &'b mut CellBudget,
    /// Tables open around the cursor; only the outermost is a grid.
    tables: usize,
    table: Table,
    row: Vec<String>,
    cell: String,
}

impl<'b> Flow<'b> {
    pub fn new(budget: &'b mut CellBudget) -> Self {
        Self {
            text: String::new(),
            budget,
            tables: 0,
            table: Table::default(),
            row: Vec::new(),
            cell: String::new(),
        }
    }

    pub fn push(&mut self, s: &str) {
        if self.tables > 0 {
            self.cell.push_str(s);
        } else {
            self.text.push_str(s);
        }
    }

    pub fn paragraph_end(&mut self) {
        self.push(if self.tables > 0 { " " } else { "\n\n" });
    }

    pub fn line_break(&mut self) {
        self.push(if self.tables > 0 { " " } else { "\n" });
    }

    pub fn table_start(&mut self) {
        self.tables += 1;
    }

    pub fn cell_end(&mut self) {
        if self.tables == 1 {
            self.row.push(std::mem::take(&mut self.cell));
        }
    }

    pub fn row_end(&mut self) -> Result<(), ExtractError> {
        if self.tables == 1 {
            let row = std::mem::take(&mut self.row);
            self.table.push(row, self.budget)?;
        }
        Ok(())
    }

    pub fn table_end(&mut self) {
        match self.tables {
            0 => {}
            1 => {
                self.tables = 0;
                self.text.push_str("\n\n");
                std::mem::take(&mut self.table).write_markdown(&mut self.text);
            }
            _ => self.tables -= 1,
        }
    }
}
