//! `docstream report`.

use std::path::Path;

use anyhow::{bail, Result};

use crate::analytics::output::OutputArgs;
use crate::analytics::query::Analytics;
use crate::analytics::reports;
use crate::stages::pipeline::Pipeline;
use crate::storage::{parse_location, StorageOptions};

/// Run a named report: canned SQL over the lake.
///
/// Built-in reports live in sql/analytics/; a pipeline's [analytics]
/// reports = "folder" adds its own *.sql files (the leading -- comment is
/// the description).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream report --list\n  \
    docstream report risks-by-week\n  \
    docstream report unmitigated-risks --format csv\n  \
    docstream report model-cost --out cost.parquet --lake s3://lake/")]
pub struct Args {
    /// The report to run (see --list).
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,

    /// List the reports and what each shows.
    #[arg(long)]
    pub list: bool,

    /// Print the report's SQL instead of running it.
    #[arg(long)]
    pub show_sql: bool,

    /// Lake root. Default: the pipeline's lake.uri.
    #[arg(long)]
    pub lake: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,
}

impl Args {
    pub async fn run(self, pipeline: Option<&Path>, storage: StorageOptions) -> Result<()> {
        let (p, _) = Pipeline::load(pipeline, &[])?;
        if self.list {
            let all = reports::all(&p)?;
            let width = all.iter().map(|r| r.name.len()).max().unwrap_or(0);
            for r in all {
                println!("{:width$}  {}", r.name, r.description);
            }
            return Ok(());
        }
        let Some(name) = self.name else {
            bail!("name a report, or pass --list to see them");
        };
        let report = reports::find(&p, &name)?;
        if self.show_sql {
            print!("{}", report.sql);
            return Ok(());
        }
        let lake = parse_location(&self.lake.unwrap_or(p.lake.uri))?;
        let analytics = Analytics::open(&lake, &storage, None).await?;
        let rows = analytics
            .sql(&report.sql)
            .await
            .map_err(|e| e.context(format!("report {name} failed")))?;
        self.output.emit(&rows)
    }
}
