//! `docstream query`.

use std::path::Path;

use anyhow::Result;

use crate::analytics::output::{self, Format};
use crate::stages::pipeline::Pipeline;
use crate::storage::{parse_location, StorageOptions};

/// Run read-only SQL over every table in the lake.
///
/// Tables: documents, chunks, failures (and any table a custom stage writes).
/// UDFs such as chunk_text and count_tokens work here too.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream query \"SELECT mime, count(*), sum(n_tokens) FROM documents GROUP BY mime\"\n  \
    docstream query \"SELECT error_kind, count(*) FROM failures GROUP BY 1\" --format csv\n  \
    docstream query \"SHOW TABLES\" --lake s3://lake/ --format ndjson")]
pub struct Args {
    /// The SQL to run (SELECT, WITH, EXPLAIN or SHOW).
    pub sql: String,

    /// Lake root. Default: the pipeline's lake.uri.
    #[arg(long)]
    pub lake: Option<String>,

    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl Args {
    pub async fn run(self, pipeline: Option<&Path>, storage: StorageOptions) -> Result<()> {
        let (p, _) = Pipeline::load(pipeline, &[])?;
        let lake = parse_location(&self.lake.unwrap_or(p.lake.uri))?;
        let batches = crate::analytics::query::run(&lake, &storage, &self.sql).await?;
        let stdout = std::io::stdout();
        output::write(&mut stdout.lock(), &batches, self.format)
    }
}
