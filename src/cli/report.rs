//! `docstream report`.

use anyhow::{bail, Result};

use super::output::OutputArgs;
use super::resolved::Resolved;
use crate::analytics::query::Analytics;
use crate::analytics::reports;

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

    #[command(flatten)]
    pub output: OutputArgs,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let folder = r.pipeline.reports_dir();
        if self.list {
            let all = reports::all(folder.as_deref())?;
            let width = all.iter().map(|r| r.name.len()).max().unwrap_or(0);
            for r in all {
                println!("{:width$}  {}", r.name, r.description);
            }
            return Ok(());
        }
        let Some(name) = self.name else {
            bail!("name a report, or pass --list to see them");
        };
        let report = reports::find(folder.as_deref(), &name)?;
        if self.show_sql {
            print!("{}", report.sql);
            return Ok(());
        }
        let analytics = Analytics::open(&r.lake, &r.storage, None, &r.pipeline.analytics).await?;
        let rows = analytics
            .sql(&report.sql)
            .await
            .map_err(|e| e.context(format!("report {name} failed")))?;
        self.output.emit(&rows)
    }
}
