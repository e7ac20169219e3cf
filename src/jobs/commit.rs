//! One micro-batch into the lake: the children that new versions no longer
//! hold are erased, the stages each version still needs run, and every
//! table is appended, `lineage` last. Backfill, reprocess and uploads
//! commit through it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use deltalake::arrow::array::RecordBatch;
use url::Url;

use crate::contract::extracted::{self, ExtractedDoc};
use crate::contract::failure::{self, Failure};
use crate::contract::identity::DocKey;
use crate::contract::tables::commit_rank;
use crate::lineage::adopt::adopt;
use crate::lineage::ledger::{Ledger, Retry, OK};
use crate::lineage::{inputs, record};
use crate::sinks::lake::Lake;
use crate::stages::config::{Input, Stage};
use crate::stages::runner::{Selection, StageOutput, StageRunner, StageWatch};
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
    let mut tables = runner.tables();
    tables.push("failures");
    lake.create_contract_tables(&tables).await?;
    adopt(&mut lake, runner.stages()).await?;
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
    retry: Retry,
    docs: Vec<ExtractedDoc>,
    pending: Pending,
    watch: Option<Arc<dyn StageWatch>>,
    on_table: &mut (dyn FnMut(&str, usize, Option<u64>) + Send),
) -> Result<Committed> {
    let mut committed = Committed::default();
    let stale = lake.stale_children(&pending.replaced).await?;
    if !stale.is_empty() {
        let mut tables = runner.tables();
        tables.push("failures");
        tables.sort_by_key(|t| std::cmp::Reverse(commit_rank(t)));
        for table in tables {
            lake.delete_documents(table, &stale).await?;
        }
    }
    let ledger = Ledger::new(runner.stages(), retry);
    let lineage = lake.landed_keys("lineage").await?;
    let mut groups: BTreeMap<BTreeSet<String>, Vec<&ExtractedDoc>> = BTreeMap::new();
    for doc in &docs {
        let todo = ledger.todo(lineage, &doc.doc_id, &doc.content_hash);
        match todo.is_empty() {
            true => committed.theirs += 1,
            false => groups.entry(todo).or_default().push(doc),
        }
    }
    let mut outputs: Vec<StageOutput> = Vec::new();
    let mut stage_failures = Vec::new();
    let mut entries = Vec::new();
    for (todo, group) in &groups {
        let selection = selection(lake, runner, todo, group).await?;
        let (out, failed) = runner
            .run_docs(group, selection.as_ref(), watch.clone())
            .await?;
        let ran: Vec<&Stage> = runner
            .stages()
            .iter()
            .filter(|s| todo.contains(&s.name))
            .collect();
        entries.extend(record::entries(group, &ran, &out, &failed)?);
        outputs.extend(out);
        stage_failures.extend(failed);
    }
    let text: Vec<&ExtractedDoc> = groups.values().flatten().copied().collect();
    let mut tables: Vec<(String, Vec<RecordBatch>)> = Vec::new();
    if !text.is_empty() {
        tables.push(("extracted".into(), vec![extracted::to_batch(&text)?]));
    }
    let mut failed = pending.failures;
    failed.extend(stage_failures.iter().cloned());
    if !failed.is_empty() {
        tables.push((
            "failures".into(),
            vec![failure::to_batch(&failed, Utc::now())?],
        ));
    }
    tables.extend(outputs.into_iter().map(|o| (o.table, o.batches)));
    committed.stage_runs = entries.iter().filter(|e| e.status == OK).count();
    if !entries.is_empty() {
        let batch = record::to_batch(&entries, runner.run_id(), Utc::now())?;
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
    committed.stage_failures = stage_failures;
    Ok(committed)
}

/// What a run of `todo` needs, when not every stage runs or a stage
/// reads one that does not: the lake's rows of the stages read that do
/// not run. `None` when the run is a whole pipeline's.
async fn selection(
    lake: &mut Lake,
    runner: &StageRunner,
    todo: &BTreeSet<String>,
    group: &[&ExtractedDoc],
) -> Result<Option<Selection>> {
    let stages = runner.stages();
    let mut read: BTreeMap<&str, &Input> = BTreeMap::new();
    for s in stages.iter().filter(|s| todo.contains(&s.name)) {
        for input in s.reads.iter().filter(|r| !todo.contains(&r.name)) {
            read.insert(&input.name, input);
        }
    }
    if read.is_empty() && todo.len() == stages.len() {
        return Ok(None);
    }
    let versions: HashSet<DocKey> = group
        .iter()
        .map(|d| (d.doc_id.clone(), d.content_hash.clone()))
        .collect();
    let mut given = HashMap::new();
    for (name, input) in read {
        let rows =
            inputs::read_versions(lake, &input.table, &versions, Some(&input.fingerprint)).await?;
        given.insert(name.to_string(), rows);
    }
    Ok(Some(Selection {
        run: todo.clone(),
        given,
    }))
}
