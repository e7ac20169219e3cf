//! CSV and TSV: the rows as one markdown table, bounded by
//! `extract.max_table_cells`. Rows may have different lengths.

use super::table::{CellBudget, Table};
use super::{ExtractError, Limits};
use crate::contract::failure::ErrorKind;

pub(super) fn extract(text: &str, delimiter: u8, limits: &Limits) -> Result<String, ExtractError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut budget = CellBudget::new(limits);
    let mut table = Table::default();
    for record in reader.records() {
        let record = record.map_err(|e| {
            ExtractError::new(
                ErrorKind::Corrupt,
                format!("not readable as delimited text: {e}"),
            )
        })?;
        table.push(record.iter().map(str::to_string).collect(), &mut budget)?;
    }
    let mut out = String::new();
    table.write_markdown(&mut out);
    Ok(out)
}
