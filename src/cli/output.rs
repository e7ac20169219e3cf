//! Query results as a table, CSV, JSON or NDJSON on stdout, or a file
//! (Parquet, CSV, JSON or NDJSON by its extension).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::Schema;

use super::terminal::safe_batches;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text table for people.
    Table,
    Csv,
    /// One JSON array of row objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// Shared by `query`, `report` and `search`.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Output format on stdout.
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Write the rows to this file instead: .parquet, .csv, .json or .ndjson.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

impl OutputArgs {
    /// Writes `batches` where the flags say.
    pub fn emit(&self, batches: &[RecordBatch]) -> Result<()> {
        match &self.out {
            Some(path) => {
                write_file(path, batches)?;
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                eprintln!("wrote {rows} rows to {}", path.display());
                Ok(())
            }
            None => write(&mut std::io::stdout().lock(), batches, self.format),
        }
    }
}

pub fn write(out: &mut dyn Write, batches: &[RecordBatch], format: Format) -> Result<()> {
    match format {
        Format::Table => {
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(&safe_batches(batches)?)?
            )?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(out);
            w.write_batches(&batches.iter().collect::<Vec<_>>())?;
            w.finish()?;
        }
        Format::Ndjson => {
            let mut w = arrow::json::LineDelimitedWriter::new(out);
            w.write_batches(&batches.iter().collect::<Vec<_>>())?;
            w.finish()?;
        }
    }
    Ok(())
}

/// Writes `batches` to `path` in the format its extension names.
pub fn write_file(path: &Path, batches: &[RecordBatch]) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let file =
        || std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()));
    match ext.as_deref() {
        Some("parquet") => {
            let schema = batches
                .first()
                .map(RecordBatch::schema)
                .unwrap_or_else(|| Arc::new(Schema::empty()));
            let mut w = deltalake::parquet::arrow::ArrowWriter::try_new(file()?, schema, None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
        Some("csv") => write(&mut file()?, batches, Format::Csv)?,
        Some("json") => write(&mut file()?, batches, Format::Json)?,
        Some("ndjson" | "jsonl") => write(&mut file()?, batches, Format::Ndjson)?,
        _ => bail!(
            "--out {}: name a .parquet, .csv, .json or .ndjson file",
            path.display()
        ),
    }
    Ok(())
}
