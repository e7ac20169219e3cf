//! Keyword search over each document's current chunks: the published
//! Tantivy index for what it covers, plus the tail it has not seen, scored
//! with the index's statistics. `exact` builds a throwaway index from the
//! tables instead: the reference the published one must agree with.

use std::collections::{BTreeMap, HashSet};

use anyhow::Result;
use deltalake::datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::fresh::{self, LakeView, Scope, Source, Tail, Version};
use super::ranking::best;
use super::text::{ChunkRow, Statistics, TextHit, TextIndex, TextWriter};

/// The folder name of the full-text index under `<lake>/_indexes/`.
pub const NAME: &str = "text";

/// Writer memory for the small indexes built at query time.
const QUERY_INDEX_MEMORY: usize = 64 << 20;

/// The best `k` current chunks for `query` in `scope`, from the published
/// layers and their tail; `None` when the lake has no usable index.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn search(
    ctx: &SessionContext,
    lake: &LakeView,
    query: &str,
    k: usize,
    scope: &Scope,
) -> Result<Option<Vec<TextHit>>> {
    let Some(published) = fresh::published(ctx, lake, NAME, "chunks").await? else {
        return Ok(None);
    };
    let tail = published.tail;
    let layers = tokio::task::spawn_blocking(move || {
        published
            .layers
            .into_iter()
            .map(|(dir, changed)| Ok((TextIndex::shared(&dir)?, changed)))
            .collect::<Result<Vec<_>>>()
    })
    .await??;
    let tail_index = index_tail(ctx, &tail).await?;
    let stats = Statistics::of(layers.iter().map(|(i, _)| i.as_ref()).chain(&tail_index));
    let mut hits = Vec::new();
    for (index, changed) in &layers {
        hits.extend(index.search_current(query, k, scope, changed, Some(&stats))?);
        for h in index.search_docs(query, changed, Some(&stats))? {
            if tail
                .is_current(&h.doc_id, &h.content_hash)
                .is_some_and(|v| scope.admits_version(v))
            {
                hits.push(h);
            }
        }
    }
    if let Some(t) = &tail_index {
        let none = HashSet::new();
        hits.extend(t.search_current(query, k, scope, &none, Some(&stats))?);
    }
    Ok(Some(best(hits, k)))
}

/// The tail's current rows, indexed in memory; `None` when there are none.
async fn index_tail(ctx: &SessionContext, tail: &Tail) -> Result<Option<TextIndex>> {
    let mut writer = TextWriter::create(None, QUERY_INDEX_MEMORY)?;
    let columns = ["doc_id", "chunk_idx", "content_hash", "text"];
    for b in fresh::read_files(ctx, &tail.files, &columns).await? {
        let rows = ChunkBatch::new(&b)?;
        for i in 0..rows.len() {
            let (doc_id, hash) = (&rows.doc_ids[i], &rows.hashes[i]);
            if let Some(v) = tail.is_current(doc_id, hash) {
                writer.add(&rows.row(i, Some(v)))?;
            }
        }
    }
    if writer.rows() == 0 {
        return Ok(None);
    }
    Ok(Some(writer.finish()?))
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
    index_lake(ctx, &Source::Table, &mut writer, &|_| {}).await?;
    let index = writer.finish()?;
    Ok(best(
        index.search_current(query, k, scope, &HashSet::new(), None)?,
        k,
    ))
}

/// Indexes every chunk of `source` that belongs to a current document
/// version, or to a version whose `documents` row has not landed yet.
/// Memory holds one batch plus one entry per document version.
pub async fn index_lake(
    ctx: &SessionContext,
    source: &Source<'_>,
    writer: &mut TextWriter,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let Some(frame) = source.frame(ctx, "chunks").await? else {
        return Ok(());
    };
    let versions = source.versions(ctx).await?;
    let mut stream = frame
        .select_columns(&["doc_id", "chunk_idx", "content_hash", "text"])?
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
