//! Vector search over each document's current chunks: the published vector
//! index of the embedding model for what it covers, plus the tail it has
//! not seen, scored exactly. `exact` scans the `embeddings` table instead:
//! the reference the index must agree with.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Float32Type, Float64Type};
use deltalake::datafusion::prelude::{col, lit, DataFrame, SessionContext};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::fresh::{self, LakeView, Scope, Source, Versions};
use super::ranking::best;
use super::vector::{unit, Admit, Effort, VectorHit, VectorIndex, VectorRow, VectorWriter};
use crate::functions::vector::dot;

/// The index folder of `model` under `<lake>/_indexes/`: readable, and
/// unique for any model name.
pub fn index_name(model: &str) -> String {
    let slug: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let hash = hex::encode(&Sha256::digest(model.as_bytes())[..4]);
    format!("vectors/{slug}-{hash}")
}

/// The versions of the tables a vector index is built from.
pub fn covers(lake: &LakeView) -> BTreeMap<String, u64> {
    ["embeddings", "documents"]
        .iter()
        .filter_map(|t| lake.versions.get(*t).map(|v| (t.to_string(), *v)))
        .collect()
}

/// The embedding models in `ctx`'s `embeddings` table.
pub async fn models(ctx: &SessionContext) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let sql = "SELECT DISTINCT model FROM embeddings ORDER BY model";
    for b in ctx.sql(sql).await?.collect().await? {
        out.extend(fresh::strings(&b, 0)?);
    }
    Ok(out)
}

/// The best `k` current chunks of `model` by cosine to `query`, in
/// `scope`, from the published index and its tail; `None` when the lake
/// has no usable index for the model.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn search(
    ctx: &SessionContext,
    lake: &LakeView,
    model: &str,
    query: &[f32],
    k: usize,
    scope: &Scope,
    effort: Effort,
) -> Result<Option<Vec<VectorHit>>> {
    let Some(published) = fresh::published(ctx, lake, &index_name(model), "embeddings").await?
    else {
        return Ok(None);
    };
    let tail = published.tail;
    let q = query.to_vec();
    let scope_owned = scope.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut found = Vec::new();
        for (dir, changed) in &published.layers {
            let index = VectorIndex::shared(dir)?;
            let admit = Admit {
                scope: &scope_owned,
                changed,
            };
            found.push((
                index.search(&q, k, &admit, effort)?,
                index.search_docs(&q, changed)?,
            ));
        }
        Ok(found)
    })
    .await??;
    let mut hits = Vec::new();
    for (current, of_changed) in found {
        hits.extend(current);
        hits.extend(of_changed.into_iter().filter(|h| {
            tail.is_current(&h.doc_id, &h.content_hash)
                .is_some_and(|v| scope.admits_version(v))
        }));
    }
    let query = unit(query).context("the query vector has no direction")?;
    for b in fresh::read_files(ctx, &tail.files, &COLUMNS).await? {
        score_batch(&b, model, &query, &mut hits, &|doc, hash| {
            tail.is_current(doc, hash)
                .is_some_and(|v| scope.admits_version(v))
        })?;
    }
    Ok(Some(best(hits, k)))
}

/// The columns of a batch of `embeddings` rows: doc_id, chunk_idx,
/// content_hash, model, embedding.
struct EmbeddingBatch<'a> {
    batch: &'a RecordBatch,
    doc_ids: Vec<String>,
    idx: Vec<Option<i64>>,
    hashes: Vec<String>,
    models: Vec<String>,
}

/// The columns `EmbeddingBatch` reads, in its order.
const COLUMNS: [&str; 5] = ["doc_id", "chunk_idx", "content_hash", "model", "embedding"];

impl<'a> EmbeddingBatch<'a> {
    fn new(batch: &'a RecordBatch) -> Result<Self> {
        Ok(Self {
            batch,
            doc_ids: fresh::strings(batch, 0)?,
            idx: fresh::ints(batch, 1)?,
            hashes: fresh::strings(batch, 2)?,
            models: fresh::strings(batch, 3)?,
        })
    }

    /// Rows of `model`, with their vectors (rows without one are left out).
    fn rows_of<'b>(&'b self, model: &'b str) -> impl Iterator<Item = (usize, Vec<f32>)> + 'b {
        (0..self.batch.num_rows())
            .filter(move |i| self.models[*i] == model)
            .filter_map(|i| vector_at(self.batch.column(4).as_ref(), i).map(|v| (i, v)))
    }

    fn chunk_idx(&self, i: usize) -> i32 {
        self.idx[i]
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or_default()
    }
}

/// Scores the rows of `b` of `model` that `keep` admits, into `hits`.
fn score_batch(
    b: &RecordBatch,
    model: &str,
    query: &[f32],
    hits: &mut Vec<VectorHit>,
    keep: &dyn Fn(&str, &str) -> bool,
) -> Result<()> {
    let rows = EmbeddingBatch::new(b)?;
    for (i, v) in rows.rows_of(model) {
        if !keep(&rows.doc_ids[i], &rows.hashes[i]) {
            continue;
        }
        let Some(v) = unit(&v).filter(|v| v.len() == query.len()) else {
            continue;
        };
        hits.push(VectorHit {
            doc_id: rows.doc_ids[i].clone(),
            chunk_idx: rows.chunk_idx(i),
            content_hash: rows.hashes[i].clone(),
            score: dot(&v, query),
        });
    }
    Ok(())
}

/// Row `i` of a list or fixed-size list of floats.
fn vector_at(a: &dyn Array, i: usize) -> Option<Vec<f32>> {
    if a.is_null(i) {
        return None;
    }
    let values = match a.data_type() {
        DataType::List(_) => a.as_list::<i32>().value(i),
        DataType::LargeList(_) => a.as_list::<i64>().value(i),
        DataType::FixedSizeList(..) => a.as_fixed_size_list().value(i),
        _ => return None,
    };
    match values.data_type() {
        DataType::Float32 => Some(
            values
                .as_primitive::<Float32Type>()
                .iter()
                .map(|x| x.unwrap_or(f32::NAN))
                .collect(),
        ),
        DataType::Float64 => Some(
            values
                .as_primitive::<Float64Type>()
                .iter()
                .map(|x| x.map_or(f32::NAN, |x| x as f32))
                .collect(),
        ),
        _ => None,
    }
}

/// The same search with no index: every current embedding of `model` in
/// `scope` is scored. Slow; the reference.
pub async fn exact(
    ctx: &SessionContext,
    model: &str,
    query: &[f32],
    k: usize,
    scope: &Scope,
) -> Result<Vec<VectorHit>> {
    let query = unit(query).context("the query vector has no direction")?;
    let current = fresh::versions(ctx).await?;
    let mut stream = of_model(ctx.table("embeddings").await?, model)?
        .execute_stream()
        .await?;
    let mut hits = Vec::new();
    while let Some(b) = stream.next().await {
        score_batch(&b?, model, &query, &mut hits, &|doc, hash| {
            current
                .get(&(doc.to_string(), hash.to_string()))
                .and_then(Option::as_ref)
                .is_some_and(|v| scope.admits_version(v))
        })?;
        hits = best(hits, k);
    }
    Ok(best(hits, k))
}

/// The width of `model`'s vectors, from its first embedding.
pub async fn dims(ctx: &SessionContext, model: &str) -> Result<Option<usize>> {
    let batches = ctx
        .table("embeddings")
        .await?
        .filter(
            col("model")
                .eq(lit(model))
                .and(col("embedding").is_not_null()),
        )?
        .select_columns(&["embedding"])?
        .limit(0, Some(1))?
        .collect()
        .await?;
    Ok(batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| vector_at(b.column(0).as_ref(), 0))
        .map(|v| v.len()))
}

/// `frame`'s embeddings of `model`, in `COLUMNS`.
fn of_model(frame: DataFrame, model: &str) -> Result<DataFrame> {
    Ok(frame
        .filter(col("model").eq(lit(model)))?
        .select_columns(&COLUMNS)?)
}

/// Indexes every embedding of `model` in `source` that belongs to a current
/// document version, or to one whose `documents` row has not landed yet. The graph
/// is built on a blocking thread fed through a bounded channel, so the
/// runtime keeps serving; memory holds one batch, one shard and one entry
/// per document version.
pub async fn index_lake(
    ctx: &SessionContext,
    source: &Source<'_>,
    model: &str,
    writer: VectorWriter,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VectorWriter> {
    let Some(frame) = source.frame(ctx, "embeddings").await? else {
        return Ok(writer);
    };
    let versions = source.versions(ctx).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
    let model_owned = model.to_string();
    let builder = tokio::task::spawn_blocking(move || -> Result<VectorWriter> {
        let mut writer = writer;
        while let Some(b) = rx.blocking_recv() {
            add_batch(&mut writer, &b, &model_owned, &versions)?;
        }
        Ok(writer)
    });
    let mut stream = of_model(frame, model)?.execute_stream().await?;
    let mut done = 0;
    while let Some(b) = stream.next().await {
        let b = b?;
        done += b.num_rows() as u64;
        // A closed channel means the builder failed: its error says why.
        if tx.send(b).await.is_err() {
            break;
        }
        progress(done);
    }
    drop(tx);
    builder.await?
}

fn add_batch(
    writer: &mut VectorWriter,
    b: &RecordBatch,
    model: &str,
    versions: &Versions,
) -> Result<()> {
    let rows = EmbeddingBatch::new(b)?;
    for (i, vector) in rows.rows_of(model) {
        let version = match versions.get(&(rows.doc_ids[i].clone(), rows.hashes[i].clone())) {
            // An older version: never searched again.
            Some(None) => continue,
            Some(Some(v)) => Some(v),
            None => None,
        };
        let row = VectorRow {
            doc_id: &rows.doc_ids[i],
            chunk_idx: rows.chunk_idx(i),
            content_hash: &rows.hashes[i],
            tenant: version.map(|v| v.tenant.as_str()),
            date: version.and_then(|v| v.date),
        };
        writer.add(&row, &vector)?;
    }
    Ok(())
}
