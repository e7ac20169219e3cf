//! One micro-batch into the lake: the children that new versions no longer
//! hold are erased, the stages each version still needs run, and every
//! table is appended, `lineage` last. Backfill, reprocess and uploads
//! commit through it.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use deltalake::arrow::array::RecordBatch;
use url::Url;

use super::stage_runs::{Needed, Policy, Ran};
use crate::contract::extracted::{self, ExtractedDoc};
use crate::contract::failure::{self, Failure};
use crate::contract::tables::commit_rank;
use crate::lineage::adopt::adopt;
use crate::lineage::record;
use crate::sinks::lake::Lake;
use crate::stages::runner::{StageRunner, StageWatch};
use crate::storage::StorageOptions;

/// Opens the lake a run commits to, creating the tables its stages and
/// `failures` write, so every table can be queried from the first run,
/// and adopting rows written before stage fingerprints.
pub async fn open_lake(
    root: &Url,
    storage: &StorageOptions,
    checkpoint_interval: u64,
    runner: &StageRunner,
) -> Result<Lake> {
    let mut lake = Lake::open(root, storage)
        .await?
        .with_checkpoint_interval(checkpoint_interval);
    // Before the tables are created: a stage whose table does not exist
    // yet is new, not adopted.
    adopt(&mut lake, runner.stages()).await?;
    let mut tables = runner.tables();
    tables.push("failures");
    lake.create_contract_tables(&tables).await?;
    Ok(lake)
}

/// What waits for the next commit besides the batch of documents.
#[derive(Default)]
pub struct Pending {
    pub failures: Vec<Failure>,
    /// New versions of documents already in the lake, with their new
    /// descendants: the old ones that are not among them are erased.
    pub replaced: Vec<(String, HashSet<String>)>,
}

/// What one commit did.
#[derive(Debug, Default)]
pub struct Committed {
    /// Versions of the batch that needed no stage by the time it
    /// committed (another writer landed them first): skipped.
    pub theirs: usize,
    /// Rows a SQL stage failed on (they are in `failures` now).
    pub stage_failures: Vec<Failure>,
    /// Stage runs on a document version that succeeded.
    pub stage_runs: usize,
    /// Table commits made.
    pub commits: usize,
}

/// Runs the stages each of `docs` still needs and commits every table;
/// `watch` hears of the stages' progress, and `on_table` of each table as
/// it commits, with its rows and new version. Which stages a version needs
/// is read from `lineage` as of now, so a version another writer landed
/// meanwhile is skipped. Tables commit in `commit_rank` order: the text
/// first, `documents` after the other outputs, `lineage` last. Until
/// `lineage` commits, a re-run finds the stages again, and every table
/// skips the rows it already holds.
pub async fn commit(
    lake: &mut Lake,
    runner: &StageRunner,
    policy: &Policy,
    docs: Vec<ExtractedDoc>,
    pending: Pending,
    watch: Option<Arc<dyn StageWatch>>,
    on_table: &mut (dyn FnMut(&str, usize, Option<u64>) + Send),
) -> Result<Committed> {
    let stale = lake.stale_children(&pending.replaced).await?;
    if !stale.is_empty() {
        let mut tables = runner.tables();
        tables.push("failures");
        tables.sort_by_key(|t| std::cmp::Reverse(commit_rank(t)));
        for table in tables {
            lake.delete_documents(table, &stale).await?;
        }
    }
    let needed = Needed::of(lake, runner, policy, &docs).await?;
    let theirs = needed.settled;
    let ran = needed.run(runner, watch).await?;
    write(lake, runner, &docs, pending.failures, ran, theirs, on_table).await
}

/// Appends what `ran` made for `docs`, with `failures`, in `commit_rank`
/// order; `theirs` of `docs` needed no stage.
pub async fn write(
    lake: &mut Lake,
    runner: &StageRunner,
    docs: &[ExtractedDoc],
    failures: Vec<Failure>,
    ran: Ran,
    theirs: usize,
    on_table: &mut (dyn FnMut(&str, usize, Option<u64>) + Send),
) -> Result<Committed> {
    let mut committed = Committed {
        theirs,
        stage_runs: ran.stage_runs(),
        ..Committed::default()
    };
    // Every version's text, also of those that needed no stage: the lake
    // keeps each once, so a version read again fills in what it lacks.
    let mut tables: Vec<(String, Vec<RecordBatch>)> = Vec::new();
    if !docs.is_empty() {
        let text: Vec<&ExtractedDoc> = docs.iter().collect();
        tables.push(("extracted".into(), vec![extracted::to_batch(&text)?]));
    }
    let mut failed = failures;
    failed.extend(ran.failures.iter().cloned());
    if !failed.is_empty() {
        tables.push((
            "failures".into(),
            vec![failure::to_batch(&failed, Utc::now())?],
        ));
    }
    tables.extend(ran.outputs.into_iter().map(|o| (o.table, o.batches)));
    if !ran.lineage.is_empty() {
        let batch = record::to_batch(&ran.lineage, runner.run_id(), Utc::now())?;
        tables.push(("lineage".into(), vec![batch]));
    }
    tables.sort_by_key(|(t, _)| commit_rank(t));
    for (table, batches) in tables {
        let rows = lake
            .append(&table, batches)
            .await
            .with_context(|| format!("writing table {table}"))?;
        committed.commits += usize::from(rows > 0);
        on_table(&table, rows, lake.version(&table));
    }
    committed.stage_failures = ran.failures;
    Ok(committed)
}
