//! The vector index of one embedding model: HNSW graphs (usearch) over unit
//! vectors, beside the packed f32 vectors and the rows they belong to.
//!
//! The index is split into shards, each small enough to build within
//! `[indexes] memory_mb`, so a build's memory does not grow with the lake.
//! Per shard `N`: `sN.hnsw` (f16 copies, inner product, 16 links),
//! `sN.f32` (the unit vectors, for exact re-scoring and scans) and
//! `sN.rows.arrow` (doc_id, chunk_idx, content_hash, tenant (null when the
//! version was not current at build), date, and the rows in doc_id order).
//! All three are memory-mapped when searched, so opening costs the same at
//! any size. Tenant and date filters run inside the graph walk; a shard
//! whose filter admits few rows is scanned exactly instead, since graph
//! walks degrade under selective filters and scans do not.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use deltalake::arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, UInt32Array,
};
use deltalake::arrow::buffer::Buffer;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::arrow::ipc::reader::{read_footer_length, FileDecoder};
use deltalake::arrow::ipc::root_as_footer;
use deltalake::arrow::ipc::writer::FileWriter;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use usearch::{IndexOptions, MetricKind, ScalarKind};

use super::fresh::Scope;
use super::opened::Opened;
use super::ranking::{best, Scored};
use crate::functions::vector::dot;

const META: &str = "vectors.json";
const CONNECTIVITY: usize = 16;
const EXPANSION_ADD: usize = 128;

/// Bytes a shard's build holds per row of `dims`: the f32 vector, its f16
/// copy in the graph, the graph's links, and the row's ids.
fn row_bytes(dims: usize) -> usize {
    dims * 6 + 2 * CONNECTIVITY * 4 + 128
}

/// One embedding to index.
pub struct VectorRow<'a> {
    pub doc_id: &'a str,
    pub chunk_idx: i32,
    pub content_hash: &'a str,
    /// `None` for a version whose `documents` row had not landed.
    pub tenant: Option<&'a str>,
    /// The document's date: event time, else ingest time (microseconds).
    pub date: Option<i64>,
}

/// One chunk found, with its cosine similarity to the query.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    pub doc_id: String,
    pub chunk_idx: i32,
    pub content_hash: String,
    pub score: f32,
}

impl Scored for VectorHit {
    fn key(&self) -> (f64, &String, i32) {
        (f64::from(self.score), &self.doc_id, self.chunk_idx)
    }
}

/// Which rows a search may return: those current at build time, in
/// `scope`, of documents not in `changed`.
pub struct Admit<'a> {
    pub scope: &'a Scope,
    pub changed: &'a HashSet<String>,
}

/// How hard a search looks.
#[derive(Debug, Clone, Copy)]
pub struct Effort {
    /// A shard whose filter admits fewer rows than this is scanned.
    pub exact_below: usize,
    /// Candidates the graph walk keeps (usearch's expansion_search).
    pub beam: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    model: String,
    dims: usize,
    /// Rows per shard.
    shards: Vec<usize>,
}

/// `v` scaled to unit length; `None` when it has no direction or holds a
/// NaN or an infinity.
pub fn unit(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm.is_finite() && norm > 0.0).then(|| v.iter().map(|x| x / norm).collect())
}

fn rows_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("chunk_idx", DataType::Int32, false),
        Field::new("content_hash", DataType::Utf8, false),
        Field::new("tenant", DataType::Utf8, true),
        Field::new("date", DataType::Int64, true),
        Field::new("by_doc", DataType::UInt32, false),
    ]))
}

/// A row held for the shard being built: doc_id, chunk_idx, content_hash,
/// tenant and date.
type HeldRow = (String, i32, String, Option<String>, Option<i64>);

/// Writes a new index into a folder, a shard at a time.
pub struct VectorWriter {
    dir: PathBuf,
    meta: Meta,
    shard_rows: usize,
    rows: Vec<HeldRow>,
    vectors: Vec<f32>,
    skipped: u64,
}

impl VectorWriter {
    /// A new index of `model`'s `dims`-wide vectors in `dir`, building
    /// shards of at most `memory` bytes.
    pub fn create(dir: &Path, model: &str, dims: usize, memory: usize) -> Result<Self> {
        if dims == 0 {
            bail!("the {model} embeddings have no dimensions");
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            meta: Meta {
                model: model.to_string(),
                dims,
                shards: Vec::new(),
            },
            shard_rows: (memory / row_bytes(dims)).max(1024),
            rows: Vec::new(),
            vectors: Vec::new(),
            skipped: 0,
        })
    }

    /// Adds one row; a vector of another width, or one with no direction
    /// or a NaN, is skipped and counted.
    pub fn add(&mut self, row: &VectorRow, vector: &[f32]) -> Result<()> {
        let unit = match unit(vector) {
            Some(u) if u.len() == self.meta.dims => u,
            _ => {
                self.skipped += 1;
                return Ok(());
            }
        };
        self.vectors.extend_from_slice(&unit);
        self.rows.push((
            row.doc_id.to_string(),
            row.chunk_idx,
            row.content_hash.to_string(),
            row.tenant.map(str::to_string),
            row.date,
        ));
        if self.rows.len() >= self.shard_rows {
            self.flush()?;
        }
        Ok(())
    }

    /// Rows added and not skipped.
    pub fn rows(&self) -> u64 {
        (self.meta.shards.iter().sum::<usize>() + self.rows.len()) as u64
    }

    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Builds the graph of the rows held, and writes the shard.
    fn flush(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let (n, dims) = (self.rows.len(), self.meta.dims);
        let shard = self.meta.shards.len();
        let path = |ext: &str| self.dir.join(format!("s{shard}.{ext}"));
        let graph = usearch::Index::new(&IndexOptions {
            dimensions: dims,
            metric: MetricKind::IP,
            quantization: ScalarKind::F16,
            connectivity: CONNECTIVITY,
            expansion_add: EXPANSION_ADD,
            expansion_search: 64,
            multi: false,
        })
        .context("cannot create a vector index")?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        graph.reserve_capacity_and_threads(n, threads)?;
        let vectors = &self.vectors;
        std::thread::scope(|s| -> Result<()> {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let graph = &graph;
                    s.spawn(move || -> Result<()> {
                        for i in (t..n).step_by(threads) {
                            graph.add(i as u64, &vectors[i * dims..(i + 1) * dims])?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for w in workers {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a vector index build thread failed"))??;
            }
            Ok(())
        })?;
        graph
            .save(&path("hnsw").to_string_lossy())
            .context("cannot write the vector index")?;
        std::fs::write(path("f32"), bytemuck::cast_slice::<f32, u8>(vectors))?;
        self.write_rows(&path("rows.arrow"))?;
        self.meta.shards.push(n);
        self.rows.clear();
        self.vectors.clear();
        Ok(())
    }

    fn write_rows(&self, path: &Path) -> Result<()> {
        let r = &self.rows;
        let mut by_doc: Vec<u32> = (0..r.len() as u32).collect();
        by_doc.sort_by(|a, b| r[*a as usize].0.cmp(&r[*b as usize].0));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(r.iter().map(|x| &x.0))),
            Arc::new(Int32Array::from_iter_values(r.iter().map(|x| x.1))),
            Arc::new(StringArray::from_iter_values(r.iter().map(|x| &x.2))),
            Arc::new(StringArray::from_iter(r.iter().map(|x| x.3.as_deref()))),
            Arc::new(Int64Array::from_iter(r.iter().map(|x| x.4))),
            Arc::new(UInt32Array::from(by_doc)),
        ];
        let batch = RecordBatch::try_new(rows_schema(), columns)?;
        let mut w = FileWriter::try_new(std::fs::File::create(path)?, &rows_schema())?;
        w.write(&batch)?;
        w.finish()?;
        Ok(())
    }

    /// Writes the last shard and the index's description; returns the
    /// rows indexed.
    pub fn finish(mut self) -> Result<u64> {
        self.flush()?;
        std::fs::write(self.dir.join(META), serde_json::to_vec_pretty(&self.meta)?)?;
        Ok(self.rows())
    }
}

/// A shard's rows, decoded in place from the mapped file.
struct Rows {
    doc_id: StringArray,
    chunk_idx: Int32Array,
    content_hash: StringArray,
    tenant: StringArray,
    date: Int64Array,
    by_doc: UInt32Array,
}

impl Rows {
    fn open(path: &Path) -> Result<Self> {
        let bad = || {
            format!(
                "{} is not a vector index's row file; run `docstream index --rebuild`",
                path.display()
            )
        };
        let file = std::fs::File::open(path).with_context(bad)?;
        // SAFETY: published generations are never written again.
        let map = unsafe { Mmap::map(&file) }.with_context(bad)?;
        let buffer = Buffer::from(bytes::Bytes::from_owner(map));
        if buffer.len() < 10 {
            bail!(bad());
        }
        let trailer: [u8; 10] = buffer[buffer.len() - 10..].try_into()?;
        let footer_len = read_footer_length(trailer).with_context(bad)?;
        let footer_start = (buffer.len() - 10)
            .checked_sub(footer_len)
            .with_context(bad)?;
        let footer = root_as_footer(&buffer[footer_start..buffer.len() - 10])
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(bad)?;
        // The schema is known: decoding checks every buffer against it.
        let decoder = FileDecoder::new(rows_schema(), footer.version());
        let block = footer
            .recordBatches()
            .and_then(|b| (b.len() == 1).then(|| b.get(0)))
            .with_context(bad)?;
        let start = usize::try_from(block.offset()).with_context(bad)?;
        let len = block.metaDataLength() as usize + block.bodyLength() as usize;
        if start.checked_add(len).is_none_or(|end| end > footer_start) {
            bail!(bad());
        }
        let batch = decoder
            .read_record_batch(block, &buffer.slice_with_length(start, len))
            .with_context(bad)?
            .with_context(bad)?;
        let col = |i: usize| batch.column(i).clone();
        let rows = Self {
            doc_id: downcast(col(0))?,
            chunk_idx: downcast(col(1))?,
            content_hash: downcast(col(2))?,
            tenant: downcast(col(3))?,
            date: downcast(col(4))?,
            by_doc: downcast(col(5))?,
        };
        if rows
            .by_doc
            .values()
            .iter()
            .any(|i| *i as usize >= rows.len())
        {
            bail!(bad());
        }
        Ok(rows)
    }

    fn len(&self) -> usize {
        self.doc_id.len()
    }

    fn admits(&self, i: usize, admit: &Admit) -> bool {
        if self.tenant.is_null(i) {
            return false;
        }
        let date = self.date.is_valid(i).then(|| self.date.value(i));
        admit.scope.admits(self.tenant.value(i), date)
            && (admit.changed.is_empty() || !admit.changed.contains(self.doc_id.value(i)))
    }

    /// The rows of `doc_id`, any version, through the doc_id order.
    fn of_doc<'a>(&'a self, doc_id: &'a str) -> impl Iterator<Item = usize> + 'a {
        let order = self.by_doc.values();
        let first = order.partition_point(|i| self.doc_id.value(*i as usize) < doc_id);
        order[first..]
            .iter()
            .map(|i| *i as usize)
            .take_while(move |i| self.doc_id.value(*i) == doc_id)
    }

    fn hit(&self, i: usize, score: f32) -> VectorHit {
        VectorHit {
            doc_id: self.doc_id.value(i).to_string(),
            chunk_idx: self.chunk_idx.value(i),
            content_hash: self.content_hash.value(i).to_string(),
            score,
        }
    }
}

/// Keeps the `k` best of `scored` and those tied with the k-th, unordered.
fn keep_top(scored: &mut Vec<(f32, usize)>, k: usize) {
    if scored.len() <= k {
        return;
    }
    scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    let kth = scored[k - 1].0;
    let floor = kth - kth.abs() * 1e-5;
    scored.retain(|(s, _)| *s >= floor);
}

fn downcast<T: Array + Clone + 'static>(a: ArrayRef) -> Result<T> {
    a.as_any()
        .downcast_ref::<T>()
        .cloned()
        .context("a vector index row file has a column of the wrong type")
}

struct Shard {
    graph: usearch::Index,
    /// Held while a search sets the graph's beam and walks it: the beam
    /// is the graph's, and searches may share an open index.
    walking: Mutex<()>,
    vectors: Mmap,
    rows: Rows,
}

impl Shard {
    fn vector(&self, i: usize, dims: usize) -> &[f32] {
        let all: &[f32] = bytemuck::cast_slice(&self.vectors);
        &all[i * dims..(i + 1) * dims]
    }
}

/// An index open for searching.
pub struct VectorIndex {
    dims: usize,
    shards: Vec<Shard>,
}

impl VectorIndex {
    #[tracing::instrument(level = "debug", skip_all)]
    pub fn open(dir: &Path) -> Result<Self> {
        let meta: Meta = serde_json::from_slice(
            &std::fs::read(dir.join(META))
                .with_context(|| format!("cannot open the vector index in {}", dir.display()))?,
        )
        .with_context(|| format!("unreadable {META} in {}", dir.display()))?;
        let mut shards = Vec::new();
        for (n, rows) in meta.shards.iter().enumerate() {
            let path = |ext: &str| dir.join(format!("s{n}.{ext}"));
            let graph = usearch::Index::restore_view(&path("hnsw").to_string_lossy())
                .with_context(|| format!("cannot open {}", path("hnsw").display()))?;
            let file = std::fs::File::open(path("f32"))?;
            // SAFETY: published generations are never written again.
            let vectors = unsafe { Mmap::map(&file) }?;
            let shard = Shard {
                rows: Rows::open(&path("rows.arrow"))?,
                graph,
                walking: Mutex::new(()),
                vectors,
            };
            let fits = shard.rows.len() == *rows
                && shard.graph.size() == *rows
                && shard.graph.dimensions() == meta.dims
                && shard.vectors.len() == rows * meta.dims * 4;
            if !fits {
                bail!(
                    "shard {n} of the vector index in {} is damaged; run `docstream index --rebuild`",
                    dir.display()
                );
            }
            shards.push(shard);
        }
        Ok(Self {
            dims: meta.dims,
            shards,
        })
    }

    /// The index in `dir`, kept open for later searches in this process.
    pub fn shared(dir: &Path) -> Result<Arc<Self>> {
        static OPEN: Opened<VectorIndex> = Opened::new();
        OPEN.get(dir, Self::open)
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn rows(&self) -> u64 {
        self.shards.iter().map(|s| s.rows.len() as u64).sum()
    }

    /// The best `k` admitted rows by cosine to `query` (rows tied with the
    /// k-th included), scored exactly from the f32 vectors.
    #[tracing::instrument(level = "debug", skip_all)]
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        admit: &Admit,
        effort: Effort,
    ) -> Result<Vec<VectorHit>> {
        let Some(query) = unit(query).filter(|q| q.len() == self.dims) else {
            bail!(
                "the query vector must have {} finite numbers, not all zero",
                self.dims
            );
        };
        if k == 0 {
            return Ok(Vec::new());
        }
        let filtered = admit.scope.tenant.is_some()
            || admit.scope.since.is_some()
            || admit.scope.until.is_some();
        let mut hits = Vec::new();
        for shard in &self.shards {
            let rows = &shard.rows;
            let admitted = if filtered {
                (0..rows.len()).filter(|i| rows.admits(*i, admit)).count()
            } else {
                rows.len()
            };
            let mut found: Vec<(f32, usize)> = Vec::new();
            if admitted >= effort.exact_below.max(k) {
                // The graph ranks by f16 copies, which cannot tell near
                // neighbours apart: the walk returns its whole beam, which
                // it holds anyway, and the f32 vectors pick the k.
                let beam = effort
                    .beam
                    .max(k.saturating_mul(2))
                    .max(k.saturating_add(10));
                let walking = shard.walking.lock().unwrap_or_else(|e| e.into_inner());
                shard.graph.change_expansion_search(beam);
                let m = shard
                    .graph
                    .filtered_search(&query, beam, |key| rows.admits(key as usize, admit))?;
                drop(walking);
                found = m
                    .keys
                    .iter()
                    .map(|key| *key as usize)
                    .filter(|i| *i < rows.len())
                    .map(|i| (dot(&query, shard.vector(i, self.dims)), i))
                    .collect();
                keep_top(&mut found, k);
            }
            if found.len() < k.min(admitted) {
                // Few rows, or the walk could not reach enough of them.
                tracing::debug!(admitted, found = found.len(), "exact scan of a shard");
                found = (0..rows.len())
                    .filter(|i| rows.admits(*i, admit))
                    .map(|i| (dot(&query, shard.vector(i, self.dims)), i))
                    .collect();
                keep_top(&mut found, k);
            }
            hits.extend(found.into_iter().map(|(score, i)| rows.hit(i, score)));
            hits = best(hits, k);
        }
        Ok(hits)
    }

    /// Every row of the documents in `docs`, any version, scored.
    pub fn search_docs(&self, query: &[f32], docs: &HashSet<String>) -> Result<Vec<VectorHit>> {
        let Some(query) = unit(query).filter(|q| q.len() == self.dims) else {
            bail!("the query vector must have {} finite numbers", self.dims);
        };
        let mut hits = Vec::new();
        for shard in &self.shards {
            for doc in docs {
                for i in shard.rows.of_doc(doc) {
                    let score = dot(&query, shard.vector(i, self.dims));
                    hits.push(shard.rows.hit(i, score));
                }
            }
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(doc: &str, idx: i32, tenant: Option<&'static str>, day: i64) -> VectorRow<'static> {
        VectorRow {
            doc_id: Box::leak(doc.to_string().into_boxed_str()),
            chunk_idx: idx,
            content_hash: "h",
            tenant,
            date: Some(day * 86_400_000_000),
        }
    }

    /// Vectors in `clusters` groups, drawn in a 12-d latent space and
    /// projected to `dims`: like real embeddings, whose intrinsic
    /// dimension is far below their width.
    fn clustered(n: usize, dims: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let latent = 12;
        let mut gauss = move || {
            let (u, v) = (rng.f32().max(1e-9), rng.f32());
            (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        };
        let projection: Vec<f32> = (0..latent * dims).map(|_| gauss()).collect();
        let centers: Vec<Vec<f32>> = (0..clusters)
            .map(|_| (0..latent).map(|_| gauss() * 3.0).collect())
            .collect();
        (0..n)
            .map(|i| {
                let z: Vec<f32> = centers[i % clusters].iter().map(|c| c + gauss()).collect();
                (0..dims)
                    .map(|d| (0..latent).map(|l| z[l] * projection[l * dims + d]).sum())
                    .collect()
            })
            .collect()
    }

    fn build(
        dir: &Path,
        vectors: &[Vec<f32>],
        memory: usize,
        tenant: impl Fn(usize) -> Option<&'static str>,
    ) -> VectorIndex {
        let dims = vectors[0].len();
        let mut w = VectorWriter::create(dir, "m", dims, memory).unwrap();
        for (i, v) in vectors.iter().enumerate() {
            w.add(&row(&format!("d{i}"), 0, tenant(i), i as i64), v)
                .unwrap();
        }
        w.finish().unwrap();
        VectorIndex::open(dir).unwrap()
    }

    fn exact(
        vectors: &[Vec<f32>],
        q: &[f32],
        k: usize,
        keep: impl Fn(usize) -> bool,
    ) -> Vec<String> {
        let q = unit(q).unwrap();
        let mut all: Vec<(f32, usize)> = vectors
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(i, v)| (dot(&q, &unit(v).unwrap()), i))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        all.iter().take(k).map(|(_, i)| format!("d{i}")).collect()
    }

    const GRAPH: Effort = Effort {
        exact_below: 0,
        beam: 64,
    };

    #[test]
    fn recall_at_10_is_at_least_095_on_100k_vectors() {
        let all = clustered(100_100, 48, 200, 7);
        let (data, queries) = all.split_at(100_000);
        let dir = tempfile::tempdir().unwrap();
        let index = build(dir.path(), data, 256 << 20, |_| Some("t"));
        let (scope, none) = (Scope::default(), HashSet::new());
        let admit = Admit {
            scope: &scope,
            changed: &none,
        };
        let mut found = 0;
        for q in queries {
            let truth = exact(data, q, 10, |_| true);
            let got = index.search(q, 10, &admit, GRAPH).unwrap();
            found += got.iter().filter(|h| truth.contains(&h.doc_id)).count();
        }
        let recall = found as f64 / (10 * queries.len()) as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
    }

    #[test]
    fn filters_shards_and_changed_documents() {
        let data = clustered(6000, 16, 20, 3);
        let dir = tempfile::tempdir().unwrap();
        // Two tenants; every tenth row not current; shards of ~1024 rows.
        let tenant = |i: usize| match i % 10 {
            0 => None,
            n if n % 2 == 1 => Some("acme"),
            _ => Some("globex"),
        };
        let index = build(dir.path(), &data, row_bytes(16) * 1024, tenant);
        assert!(index.shards.len() >= 5, "{} shards", index.shards.len());
        assert_eq!(index.rows(), 6000);
        let q = &data[11];

        let acme = Scope {
            tenant: Some("acme".into()),
            ..Default::default()
        };
        let none = HashSet::new();
        for effort in [
            GRAPH,
            Effort {
                exact_below: usize::MAX,
                beam: 64,
            },
        ] {
            let admit = Admit {
                scope: &acme,
                changed: &none,
            };
            let hits = index.search(q, 20, &admit, effort).unwrap();
            assert_eq!(hits.len(), 20);
            for h in &hits {
                let i: usize = h.doc_id[1..].parse().unwrap();
                assert_eq!(tenant(i), Some("acme"), "{}", h.doc_id);
            }
            // The exact scan is the reference: the graph agrees here.
            let truth = exact(&data, q, 20, |i| tenant(i) == Some("acme"));
            let got: Vec<String> = hits.iter().map(|h| h.doc_id.clone()).collect();
            assert!(
                got.iter().filter(|d| truth.contains(d)).count() >= 19,
                "{got:?}"
            );
        }

        // Dates: days 100..200 only.
        let day = |d: i64| chrono::DateTime::from_timestamp(d * 86_400, 0).unwrap();
        let window = Scope {
            since: Some(day(100)),
            until: Some(day(200)),
            ..Default::default()
        };
        let admit = Admit {
            scope: &window,
            changed: &none,
        };
        let hits = index.search(q, 500, &admit, GRAPH).unwrap();
        let in_window = (100..200).filter(|i| tenant(*i).is_some()).count();
        assert_eq!(hits.len(), in_window);

        // A changed document is left out, then found by id.
        let top = index
            .search(
                q,
                1,
                &Admit {
                    scope: &Scope::default(),
                    changed: &none,
                },
                GRAPH,
            )
            .unwrap();
        let changed: HashSet<String> = [top[0].doc_id.clone()].into();
        let again = index
            .search(
                q,
                1,
                &Admit {
                    scope: &Scope::default(),
                    changed: &changed,
                },
                GRAPH,
            )
            .unwrap();
        assert_ne!(again[0].doc_id, top[0].doc_id);
        let by_id = index.search_docs(q, &changed).unwrap();
        assert_eq!(by_id.len(), 1);
        assert!((by_id[0].score - top[0].score).abs() < 1e-6);
        let missing: HashSet<String> = ["zzz".to_string()].into();
        assert!(index.search_docs(q, &missing).unwrap().is_empty());
    }

    #[test]
    fn bad_vectors_are_skipped_and_bad_queries_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = VectorWriter::create(dir.path(), "m", 3, 1 << 20).unwrap();
        w.add(&row("a", 0, Some("t"), 1), &[1.0, 0.0, 0.0]).unwrap();
        w.add(&row("b", 0, Some("t"), 1), &[0.0, 0.0, 0.0]).unwrap();
        w.add(&row("c", 0, Some("t"), 1), &[f32::NAN, 1.0, 0.0])
            .unwrap();
        w.add(&row("d", 0, Some("t"), 1), &[1.0, 0.0]).unwrap();
        assert_eq!(w.skipped(), 3);
        assert_eq!(w.finish().unwrap(), 1);
        let index = VectorIndex::open(dir.path()).unwrap();
        let (scope, none) = (Scope::default(), HashSet::new());
        let admit = Admit {
            scope: &scope,
            changed: &none,
        };
        assert!(index.search(&[1.0, 0.0], 1, &admit, GRAPH).is_err());
        assert!(index.search(&[0.0, 0.0, 0.0], 1, &admit, GRAPH).is_err());
        let hits = index.search(&[2.0, 0.0, 0.0], 5, &admit, GRAPH).unwrap();
        assert_eq!(hits.len(), 1);
        assert!((hits[0].score - 1.0).abs() < 1e-6);
    }

    #[test]
    fn damaged_files_are_errors_not_crashes() {
        let data = clustered(2000, 8, 4, 1);
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), &data, 64 << 20, |_| Some("t"));
        let rows = dir.path().join("s0.rows.arrow");
        let whole = std::fs::read(&rows).unwrap();
        for cut in [0, 5, whole.len() / 2, whole.len() - 3] {
            std::fs::write(&rows, &whole[..cut]).unwrap();
            assert!(VectorIndex::open(dir.path()).is_err(), "cut at {cut}");
        }
        // Flipped bytes: an error, or rows that still decode; never a crash.
        let mut flipped = whole.clone();
        for b in flipped.iter_mut().skip(8).step_by(97) {
            *b ^= 0x5a;
        }
        std::fs::write(&rows, &flipped).unwrap();
        if let Ok(index) = VectorIndex::open(dir.path()) {
            let (scope, none) = (Scope::default(), HashSet::new());
            let admit = Admit {
                scope: &scope,
                changed: &none,
            };
            let hits = index.search(&data[0], 3, &admit, GRAPH).unwrap();
            assert!(hits.len() <= 2000);
        }
        std::fs::write(&rows, &whole).unwrap();
        let f32s = dir.path().join("s0.f32");
        let vectors = std::fs::read(&f32s).unwrap();
        std::fs::write(&f32s, &vectors[..vectors.len() - 4]).unwrap();
        assert!(VectorIndex::open(dir.path()).is_err());
    }
}
