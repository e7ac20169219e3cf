//! Backfill: every object under a prefix, through the stages, into the lake.
//!
//! Objects are read and extracted with bounded parallelism (memory is about
//! `parallelism × max_input_bytes` plus one micro-batch), in key order.
//! Re-runs skip document versions that already landed, so a killed backfill
//! resumes where it stopped; an object whose listing matches one that
//! landed is not even read. Each micro-batch also drops the versions that
//! other writers landed since the run started, and the lake drops any that
//! race it to the commit, so overlapping runs land each version once.
//! Then the stages that documents under the prefix still need (new,
//! changed or retried ones) run on the text the lake holds (`recompute`).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};
use deltalake::arrow::array::AsArray;
use deltalake::datafusion::prelude::SessionContext;
use docstream_models::provider::ProviderConfig;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use url::Url;

use super::commit::{commit, open_lake, Pending};
use super::document::{extract_document, Landing, Origin};
use super::estimate::estimate;
use super::extract_pool::{ExtractPool, Isolation};
use super::recompute::recompute;
use super::stage_runs::Policy;
use crate::config::Pipeline;
use crate::contract::extracted::ExtractedDoc;
use crate::contract::failure::{self, ErrorKind, Failure};
use crate::contract::identity::DocKey;
use crate::contract::identity::{content_hash, doc_id};
use crate::extract::Limits;
use crate::lineage::ledger::{Ledger, Retry};
use crate::lineage::plan::StagePlan;
use crate::lineage::scope::Scope;
use crate::sinks::lake::{utf8, Lake};
use crate::sources::bucket::{Bucket, SourceObject};
use crate::stages::batcher::BatchConfig;
use crate::stages::batcher::Batcher;
use crate::stages::runner::StageRunner;
use crate::storage::StorageOptions;

pub struct Backfill {
    pub source: Url,
    pub lake: Url,
    pub storage: StorageOptions,
    /// Tables created here write a checkpoint every N commits.
    pub checkpoint_interval: u64,
    pub tenant: String,
    pub parallelism: usize,
    pub batch: BatchConfig,
    pub limits: Limits,
    /// Where extractions run; the CLI uses worker processes.
    pub isolation: Isolation,
    pub runner: StageRunner,
    /// The pipeline's providers, for the cost of the stages' model calls.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Which failed stages run again, and what the model calls may cost.
    pub policy: Policy,
}

impl Backfill {
    /// A backfill of `source` into `lake` with the pipeline's settings
    /// (tenant, parallelism, batching, extraction limits, checkpoints).
    pub fn new(pipeline: &Pipeline, source: Url, lake: Url, runner: StageRunner) -> Self {
        Self {
            source,
            lake,
            storage: StorageOptions::default(),
            checkpoint_interval: pipeline.lake.checkpoint_interval,
            tenant: pipeline.source.tenant.clone(),
            parallelism: pipeline.source.parallelism,
            batch: pipeline.batch,
            limits: pipeline.extract.clone(),
            isolation: Isolation::Thread,
            runner,
            providers: pipeline.providers.clone(),
            policy: Policy::default(),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub bytes: u64,
    pub landed: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Documents that landed with a warning row (e.g. invalid UTF-8).
    pub warnings: usize,
    /// Documents a SQL stage failed on (they landed in the other tables).
    pub stage_failures: usize,
    pub commits: usize,
    /// Versions already in the lake whose changed, new or retried stages
    /// ran on the text the lake holds.
    pub recomputed: usize,
    /// Versions that need stages but whose text the lake lacks and whose
    /// source object is gone.
    pub without_text: usize,
}

/// What happened to one object.
enum Outcome {
    /// With whether an earlier version of the document is in the lake.
    Landed(Box<Landing>, bool),
    Failed(Failure),
    Skipped,
}

/// What a backfill reports as it goes (the command line draws a bar).
pub trait Progress: Sync {
    fn listing(&self, _source: &Url) {}
    fn listed(&self, _files: usize, _bytes: u64) {}
    /// One more object done: its size, the totals so far, and the rate.
    fn advanced(&self, _bytes: u64, _seen: usize, _so_far: &Summary, _docs_per_sec: f64) {}
    fn finished(&self) {}
    /// What the lake pass will compute, per stage, before anything runs.
    fn planned(&self, _plans: &[StagePlan]) {}
    /// Versions already in the lake that needed stages: `done` of `total`.
    fn recomputing(&self, _done: usize, _total: usize) {}
}

/// No progress reports.
impl Progress for () {}

impl Backfill {
    pub async fn run(self, progress: &impl Progress) -> Result<Summary> {
        let started = Instant::now();
        self.runner.check().await?;
        let bucket = Bucket::open(&self.source, &self.storage)?;
        let mut lake = open_lake(
            &self.lake,
            &self.storage,
            self.checkpoint_interval,
            &self.runner,
        )
        .await?;
        let scope = Scope {
            under: Some(bucket.uri_prefix()),
            filter: None,
        };
        progress.planned(
            &estimate(
                &mut lake,
                &self.runner,
                &self.providers,
                self.policy.retry,
                &scope,
            )
            .await?,
        );
        let landed = self.landed(&mut lake).await?;
        progress.listing(&self.source);
        let objects = bucket.list().await?;
        if objects.is_empty() {
            tracing::warn!(source = %self.source, "no objects found; check the path or prefix");
        }
        let total_bytes: u64 = objects.iter().map(|o| o.meta.size).sum();
        progress.listed(objects.len(), total_bytes);
        let mut summary = Summary {
            files: objects.len(),
            ..Summary::default()
        };

        let parallelism = match self.parallelism {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let pool = ExtractPool::new(parallelism, self.isolation.clone());
        let mut outcomes = futures::stream::iter(objects)
            .map(|object| self.process(&bucket, object, &landed, &pool))
            .buffered(parallelism);
        let mut batcher = Batcher::new(self.batch);
        let mut pending = Pending::default();
        let mut seen = 0usize;
        loop {
            let age = batcher.age_left().unwrap_or(Duration::from_secs(3600));
            let next = tokio::select! {
                next = outcomes.next() => next,
                _ = tokio::time::sleep(age) => {
                    self.flush(&mut lake, &mut batcher, &mut pending, &mut summary).await?;
                    continue;
                }
            };
            let Some((size, outcome)) = next else { break };
            seen += 1;
            summary.bytes += size;
            match outcome {
                Outcome::Landed(landing, replaces) => {
                    if let (true, Some(doc)) = (replaces, landing.document()) {
                        let children = landing.descendants().map(str::to_string).collect();
                        pending.replaced.push((doc.doc_id.clone(), children));
                    }
                    let Landing {
                        docs,
                        warnings,
                        failed,
                    } = *landing;
                    summary.landed += docs.len();
                    summary.warnings += warnings.len();
                    summary.failed += failed.len();
                    pending.failures.extend(warnings.into_iter().chain(failed));
                    for doc in docs {
                        let size = doc.size();
                        batcher.push(doc, size);
                    }
                }
                Outcome::Failed(f) => {
                    summary.failed += 1;
                    pending.failures.push(f);
                }
                Outcome::Skipped => summary.skipped += 1,
            }
            let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-3);
            progress.advanced(size, seen, &summary, rate);
            if batcher.is_full() || pending.failures.len() >= self.batch.max_rows.max(1) {
                self.flush(&mut lake, &mut batcher, &mut pending, &mut summary)
                    .await?;
            }
        }
        self.flush(&mut lake, &mut batcher, &mut pending, &mut summary)
            .await?;
        progress.finished();
        let again = recompute(
            &mut lake,
            &self.runner,
            &self.policy,
            &scope,
            self.batch.max_rows,
            &mut |done, total| progress.recomputing(done, total),
        )
        .await?;
        summary.recomputed = again.versions;
        summary.stage_failures += again.failed;
        summary.commits += again.commits;
        summary.without_text = again.without_text;
        Ok(summary)
    }

    async fn process(
        &self,
        bucket: &Bucket,
        object: SourceObject,
        landed: &Landed,
        pool: &ExtractPool,
    ) -> (u64, Outcome) {
        let size = object.meta.size;
        let version = object_version(&object);
        if landed.objects.contains(&version) {
            return (size, Outcome::Skipped);
        }
        let mut metadata = serde_json::Map::new();
        metadata.insert("size".into(), size.into());
        metadata.insert("e_tag".into(), object.meta.e_tag.clone().into());
        metadata.insert(OBJECT_VERSION.into(), version.clone().into());
        let mut origin = Origin::new(
            doc_id(&object.uri),
            self.tenant.clone(),
            object.uri.clone(),
            version,
        );
        origin.event_time = Some(object.meta.last_modified);
        origin.metadata = metadata;
        let is_done = |o: &Origin| {
            landed
                .versions
                .contains(&(o.doc_id.clone(), o.content_hash.clone()))
        };
        if size > self.limits.max_input_bytes {
            if is_done(&origin) {
                return (size, Outcome::Skipped);
            }
            let e = crate::extract::too_large(size, &self.limits);
            return (
                size,
                Outcome::Failed(origin.failure(failure::READ_STAGE, e.kind, e.message)),
            );
        }
        let bytes = match bucket.read(&object).await {
            Ok(b) => b,
            Err(e) => {
                let msg = format!("cannot read the object: {e}");
                return (
                    size,
                    Outcome::Failed(origin.failure(failure::READ_STAGE, ErrorKind::Read, msg)),
                );
            }
        };
        origin.content_hash = content_hash(&bytes);
        if is_done(&origin) {
            return (size, Outcome::Skipped);
        }
        let replaces = landed.doc_ids.contains(origin.doc_id.as_str());
        match extract_document(origin, bytes, object.uri, self.limits.clone(), pool).await {
            Ok(landing) => (size, Outcome::Landed(Box::new(landing), replaces)),
            Err(failure) => (size, Outcome::Failed(*failure)),
        }
    }

    /// Runs the stages on the open batch and commits every table.
    async fn flush(
        &self,
        lake: &mut Lake,
        batcher: &mut Batcher<ExtractedDoc>,
        pending: &mut Pending,
        summary: &mut Summary,
    ) -> Result<()> {
        let docs = batcher.take();
        let done = commit(
            lake,
            &self.runner,
            &self.policy,
            docs,
            std::mem::take(pending),
            None,
            &mut |_, _, _| {},
        )
        .await?;
        summary.stage_failures += done.stage_failures.len();
        summary.commits += done.commits;
        summary.landed -= done.theirs;
        summary.skipped += done.theirs;
        Ok(())
    }

    /// What the lake already holds, as the source pass reads it.
    async fn landed(&self, lake: &mut Lake) -> Result<Landed> {
        let ledger = Ledger::new(self.runner.stages(), self.policy.retry);
        let settled = ledger.done_by_version(lake.landed_keys("lineage").await?);
        let mut versions: HashSet<DocKey> = settled
            .into_iter()
            .filter(|(_, bits)| ledger.missing(*bits).is_empty())
            .map(|(k, _)| k)
            .collect();
        versions.extend(lake.keys("extracted", None).await?);
        if self.policy.retry != Retry::All {
            let warnings: Vec<String> = ErrorKind::WARNINGS
                .iter()
                .map(|k| format!("'{}'", k.as_str()))
                .collect();
            let filter = format!(
                "stage IN ('{}', '{}') AND error_kind NOT IN ({})",
                failure::READ_STAGE,
                failure::EXTRACT_STAGE,
                warnings.join(", ")
            );
            versions.extend(lake.keys("failures", Some(&filter)).await?);
        }
        let doc_ids = versions.iter().map(|(id, _)| id.clone()).collect();
        Ok(Landed {
            versions,
            doc_ids,
            objects: object_versions(lake).await?,
        })
    }
}

/// What the source pass does not read or extract again.
struct Landed {
    /// Versions whose every stage is settled, versions whose text the lake
    /// holds (the lake pass runs what they still need), and objects that
    /// could not be read or extracted (unless every failure is retried).
    /// Warnings do not count.
    versions: HashSet<DocKey>,
    /// The documents of `versions`: a new version of one replaces it.
    doc_ids: HashSet<String>,
    /// [`object_version`]s whose text the lake holds: unchanged objects,
    /// which are not even read.
    objects: HashSet<String>,
}

/// The key in a top-level document's metadata of its [`object_version`].
const OBJECT_VERSION: &str = "object_version";

/// The [`object_version`]s of the top-level documents whose text the lake
/// holds (those landed before this key existed have none: they are read
/// and hashed once more, and skipped by content hash).
async fn object_versions(lake: &mut Lake) -> Result<HashSet<String>> {
    let ctx = SessionContext::new();
    if lake.register_table(&ctx, "extracted").await?.is_none() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "SELECT metadata FROM extracted WHERE parent_doc_id IS NULL AND metadata LIKE '%\"{OBJECT_VERSION}\"%'"
    );
    let mut rows = ctx.sql(&sql).await?.execute_stream().await?;
    let mut versions = HashSet::new();
    while let Some(b) = rows.next().await.transpose()? {
        let metadata = utf8(b.column(0))?;
        for m in metadata.as_string::<i32>().iter().flatten() {
            let parsed: serde_json::Value = serde_json::from_str(m).unwrap_or_default();
            if let Some(v) = parsed.get(OBJECT_VERSION).and_then(|v| v.as_str()) {
                versions.insert(v.to_string());
            }
        }
    }
    Ok(versions)
}

/// An object as its listing describes it: the same key, size, ETag and
/// modification time mean the same bytes (as rsync and S3 sync assume).
/// The content hash of an object that was never read (too large or
/// unreadable).
fn object_version(object: &SourceObject) -> String {
    let m = &object.meta;
    let last_modified: DateTime<Utc> = m.last_modified;
    let key = format!(
        "{}|{}|{:?}|{}",
        object.uri,
        m.size,
        m.e_tag,
        last_modified.to_rfc3339()
    );
    format!("meta:{}", hex::encode(Sha256::digest(key.as_bytes())))
}
