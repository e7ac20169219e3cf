//! What the next run computes and costs, before it runs: the plan's counts,
//! with the model stages' requests checked against the response cache by a
//! dry run of the stages over (a sample of) the versions to compute. `plan`,
//! `reprocess` and `backfill` print this one estimate.

use std::collections::BTreeMap;

use anyhow::Result;
use docstream_models::provider::ProviderConfig;

use super::recompute::dry_run;
use crate::lineage::ledger::Retry;
use crate::lineage::plan::{apply_dry_run, plan, StagePlan};
use crate::lineage::scope::Scope;
use crate::sinks::lake::Lake;
use crate::stages::runner::StageRunner;

/// Versions a dry run covers at most; past it, its counts are scaled.
pub const DRY_RUN_SAMPLE: usize = 2_000;

/// The plan for `runner`'s stages over `scope`. With a response cache that
/// outlives runs, model stages' tokens and cost leave out what it answers;
/// without one no call can be saved, and they are the documents' tokens.
pub async fn estimate(
    lake: &mut Lake,
    runner: &StageRunner,
    providers: &BTreeMap<String, ProviderConfig>,
    retry: Retry,
    scope: &Scope,
) -> Result<Vec<StagePlan>> {
    let stages = runner.stages();
    let mut plans = plan(lake, stages, providers, retry, scope).await?;
    let calls_models = plans
        .iter()
        .zip(stages)
        .any(|(p, s)| p.to_compute > 0 && !s.providers.is_empty());
    if calls_models && runner.caches_responses() {
        // An estimate: a dry run that fails leaves the plain one.
        match dry_run(lake, runner, retry, scope, DRY_RUN_SAMPLE).await {
            Ok((unsent, share)) => apply_dry_run(&mut plans, stages, providers, &unsent, share),
            Err(e) => tracing::warn!(
                "the response cache was not checked ({e:#}); token estimates are the documents' own"
            ),
        }
    }
    Ok(plans)
}
