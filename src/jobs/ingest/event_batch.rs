//! A micro-batch of Kafka records turned into work: extracted documents,
//! deletions and failure rows, each tied to the record it came from.

use std::collections::HashSet;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use futures::StreamExt;

use crate::contract::failure::{self, ErrorKind, Failure};
use crate::contract::identity::{content_hash, DocKey};
use crate::extract::Limits;
use crate::jobs::document::{extract_document, extract_small, Landing, Origin};
use crate::jobs::extract_pool::{ExtractPool, Isolation};
use crate::sources::event::{decode, Action, DocumentEvent, ObjectRef};
use crate::sources::kafka::Record;
use crate::sources::object_policy::ObjectPolicy;
use crate::sources::object_reader::{ObjectError, ObjectReader};
use crate::storage::StorageOptions;

/// Where a record sits in its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// Inline texts up to this size are extracted in bulk, without a blocking
/// task and timeout each (extraction is linear in the input).
const SMALL_INLINE_BYTES: usize = 64 << 10;

/// What one record asks of the lake.
pub enum Work {
    /// A document version (with its children, if it is a container) to run
    /// through the stages, and its warning and failure rows.
    Upsert(Box<Landing>),
    /// Erase the document from every table.
    Delete(String),
    /// The record produced only a failure row.
    Failed(Failure),
    /// Superseded by a later delete of the same document in this batch.
    Superseded,
}

impl Work {
    /// A label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Work::Upsert(..) => "upsert",
            Work::Delete(_) => "delete",
            Work::Failed(_) => "failed",
            Work::Superseded => "superseded",
        }
    }

    /// The (doc_id, content_hash) pairs the rows of this record carry in
    /// the tables.
    pub fn keys(&self) -> Vec<DocKey> {
        let key = |id: &str, hash: &str| (id.to_string(), hash.to_string());
        match self {
            Work::Upsert(landing) => landing
                .docs
                .iter()
                .map(|d| key(&d.doc_id, &d.content_hash))
                .chain(landing.failures().map(|f| key(&f.doc_id, &f.content_hash)))
                .collect(),
            Work::Failed(f) => vec![key(&f.doc_id, &f.content_hash)],
            Work::Delete(_) | Work::Superseded => Vec::new(),
        }
    }
}

/// Turns records into work, reading referenced objects with bounded parallelism.
pub struct EventReader {
    pub topic: String,
    pub tenant: String,
    pub limits: Limits,
    pub max_event_bytes: usize,
    pub parallelism: usize,
    objects: ObjectReader,
    pool: ExtractPool,
}

/// Fetches overlap (`parallelism`); extraction takes a core each.
fn extract_pool(isolation: Isolation) -> ExtractPool {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    ExtractPool::new(cores, isolation)
}

impl EventReader {
    pub fn new(
        topic: String,
        tenant: String,
        limits: Limits,
        max_event_bytes: usize,
        parallelism: usize,
        storage: StorageOptions,
        objects: ObjectPolicy,
    ) -> Self {
        Self {
            topic,
            tenant,
            limits,
            max_event_bytes,
            parallelism,
            objects: ObjectReader::new(storage, objects),
            pool: extract_pool(Isolation::Thread),
        }
    }

    /// Extracts in `isolation` (the CLI passes worker processes).
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.pool = extract_pool(isolation);
        self
    }

    /// One piece of work per record, in the records' order.
    pub async fn read(&self, records: &[Record]) -> Vec<(Position, Work)> {
        let decoded: Vec<_> = records
            .iter()
            .map(|r| decode(&r.payload, self.max_event_bytes))
            .collect();
        let superseded = superseded(records, &decoded);
        let mut work: Vec<Option<Work>> = records.iter().map(|_| None).collect();
        let mut small = Vec::new();
        let mut large = Vec::new();
        for (i, (record, event)) in records.iter().zip(decoded).enumerate() {
            if superseded.contains(&i) {
                work[i] = Some(Work::Superseded);
                continue;
            }
            match event {
                Err(e) => {
                    work[i] = Some(Work::Failed(
                        self.record_failure(record, "decode", e.kind, e.message),
                    ))
                }
                Ok(event) => match &event.action {
                    Action::Delete => work[i] = Some(Work::Delete(event.doc_id)),
                    Action::Inline { text, .. } if text.len() <= SMALL_INLINE_BYTES => {
                        let (name, bytes) = (event.name_for_extraction(), text.as_bytes().to_vec());
                        small.push((i, self.origin(record, event, &bytes), bytes, name));
                    }
                    _ => large.push((i, record, event)),
                },
            }
        }
        for (i, w) in self.extract_small_batch(small).await {
            work[i] = Some(w);
        }
        // Futures built up front: a stream mapping with a closure that
        // borrows `self` is not Send for every lifetime, as spawning needs.
        let jobs: Vec<_> = large
            .into_iter()
            .map(|(i, record, event)| async move { (i, self.work(record, event).await) })
            .collect();
        let fetched: Vec<(usize, Work)> = futures::stream::iter(jobs)
            .buffered(self.parallelism.max(1))
            .collect()
            .await;
        for (i, w) in fetched {
            work[i] = Some(w);
        }
        records
            .iter()
            .zip(work)
            .map(|(r, w)| {
                let position = Position {
                    partition: r.partition,
                    offset: r.offset,
                };
                (position, w.unwrap_or(Work::Superseded))
            })
            .collect()
    }

    /// Small inline documents, extracted in one blocking task per core.
    async fn extract_small_batch(
        &self,
        small: Vec<(usize, Origin, Vec<u8>, String)>,
    ) -> Vec<(usize, Work)> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let per = small.len().div_ceil(cores).max(1);
        let mut chunks = Vec::new();
        let mut rest = small;
        while !rest.is_empty() {
            let tail = rest.split_off(per.min(rest.len()));
            chunks.push(std::mem::replace(&mut rest, tail));
        }
        let jobs = chunks.into_iter().map(|chunk| {
            let limits = self.limits.clone();
            tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .map(|(i, origin, bytes, name)| {
                        (i, to_work(extract_small(origin, &bytes, &name, &limits)))
                    })
                    .collect::<Vec<_>>()
            })
        });
        let mut out = Vec::new();
        for job in futures::future::join_all(jobs).await {
            match job {
                Ok(done) => out.extend(done),
                Err(panic) => {
                    tracing::error!("an extractor crashed on a batch of inline events: {panic}")
                }
            }
        }
        out
    }

    /// Work for an event whose content must be fetched, or is too large to
    /// extract without the timeout guard.
    async fn work(&self, record: &Record, event: DocumentEvent) -> Work {
        let name = event.name_for_extraction();
        let bytes = match &event.action {
            Action::Delete => return Work::Delete(event.doc_id),
            Action::Inline { text, .. } => Bytes::from(text.clone().into_bytes()),
            Action::Fetch(object) => match self.fetch(object, event.tenant.as_deref()).await {
                Ok(b) => b,
                Err((kind, msg)) => {
                    let mut f = self.record_failure(record, failure::READ_STAGE, kind, msg);
                    f.doc_id = event.doc_id;
                    f.source_uri = event.source_uri;
                    return Work::Failed(f);
                }
            },
        };
        let origin = self.origin(record, event, &bytes);
        to_work(extract_document(origin, bytes, name, self.limits.clone(), &self.pool).await)
    }

    /// What is known about the document an event carries, given its bytes.
    fn origin(&self, record: &Record, event: DocumentEvent, bytes: &[u8]) -> Origin {
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            "kafka".into(),
            serde_json::json!({"topic": self.topic, "partition": record.partition, "offset": record.offset}),
        );
        if let Some(m) = event.metadata {
            metadata.insert("event".into(), m);
        }
        if let Action::Fetch(o) = &event.action {
            metadata.insert("e_tag".into(), o.etag.clone().into());
            metadata.insert("size".into(), (bytes.len() as u64).into());
        }
        let record_time = record
            .timestamp_ms
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
        let mut origin = Origin::new(
            event.doc_id,
            event.tenant.unwrap_or_else(|| self.tenant.clone()),
            event.source_uri,
            content_hash(bytes),
        );
        origin.event_time = event.event_time.or(record_time);
        origin.title = event.title;
        origin.metadata = metadata;
        origin
    }

    /// A failure row for a record whose content was never read: its key is
    /// the record's position, so every such record keeps its own row.
    fn record_failure(
        &self,
        record: &Record,
        stage: &str,
        kind: ErrorKind,
        error: String,
    ) -> Failure {
        let position = format!("{}/{}/{}", self.topic, record.partition, record.offset);
        let key = record
            .key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
            .filter(|k| !k.is_empty());
        Failure {
            doc_id: key.map_or_else(|| format!("kafka:{position}"), str::to_string),
            content_hash: format!("kafka:{position}"),
            source_uri: format!("kafka://{position}"),
            stage: stage.to_string(),
            kind,
            error,
            attempts: 1,
            stage_fingerprint: None,
        }
    }

    async fn fetch(
        &self,
        object: &ObjectRef,
        tenant: Option<&str>,
    ) -> Result<Bytes, (ErrorKind, String)> {
        let tenant = tenant.unwrap_or(&self.tenant);
        let max = self.limits.max_input_bytes;
        match self
            .objects
            .read(&object.uri, tenant, object.size, max)
            .await
        {
            Ok(bytes) => Ok(bytes),
            Err(ObjectError::TooLarge(size)) => {
                let e = crate::extract::too_large(size, &self.limits);
                Err((e.kind, e.message))
            }
            Err(ObjectError::Refused(why)) => {
                Err((ErrorKind::Forbidden, format!("refused to read: {why}")))
            }
            Err(ObjectError::Read(e)) => Err((ErrorKind::Read, e)),
        }
    }
}

/// Upserts followed, in the same partition of this batch, by a delete of
/// the same document: their rows would be erased anyway.
fn superseded<E>(records: &[Record], decoded: &[Result<DocumentEvent, E>]) -> HashSet<usize> {
    let mut deleted_later: HashSet<(i32, &str)> = HashSet::new();
    let mut out = HashSet::new();
    for (i, (record, event)) in records.iter().zip(decoded).enumerate().rev() {
        let Ok(event) = event else { continue };
        let key = (record.partition, event.doc_id.as_str());
        match event.action {
            Action::Delete => {
                deleted_later.insert(key);
            }
            _ if deleted_later.contains(&key) => {
                out.insert(i);
            }
            _ => {}
        }
    }
    out
}

fn to_work(result: Result<Landing, Box<Failure>>) -> Work {
    match result {
        Ok(landing) => Work::Upsert(Box::new(landing)),
        Err(failure) => Work::Failed(*failure),
    }
}
