//! `docstream plan`.

use anyhow::Result;

use super::output::OutputArgs;
use super::resolved::Resolved;
use super::stage_args::{RetryArgs, StageArgs, WhereArgs};
use crate::jobs::estimate::estimate;
use crate::lineage::plan::{plan, to_batch, StagePlan};
use crate::lineage::scope::Scope;
use crate::sinks::lake::Lake;
use crate::stages::config::select_stages;

/// Show what the next run would compute, and what it would cost, before
/// anything runs.
///
/// Per stage, over the current version of each document: up to date, new
/// (the stage never ran on it), stale (its rows came from an earlier
/// fingerprint: the stage's SQL, parameters, model, prompt or an input
/// changed), retryable failures, terminal failures; the versions a run
/// would compute, their model requests and input tokens, and the cost at
/// the pipeline's input prices. Requests the response cache answers are
/// left out: a dry run of the stages over up to 2,000 of the versions to
/// compute (scaled past that) reads the cache and calls no model. Without
/// a cache kept between runs (`[models] cache = "off"`), the tokens are
/// the documents' own. Changes nothing.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream plan\n  \
    docstream plan --set chunks.max_tokens=256        # what a chunk-size change would recompute\n  \
    docstream --pipeline pipelines/openai.toml plan --where \"tenant = 'acme'\" --format json\n  \
    docstream plan --retry-failed all")]
pub struct Args {
    #[command(flatten)]
    pub stages: StageArgs,

    #[command(flatten)]
    pub scope: WhereArgs,

    #[command(flatten)]
    pub retry: RetryArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let mut lake = Lake::open(&r.lake, &r.storage).await?;
        let scope = Scope {
            under: None,
            filter: self.scope.condition,
        };
        let (providers, retry) = (&r.pipeline.providers, self.retry.retry());
        // The cache check needs the stages' models open; without them the
        // counts still stand.
        let runner = match r.runner(&self.stages.stages) {
            Ok(runner) => runner.check().await.map(|_| runner),
            Err(e) => Err(e),
        };
        let plans = match runner {
            Ok(runner) => estimate(&mut lake, &runner, providers, retry, &scope).await?,
            Err(e) => {
                eprintln!("note: the response cache is not checked ({e:#}); tokens are the documents' own");
                let stages = select_stages(r.stages.clone(), &self.stages.stages)?;
                plan(&mut lake, &stages, providers, retry, &scope).await?
            }
        };
        self.output.emit(&[to_batch(&plans)?])
    }
}

/// The plan's totals in one line: the stage runs on documents already in
/// the lake, their tokens and their cost; `None` when there are none.
pub fn estimate_line(plans: &[StagePlan]) -> Option<String> {
    let runs: i64 = plans.iter().map(|p| p.to_compute).sum();
    if runs == 0 {
        return None;
    }
    let stages: Vec<String> = plans
        .iter()
        .filter(|p| p.to_compute > 0)
        .map(|p| format!("{} {}", p.stage, p.to_compute))
        .collect();
    let mut line = format!(
        "plan: {runs} stage runs on documents already in the lake ({})",
        stages.join(", ")
    );
    let priced: Vec<&StagePlan> = plans
        .iter()
        .filter(|p| p.to_compute > 0 && p.input_tokens.is_some())
        .collect();
    if !priced.is_empty() {
        let tokens: i64 = priced.iter().filter_map(|p| p.input_tokens).sum();
        let usd: f64 = priced
            .iter()
            .filter_map(|p| p.cost_usd)
            .fold(0.0, |a, b| a + b);
        line.push_str(&format!(", about {tokens} model input tokens, ${usd:.4}"));
        let cached: i64 = priced.iter().filter_map(|p| p.cached_calls).sum();
        if cached > 0 {
            line.push_str(&format!(" ({cached} answers from the response cache)"));
        }
    }
    Some(line)
}
