//! One micro-batch into the lake: the children that new versions no longer
//! hold are erased, the stages run, and every table is appended with
//! `documents` last. Backfill and uploads commit through it.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use url::Url;

use crate::contract::extracted::ExtractedDoc;
use crate::contract::failure::{self, Failure};
use crate::sinks::lake::Lake;
use crate::stages::runner::{StageRunner, StageWatch};
use crate::storage::StorageOptions;

/// Opens the lake a run commits to, creating the tables its stages and
/// `failures` write, so every table can be queried from the first run.
pub async fn open_lake(
    root: &Url,
    storage: &StorageOptions,
    checkpoint_interval: u64,
    runner: &StageRunner,
) -> Result<Lake> {
    let mut lake = Lake::open(root, storage)
        .await?
        .with_checkpoint_interval(checkpoint_interval);
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
    /// Versions of the batch that another writer landed first: skipped.
    pub theirs: usize,
    /// Rows a SQL stage failed on (they are in `failures` now).
    pub stage_failures: Vec<Failure>,
    /// Table commits made.
    pub commits: usize,
}

/// Runs the stages on `docs` and commits every table; `watch` hears of the
/// stages' progress, and `on_table` of each table as it commits, with its
/// rows and new version. `documents` commits last:
/// until it does, a re-run finds the versions again, and every other
/// table skips the versions it already holds.
pub async fn commit(
    lake: &mut Lake,
    runner: &StageRunner,
    mut docs: Vec<ExtractedDoc>,
    pending: Pending,
    watch: Option<Arc<dyn StageWatch>>,
    on_table: &mut (dyn FnMut(&str, usize, Option<u64>) + Send),
) -> Result<Committed> {
    let mut committed = Committed::default();
    let stale = lake.stale_children(&pending.replaced).await?;
    if !stale.is_empty() {
        let mut tables = runner.tables();
        tables.push("failures");
        tables.sort_by_key(|t| *t == "documents");
        for table in tables {
            lake.delete_documents(table, &stale).await?;
        }
    }
    let writes_documents = runner.tables().contains(&"documents");
    let batch_docs = docs.len();
    if writes_documents {
        // Landed by another writer since these versions were read.
        let landed = lake
            .landed_among(
                "documents",
                docs.iter()
                    .map(|d| (d.doc_id.as_str(), d.content_hash.as_str())),
            )
            .await?;
        docs.retain(|d| !landed.contains(&(d.doc_id.clone(), d.content_hash.clone())));
    }
    let docs: Vec<&ExtractedDoc> = docs.iter().collect();
    let (mut outputs, stage_failures) = runner.run_docs(&docs, watch).await?;
    let unwritten = stage_failures
        .iter()
        .filter(|f| f.stage == "documents")
        .count();
    outputs.sort_by_key(|o| o.table == "documents");
    let mut failed = pending.failures;
    failed.extend(stage_failures.iter().cloned());
    if !failed.is_empty() {
        let batch = failure::to_batch(&failed, Utc::now())?;
        let rows = lake.append("failures", vec![batch]).await?;
        committed.commits += usize::from(rows > 0);
        on_table("failures", rows, lake.version("failures"));
    }
    let mut documents = 0;
    for output in outputs {
        let rows = lake
            .append(&output.table, output.batches)
            .await
            .with_context(|| format!("writing table {}", output.table))?;
        committed.commits += usize::from(rows > 0);
        if output.table == "documents" {
            documents = rows;
        }
        on_table(&output.table, rows, lake.version(&output.table));
    }
    if writes_documents {
        committed.theirs = batch_docs.saturating_sub(documents + unwritten);
    }
    committed.stage_failures = stage_failures;
    Ok(committed)
}
