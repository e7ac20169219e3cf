//! `docstream plan`.

use anyhow::Result;

use super::output::OutputArgs;
use super::resolved::Resolved;
use super::stage_args::{RetryArgs, StageArgs, WhereArgs};
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
/// would compute, their input tokens (counted with the tokenizer when they
/// landed) and the cost at the pipeline's input prices. Changes nothing.
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
        let stages = select_stages(r.stages.clone(), &self.stages.stages)?;
        let mut lake = Lake::open(&r.lake, &r.storage).await?;
        let scope = Scope {
            under: None,
            filter: self.scope.condition,
        };
        let plans = plan(
            &mut lake,
            &stages,
            &r.pipeline.providers,
            self.retry.retry(),
            &scope,
        )
        .await?;
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
    }
    Some(line)
}
