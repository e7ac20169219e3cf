//! Progress bars for long commands, drawn on stderr by indicatif.

use indicatif::{ProgressBar, ProgressStyle};
use url::Url;

use crate::jobs::backfill::{Progress, Summary};
use crate::lineage::plan::StagePlan;

/// A bytes bar with ETA and a line of counts, for `backfill`.
pub struct BackfillBar(ProgressBar);

impl BackfillBar {
    pub fn new() -> anyhow::Result<Self> {
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} ETA {eta} {msg}",
        )?;
        Ok(Self(ProgressBar::new(0).with_style(style)))
    }
}

impl Progress for BackfillBar {
    fn listing(&self, source: &Url) {
        self.0.set_message(format!("listing {source}"));
    }

    fn listed(&self, _files: usize, bytes: u64) {
        self.0.set_length(bytes);
    }

    fn advanced(&self, bytes: u64, seen: usize, s: &Summary, rate: f64) {
        self.0.inc(bytes);
        self.0.set_message(format!(
            "{seen}/{} files · {rate:.1} docs/s · landed {} skipped {} failed {}",
            s.files, s.landed, s.skipped, s.failed
        ));
    }

    fn finished(&self) {
        self.0.finish_and_clear();
    }

    fn planned(&self, plans: &[StagePlan]) {
        if let Some(line) = super::plan::estimate_line(plans) {
            self.0.suspend(|| eprintln!("{line}"));
        }
    }

    fn recomputing(&self, done: usize, total: usize) {
        if total > 0 {
            eprintln!("recomputing stages of documents already in the lake: {done}/{total}");
        }
    }
}

/// A bar over document versions whose stages run again, for `reprocess`.
pub fn versions_bar() -> anyhow::Result<ProgressBar> {
    Ok(ProgressBar::new(0).with_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} documents ETA {eta}",
    )?))
}

/// A bar over `tables` tables, for `optimize` and `vacuum`.
pub fn tables_bar(tables: usize, verb: &str) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::new(tables as u64).with_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tables {msg}",
    )?);
    bar.set_message(verb.to_string());
    Ok(bar)
}
