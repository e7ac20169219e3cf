//! Keyword search over each document's current chunks: the published
//! Tantivy index for what it covers, plus the tail it has not seen, scored
//! with the index's statistics. `exact` builds a throwaway index from the
//! tables instead: the reference the published one must agree with.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Result;
use deltalake::datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::fresh::{self, LakeView, Tail, Version};
use super::published::IndexHome;
use super::text::{tied, ChunkRow, Scope, TextHit, TextIndex, TextWriter};

/// The folder name of the full-text index under `<lake>/_indexes/`.
pub const NAME: &str = "text";

/// Writer memory for the small indexes built at query time.
const QUERY_INDEX_MEMORY: usize = 64 << 20;

/// The best `k` current chunks for `query` in `scope`, from the published
/// index and its tail; `None` when the lake has no usable index.
pub async fn search(
    ctx: &SessionContext,
    lake: &LakeView,
    query: &str,
    k: usize,
    scope: &Scope,
) -> Result<Option<Vec<TextHit>>> {
    let home = IndexHome::new(&lake.root, &lake.storage, NAME)?;
    let Some(manifest) = home.manifest().await? else {
        return Ok(None);
    };
    let newer = manifest
        .covers
        .iter()
        .any(|(t, v)| lake.versions.get(t).is_some_and(|now| now < v));
    if newer {
        // Built after this session opened the tables: it may hold rows the
        // session cannot see, so the session scans instead.
        tracing::debug!("the text index is newer than the session's tables");
        return Ok(None);
    }
    let tail = match fresh::tail(ctx, lake, &manifest.covers, "chunks").await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("the text index cannot be brought up to date ({e:#}): scanning instead; run `docstream index`");
            return Ok(None);
        }
    };
    let dir = home.local_copy(&manifest).await?;
    let index = tokio::task::spawn_blocking(move || TextIndex::open(&dir)).await??;
    let mut hits = index.search_current(query, k, scope, &tail.changed, None)?;
    if !tail.is_empty() {
        for h in index.search_docs(query, &tail.changed)? {
            if tail
                .is_current(&h.doc_id, &h.content_hash)
                .is_some_and(|v| in_scope(v, scope))
            {
                hits.push(h);
            }
        }
        hits.extend(search_tail(ctx, &tail, &index, query, k, scope).await?);
    }
    Ok(Some(best(hits, k)))
}

/// The tail's current rows in `scope`, indexed in memory and scored with
/// the published index's statistics.
async fn search_tail(
    ctx: &SessionContext,
    tail: &Tail,
    index: &TextIndex,
    query: &str,
    k: usize,
    scope: &Scope,
) -> Result<Vec<TextHit>> {
    let mut writer = TextWriter::create(None, QUERY_INDEX_MEMORY)?;
    let columns = ["doc_id", "chunk_idx", "content_hash", "text"];
    for b in fresh::read_files(ctx, &tail.files, &columns).await? {
        let rows = ChunkBatch::new(&b)?;
        for i in 0..rows.len() {
            let (doc_id, hash) = (&rows.doc_ids[i], &rows.hashes[i]);
            if let Some(v) = tail.is_current(doc_id, hash).filter(|v| in_scope(v, scope)) {
                writer.add(&rows.row(i, Some(v)))?;
            }
        }
    }
    if writer.rows() == 0 {
        return Ok(Vec::new());
    }
    let tail_index = writer.finish()?;
    let stats = index.searcher();
    tail_index.search_current(query, k, &Scope::default(), &HashSet::new(), Some(&stats))
}

fn in_scope(v: &Version, scope: &Scope) -> bool {
    let date_ok = |bound: Option<i64>, after: bool| match (bound, v.date) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(b), Some(d)) => {
            if after {
                d >= b
            } else {
                d < b
            }
        }
    };
    scope.tenant.as_ref().is_none_or(|t| *t == v.tenant)
        && date_ok(scope.since.map(|t| t.timestamp_micros()), true)
        && date_ok(scope.until.map(|t| t.timestamp_micros()), false)
}

/// Sorts by score, best first, ties by chunk: the same hits always come
/// out in the same order, however the index that scored them was split.
pub fn rank<T>(hits: &mut [T], key: impl Fn(&T) -> (f64, &String, i32)) {
    hits.sort_by(|a, b| key(b).0.total_cmp(&key(a).0));
    let mut start = 0;
    while start < hits.len() {
        let top = key(&hits[start]).0;
        let end = start
            + hits[start..]
                .iter()
                .take_while(|h| tied(top, key(h).0))
                .count();
        hits[start..end].sort_by(|a, b| {
            let (a, b) = (key(a), key(b));
            (a.1, a.2).cmp(&(b.1, b.2))
        });
        start = end;
    }
}

/// The best `k` of `hits`, one per chunk, ties by chunk so the order does
/// not depend on how the index is split into segments.
fn best(hits: Vec<TextHit>, k: usize) -> Vec<TextHit> {
    let mut by_chunk: HashMap<(String, i32), TextHit> = HashMap::new();
    for h in hits {
        let key = (h.doc_id.clone(), h.chunk_idx);
        match by_chunk.get(&key) {
            Some(old) if old.score >= h.score => {}
            _ => {
                by_chunk.insert(key, h);
            }
        }
    }
    let mut hits: Vec<TextHit> = by_chunk.into_values().collect();
    rank(&mut hits, |h| (f64::from(h.score), &h.doc_id, h.chunk_idx));
    hits.truncate(k);
    hits
}

/// The same search with no published index: every current chunk is
/// indexed into a temporary folder first. Slow; the reference.
pub async fn exact(
    ctx: &SessionContext,
    query: &str,
    k: usize,
    scope: &Scope,
) -> Result<Vec<TextHit>> {
    let dir = tempfile::tempdir()?;
    let mut writer = TextWriter::create(Some(dir.path()), QUERY_INDEX_MEMORY)?;
    index_lake(ctx, &mut writer, &|_| {}).await?;
    let index = writer.finish()?;
    Ok(best(
        index.search_current(query, k, scope, &HashSet::new(), None)?,
        k,
    ))
}

/// Indexes every chunk of `ctx`'s `chunks` table that belongs to a current
/// document version, or to a version whose `documents` row has not landed
/// yet. Memory holds one batch plus one entry per document version.
pub async fn index_lake(
    ctx: &SessionContext,
    writer: &mut TextWriter,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    // (doc_id, content_hash) → the version's tenant and date when current.
    let mut versions: HashMap<(String, String), Option<Version>> = HashMap::new();
    let sql = format!(
        "SELECT doc_id, content_hash, tenant, event_time, ingested_at, version_rank FROM ({})",
        crate::contract::tables::DOCUMENT_VERSIONS
    );
    for b in ctx.sql(&sql).await?.collect().await? {
        let (ids, hashes, tenants) = (
            fresh::strings(&b, 0)?,
            fresh::strings(&b, 1)?,
            fresh::strings(&b, 2)?,
        );
        let (event, ingested) = (fresh::ints(&b, 3)?, fresh::ints(&b, 4)?);
        let rank = fresh::ints(&b, 5)?;
        for i in 0..b.num_rows() {
            let current = (rank[i] == Some(1)).then(|| Version {
                content_hash: hashes[i].clone(),
                tenant: tenants[i].clone(),
                date: event[i].or(ingested[i]),
            });
            versions.insert((ids[i].clone(), hashes[i].clone()), current);
        }
    }
    let mut stream = ctx
        .sql("SELECT doc_id, chunk_idx, content_hash, text FROM chunks")
        .await?
        .execute_stream()
        .await?;
    let mut done = 0;
    while let Some(b) = stream.next().await {
        let b = b?;
        let rows = ChunkBatch::new(&b)?;
        for i in 0..rows.len() {
            let key = (rows.doc_ids[i].clone(), rows.hashes[i].clone());
            match versions.get(&key) {
                Some(Some(v)) => writer.add(&rows.row(i, Some(v)))?,
                // An older version: never searched again.
                Some(None) => {}
                None => writer.add(&rows.row(i, None))?,
            }
        }
        done += b.num_rows() as u64;
        progress(done);
    }
    Ok(())
}

/// The columns of a batch of `chunks` rows.
struct ChunkBatch {
    doc_ids: Vec<String>,
    idx: Vec<Option<i64>>,
    hashes: Vec<String>,
    texts: Vec<String>,
}

impl ChunkBatch {
    fn new(b: &deltalake::arrow::array::RecordBatch) -> Result<Self> {
        Ok(Self {
            doc_ids: fresh::strings(b, 0)?,
            idx: fresh::ints(b, 1)?,
            hashes: fresh::strings(b, 2)?,
            texts: fresh::strings(b, 3)?,
        })
    }

    fn len(&self) -> usize {
        self.doc_ids.len()
    }

    fn row<'a>(&'a self, i: usize, version: Option<&'a Version>) -> ChunkRow<'a> {
        ChunkRow {
            doc_id: &self.doc_ids[i],
            chunk_idx: self.idx[i]
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or_default(),
            content_hash: &self.hashes[i],
            text: &self.texts[i],
            tenant: version.map(|v| v.tenant.as_str()),
            date: version.and_then(|v| v.date),
        }
    }
}

/// The versions of `tables` a session sees, for a manifest.
pub fn covers(lake: &LakeView) -> BTreeMap<String, u64> {
    ["chunks", "documents"]
        .iter()
        .filter_map(|t| lake.versions.get(*t).map(|v| (t.to_string(), *v)))
        .collect()
}
