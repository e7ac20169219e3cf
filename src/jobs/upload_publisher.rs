//! `serve --brokers --topic`: accepted uploads published as document events
//! for a fleet of `ingest` workers, instead of landing in process.
//!
//! Text formats go inline; any other file is staged in the lake's store at
//! `_uploads/<doc_id>/<content_hash>/<name>` for the workers to fetch (list
//! that prefix in their `[kafka] allowed_objects`). An upload leaves the
//! spool once the broker acknowledged its event, so a crash re-publishes at
//! worst, and the workers land each version once. Jobs are followed in the
//! lake: a version in `documents` landed; one with a read or extract
//! failure failed. Either way its staged file is removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use deltalake::arrow::array::{ArrayRef, AsArray};
use deltalake::datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use super::publish::{keyed, Publisher};
use super::uploads::{Links, Progress, StageFailure, Step};
use crate::contract::failure::{ErrorKind, EXTRACT_STAGE, READ_STAGE};
use crate::contract::identity::DocKey;
use crate::sinks::lake::{utf8, Lake};
use crate::sources::event::{inline_mime, ObjectRef, Op, RawEvent};
use crate::sources::spool::{Spool, Upload};
use crate::stages::batcher::BatchConfig;
use crate::storage::{as_directory, StorageOptions};

/// How often the lake is read while published uploads wait to land.
const POLL: Duration = Duration::from_secs(1);
/// How often the spool is looked at when nobody rings.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Larger texts are staged, not sent inline.
const MAX_INLINE_BYTES: usize = 256 << 10;
/// The staging folder under the lake.
const STAGING: &str = "_uploads";

pub struct UploadPublisher {
    pub spool: Arc<Spool>,
    pub publisher: Publisher,
    pub lake: Url,
    pub storage: StorageOptions,
    /// A batch of events closes at the pipeline's `[batch]` rows or bytes.
    pub batch: BatchConfig,
}

/// A published version not yet seen in the lake.
struct Published {
    /// `None` for one staged before a restart: only its file is known.
    upload: Option<Upload>,
    key: DocKey,
    staged: Option<Path>,
}

impl UploadPublisher {
    /// Publishes waiting uploads and follows them into the lake until the
    /// process ends. Erasures are published as delete events, after the
    /// uploads accepted before them.
    pub async fn run(self, mut links: Links) -> Result<()> {
        let (store, _) = self.storage.object_store(&self.lake)?;
        let mut lake = Lake::open(&self.lake, &self.storage).await?;
        let mut waiting = self.staged_before(store.as_ref()).await?;
        let mut seen = None;
        loop {
            let batch = self
                .spool
                .batch(self.batch.max_rows, self.batch.max_bytes as u64);
            if !batch.is_empty() {
                match self
                    .publish(store.as_ref(), &batch, links.progress.as_ref())
                    .await
                {
                    Ok(published) => {
                        links.landed.send_modify(|n| *n += batch.len() as u64);
                        waiting.extend(published);
                    }
                    Err(e) => {
                        links.retrying(&batch, &e, "publish");
                        tokio::time::sleep(POLL).await;
                    }
                }
            }
            if !waiting.is_empty() {
                if let Err(e) = self
                    .settle(
                        &mut lake,
                        store.as_ref(),
                        &mut waiting,
                        links.progress.as_ref(),
                    )
                    .await
                {
                    tracing::warn!(error = %format!("{e:#}"), "cannot read the lake for published uploads");
                }
            }
            // The workers changed the lake (landed, or erased): readers
            // reopen it.
            match lake.refresh("documents").await {
                Ok(()) if lake.version("documents") != seen => {
                    seen = lake.version("documents");
                    links.landed.send_modify(|_| ());
                }
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot read the lake"),
            }
            if batch.is_empty() {
                let poll = if waiting.is_empty() { IDLE_POLL } else { POLL };
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = links.wake.notified() => {}
                    Some(erase) = links.erasures.recv() => {
                        // The caller may have hung up; the delete event stands.
                        let _ = erase.done.send(self.erase(&erase.doc_id).await.map(|()| None));
                    }
                }
            }
        }
    }

    /// Sends one event per upload; returns them as published once the
    /// broker acknowledged every one.
    async fn publish(
        &self,
        store: &dyn ObjectStore,
        batch: &[Upload],
        progress: &dyn Progress,
    ) -> Result<Vec<Published>> {
        let mut events = Vec::new();
        let mut published = Vec::new();
        let mut sent = Vec::new();
        for u in batch {
            let bytes = match self.spool.read(u) {
                Ok(bytes) => bytes,
                Err(e) => {
                    // Not the bytes that were accepted: no worker could land it.
                    let failed = Step::Failed {
                        stage: READ_STAGE.to_string(),
                        error_kind: ErrorKind::Read.as_str().to_string(),
                        error: format!("{e:#}"),
                    };
                    progress.step(u, failed);
                    self.spool.remove(u)?;
                    continue;
                }
            };
            let mut metadata = u.metadata.clone();
            metadata.insert("size".into(), u.size.into());
            let mut event = RawEvent {
                op: Op::Upsert,
                doc_id: Some(u.doc_id.clone()),
                source_uri: Some(u.source_uri.clone()),
                tenant: Some(u.tenant.clone()),
                event_time: Some(u.received_at.to_rfc3339()),
                title: u.title.clone(),
                metadata: Some(metadata.into()),
                ..RawEvent::default()
            };
            let text = inline_mime(&u.name)
                .filter(|_| bytes.len() <= MAX_INLINE_BYTES)
                .and_then(|mime| Some((mime, std::str::from_utf8(&bytes).ok()?)));
            let staged = match text {
                Some((mime, text)) => {
                    event.text = Some(text.to_string());
                    event.mime = Some(mime.to_string());
                    None
                }
                None => {
                    let url = self.staged_url(u)?;
                    let path = Path::from_url_path(url.path())?;
                    store
                        .put(&path, PutPayload::from(bytes))
                        .await
                        .with_context(|| format!("cannot stage {url} for the workers"))?;
                    event.object = Some(ObjectRef {
                        uri: url.to_string(),
                        etag: None,
                        size: Some(u.size),
                    });
                    Some(path)
                }
            };
            events.push(keyed(event)?);
            sent.push(u);
            published.push(Published {
                upload: Some(u.clone()),
                key: (u.doc_id.clone(), u.content_hash.clone()),
                staged,
            });
        }
        self.publisher.send_all(events).await?;
        for u in sent {
            progress.step(u, Step::Published);
            self.spool.remove(u)?;
        }
        Ok(published)
    }

    /// Reports the published versions the lake now holds, or failed on,
    /// and removes their staged files.
    async fn settle(
        &self,
        lake: &mut Lake,
        store: &dyn ObjectStore,
        waiting: &mut Vec<Published>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let landed = lake
            .landed_among(
                "documents",
                waiting.iter().map(|p| (p.key.0.as_str(), p.key.1.as_str())),
            )
            .await?;
        let failures = self.failures(lake, waiting).await?;
        let mut still = Vec::new();
        for p in waiting.drain(..) {
            let own: Vec<&StageFailure> = failures.get(&p.key).into_iter().flatten().collect();
            let terminal = own
                .iter()
                .find(|f| f.stage == READ_STAGE || f.stage == EXTRACT_STAGE);
            let step = match (landed.contains(&p.key), terminal) {
                (true, _) => Step::Landed {
                    failures: own.iter().map(|f| (*f).clone()).collect(),
                },
                (false, Some(f)) => Step::Failed {
                    stage: f.stage.clone(),
                    error_kind: f.error_kind.clone(),
                    error: f.error.clone(),
                },
                (false, None) => {
                    still.push(p);
                    continue;
                }
            };
            if let Some(u) = &p.upload {
                progress.step(u, step);
            }
            if let Some(path) = &p.staged {
                match store.delete(path).await {
                    Ok(()) => self.remove_empty_folders(path),
                    Err(e) => tracing::warn!(%path, error = %e, "cannot remove a staged upload"),
                }
            }
        }
        *waiting = still;
        Ok(())
    }

    /// The failure rows of the waiting versions, by version.
    async fn failures(
        &self,
        lake: &mut Lake,
        waiting: &[Published],
    ) -> Result<HashMap<DocKey, Vec<StageFailure>>> {
        let ctx = SessionContext::new();
        if lake.register_table(&ctx, "failures").await?.is_none() {
            return Ok(HashMap::new());
        }
        // doc ids are hex, made here, never from a request.
        let ids: Vec<String> = waiting.iter().map(|p| format!("'{}'", p.key.0)).collect();
        let sql = format!(
            "SELECT doc_id, content_hash, stage, error_kind, error FROM failures WHERE doc_id IN ({})",
            ids.join(", ")
        );
        let mut found: HashMap<DocKey, Vec<StageFailure>> = HashMap::new();
        for b in ctx.sql(&sql).await?.collect().await? {
            let columns = (0..5)
                .map(|i| utf8(b.column(i)))
                .collect::<Result<Vec<ArrayRef>>>()?;
            for row in 0..b.num_rows() {
                let text = |c: usize| columns[c].as_string::<i32>().value(row).to_string();
                found
                    .entry((text(0), text(1)))
                    .or_default()
                    .push(StageFailure {
                        doc_id: text(0),
                        stage: text(2),
                        error_kind: text(3),
                        error: text(4),
                    });
            }
        }
        Ok(found)
    }

    /// Publishes a delete event for `doc_id`, which the workers run.
    async fn erase(&self, doc_id: &str) -> Result<()> {
        let event = RawEvent {
            op: Op::Delete,
            doc_id: Some(doc_id.to_string()),
            ..RawEvent::default()
        };
        self.publisher.send_all([keyed(event)?]).await?;
        Ok(())
    }

    fn staged_url(&self, u: &Upload) -> Result<Url> {
        let relative = format!("{STAGING}/{}/{}/{}", u.doc_id, u.content_hash, u.name);
        as_directory(self.lake.clone())
            .join(&relative)
            .with_context(|| format!("cannot name {relative} under the lake"))
    }

    /// A local lake keeps folders an object store would not: the staged
    /// file's version and document folders go once empty.
    fn remove_empty_folders(&self, staged: &Path) {
        if self.lake.scheme() != "file" {
            return;
        }
        let file = std::path::PathBuf::from(format!("/{staged}"));
        // A folder another upload still uses is not empty, and stays.
        for folder in file.ancestors().skip(1).take(2) {
            if std::fs::remove_dir(folder).is_err() {
                break;
            }
        }
    }

    /// Files staged before a restart, to follow until they land.
    async fn staged_before(&self, store: &dyn ObjectStore) -> Result<Vec<Published>> {
        let root = Path::from_url_path(as_directory(self.lake.clone()).path())?;
        let staging = root.clone().join(STAGING);
        let listed: Vec<_> = store.list(Some(&staging)).try_collect().await?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                let mut parts = meta.location.prefix_match(&staging)?;
                let doc_id = parts.next()?.as_ref().to_string();
                let hash = parts.next()?.as_ref().to_string();
                drop(parts);
                Some(Published {
                    upload: None,
                    key: (doc_id, hash),
                    staged: Some(meta.location),
                })
            })
            .collect())
    }
}
