//! Hybrid search over chunks: vector top-k (cosine against the query's
//! embedding) and keyword top-k (BM25, through the Tantivy index and the
//! rows it has not seen yet), fused by reciprocal rank:
//! score = Σ 1 / (60 + rank) over the lists a chunk is in.
//! Only each document's current version is searched.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{bail, Result};
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use serde::Serialize;

use deltalake::datafusion::prelude::SessionContext;
use docstream_models::chain::ModelChain;

use super::query::{quote, Analytics};
use crate::functions::embed_query::embed_texts;
use crate::indexes::fresh::{LakeView, Scope};
use crate::indexes::keyword;
use crate::indexes::ranking::rank;
use crate::indexes::semantic;
use crate::indexes::vector::{Effort, VectorHit};

/// RRF's damping constant (Cormack et al.): ranks past the first few
/// matter less, and no single list dominates.
const RRF_K: f64 = 60.0;

/// One chunk found.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub rank: usize,
    pub doc_id: String,
    pub chunk_idx: i32,
    pub title: Option<String>,
    pub source_uri: String,
    pub tenant: String,
    /// The fused RRF score.
    pub score: f64,
    pub vector_rank: Option<usize>,
    pub cosine: Option<f32>,
    pub keyword_rank: Option<usize>,
    pub bm25: Option<f64>,
    /// The pages (or slides) the chunk's words are on, for paged formats.
    pub page_start: Option<i32>,
    pub page_end: Option<i32>,
    pub snippet: String,
    #[serde(skip)]
    pub text: String,
}

impl Hit {
    /// A chunk not yet ranked or described.
    pub fn new(doc_id: &str, chunk_idx: i32) -> Self {
        Self {
            rank: 0,
            doc_id: doc_id.to_string(),
            chunk_idx,
            title: None,
            source_uri: String::new(),
            tenant: String::new(),
            score: 0.0,
            vector_rank: None,
            cosine: None,
            keyword_rank: None,
            bm25: None,
            page_start: None,
            page_end: None,
            snippet: String::new(),
            text: String::new(),
        }
    }

    /// `p. 3` or `pp. 3–4`, for chunks of paged formats.
    pub fn pages(&self) -> Option<String> {
        page_label(self.page_start, self.page_end)
    }
}

/// `p. 3` or `pp. 3–4`; `None` without a page.
pub fn page_label(start: Option<i32>, end: Option<i32>) -> Option<String> {
    match (start?, end) {
        (a, Some(b)) if b > a => Some(format!("pp. {a}–{b}")),
        (a, _) => Some(format!("p. {a}")),
    }
}

pub type ChunkKey = (String, i32);

/// How many chunks a search returns, and how it finds them.
#[derive(Debug, Clone, Copy)]
pub struct Depth {
    pub k: usize,
    /// Chunks each retriever contributes before fusion.
    pub candidates: usize,
    /// Scan the tables instead of using the indexes (the reference).
    pub exact: bool,
    pub retrievers: Retrievers,
}

/// Which ranked lists a search fuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retrievers {
    Hybrid,
    Keyword,
    Vector,
}

/// What a search runs on besides the query: the session's tables, the
/// lake they come from, the query embedder and how hard vector search
/// looks. `docstream search`, `ask`, `eval` and the SQL search functions
/// all search through it.
#[derive(Clone)]
pub struct Searching<'a> {
    pub ctx: &'a SessionContext,
    pub lake: &'a LakeView,
    pub embedder: Option<&'a ModelChain>,
    pub effort: Effort,
}

/// The `k` best chunks for `query`, described (text, snippet, title).
/// Without an embedding provider (or embeddings), the search is
/// keyword-only, and says so in the log.
pub async fn search(
    analytics: &Analytics,
    query: &str,
    depth: Depth,
    scope: &Scope,
) -> Result<Vec<Hit>> {
    if !analytics.has_table("chunks") || !analytics.has_table("documents") {
        bail!("the lake has no chunks to search yet; run `docstream backfill` first");
    }
    let mut hits = retrieve(&analytics.searching(), query, depth, scope).await?;
    describe(analytics, &mut hits, &terms(query)).await?;
    Ok(hits)
}

/// The `k` best chunks for `query` by reciprocal-rank fusion of the
/// retrievers `depth` asks for, ranked, not yet described.
pub async fn retrieve(
    s: &Searching<'_>,
    query: &str,
    depth: Depth,
    scope: &Scope,
) -> Result<Vec<Hit>> {
    let Depth { k, candidates, .. } = depth;
    // The two retrievers run side by side: the vector side waits on the
    // embedder's load, the keyword side does not.
    let vector = async {
        if depth.retrievers == Retrievers::Keyword {
            return Ok(Vec::new());
        }
        match vector_hits(s, query, candidates, depth.exact, scope).await? {
            Some(hits) => Ok(hits),
            None if depth.retrievers == Retrievers::Vector => bail!(
                "vector search needs embeddings and the provider that made them: run the embeddings stage, or set [analytics] embed_providers"
            ),
            None => {
                tracing::warn!("no embeddings to compare with: keyword search only");
                Ok(Vec::new())
            }
        }
    };
    let keyword = async {
        match depth.retrievers {
            Retrievers::Vector => Ok(Vec::new()),
            _ => keyword_hits(s, query, candidates, depth.exact, scope).await,
        }
    };
    let (vector, keyword) = tokio::try_join!(vector, keyword)?;

    let mut fused: HashMap<ChunkKey, Hit> = HashMap::new();
    // Each list adds 1 / (RRF_K + rank) to its chunks and records why.
    let mut add = |rank: usize, key: &ChunkKey, note: &dyn Fn(&mut Hit)| {
        let hit = fused
            .entry(key.clone())
            .or_insert_with(|| Hit::new(&key.0, key.1));
        hit.score += 1.0 / (RRF_K + rank as f64);
        note(hit);
    };
    for (i, (key, cosine)) in vector.iter().enumerate() {
        add(i + 1, key, &|h| {
            (h.vector_rank, h.cosine) = (Some(i + 1), Some(*cosine))
        });
    }
    for (i, (key, bm25)) in keyword.iter().enumerate() {
        add(i + 1, key, &|h| {
            (h.keyword_rank, h.bm25) = (Some(i + 1), Some(*bm25))
        });
    }
    let mut hits: Vec<Hit> = fused.into_values().collect();
    rank(&mut hits, |h| (h.score, &h.doc_id, h.chunk_idx));
    hits.truncate(k);
    for (i, hit) in hits.iter_mut().enumerate() {
        hit.rank = i + 1;
    }
    Ok(hits)
}

/// The query's vector, from the search's embedder; `None` without one.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn query_vector(s: &Searching<'_>, query: &str) -> Result<Option<Vec<f32>>> {
    let Some(chain) = s.embedder else {
        return Ok(None);
    };
    let mut vectors = embed_texts(chain, &[query.to_string()]).await?;
    Ok(vectors.pop())
}

/// The best `n` chunks by cosine to `vector` among the embeddings of the
/// search's model, through its vector index when the lake has one (and
/// `exact` is off), else by scanning them.
pub async fn nearest(
    s: &Searching<'_>,
    vector: &[f32],
    n: usize,
    exact: bool,
    scope: &Scope,
) -> Result<Vec<VectorHit>> {
    let Some(chain) = s.embedder else {
        bail!("vector search needs an embedding provider: the pipeline's embeddings stage, or [analytics] embed_providers");
    };
    if let Ok(dims) = chain.embedding_dims() {
        if vector.len() != dims {
            bail!(
                "the query vector must have {dims} finite numbers, the width of {}'s embeddings; it has {}",
                chain.primary_model(),
                vector.len()
            );
        }
    }
    let model = chain.primary_model();
    if !s.lake.versions.contains_key("embeddings") {
        return Ok(Vec::new());
    }
    let indexed = match exact {
        true => None,
        false => semantic::search(s.ctx, s.lake, model, vector, n, scope, s.effort).await?,
    };
    match indexed {
        Some(hits) => Ok(hits),
        None => semantic::exact(s.ctx, model, vector, n, scope).await,
    }
}

/// Chunks by cosine similarity to the query, best first; `None` when
/// there is no embedder or no embeddings.
async fn vector_hits(
    s: &Searching<'_>,
    query: &str,
    n: usize,
    exact: bool,
    scope: &Scope,
) -> Result<Option<Vec<(ChunkKey, f32)>>> {
    if !s.lake.versions.contains_key("embeddings") {
        return Ok(None);
    }
    let Some(vector) = query_vector(s, query).await? else {
        return Ok(None);
    };
    let hits = nearest(s, &vector, n, exact, scope).await?;
    Ok(Some(
        hits.into_iter()
            .map(|h| ((h.doc_id, h.chunk_idx), h.score))
            .collect(),
    ))
}

/// The best `n` chunks by BM25, through the text index when the lake has
/// one (and `exact` is off), else by indexing every current chunk first.
pub async fn keyword_hits(
    s: &Searching<'_>,
    query: &str,
    n: usize,
    exact: bool,
    scope: &Scope,
) -> Result<Vec<(ChunkKey, f64)>> {
    let indexed = match exact {
        true => None,
        false => keyword::search(s.ctx, s.lake, query, n, scope).await?,
    };
    let hits = match indexed {
        Some(hits) => hits,
        None => {
            if !exact {
                tracing::info!("no text index yet: indexing every chunk for this search; `docstream index` builds one");
            }
            keyword::exact(s.ctx, query, n, scope).await?
        }
    };
    Ok(hits
        .into_iter()
        .map(|h| ((h.doc_id, h.chunk_idx), f64::from(h.score)))
        .collect())
}

/// The query's lowercased words, for placing snippets. Short words (the,
/// of, a) would place them anywhere, so they count only when alone.
fn terms(query: &str) -> Vec<String> {
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let long: Vec<String> = words
        .iter()
        .filter(|w| w.chars().count() >= 4)
        .cloned()
        .collect();
    if long.is_empty() {
        words
    } else {
        long
    }
}

/// Fills in each hit's text, snippet, pages, document title, source and tenant.
#[tracing::instrument(level = "debug", skip_all)]
async fn describe(analytics: &Analytics, hits: &mut [Hit], terms: &[String]) -> Result<()> {
    if hits.is_empty() {
        return Ok(());
    }
    let ids: HashSet<&str> = hits.iter().map(|h| h.doc_id.as_str()).collect();
    let list: Vec<String> = ids.into_iter().map(quote).collect();
    let pages = if analytics.has_column("chunks", "page_start").await {
        "c.page_start, c.page_end"
    } else {
        "CAST(NULL AS INT) AS page_start, CAST(NULL AS INT) AS page_end"
    };
    let sql = format!(
        "SELECT c.doc_id, c.chunk_idx, c.text, d.title, d.source_uri, d.tenant, {pages}
         FROM chunks c JOIN current_documents d
           ON c.doc_id = d.doc_id AND c.content_hash = d.content_hash
         WHERE c.doc_id IN ({ids}) AND d.doc_id IN ({ids})",
        ids = list.join(", ")
    );
    let at: HashMap<ChunkKey, usize> = hits
        .iter()
        .enumerate()
        .map(|(i, h)| ((h.doc_id.clone(), h.chunk_idx), i))
        .collect();
    for b in analytics.sql(&sql).await? {
        let int = |c: usize| {
            b.column(c)
                .as_primitive::<deltalake::arrow::datatypes::Int32Type>()
        };
        let (idx, first_page, last_page) = (int(1), int(6), int(7));
        let page =
            |a: &deltalake::arrow::array::Int32Array, i: usize| a.is_valid(i).then(|| a.value(i));
        let cols: Vec<_> = [0, 2, 3, 4, 5]
            .iter()
            .map(|c| cast(b.column(*c), &DataType::Utf8))
            .collect::<Result<_, _>>()?;
        let s: Vec<_> = cols.iter().map(|c| c.as_string::<i32>()).collect();
        let get = |col: usize, i: usize| s[col].is_valid(i).then(|| s[col].value(i).to_string());
        for i in 0..b.num_rows() {
            let Some(&n) = at.get(&(s[0].value(i).to_string(), idx.value(i))) else {
                continue;
            };
            let hit = &mut hits[n];
            hit.text = get(1, i).unwrap_or_default();
            hit.snippet = snippet(&hit.text, terms);
            hit.title = get(2, i);
            hit.source_uri = get(3, i).unwrap_or_default();
            hit.tenant = get(4, i).unwrap_or_default();
            hit.page_start = page(first_page, i);
            hit.page_end = page(last_page, i);
        }
    }
    Ok(())
}

/// About 240 characters of `text` around the first query term in it (the
/// start when none is), on one line.
fn snippet(text: &str, terms: &[String]) -> String {
    const WIDTH: usize = 240;
    let lower = text.to_lowercase();
    // Lowercasing can change byte lengths; fall back to the start then.
    let at = terms
        .iter()
        .filter_map(|t| lower.find(t.as_str()))
        .min()
        .filter(|_| lower.len() == text.len())
        .unwrap_or(0);
    let mut start = at.saturating_sub(WIDTH / 3);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + WIDTH).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let body = text[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let lead = if start > 0 { "…" } else { "" };
    let tail = if end < text.len() { "…" } else { "" };
    format!("{lead}{body}{tail}")
}

/// Hits as rows, for the CSV, JSON, NDJSON and Parquet outputs.
pub fn to_batch(hits: &[Hit]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("rank", DataType::UInt64, false),
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("chunk_idx", DataType::Int32, false),
        Field::new("title", DataType::Utf8, true),
        Field::new("source_uri", DataType::Utf8, false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("vector_rank", DataType::UInt64, true),
        Field::new("cosine", DataType::Float32, true),
        Field::new("keyword_rank", DataType::UInt64, true),
        Field::new("bm25", DataType::Float64, true),
        Field::new("page_start", DataType::Int32, true),
        Field::new("page_end", DataType::Int32, true),
        Field::new("snippet", DataType::Utf8, false),
    ]));
    let mut decoder = deltalake::arrow::json::ReaderBuilder::new(schema.clone()).build_decoder()?;
    decoder.serialize(hits)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_center_on_the_first_term() {
        let text = format!(
            "{} the vendor delay hit us. {}",
            "x ".repeat(200),
            "y ".repeat(200)
        );
        let s = snippet(&text, &["delay".into()]);
        assert!(s.contains("vendor delay"), "{s}");
        assert!(s.starts_with('…') && s.ends_with('…'));
        assert_eq!(snippet("short text", &["none".into()]), "short text");
        // Multi-byte text never splits a character.
        let s = snippet(&"é".repeat(500), &["zz".into()]);
        assert!(s.ends_with('…'));
    }
}
