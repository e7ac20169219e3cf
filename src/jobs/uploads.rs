//! Uploads: waiting versions from the spool, through extraction and the
//! stages, into the lake. Uploads that wait together share one batch (and
//! its model calls), like a backfill's micro-batch. An upload leaves the
//! spool only after its version landed, so a crash at any point re-lands
//! it on restart, and every table skips the versions it already holds.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use url::Url;

use super::commit::{commit, open_lake, Pending};
use super::document::{extract_document, Landing, Origin};
use super::extract_pool::{ExtractPool, Isolation};
use super::stage_runs::Policy;
use super::upkeep::Upkeep;
use crate::contract::failure::Failure;
use crate::extract::Limits;
use crate::indexes::config::IndexesConfig;
use crate::models::hub::CallWatch;
use crate::sinks::lake::{Lake, LakeConfig};
use crate::sources::spool::{Spool, Upload};
use crate::stages::batcher::BatchConfig;
use crate::stages::runner::{StageRunner, StageWatch};
use crate::storage::StorageOptions;

/// The longest wait between retries of a batch the lake refused.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the spool is looked at when nobody rings.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// One step of an upload on its way into the lake.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Picked up: being read and extracted.
    Running,
    /// Extracted into this many documents (itself and its members).
    Extracted { documents: usize },
    /// A stage produced this many rows for its batch (`chunks`: chunked).
    Computed { stage: String, rows: usize },
    /// A model stage made `done` of the `planned` requests for its batch
    /// (`embeddings`: embedding i/n).
    Calls {
        stage: String,
        done: usize,
        planned: usize,
    },
    /// A table of its batch committed, at this version.
    Committed {
        table: String,
        rows: usize,
        version: Option<u64>,
    },
    /// Its version is in the lake; `failures` lists stages that failed on it.
    Landed { failures: Vec<StageFailure> },
    /// It cannot land: it could not be read or extracted.
    Failed {
        stage: String,
        error_kind: String,
        error: String,
    },
    /// The lake refused its batch; it waits in the spool for the retry.
    Retrying { error: String },
    /// Sent as a document event for the `ingest` workers, which land it.
    Published,
}

/// A failure row, as an upload's progress shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct StageFailure {
    pub doc_id: String,
    pub stage: String,
    pub error_kind: String,
    pub error: String,
}

impl From<&Failure> for StageFailure {
    fn from(f: &Failure) -> Self {
        Self {
            doc_id: f.doc_id.clone(),
            stage: f.stage.clone(),
            error_kind: f.kind.as_str().to_string(),
            error: f.error.clone(),
        }
    }
}

/// Who hears of uploads' steps (the server's job list).
pub trait Progress: Send + Sync {
    fn step(&self, upload: &Upload, step: Step);
}

/// Tells a batch's uploads how far its stages got. Request counts are
/// passed on in tenths, so a batch of many requests sends few events.
struct BatchWatch {
    uploads: Vec<Upload>,
    /// The runner's stages: the hub also serves queries and answers.
    stages: HashSet<String>,
    progress: Arc<dyn Progress>,
    /// The tenth last shown per stage.
    shown: Mutex<HashMap<String, usize>>,
}

impl CallWatch for BatchWatch {
    fn calls(&self, stage: &str, done: usize, planned: usize) {
        if !self.stages.contains(stage) {
            return;
        }
        let tenth = (done * 10).checked_div(planned).unwrap_or(10);
        let mut shown = self.shown.lock().unwrap_or_else(PoisonError::into_inner);
        if shown.insert(stage.to_string(), tenth) == Some(tenth) {
            return;
        }
        drop(shown);
        for u in &self.uploads {
            let step = Step::Calls {
                stage: stage.to_string(),
                done,
                planned,
            };
            self.progress.step(u, step);
        }
    }
}

impl StageWatch for BatchWatch {
    fn computed(&self, stage: &str, rows: usize) {
        for u in &self.uploads {
            let step = Step::Computed {
                stage: stage.to_string(),
                rows,
            };
            self.progress.step(u, step);
        }
    }
}

/// What ties a lander or a publisher to the server.
pub struct Links {
    /// Rings when an upload is accepted.
    pub wake: Arc<Notify>,
    /// Counts the uploads that left the spool (landed, published or
    /// failed); also changes when the lake does, so readers reopen it.
    pub landed: watch::Sender<u64>,
    pub progress: Arc<dyn Progress>,
    /// Erasures, taken after the uploads accepted before them.
    pub erasures: mpsc::Receiver<Erase>,
}

impl Links {
    /// Logs why `batch` could not move on and shows it on each upload.
    pub fn retrying(&self, batch: &[Upload], e: &anyhow::Error, what: &str) {
        let error = format!("{e:#}");
        tracing::error!(%error, uploads = batch.len(), "cannot {what} uploads; retrying");
        for u in batch {
            let step = Step::Retrying {
                error: error.clone(),
            };
            self.progress.step(u, step);
        }
    }
}

/// A request to erase a document (with its members) from every table.
pub struct Erase {
    pub doc_id: String,
    /// Rows deleted from `documents` (`None`: a delete event was published
    /// for the workers), or why it failed.
    pub done: oneshot::Sender<Result<Option<usize>>>,
}

pub struct UploadLander {
    pub spool: Arc<Spool>,
    pub lake: Url,
    pub storage: StorageOptions,
    pub runner: StageRunner,
    pub limits: Limits,
    pub parallelism: usize,
    pub isolation: Isolation,
    /// A batch closes at the pipeline's `[batch]` rows or bytes, like a
    /// backfill's micro-batch.
    pub batch: BatchConfig,
    /// Compaction every `compact_every_commits` batches, as `ingest` does.
    pub upkeep: LakeConfig,
    /// The search indexes brought up to date every `update_every_batches`.
    pub indexes: IndexesConfig,
}

impl UploadLander {
    /// Lands waiting uploads until the process ends. Erasures run between
    /// batches, after the uploads accepted before them landed, so they
    /// never race an append of the same document.
    pub async fn run(self, mut links: Links) -> Result<()> {
        self.runner.check().await?;
        let mut lake = open_lake(
            &self.lake,
            &self.storage,
            self.upkeep.checkpoint_interval,
            &self.runner,
        )
        .await?;
        let mut known: HashSet<String> = lake
            .keys("documents", None)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let pool = ExtractPool::new(self.parallelism.max(1), self.isolation.clone());
        let mut upkeep = self.upkeep();
        let mut backoff = Duration::from_millis(500);
        loop {
            let batch = self
                .spool
                .batch(self.batch.max_rows, self.batch.max_bytes as u64);
            if batch.is_empty() {
                let erase = match links.erasures.try_recv() {
                    Ok(erase) => Some(erase),
                    Err(_) => tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => None,
                        _ = links.wake.notified() => None,
                        Some(erase) = links.erasures.recv() => Some(erase),
                    },
                };
                if let Some(erase) = erase {
                    let erased = self.erase(&mut lake, &erase.doc_id).await;
                    known.remove(&erase.doc_id);
                    links.landed.send_modify(|_| ());
                    // The caller may have hung up; the erasure stands.
                    let _ = erase.done.send(erased.map(Some));
                }
                continue;
            }
            match self
                .land(&mut lake, &batch, &mut known, &pool, &links.progress)
                .await
            {
                Ok(()) => {
                    backoff = Duration::from_millis(500);
                    links.landed.send_modify(|n| *n += batch.len() as u64);
                    upkeep.committed();
                }
                Err(e) => {
                    links.retrying(&batch, &e, "land");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Background compaction and index updates, every N batches.
    fn upkeep(&self) -> Upkeep {
        let mut tables: Vec<String> = self.runner.tables().iter().map(|t| t.to_string()).collect();
        tables.push("failures".into());
        Upkeep::new(
            &self.lake,
            &self.storage,
            tables,
            &self.upkeep,
            &self.indexes,
        )
    }

    /// Extracts `batch`, commits it, reports each upload's end and drops
    /// it from the spool.
    async fn land(
        &self,
        lake: &mut Lake,
        batch: &[Upload],
        known: &mut HashSet<String>,
        pool: &ExtractPool,
        progress: &Arc<dyn Progress>,
    ) -> Result<()> {
        let landed = lake
            .landed_among(
                "documents",
                batch
                    .iter()
                    .map(|u| (u.doc_id.as_str(), u.content_hash.as_str())),
            )
            .await?;
        let (done, todo): (Vec<&Upload>, Vec<&Upload>) = batch
            .iter()
            .partition(|u| landed.contains(&(u.doc_id.clone(), u.content_hash.clone())));
        for u in done {
            // Landed before a crash let it leave the spool.
            progress.step(u, Step::Landed { failures: vec![] });
            self.spool.remove(u)?;
        }
        for u in &todo {
            progress.step(u, Step::Running);
        }
        let extracted: Vec<(&Upload, Result<Landing, Box<Failure>>)> = futures::stream::iter(todo)
            .map(|u| async move { (u, self.extract(u, pool).await) })
            .buffered(self.parallelism.max(1))
            .collect()
            .await;
        let mut docs = Vec::new();
        let mut pending = Pending::default();
        let mut ends = Vec::new();
        for (u, outcome) in extracted {
            match outcome {
                Ok(landing) => {
                    if let (true, Some(doc)) = (known.contains(&u.doc_id), landing.document()) {
                        let children = landing.descendants().map(str::to_string).collect();
                        pending.replaced.push((doc.doc_id.clone(), children));
                    }
                    progress.step(
                        u,
                        Step::Extracted {
                            documents: landing.docs.len(),
                        },
                    );
                    let doc_ids: Vec<String> =
                        landing.docs.iter().map(|d| d.doc_id.clone()).collect();
                    pending.failures.extend(landing.failures().cloned());
                    docs.extend(landing.docs);
                    ends.push((u, Ok(doc_ids)));
                }
                Err(failure) => {
                    let end = Step::Failed {
                        stage: failure.stage.clone(),
                        error_kind: failure.kind.as_str().to_string(),
                        error: failure.error.clone(),
                    };
                    pending.failures.push(*failure);
                    ends.push((u, Err(end)));
                }
            }
        }
        let uploads: Vec<&Upload> = ends.iter().map(|(u, _)| *u).collect();
        let early: Vec<Failure> = pending.failures.clone();
        let watch = BatchWatch {
            uploads: uploads.iter().map(|u| (*u).clone()).collect(),
            stages: self
                .runner
                .stages()
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            progress: progress.clone(),
            shown: Mutex::new(HashMap::new()),
        };
        let committed = commit(
            lake,
            &self.runner,
            &Policy::default(),
            docs,
            pending,
            Some(Arc::new(watch)),
            &mut |table, rows, version| {
                for u in &uploads {
                    let step = Step::Committed {
                        table: table.to_string(),
                        rows,
                        version,
                    };
                    progress.step(u, step);
                }
            },
        )
        .await?;
        for (u, end) in ends {
            let step = match end {
                Ok(doc_ids) => {
                    known.insert(u.doc_id.clone());
                    let failures = early
                        .iter()
                        .chain(&committed.stage_failures)
                        .filter(|f| doc_ids.contains(&f.doc_id))
                        .map(StageFailure::from)
                        .collect();
                    Step::Landed { failures }
                }
                Err(failed) => failed,
            };
            progress.step(u, step);
            self.spool.remove(u)?;
        }
        Ok(())
    }

    /// Deletes `doc_id` and its members from every table, `documents`
    /// last; returns the `documents` rows deleted.
    async fn erase(&self, lake: &mut Lake, doc_id: &str) -> Result<usize> {
        let parent: HashSet<String> = [doc_id.to_string()].into();
        let mut ids = lake
            .descendants(&parent)
            .await?
            .remove(doc_id)
            .unwrap_or_default();
        ids.insert(doc_id.to_string());
        let mut tables = lake.table_names().await?;
        tables.sort_by_key(|t| t == "documents");
        let mut documents = 0;
        for table in tables {
            let rows = lake.delete_documents(&table, &ids).await?;
            if table == "documents" {
                documents = rows;
            }
        }
        Ok(documents)
    }

    async fn extract(&self, u: &Upload, pool: &ExtractPool) -> Result<Landing, Box<Failure>> {
        let mut origin = Origin::new(
            u.doc_id.clone(),
            u.tenant.clone(),
            u.source_uri.clone(),
            u.content_hash.clone(),
        );
        origin.event_time = Some(u.received_at);
        origin.title = u.title.clone();
        origin.metadata = u.metadata.clone();
        origin.metadata.insert("size".into(), u.size.into());
        let bytes = match self.spool.read(u) {
            Ok(b) => b,
            Err(e) => {
                let kind = crate::contract::failure::ErrorKind::Read;
                let stage = crate::contract::failure::READ_STAGE;
                return Err(Box::new(origin.failure(stage, kind, format!("{e:#}"))));
            }
        };
        extract_document(origin, bytes, u.name.clone(), self.limits.clone(), pool).await
    }
}
