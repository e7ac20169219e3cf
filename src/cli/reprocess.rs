//! `docstream reprocess`.

use anyhow::Result;

use super::plan::estimate_line;
use super::progress::versions_bar;
use super::resolved::Resolved;
use super::stage_args::{PolicyArgs, StageArgs, WhereArgs};
use crate::jobs::commit::open_lake;
use crate::jobs::estimate::estimate;
use crate::jobs::recompute::recompute;
use crate::lineage::scope::Scope;

/// Run stages again from what the lake holds, with no access to the source.
///
/// For the current version of each document, runs every stage that is new,
/// changed (its SQL, parameters, model or prompt) or failed with a retryable
/// error, on the text the lake keeps in the `extracted` table. Documents that
/// came from Kafka with inline text, or from a bucket since emptied, are
/// recomputed too. Safe to kill and re-run. `docstream plan` shows the work
/// and its cost first.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream plan && docstream reprocess\n  \
    docstream reprocess --stages summaries --where \"tenant = 'acme'\"\n  \
    docstream reprocess --set chunks.max_tokens=256          # chunks and embeddings only\n  \
    docstream reprocess --stages risks --retry-failed all --max-cost-usd 2")]
pub struct Args {
    #[command(flatten)]
    pub stages: StageArgs,

    #[command(flatten)]
    pub scope: WhereArgs,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Documents per commit (default: the pipeline's batch.max_rows).
    #[arg(long, value_name = "N")]
    pub batch_rows: Option<usize>,

    /// Leave the search indexes as they are; `docstream index` updates them later.
    #[arg(long)]
    pub no_index: bool,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let runner = r.runner(&self.stages.stages)?;
        runner.check().await?;
        let p = &r.pipeline;
        let mut lake = open_lake(&r.lake, &r.storage, p.lake.checkpoint_interval, &runner).await?;
        let scope = Scope {
            under: None,
            filter: self.scope.condition,
        };
        let policy = self.policy.policy(&runner, &p.providers);
        let plans = estimate(&mut lake, &runner, &p.providers, policy.retry, &scope).await?;
        if let Some(line) = estimate_line(&plans) {
            eprintln!("{line}");
        }
        let bar = versions_bar()?;
        let started = std::time::Instant::now();
        let s = recompute(
            &mut lake,
            &runner,
            &policy,
            &scope,
            self.batch_rows.unwrap_or(p.batch.max_rows),
            &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
        )
        .await?;
        bar.finish_and_clear();
        println!(
            "reprocess done: {} documents, {} stage runs, {} stage failures, {} commits in {:.1}s to {}",
            s.versions,
            s.stage_runs,
            s.failed,
            s.commits,
            started.elapsed().as_secs_f64(),
            r.lake
        );
        if s.without_text > 0 {
            println!(
                "{} documents need stages but the lake holds no text for them (they landed before docstream kept it): backfill their source to recompute them",
                s.without_text
            );
        }
        if s.failed > 0 {
            println!("see why: docstream query \"SELECT source_uri, stage, error_kind, error FROM failures\"");
        }
        if s.commits > 0 && !self.no_index {
            super::index::refresh(&r.lake, &r.storage, &p.indexes, false).await;
        }
        Ok(())
    }
}
