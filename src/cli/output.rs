//! Query results as a table, CSV, JSON or NDJSON on stdout, or a file
//! (Parquet, CSV, JSON or NDJSON by its extension).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::datafusion::execution::SendableRecordBatchStream;
use futures::TryStreamExt;

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
        let schema = batches
            .first()
            .map(RecordBatch::schema)
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        let mut sink = self.sink(schema)?;
        let written = batches.iter().try_for_each(|b| sink.write(b));
        self.finish(sink, written)
    }

    /// Writes `stream` batch by batch where the flags say, so CSV, NDJSON,
    /// JSON and Parquet outputs hold one batch at a time (a table for
    /// people is aligned over all rows, so it holds them all).
    pub async fn emit_stream(&self, mut stream: SendableRecordBatchStream) -> Result<()> {
        let mut sink = self.sink(stream.schema())?;
        let written = async {
            while let Some(batch) = stream.try_next().await? {
                sink.write(&batch)?;
            }
            anyhow::Ok(())
        }
        .await;
        self.finish(sink, written)
    }

    fn sink(&self, schema: SchemaRef) -> Result<Sink> {
        match &self.out {
            Some(path) => Sink::file(path, &partial(path), schema),
            None => Ok(Sink::new(
                Box::new(std::io::BufWriter::new(std::io::stdout())),
                self.format,
                schema,
            )),
        }
    }

    /// Ends the output. A file appears under its name only when complete.
    fn finish(&self, sink: Sink, written: Result<()>) -> Result<()> {
        let result = written.and_then(|()| sink.finish());
        let Some(path) = &self.out else {
            return result.map(drop);
        };
        match result {
            Ok(rows) => {
                std::fs::rename(partial(path), path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {rows} rows to {}", path.display());
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(partial(path));
                Err(e)
            }
        }
    }
}

/// Where `--out` is written until it is complete.
fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    name.into()
}

/// One output being written, a batch at a time.
struct Sink {
    schema: SchemaRef,
    batches: usize,
    rows: usize,
    out: Out,
}

enum Out {
    Table(Box<dyn Write>, Vec<RecordBatch>),
    Csv(arrow::csv::Writer<Box<dyn Write>>),
    Json(arrow::json::ArrayWriter<Box<dyn Write>>),
    Ndjson(arrow::json::LineDelimitedWriter<Box<dyn Write>>),
    Parquet(deltalake::parquet::arrow::ArrowWriter<std::fs::File>),
}

impl Sink {
    fn new(out: Box<dyn Write>, format: Format, schema: SchemaRef) -> Self {
        let out = match format {
            Format::Table => Out::Table(out, Vec::new()),
            Format::Csv => Out::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out),
            ),
            Format::Json => Out::Json(arrow::json::ArrayWriter::new(out)),
            Format::Ndjson => Out::Ndjson(arrow::json::LineDelimitedWriter::new(out)),
        };
        Self {
            schema,
            batches: 0,
            rows: 0,
            out,
        }
    }

    /// A file at `at` in the format the extension of `path` names.
    fn file(path: &Path, at: &Path, schema: SchemaRef) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let format = match ext.as_deref() {
            Some("parquet") => None,
            Some("csv") => Some(Format::Csv),
            Some("json") => Some(Format::Json),
            Some("ndjson" | "jsonl") => Some(Format::Ndjson),
            _ => bail!(
                "--out {}: name a .parquet, .csv, .json or .ndjson file",
                path.display()
            ),
        };
        let file =
            std::fs::File::create(at).with_context(|| format!("cannot create {}", at.display()))?;
        Ok(match format {
            Some(format) => Self::new(Box::new(std::io::BufWriter::new(file)), format, schema),
            None => Self {
                out: Out::Parquet(deltalake::parquet::arrow::ArrowWriter::try_new(
                    file,
                    schema.clone(),
                    None,
                )?),
                schema,
                batches: 0,
                rows: 0,
            },
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.batches += 1;
        self.rows += batch.num_rows();
        match &mut self.out {
            Out::Table(_, held) => held.push(batch.clone()),
            Out::Csv(w) => w.write(batch)?,
            Out::Json(w) => w.write(batch)?,
            Out::Ndjson(w) => w.write(batch)?,
            Out::Parquet(w) => w.write(batch)?,
        }
        Ok(())
    }

    /// Ends the output; returns how many rows it held. An output of no
    /// rows still names the columns.
    fn finish(mut self) -> Result<usize> {
        if self.batches == 0 {
            self.write(&RecordBatch::new_empty(self.schema.clone()))?;
        }
        match self.out {
            Out::Table(mut out, held) => {
                let table = arrow::util::pretty::pretty_format_batches(&safe_batches(&held)?)?;
                writeln!(out, "{table}")?;
                out.flush()?;
            }
            Out::Csv(w) => w.into_inner().flush()?,
            Out::Json(mut w) => {
                w.finish()?;
                w.into_inner().flush()?;
            }
            Out::Ndjson(mut w) => {
                w.finish()?;
                w.into_inner().flush()?;
            }
            Out::Parquet(w) => {
                w.close()?;
            }
        }
        Ok(self.rows)
    }
}
