//! Spreadsheets: xlsx and ods. Each sheet becomes a `## <name>` heading and
//! a markdown table. Cells count against `extract.max_table_cells` before
//! they are built, so repeated or far-away cells cannot blow up memory.

use chrono::{Duration, NaiveDate};

use super::package::Package;
use super::table::{CellBudget, Table};
use super::xml::{self, Node, Skip};
use super::{odt, ExtractError, Limits, RawText};
use crate::contract::failure::ErrorKind;

const WORKBOOK: &str = "xl/workbook.xml";
/// Excel's last column, XFD.
const MAX_COLUMNS: usize = 16_384;

pub(super) fn xlsx(bytes: &[u8], limits: &Limits) -> Result<RawText, ExtractError> {
    let mut package = Package::open(bytes, limits)?;
    let workbook = package.require(WORKBOOK, "xlsx")?;
    let mut sheets = Vec::new();
    let mut date1904 = false;
    xml::walk(&workbook, WORKBOOK, limits, |node| {
        if let Node::Open(e) | Node::Empty(e) = node {
            match xml::local(e) {
                "sheet" => {
                    if let Some(id) = xml::prefixed_attr(e, "id") {
                        sheets.push((xml::attr(e, "name").unwrap_or_default(), id));
                    }
                }
                "workbookPr" => {
                    date1904 = matches!(xml::attr(e, "date1904").as_deref(), Some("1" | "true"))
                }
                _ => {}
            }
        }
        Ok(())
    })?;
    let rels = package.relationships(WORKBOOK)?;
    let part = |kind: &str| {
        rels.iter()
            .find(|r| r.kind == kind)
            .map(|r| r.target.clone())
    };
    let strings = match part("sharedStrings") {
        Some(target) => match package.read(&target)? {
            Some(xml) => shared_strings(&xml, &target, limits)?,
            None => Vec::new(),
        },
        None => Vec::new(),
    };
    let dates = match part("styles") {
        Some(target) => match package.read(&target)? {
            Some(xml) => date_styles(&xml, &target, limits)?,
            None => Vec::new(),
        },
        None => Vec::new(),
    };
    let cells = Cells {
        strings,
        dates,
        epoch: if date1904 {
            NaiveDate::from_ymd_opt(1904, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(1899, 12, 30)
        },
    };
    let title = package.core_title();
    let mut budget = CellBudget::new(limits);
    let mut text = String::new();
    for (name, id) in &sheets {
        let Some(sheet) = rels.iter().find(|r| &r.id == id && r.kind == "worksheet") else {
            continue; // chart sheets and macro sheets hold no cells
        };
        let xml = package.require(&sheet.target, "xlsx")?;
        let table = worksheet(&xml, &sheet.target, &cells, limits, &mut budget)?;
        text.push_str(&format!("## {name}\n\n"));
        table.write_markdown(&mut text);
    }
    Ok(RawText { text, title })
}

/// The shared string table: each `si`'s text runs, without phonetic guides.
fn shared_strings(xml: &str, part: &str, limits: &Limits) -> Result<Vec<String>, ExtractError> {
    let mut strings = Vec::new();
    let mut current = String::new();
    let mut in_text = false;
    let mut skip = Skip::default();
    xml::walk(xml, part, limits, |node| {
        if skip.covers(&node, |e| xml::local(e) == "rPh") {
            return Ok(());
        }
        match node {
            Node::Open(e) => in_text = xml::local(e) == "t",
            Node::Close("si") => strings.push(std::mem::take(&mut current)),
            Node::Close(_) => in_text = false,
            Node::Empty(e) if xml::local(e) == "si" => strings.push(String::new()),
            Node::Text(t) if in_text => current.push_str(t),
            _ => {}
        }
        Ok(())
    })?;
    Ok(strings)
}

/// For each cell style index, whether its number format shows a date.
fn date_styles(xml: &str, part: &str, limits: &Limits) -> Result<Vec<bool>, ExtractError> {
    let mut custom: Vec<(u32, bool)> = Vec::new();
    let mut formats: Vec<u32> = Vec::new();
    let mut in_cell_xfs = false;
    xml::walk(xml, part, limits, |node| {
        match node {
            Node::Open(e) | Node::Empty(e) => match xml::local(e) {
                "numFmt" => {
                    if let (Some(id), Some(code)) = (
                        xml::attr(e, "numFmtId").and_then(|i| i.parse().ok()),
                        xml::attr(e, "formatCode"),
                    ) {
                        custom.push((id, is_date_code(&code)));
                    }
                }
                "cellXfs" => in_cell_xfs = true,
                "xf" if in_cell_xfs => formats.push(
                    xml::attr(e, "numFmtId")
                        .and_then(|i| i.parse().ok())
                        .unwrap_or(0),
                ),
                _ => {}
            },
            Node::Close("cellXfs") => in_cell_xfs = false,
            _ => {}
        }
        Ok(())
    })?;
    Ok(formats
        .into_iter()
        .map(|id| match custom.iter().find(|(c, _)| *c == id) {
            Some((_, date)) => *date,
            None => matches!(id, 14..=22 | 27..=36 | 45..=47 | 50..=58),
        })
        .collect())
}

/// Whether a number format code shows a date or time: it has a date or
/// time letter outside quoted text, `[...]` sections and escapes.
fn is_date_code(code: &str) -> bool {
    let mut chars = code.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                chars.by_ref().find(|&c| c == '"');
            }
            '[' => {
                chars.by_ref().find(|&c| c == ']');
            }
            '\\' | '_' | '*' => {
                chars.next();
            }
            c if "dmyhs".contains(c.to_ascii_lowercase()) => return true,
            _ => {}
        }
    }
    false
}

/// What turns a raw cell into the text a reader sees.
struct Cells {
    strings: Vec<String>,
    dates: Vec<bool>,
    epoch: Option<NaiveDate>,
}

impl Cells {
    fn display(&self, kind: &str, style: usize, raw: String) -> String {
        match kind {
            "s" => raw
                .trim()
                .parse::<usize>()
                .ok()
                .and_then(|i| self.strings.get(i).cloned())
                .unwrap_or_default(),
            "b" => if raw.trim() == "1" { "TRUE" } else { "FALSE" }.to_string(),
            "inlineStr" | "str" | "e" | "d" => raw,
            _ if self.dates.get(style).copied().unwrap_or(false) => self.date(&raw).unwrap_or(raw),
            _ => raw,
        }
    }

    /// A serial day number as an ISO date (and time, when it has one).
    fn date(&self, raw: &str) -> Option<String> {
        let serial: f64 = raw.trim().parse().ok()?;
        if !(0.0..=2_958_465.0).contains(&serial) {
            return None;
        }
        let seconds = (serial * 86_400.0).round() as i64;
        let at = self.epoch?.and_hms_opt(0, 0, 0)? + Duration::seconds(seconds);
        Some(if seconds % 86_400 == 0 {
            at.format("%Y-%m-%d").to_string()
        } else if serial < 1.0 {
            at.format("%H:%M:%S").to_string()
        } else {
            at.format("%Y-%m-%d %H:%M:%S").to_string()
        })
    }
}

/// One worksheet's `sheetData` as a table.
fn worksheet(
    xml: &str,
    part: &str,
    cells: &Cells,
    limits: &Limits,
    budget: &mut CellBudget,
) -> Result<Table, ExtractError> {
    let mut table = Table::default();
    let mut row: Vec<String> = Vec::new();
    let mut column = 0usize;
    let mut kind = String::new();
    let mut style = 0usize;
    let mut value = String::new();
    let mut in_value = false;
    let mut skip = Skip::default();
    xml::walk(xml, part, limits, |node| {
        if skip.covers(&node, |e| xml::local(e) == "rPh") {
            return Ok(());
        }
        match node {
            Node::Open(e) => match xml::local(e) {
                "c" => {
                    column = match xml::attr(e, "r") {
                        Some(r) => column_of(&r, part)?,
                        None => row.len(),
                    };
                    kind = xml::attr(e, "t").unwrap_or_default();
                    style = xml::attr(e, "s").and_then(|s| s.parse().ok()).unwrap_or(0);
                    value.clear();
                }
                "v" | "t" => in_value = true,
                _ => {}
            },
            Node::Text(t) if in_value => value.push_str(t),
            Node::Close("c") => {
                let shown = cells.display(&kind, style, std::mem::take(&mut value));
                if !shown.trim().is_empty() {
                    if row.len() <= column {
                        row.resize(column + 1, String::new());
                    }
                    row[column] = shown;
                }
            }
            Node::Close("row") if !row.is_empty() => {
                table.push(std::mem::take(&mut row), budget)?;
            }
            Node::Close(_) => in_value = false,
            _ => {}
        }
        Ok(())
    })?;
    Ok(table)
}

/// The zero-based column of a cell reference such as `AB12`.
fn column_of(reference: &str, part: &str) -> Result<usize, ExtractError> {
    let mut column = 0usize;
    for c in reference.chars().take_while(char::is_ascii_alphabetic) {
        column = column * 26 + (c.to_ascii_uppercase() as usize - 'A' as usize + 1);
        if column > MAX_COLUMNS {
            return Err(ExtractError::new(
                ErrorKind::Corrupt,
                format!("{part} has a cell beyond column XFD ({reference})"),
            ));
        }
    }
    column.checked_sub(1).ok_or_else(|| {
        ExtractError::new(
            ErrorKind::Corrupt,
            format!("{part} has a cell reference without a column ({reference})"),
        )
    })
}

pub(super) fn ods(bytes: &[u8], limits: &Limits) -> Result<RawText, ExtractError> {
    let mut package = Package::open(bytes, limits)?;
    let content = package.require("content.xml", "ods")?;
    let title = odt::meta_title(&mut package);
    let mut budget = CellBudget::new(limits);
    let mut text = String::new();
    let mut sheet = OdsSheet::default();
    let mut skip = Skip::default();
    xml::walk(&content, "content.xml", limits, |node| {
        if skip.covers(&node, |e| xml::local(e) == "annotation") {
            return Ok(());
        }
        match node {
            Node::Open(e) => match xml::local(e) {
                "table" => {
                    sheet = OdsSheet::default();
                    text.push_str(&format!(
                        "## {}\n\n",
                        xml::attr(e, "name").unwrap_or_default()
                    ));
                }
                "table-row" => sheet.row_start(repeat(e, "number-rows-repeated")),
                "table-cell" | "covered-table-cell" => {
                    sheet.cell_start(repeat(e, "number-columns-repeated"))
                }
                _ => {}
            },
            Node::Empty(e) => match xml::local(e) {
                "table-cell" | "covered-table-cell" => {
                    sheet.cell_start(repeat(e, "number-columns-repeated"));
                    sheet.cell_end(&budget)?;
                }
                "s" => sheet.value.push(' '),
                "tab" => sheet.value.push('\t'),
                _ => {}
            },
            Node::Text(t) if sheet.in_cell => sheet.value.push_str(t),
            Node::Close(name) => match name {
                "p" if sheet.in_cell => sheet.value.push(' '),
                "table-cell" | "covered-table-cell" => sheet.cell_end(&budget)?,
                "table-row" => sheet.row_end(&mut budget)?,
                "table" => std::mem::take(&mut sheet.table).write_markdown(&mut text),
                _ => {}
            },
            _ => {}
        }
        Ok(())
    })?;
    Ok(RawText { text, title })
}

/// An ODF repeat count (`number-rows-repeated`, `number-columns-repeated`).
fn repeat(e: &quick_xml::events::BytesStart<'_>, name: &str) -> u64 {
    xml::attr(e, name)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// An ods sheet being read. Files pad sheets with huge runs of repeated
/// empty cells and rows; those stay counts and are never built.
#[derive(Default)]
struct OdsSheet {
    table: Table,
    row: Vec<String>,
    rows_repeat: u64,
    /// Empty cells since the last cell with a value.
    empty_run: u64,
    cell_repeat: u64,
    in_cell: bool,
    value: String,
}

impl OdsSheet {
    fn row_start(&mut self, repeat: u64) {
        self.row.clear();
        self.empty_run = 0;
        self.rows_repeat = repeat;
    }

    fn cell_start(&mut self, repeat: u64) {
        self.in_cell = true;
        self.cell_repeat = repeat;
        self.value.clear();
    }

    fn cell_end(&mut self, budget: &CellBudget) -> Result<(), ExtractError> {
        self.in_cell = false;
        let value = self.value.trim();
        if value.is_empty() {
            self.empty_run = self.empty_run.saturating_add(self.cell_repeat);
            return Ok(());
        }
        let width = (self.row.len() as u64)
            .saturating_add(self.empty_run)
            .saturating_add(self.cell_repeat);
        budget.ensure(width)?;
        let value = value.to_string();
        self.row
            .resize(self.row.len() + self.empty_run as usize, String::new());
        self.row
            .resize(self.row.len() + self.cell_repeat as usize, value);
        self.empty_run = 0;
        Ok(())
    }

    fn row_end(&mut self, budget: &mut CellBudget) -> Result<(), ExtractError> {
        if self.row.is_empty() {
            return Ok(());
        }
        for _ in 0..self.rows_repeat {
            self.table.push(self.row.clone(), budget)?;
        }
        Ok(())
    }
}
