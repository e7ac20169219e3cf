//! `docstream index`: build the search indexes, or show how far behind
//! the tables they are.

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use super::output::Format;
use super::resolved::Resolved;
use url::Url;

use crate::indexes::config::IndexesConfig;
use crate::indexes::update::{status, update, Status, Updated};
use crate::storage::StorageOptions;

/// Build or bring up to date the search indexes under <lake>/_indexes/.
///
/// The Delta tables stay the only source of truth: an index records the
/// table versions it covers, and searches add what it has not seen yet, so
/// results are current even before the index catches up. A build never
/// disturbs running searches: it publishes a new generation in one step.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream index\n  \
    docstream index --status\n  \
    docstream index --status --format json\n  \
    docstream index --rebuild --lake s3://lake/")]
pub struct Args {
    /// Show each index's covered and latest table versions, rows behind
    /// and size, and build nothing.
    #[arg(long)]
    pub status: bool,

    /// Build from scratch even when the index is up to date.
    #[arg(long, conflicts_with = "status")]
    pub rebuild: bool,

    /// table (default) or json, for --status.
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        if self.status {
            let all = status(&r.lake, &r.storage).await?;
            match self.format {
                Format::Json | Format::Ndjson => {
                    println!("{}", serde_json::to_string_pretty(&all)?)
                }
                Format::Table | Format::Csv => print_status(&all, &r),
            }
            return Ok(());
        }
        let bar = ProgressBar::new(0).with_style(ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {msg}: {bar:30} {pos}/{len} rows {per_sec}",
        )?);
        let progress = |label: &str, done: u64, total: u64| {
            bar.set_message(label.to_string());
            bar.set_length(total);
            bar.set_position(done);
        };
        eprintln!("indexing {}", r.lake);
        let updated = update(
            &r.lake,
            &r.storage,
            &r.pipeline.indexes,
            self.rebuild,
            &progress,
        )
        .await?;
        bar.finish_and_clear();
        if updated.is_empty() {
            println!(
                "no chunks in {} yet: run `docstream backfill` first",
                r.lake
            );
        }
        for u in &updated {
            println!("{}", report(u));
        }
        Ok(())
    }
}

/// One line on what an update did.
fn report(u: &Updated) -> String {
    let m = &u.manifest;
    if u.up_to_date {
        format!(
            "{}: up to date ({} rows, {})",
            u.kind.label(),
            m.rows(),
            covered(&m.covers())
        )
    } else {
        format!(
            "{}: {} rows indexed in {:.1}s; {} rows in {}, {:.1} MiB ({})",
            u.kind.label(),
            u.indexed,
            u.secs,
            m.rows(),
            layers(m.layers.len()),
            m.bytes() as f64 / (1 << 20) as f64,
            covered(&m.covers())
        )
    }
}

/// Brings the search indexes up to what just landed (from scratch with
/// `rebuild`). The tables already hold everything, so a failure here only
/// warns: searches stay exact.
pub async fn refresh(lake: &Url, storage: &StorageOptions, config: &IndexesConfig, rebuild: bool) {
    match update(lake, storage, config, rebuild, &|_, _, _| {}).await {
        Ok(all) => {
            for u in all.iter().filter(|u| !u.up_to_date) {
                println!("{}", report(u));
            }
        }
        Err(e) => eprintln!(
            "warning: the search indexes were not updated ({e:#}); searches stay exact. Run `docstream index` to retry"
        ),
    }
}

fn layers(n: usize) -> String {
    if n == 1 {
        "1 layer".to_string()
    } else {
        format!("{n} layers")
    }
}

fn covered(versions: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = versions.iter().map(|(t, v)| format!("{t} v{v}")).collect();
    parts.join(", ")
}

fn print_status(all: &[Status], r: &Resolved) {
    if all.is_empty() {
        println!(
            "no chunks in {} yet: run `docstream backfill` first",
            r.lake
        );
    }
    for s in all {
        let behind = match s.rows_behind {
            Some(0) => "up to date".to_string(),
            Some(n) => format!("{n} rows behind"),
            None => "the log no longer reaches back: run `docstream index --rebuild`".to_string(),
        };
        let covers = if s.covers.is_empty() {
            "never built".to_string()
        } else {
            format!("covers {}", covered(&s.covers))
        };
        println!(
            "{}: {covers}; latest {}; {behind}; {} rows in {}, {:.1} MiB",
            s.index,
            covered(&s.latest),
            s.rows,
            layers(s.layers),
            s.bytes as f64 / (1 << 20) as f64
        );
    }
}
