//! Recompute from the lake: the stages the current version of each
//! document still needs, run on the text the lake keeps in `extracted`,
//! with no access to the source. `reprocess` is this alone; `backfill`
//! runs it after landing new versions, for the documents under its source.
//! `plan` runs it dry, to see which model calls the response cache saves.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result};
use deltalake::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::prelude::SessionContext;
use docstream_models::chain::Unsent;
use futures::StreamExt;

use super::commit::write;
use super::stage_runs::{self, Needed, Policy};
use crate::contract::extracted::{self, ExtractedDoc};
use crate::contract::identity::DocKey;
use crate::lineage::ledger::{Ledger, Retry};
use crate::lineage::scope::Scope;
use crate::sinks::lake::{utf8, Lake};
use crate::stages::runner::StageRunner;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recomputed {
    /// Current versions with at least one stage to run.
    pub versions: usize,
    /// Stage runs that landed rows or an ok lineage row.
    pub stage_runs: usize,
    /// Stage runs that failed (now `failures` rows).
    pub failed: usize,
    pub commits: usize,
    /// Versions that need stages but whose text the lake does not hold
    /// (landed before `extracted` existed): a backfill of their source
    /// recomputes them.
    pub without_text: usize,
}

/// The current version of every document in `scope` that still needs a
/// stage of `ledger`, split into those whose text the lake holds and the
/// number of those it does not.
pub async fn stale_versions(
    lake: &mut Lake,
    ledger: &Ledger<'_>,
    scope: &Scope,
) -> Result<(Vec<DocKey>, usize)> {
    let ctx = SessionContext::new();
    let Some(sql) = scope.current_versions(lake, &ctx).await? else {
        return Ok((Vec::new(), 0));
    };
    let frame = ctx
        .sql(&sql)
        .await
        .with_context(|| format!("cannot select documents with: {sql}"))?;
    let mut current = Vec::new();
    for b in frame.collect().await? {
        let (ids, hashes) = (utf8(b.column(0))?, utf8(b.column(1))?);
        let (ids, hashes) = (ids.as_string::<i32>(), hashes.as_string::<i32>());
        for i in 0..b.num_rows() {
            current.push((ids.value(i).to_string(), hashes.value(i).to_string()));
        }
    }
    let done = ledger.done_by_version(lake.landed_keys("lineage").await?);
    current.retain(|v| !ledger.missing(done.get(v).copied().unwrap_or(0)).is_empty());
    let text: HashSet<DocKey> = lake.keys("extracted", None).await?;
    let stale = current.len();
    current.retain(|v| text.contains(v));
    let without_text = stale - current.len();
    Ok((current, without_text))
}

/// Runs what `scope`'s current versions still need, `batch_rows` versions
/// per commit; `progress` hears (versions done, versions to do).
pub async fn recompute(
    lake: &mut Lake,
    runner: &StageRunner,
    policy: &Policy,
    scope: &Scope,
    batch_rows: usize,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Recomputed> {
    let ledger = Ledger::new(runner.stages(), policy.retry);
    let (versions, without_text) = stale_versions(lake, &ledger, scope).await?;
    let mut summary = Recomputed {
        without_text,
        ..Recomputed::default()
    };
    progress(0, versions.len());
    if versions.is_empty() {
        return Ok(summary);
    }
    let mut text = texts(lake, &versions).await?;
    let total = versions.len();
    let batch_rows = batch_rows.max(1);
    let mut docs: Vec<ExtractedDoc> = Vec::new();
    let mut ran: Option<Ran> = None;
    let mut read = true;
    while read || !docs.is_empty() {
        if read && docs.len() < batch_rows {
            match text.next().await.transpose()? {
                Some(b) => docs.extend(extracted::from_batch(&b)?),
                None => read = false,
            }
            continue;
        }
        let next: Vec<ExtractedDoc> = docs.drain(..batch_rows.min(docs.len())).collect();
        ran = Some(step(lake, runner, policy, next, ran, &mut summary).await?);
        progress(summary.versions, total);
    }
    if let Some(last) = ran {
        land(lake, runner, last, &mut summary).await?;
        progress(summary.versions, total);
    }
    Ok(summary)
}

/// What a run of `scope`'s stale stages would send to the models, per
/// stage, with the responses the cache holds used instead: a dry run of
/// the stages over the text of at most `sample` versions (chosen evenly),
/// and the share of the versions to compute it covered. Nothing is
/// written and no model is called.
pub async fn dry_run(
    lake: &mut Lake,
    runner: &StageRunner,
    retry: Retry,
    scope: &Scope,
    sample: usize,
) -> Result<(BTreeMap<String, Unsent>, f64)> {
    let ledger = Ledger::new(runner.stages(), retry);
    let (mut versions, _) = stale_versions(lake, &ledger, scope).await?;
    if versions.is_empty() {
        return Ok((BTreeMap::new(), 1.0));
    }
    let total = versions.len();
    let step = total.div_ceil(sample.max(1));
    versions = versions.into_iter().step_by(step).collect();
    let share = versions.len() as f64 / total as f64;
    let dry = runner.dry_run();
    let policy = Policy {
        retry,
        budget: None,
    };
    let mut text = texts(lake, &versions).await?;
    while let Some(b) = text.next().await.transpose()? {
        let docs = extracted::from_batch(&b)?;
        Needed::of(lake, &dry, &policy, &docs)
            .await?
            .run(&dry, None)
            .await?;
    }
    Ok((dry.unsent(), share))
}

/// One streaming read of `versions`' text: a lookup per batch would read
/// the whole table each time.
async fn texts(lake: &mut Lake, versions: &[DocKey]) -> Result<SendableRecordBatchStream> {
    let ctx = SessionContext::new();
    lake.register_table(&ctx, "extracted").await?;
    let ids: StringArray = versions.iter().map(|v| Some(v.0.as_str())).collect();
    let hashes: StringArray = versions.iter().map(|v| Some(v.1.as_str())).collect();
    let wanted = RecordBatch::try_from_iter(vec![
        ("id_", Arc::new(ids) as ArrayRef),
        ("hash_", Arc::new(hashes) as ArrayRef),
    ])?;
    ctx.register_table(
        "wanted_",
        Arc::new(MemTable::try_new(wanted.schema(), vec![vec![wanted]])?),
    )?;
    Ok(ctx
        .sql("SELECT e.* FROM wanted_ w JOIN extracted e ON e.doc_id = w.id_ AND e.content_hash = w.hash_")
        .await?
        .execute_stream()
        .await?)
}

/// What one batch's stages made, not yet written.
struct Ran {
    docs: Vec<ExtractedDoc>,
    theirs: usize,
    made: stage_runs::Ran,
}

/// Runs the stages `docs` need while the previous batch's rows are
/// written: the model calls do not wait for the commits.
async fn step(
    lake: &mut Lake,
    runner: &StageRunner,
    policy: &Policy,
    docs: Vec<ExtractedDoc>,
    previous: Option<Ran>,
    summary: &mut Recomputed,
) -> Result<Ran> {
    let needed = match Needed::of(lake, runner, policy, &docs).await {
        Ok(needed) => needed,
        // Past the budget, say: what was paid for still lands.
        Err(e) => {
            if let Some(p) = previous {
                land(lake, runner, p, summary).await?;
            }
            return Err(e);
        }
    };
    let theirs = needed.settled;
    let (made, landed) = tokio::join!(needed.run(runner, None), async {
        match previous {
            Some(p) => land(lake, runner, p, summary).await,
            None => Ok(()),
        }
    });
    landed?;
    Ok(Ran {
        made: made?,
        docs,
        theirs,
    })
}

/// Commits one batch of versions and counts what it did.
async fn land(
    lake: &mut Lake,
    runner: &StageRunner,
    ran: Ran,
    summary: &mut Recomputed,
) -> Result<()> {
    let n = ran.docs.len();
    let done = write(
        lake,
        runner,
        &ran.docs,
        Vec::new(),
        ran.made,
        ran.theirs,
        &mut |_, _, _| {},
    )
    .await?;
    summary.versions += n - done.theirs;
    summary.stage_runs += done.stage_runs;
    summary.failed += done.stage_failures.len();
    summary.commits += done.commits;
    Ok(())
}
