//! `docstream backfill`.

use anyhow::Result;

use super::progress::BackfillBar;
use super::resolved::{extraction_isolation, Resolved};
use super::stage_args::{PolicyArgs, StageArgs};
use crate::jobs::backfill::Backfill;
use crate::storage::parse_location;

/// Process every document under a folder or bucket prefix into the lake.
///
/// Re-running is safe: document versions (same source URI, same content hash)
/// that already landed are skipped, so an interrupted backfill resumes. A
/// stage that is new, changed (its SQL, parameters, model or prompt), or
/// failed with a retryable error runs again on the documents already in
/// the lake, from the text the lake holds; `docstream plan` shows that work
/// and its cost first.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream backfill samples\n  \
    docstream backfill ./my-archive --lake ./lake --parallelism 8\n  \
    docstream backfill s3://archive/2019/ --lake s3://lake/ --s3-endpoint http://127.0.0.1:9000\n  \
    docstream backfill ./docs --set chunks.max_tokens=256 --set chunks.overlap=32\n  \
    docstream backfill ./docs --stages documents,chunks      # no model calls\n  \
    docstream backfill ./docs --no-retry-failed             # leave failed stages alone\n  \
    docstream backfill ./docs --max-cost-usd 5              # stop before spending more\n  \
    OPENAI_API_KEY=... docstream --pipeline pipelines/openai.toml backfill ./docs")]
pub struct Args {
    /// Folder, file:// or s3:// / gs:// / az:// prefix. Default: the pipeline's source.uri.
    pub source: Option<String>,

    /// Tenant recorded on every document.
    #[arg(long)]
    pub tenant: Option<String>,

    /// Objects read and extracted at once (default: one per core).
    #[arg(long)]
    pub parallelism: Option<usize>,

    /// Close a micro-batch after this many documents.
    #[arg(long, value_name = "N")]
    pub batch_rows: Option<usize>,

    /// Leave the search indexes as they are; searches stay exact either
    /// way, and `docstream index` brings them up to date later.
    #[arg(long)]
    pub no_index: bool,

    #[command(flatten)]
    pub stages: StageArgs,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let runner = r.runner(&self.stages.stages)?;
        let p = r.pipeline;
        let source = self.source.or(p.source.uri.clone()).ok_or_else(|| {
            anyhow::anyhow!("name a folder or bucket to backfill, e.g. `docstream backfill ./docs`")
        })?;
        let mut job = Backfill::new(&p, parse_location(&source)?, r.lake.clone(), runner);
        job.storage = r.storage.clone();
        job.isolation = extraction_isolation();
        job.policy = self.policy.policy(&job.runner, &p.providers);
        if let Some(tenant) = self.tenant {
            job.tenant = tenant;
        }
        if let Some(n) = self.parallelism {
            job.parallelism = n;
        }
        if let Some(rows) = self.batch_rows {
            job.batch.max_rows = rows;
        }
        let started = std::time::Instant::now();
        let s = job.run(&BackfillBar::new()?).await?;
        println!(
            "backfill done: {} landed ({} with warnings), {} recomputed, {} skipped, {} failed, {} stage failures — {} files, {:.1} MiB in {:.1}s, {} commits to {}",
            s.landed,
            s.warnings,
            s.recomputed,
            s.skipped,
            s.failed,
            s.stage_failures,
            s.files,
            s.bytes as f64 / (1u64 << 20) as f64,
            started.elapsed().as_secs_f64(),
            s.commits,
            r.lake
        );
        if s.without_text > 0 {
            println!(
                "{} documents need stages but the lake has no text for them and their source objects changed or are gone",
                s.without_text
            );
        }
        if s.failed + s.warnings + s.stage_failures > 0 {
            println!("see why: docstream query \"SELECT source_uri, stage, error_kind, error FROM failures\"");
        }
        if s.commits > 0 && !self.no_index {
            super::index::refresh(&r.lake, &r.storage, &p.indexes, false).await;
        }
        Ok(())
    }
}
