//! Analytics at scale, side by side in one run:
//! 1. top-10 cosine over N × 384 embeddings stored in Delta: cold (page
//!    cache evicted, fresh session), warm (same session again) and with the
//!    vectors in memory, against the memory-bandwidth bound of reading the
//!    vectors once;
//! 2. the built-in reports over an M-row `chunks` table;
//! 3. opening a table after C commits, with and without checkpoints;
//! 4. hybrid `docstream search` end to end through the command line, on a
//!    lake of H chunks with their embeddings, indexed and exact, the same
//!    searches over HTTP through `docstream serve`, and the cost of bringing
//!    both indexes up to date after one ingest batch.
//!
//! `cargo bench --workspace --bench analytics`. Sizes: VECTORS (default
//! 1000000), CHUNKS (10000000), COMMITS (5000), HYBRID (1000000); 0 skips
//! a part. The hybrid part needs the local models (`docstream models fetch`).
//! HYBRID_LAKE=DIR builds the hybrid part's lake there and keeps it, and a
//! later run reuses it, to profile the same lake again.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use deltalake::arrow::array::{
    ArrayRef, Float32Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::buffer::OffsetBuffer;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::datasource::MemTable;
use deltalake::protocol::SaveMode;
use docstream::analytics::config::AnalyticsConfig;
use docstream::analytics::query::{Analytics, Models};
use docstream::analytics::reports;
use docstream::analytics::search::{search, Depth, Retrievers};
use docstream::config::Pipeline;
use docstream::contract::tables as contract;
use docstream::indexes::config::IndexesConfig;
use docstream::indexes::fresh::Scope;
use docstream::indexes::update::{update, Updated};
use docstream::sinks::lake::Lake;
use docstream::storage::{parse_location, StorageOptions};
use futures::StreamExt;

// Each bench uses some of the shared helpers.
#[allow(dead_code)]
mod common;
use common::lake::{chunks_batch, documents_and_chunks, documents_batch};
use common::{dir_bytes, peak_rss_mib, reset_peak_rss, size};

const DIMS: usize = 384;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let parts = [
            size("VECTORS", 1_000_000),
            size("CHUNKS", 10_000_000),
            size("COMMITS", 5_000),
            size("HYBRID", 1_000_000),
        ];
        if parts[0] > 0 {
            vectors(parts[0]).await?;
        }
        if parts[1] > 0 {
            report_latency(parts[1]).await?;
        }
        if parts[2] > 0 {
            table_open(parts[2]).await?;
        }
        if parts[3] > 0 {
            hybrid_cli(parts[3]).await?;
        }
        Ok(())
    })
}

/// Seconds `f` takes, best of `runs`.
async fn best<F, Fut, T>(runs: usize, mut f: F) -> Result<(f64, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut best = f64::MAX;
    let mut out = None;
    for _ in 0..runs {
        let started = Instant::now();
        let v = f().await?;
        best = best.min(started.elapsed().as_secs_f64());
        out = Some(v);
    }
    Ok((best, out.expect("runs > 0")))
}

/// Evicts a folder's files from the page cache, so the next read is cold.
fn evict(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            evict(&path)?;
        } else {
            let file = std::fs::File::open(&path)?;
            // SAFETY: a valid open descriptor; advice only, no memory access.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
    Ok(())
}

fn unit_vectors(rows: usize, seed: u64) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut values = Vec::with_capacity(rows * DIMS);
    for _ in 0..rows {
        let v: Vec<f32> = (0..DIMS).map(|_| rng.f32() * 2.0 - 1.0).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        values.extend(v.iter().map(|x| x / norm));
    }
    values
}

/// Embeddings `start..` of `model`, `per_doc` to a document, named as
/// `chunks_batch` names its chunks.
fn embeddings_batch(
    start: usize,
    values: Vec<f32>,
    per_doc: usize,
    model: &str,
) -> Result<RecordBatch> {
    let rows = values.len() / DIMS;
    let schema = contract::schema("embeddings").expect("contract table");
    let item = Arc::new(Field::new_list_field(DataType::Float32, true));
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(DIMS, rows));
    let list = ListArray::try_new(item, offsets, Arc::new(Float32Array::from(values)), None)?;
    let mut list = Some(Arc::new(list) as ArrayRef);
    let idx = || start..start + rows;
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "doc_id" => Arc::new(StringArray::from_iter_values(
                    idx().map(|i| format!("d{:08}", i / per_doc)),
                )),
                "chunk_idx" => Arc::new(Int32Array::from_iter_values(
                    idx().map(|i| (i % per_doc) as i32),
                )),
                "model" => Arc::new(StringArray::from(vec![model; rows])),
                "dims" => Arc::new(Int32Array::from(vec![DIMS as i32; rows])),
                "embedding" => list.take().expect("one embedding column"),
                _ => Arc::new(StringArray::from(vec!["h"; rows])),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn top10_sql(query: &[f32]) -> String {
    let literal: Vec<String> = query.iter().map(|x| format!("{x}")).collect();
    format!(
        "SELECT doc_id, chunk_idx, cosine_similarity(embedding, make_array({})) AS score \
         FROM embeddings ORDER BY score DESC LIMIT 10",
        literal.join(",")
    )
}

async fn vectors(rows: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = parse_location(tmp.path().join("lake").to_str().unwrap_or_default())?;
    let storage = StorageOptions::default();
    let mut lake = Lake::open(&root, &storage).await?;
    // The same rows with delta-rs's default Parquet layout, for comparison.
    let default_root = parse_location(tmp.path().join("default").to_str().unwrap_or_default())?;
    let default_path = tmp.path().join("default/embeddings");
    std::fs::create_dir_all(&default_path)?;
    let mut default_table = deltalake::DeltaTableBuilder::from_url(parse_location(
        default_path.to_str().unwrap_or_default(),
    )?)?
    .build()?;
    let written = Instant::now();
    let per_commit = 100_000;
    for start in (0..rows).step_by(per_commit) {
        let n = per_commit.min(rows - start);
        let batch = embeddings_batch(start, unit_vectors(n, start as u64), 4, "bench-384")?;
        lake.append("embeddings", vec![batch.clone()]).await?;
        default_table = default_table
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .await?;
    }
    let bytes = (rows * DIMS * 4) as f64;
    println!(
        "vectors: {rows} x {DIMS} written twice in {:.1}s, {:.0} MiB of f32; Parquet: {:.0} MiB docstream layout, {:.0} MiB default",
        written.elapsed().as_secs_f64(),
        bytes / 1048576.0,
        dir_bytes(&tmp.path().join("lake/embeddings"))? as f64 / 1048576.0,
        dir_bytes(&default_path)? as f64 / 1048576.0,
    );

    // The bound: one pass over the same bytes in memory, summing them.
    let plain = unit_vectors(rows, 7);
    let (bound, _) = best(5, || async {
        Ok(plain
            .chunks_exact(16)
            .fold([0f32; 16], |mut acc, c| {
                for k in 0..16 {
                    acc[k] += c[k];
                }
                acc
            })
            .iter()
            .sum::<f32>())
    })
    .await?;
    println!(
        "  memory-bandwidth bound (one pass over {:.0} MiB): {:.3}s = {:.1} GB/s",
        bytes / 1048576.0,
        bound,
        bytes / bound / 1e9
    );
    drop(plain);

    let query = unit_vectors(1, 99);
    let sql = top10_sql(&query);
    let mut timings = Vec::new();
    let mut answers = Vec::new();
    for lake_root in [&root, &default_root] {
        evict(tmp.path())?;
        let started = Instant::now();
        let analytics =
            Analytics::open(lake_root, &storage, None, &AnalyticsConfig::default()).await?;
        answers.push(format!("{:?}", analytics.sql(&sql).await?));
        let cold = started.elapsed().as_secs_f64();
        let (warm, rows) = best(3, || analytics.sql(&sql)).await?;
        answers.push(format!("{rows:?}"));
        timings.push((cold, warm));
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "the runs disagree"
    );
    let [(cold, warm), (default_cold, default_warm)] = timings[..] else {
        unreachable!("two layouts")
    };
    let analytics = Analytics::open(&root, &storage, None, &AnalyticsConfig::default()).await?;

    // The same query over the vectors already in memory.
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    docstream::functions::vector::register(&ctx);
    let all = analytics.sql("SELECT * FROM embeddings").await?;
    let partitions = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = all.len().div_ceil(partitions);
    let table = MemTable::try_new(
        all[0].schema(),
        all.chunks(per.max(1)).map(|c| c.to_vec()).collect(),
    )?;
    ctx.register_table("embeddings", Arc::new(table))?;
    let (memory, _) = best(3, || async { Ok(ctx.sql(&sql).await?.collect().await?) }).await?;

    println!(
        "  top-10 cosine, cold (page cache evicted, table opened): {cold:.3}s; default layout {default_cold:.3}s"
    );
    println!(
        "  top-10 cosine, warm (same session, Parquet from page cache): {warm:.3}s = {:.1}x the bound; default layout {default_warm:.3}s ({:.2}x)",
        warm / bound,
        default_warm / warm
    );
    println!(
        "  top-10 cosine, vectors in memory: {memory:.3}s = {:.1}x the bound",
        memory / bound
    );
    Ok(())
}

/// Rows `rows` of `table` with varied values for the columns reports
/// group and filter on; row i belongs to document i / per_doc.
fn synthetic(
    table: &str,
    rows: std::ops::Range<usize>,
    per_doc: f64,
    day0: i64,
) -> Result<RecordBatch> {
    let schema = contract::schema(table).expect("contract table");
    let n = rows.len();
    let pick = |values: &'static [&'static str]| -> ArrayRef {
        Arc::new(StringArray::from(
            rows.clone()
                .map(|i| values[i % values.len()])
                .collect::<Vec<_>>(),
        ))
    };
    let day = |i: usize| day0 + (i % 30) as i64 * 86_400_000_000;
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match (f.name().as_str(), f.data_type()) {
                ("doc_id", _) => Arc::new(StringArray::from(
                    rows.clone()
                        .map(|i| format!("d{:08}", (i as f64 / per_doc) as usize))
                        .collect::<Vec<_>>(),
                )),
                ("content_hash", _) => pick(&["h"]),
                ("severity", _) => pick(&["low", "medium", "high", "critical"]),
                ("category", _) => pick(&["security", "budget", "vendor", "schedule", "legal"]),
                ("priority" | "likelihood", _) => pick(&["low", "medium", "high"]),
                ("mitigation", _) => Arc::new(StringArray::from(
                    rows.clone()
                        .map(|i| (i % 3 == 0).then_some("a plan"))
                        .collect::<Vec<_>>(),
                )),
                ("owner", _) => pick(&["Dana", "Sam", "Li"]),
                ("tenant", _) => pick(&["t0", "t1", "t2", "t3", "t4", "t5", "t6"]),
                ("model", _) => pick(&["gpt-4o-mini", "text-embedding-3-small"]),
                ("stage", _) => pick(&["extract", "embeddings", "risks"]),
                ("error_kind", _) => pick(&["corrupt", "timeout", "model_rejected"]),
                ("status", _) => pick(&["ok", "ok", "ok", "model_rate_limited"]),
                (_, DataType::Date32) => Arc::new(deltalake::arrow::array::Date32Array::from(
                    rows.clone()
                        .map(|i| (day0 / 86_400_000_000) as i32 + (i % 60) as i32)
                        .collect::<Vec<_>>(),
                )),
                (_, DataType::Timestamp(..)) => Arc::new(
                    TimestampMicrosecondArray::from(rows.clone().map(day).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                (_, DataType::Int32) => Arc::new(Int32Array::from(
                    rows.clone().map(|i| (i % 100) as i32).collect::<Vec<_>>(),
                )),
                (_, DataType::Int64) => Arc::new(Int64Array::from(
                    rows.clone().map(|i| (i % 1000) as i64).collect::<Vec<_>>(),
                )),
                (_, DataType::Float64) => Arc::new(deltalake::arrow::array::Float64Array::from(
                    rows.clone()
                        .map(|i| (i % 100) as f64 / 1e4)
                        .collect::<Vec<_>>(),
                )),
                (_, DataType::Utf8) => pick(&["text"]),
                (_, other) => deltalake::arrow::array::new_null_array(other, n),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}

async fn report_latency(chunks: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = parse_location(tmp.path().join("lake").to_str().unwrap_or_default())?;
    let storage = StorageOptions::default();
    let mut lake = Lake::open(&root, &storage).await?;
    let per_doc = 10;
    let docs = chunks / per_doc;
    let day0 = chrono::Utc::now().timestamp_micros() - 30 * 86_400_000_000;
    let written = Instant::now();
    documents_and_chunks(&mut lake, docs, per_doc, day0).await?;
    let step = 100_000;
    // Two risks and one action item per document; a usage row per 10 and a
    // failure per 100 documents.
    for (table, per_doc) in [
        ("risks", 2.0),
        ("action_items", 1.0),
        ("usage", 0.1),
        ("failures", 0.01),
    ] {
        let rows = (docs as f64 * per_doc) as usize;
        for start in (0..rows).step_by(step) {
            let end = (start + step).min(rows);
            let batch = synthetic(table, start..end, per_doc, day0)?;
            lake.append(table, vec![batch]).await?;
        }
    }
    println!(
        "reports: {docs} documents, {chunks} chunks, {} risks, {docs} action items, {} usage and {} failures rows written in {:.1}s",
        docs * 2,
        docs / 10,
        docs / 100,
        written.elapsed().as_secs_f64()
    );
    let analytics = Analytics::open(&root, &storage, None, &AnalyticsConfig::default()).await?;
    for report in reports::all(None)? {
        let (secs, rows) = best(3, || analytics.sql(&report.sql)).await?;
        let n: usize = rows.iter().map(RecordBatch::num_rows).sum();
        println!("  report {:<18} {secs:.3}s ({n} rows)", report.name);
    }
    let (secs, _) = best(3, || {
        analytics.sql("SELECT count(*) FROM chunks WHERE text LIKE '%document 4242:%'")
    })
    .await?;
    println!("  full scan of chunks.text (LIKE)  {secs:.3}s");
    keyword_latency(
        &root,
        &storage,
        &tmp.path().join("lake"),
        docs,
        per_doc,
        day0,
    )
    .await
}

/// Keyword search over the lake: the exact path (every chunk indexed per
/// query, the reference) against the published Tantivy index, then with a
/// tail of one ingest batch that the index has not seen.
async fn keyword_latency(
    root: &url::Url,
    storage: &StorageOptions,
    lake_dir: &Path,
    docs: usize,
    per_doc: usize,
    day0: i64,
) -> Result<()> {
    let chunks = docs * per_doc;
    let everything = Scope::default();
    let depth = |exact| Depth {
        k: 10,
        candidates: 100,
        exact,
        retrievers: Retrievers::Keyword,
    };
    // Document numbers above the chunk numbers, so each query's top 10 is
    // one document's chunks, with no ties against other documents.
    let queries: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "document {} vendor",
                per_doc + (i * 7919) % (docs - per_doc)
            )
        })
        .collect();
    let analytics = Analytics::open(root, storage, None, &AnalyticsConfig::default()).await?;
    let (exact_secs, exact) = best(1, || {
        search(&analytics, &queries[0], depth(true), &everything)
    })
    .await?;

    reset_peak_rss();
    let built = Instant::now();
    update_all(root, storage).await?;
    let build_secs = built.elapsed().as_secs_f64();
    let index_bytes = dir_bytes(&lake_dir.join("_indexes/text"))?;
    let table_bytes = dir_bytes(&lake_dir.join("chunks"))?;
    println!(
        "  text index build: {build_secs:.1}s, {:.0} chunks/s, {:.0} MiB = {:.2}x the chunks table, peak RSS {:.0} MiB",
        chunks as f64 / build_secs,
        index_bytes as f64 / (1 << 20) as f64,
        index_bytes as f64 / table_bytes as f64,
        peak_rss_mib()
    );

    let analytics = Analytics::open(root, storage, None, &AnalyticsConfig::default()).await?;
    let first = search(&analytics, &queries[0], depth(false), &everything).await?;
    let ids = |h: &[docstream::analytics::search::Hit]| {
        h.iter()
            .map(|h| (h.doc_id.clone(), h.chunk_idx))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&first),
        ids(&exact),
        "the index must agree with the exact search"
    );
    let (p50, p99) = latencies(&analytics, &queries, depth(false)).await?;
    println!("  keyword top-10 over {chunks} chunks, exact (reference): {exact_secs:.3}s");
    println!(
        "  keyword top-10, text index: p50 {:.1} ms, p99 {:.1} ms ({:.0}x faster than exact at p50)",
        p50 * 1e3,
        p99 * 1e3,
        exact_secs / p50
    );

    // One ingest batch (1,000 documents) lands after the index was built.
    let mut lake = Lake::open(root, storage).await?;
    lake.append("documents", vec![documents_batch(docs, 1000, day0)?])
        .await?;
    lake.append("chunks", vec![chunks_batch(docs..docs + 1000, per_doc)?])
        .await?;
    let analytics = Analytics::open(root, storage, None, &AnalyticsConfig::default()).await?;
    let (p50, p99) = latencies(&analytics, &queries, depth(false)).await?;
    println!(
        "  keyword top-10 with a {}-chunk tail: p50 {:.1} ms, p99 {:.1} ms",
        1000 * per_doc,
        p50 * 1e3,
        p99 * 1e3
    );
    let updated = Instant::now();
    update_all(root, storage).await?;
    println!(
        "  index update after that batch (a new layer): {:.2}s",
        updated.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Hybrid search through the command line, as a person runs it, on a lake
/// of `chunks` chunks (10 to a document) with embeddings from the default
/// pipeline's model: indexed (p50 and p99 over 20 runs) against `--exact`
/// and against one process that stays open, then the cost of one ingest
/// batch's index update.
async fn hybrid_cli(chunks: usize) -> Result<()> {
    const MODEL: &str = "all-MiniLM-L6-v2";
    let per_doc = 10;
    let docs = chunks / per_doc;
    let tmp = tempfile::tempdir()?;
    let kept = std::env::var_os("HYBRID_LAKE").map(std::path::PathBuf::from);
    let lake_dir = kept.clone().unwrap_or_else(|| tmp.path().join("lake"));
    let reused = kept.is_some() && lake_dir.join("embeddings").exists();
    let root = parse_location(lake_dir.to_str().unwrap_or_default())?;
    let storage = StorageOptions::default();
    let mut lake = Lake::open(&root, &storage).await?;
    let day0 = chrono::Utc::now().timestamp_micros() - 30 * 86_400_000_000;
    for start in (0..docs).step_by(10_000).filter(|_| !reused) {
        append(
            &mut lake,
            start..(start + 10_000).min(docs),
            per_doc,
            day0,
            MODEL,
        )
        .await?;
    }
    let built = Instant::now();
    let indexed = update_all(&root, &storage).await?;
    println!(
        "hybrid search through the CLI: {docs} documents, {chunks} chunks and {MODEL} embeddings; both indexes built in {:.1}s ({})",
        built.elapsed().as_secs_f64(),
        indexed
            .iter()
            .map(|u| format!("{} {:.1}s", u.kind.label(), u.secs))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ratio = |index: &str, table: &str| -> Result<f64> {
        Ok(dir_bytes(&lake_dir.join("_indexes").join(index))? as f64
            / dir_bytes(&lake_dir.join(table))? as f64)
    };
    println!(
        "  on disk: vector index {:.2}x the embeddings table, text index {:.2}x the chunks table",
        ratio("vectors", "embeddings")?,
        ratio("text", "chunks")?
    );

    // Distinct queries with the response cache off, so every run embeds
    // its query as a person's new question does. The default pipeline's
    // stage files are found beside it, as in the repository.
    std::fs::create_dir(tmp.path().join("pipelines"))?;
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sql"),
        tmp.path().join("sql"),
    )?;
    let pipeline_file = tmp.path().join("pipelines").join("bench.toml");
    std::fs::write(
        &pipeline_file,
        format!(
            "{}\n[models]\ncache = \"off\"\n",
            include_str!("../pipelines/default.toml")
        ),
    )?;
    let queries: Vec<String> = (0..40)
        .map(|i| format!("document {} vendor", (i * 7919 + 4242) % docs))
        .collect();
    let run = |query: &str, extra: &[&str]| -> Result<f64> {
        let started = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_docstream"))
            .args(["search", query, "--k", "10", "--lake"])
            .arg(&lake_dir)
            .arg("--pipeline")
            .arg(&pipeline_file)
            .args(extra)
            .output()?;
        let secs = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            out.status.success(),
            "docstream search failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(secs)
    };
    let exact = run(&queries[0], &["--exact"])?;
    run(&queries[0], &[])?;
    let mut secs = queries[1..21]
        .iter()
        .map(|q| run(q, &[]))
        .collect::<Result<Vec<_>>>()?;
    secs.sort_by(f64::total_cmp);
    let help = run(&queries[0], &["--help"])?;
    println!(
        "  docstream search, hybrid, indexed: p50 {:.0} ms, p99 {:.0} ms; --exact {:.1}s ({:.0}x); `search --help` (process start alone) {:.0} ms",
        secs[10] * 1e3,
        secs[19] * 1e3,
        exact,
        exact / secs[10],
        help * 1e3
    );

    // The same searches in one process that keeps its indexes and model
    // open, as `serve` and a SQL session do.
    let (pipeline, _) = Pipeline::load(Some(&pipeline_file), &[])?;
    let models = Models::open(
        &pipeline.providers,
        &pipeline.models,
        Some(pipeline.embed_providers()?),
        None,
    )?;
    let analytics = Analytics::open(&root, &storage, models.embedder, &pipeline.analytics).await?;
    let hybrid = Depth {
        k: 10,
        candidates: 100,
        exact: false,
        retrievers: Retrievers::Hybrid,
    };
    let (p50, p99) = latencies(&analytics, &queries[21..], hybrid).await?;
    println!(
        "  the same hybrid search in a process that stays open: p50 {:.1} ms, p99 {:.1} ms",
        p50 * 1e3,
        p99 * 1e3
    );

    http_searches(&lake_dir, &pipeline_file, &queries[21..], secs[10]).await?;

    if reused {
        return Ok(());
    }
    // One ingest batch of 1,000 documents, then the update that indexes it.
    append(&mut lake, docs..docs + 1000, per_doc, day0, MODEL).await?;
    let updated = update_all(&root, &storage).await?;
    for u in updated {
        println!(
            "  update after one {}-chunk batch, {}: {:.2}s ({} layers)",
            1000 * per_doc,
            u.kind.label(),
            u.secs,
            u.manifest.layers.len()
        );
    }
    Ok(())
}

/// The same hybrid searches through `docstream serve`'s `/v1/search`: per
/// search at one client, and searches/s at 1 and 4 clients, against the
/// CLI's `cli_secs` per search.
async fn http_searches(
    lake: &Path,
    pipeline: &Path,
    queries: &[String],
    cli_secs: f64,
) -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_docstream"))
        .args(["serve", "--stages", "documents,chunks", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--lake")
        .arg(lake)
        .arg("--pipeline")
        .arg(pipeline)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let searched = async {
        let client = reqwest::Client::new();
        let url = |q: &str| {
            format!("http://127.0.0.1:{port}/v1/search?k=10&q={}", q.replace(' ', "+"))
        };
        let started = Instant::now();
        loop {
            let ready = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            anyhow::ensure!(started.elapsed().as_secs() < 120, "serve did not start");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let one = |q: String| {
            let (client, url) = (client.clone(), url(&q));
            async move {
                let r = client.get(url).send().await?;
                anyhow::ensure!(r.status().is_success(), "search: {}", r.status());
                let hits: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
                anyhow::ensure!(hits["hits"].as_array().map_or(0, Vec::len) == 10, "{hits}");
                anyhow::Ok(())
            }
        };
        one(queries[0].clone()).await?;
        let mut rates = Vec::new();
        for clients in [1usize, 4] {
            let started = Instant::now();
            let mut all = futures::stream::iter(queries.iter().cloned().map(one))
                .buffer_unordered(clients);
            while let Some(done) = all.next().await {
                done?;
            }
            rates.push(queries.len() as f64 / started.elapsed().as_secs_f64());
        }
        println!(
            "  through `docstream serve` (HTTP /v1/search): {:.1} ms per search at 1 client ({:.0}x faster than the CLI's {:.0} ms), {:.1} searches/s at 1 client, {:.1} at 4",
            1e3 / rates[0],
            cli_secs * rates[0],
            cli_secs * 1e3,
            rates[0],
            rates[1]
        );
        anyhow::Ok(())
    }
    .await;
    let _ = server.kill();
    let _ = server.wait();
    searched
}

/// p50 and p99 seconds of `queries`, each run once after a warm-up.
async fn latencies(analytics: &Analytics, queries: &[String], depth: Depth) -> Result<(f64, f64)> {
    let everything = Scope::default();
    search(analytics, &queries[0], depth, &everything).await?;
    let mut secs = Vec::new();
    for q in queries {
        let started = Instant::now();
        let hits = search(analytics, q, depth, &everything).await?;
        secs.push(started.elapsed().as_secs_f64());
        assert_eq!(hits.len(), 10);
    }
    secs.sort_by(f64::total_cmp);
    let at = |p: f64| secs[((secs.len() - 1) as f64 * p).round() as usize];
    Ok((at(0.5), at(0.99)))
}

/// One-row appends through docstream's writer, compacting every 100
/// commits as `ingest --compact-every 100` would (delta-rs's per-commit
/// cost grows with the number of live files). Returns seconds for the first
/// and the last 100 commits.
async fn commit_many(lake_dir: &Path, table: &str, commits: usize) -> Result<(f64, f64)> {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let root = parse_location(lake_dir.to_str().unwrap_or_default())?;
    let mut lake = Lake::open(&root, &StorageOptions::default())
        .await?
        .with_checkpoint_interval(100);
    let (mut first, mut last) = (0.0, 0.0);
    for i in 0..commits {
        let started = Instant::now();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![i as i64]))],
        )?;
        lake.append(table, vec![batch]).await?;
        let secs = started.elapsed().as_secs_f64();
        if i < 100 {
            first += secs;
        } else if i >= commits.saturating_sub(100) {
            last += secs;
        }
        if i % 100 == 99 {
            lake.compact(table, Default::default()).await?;
        }
    }
    Ok((first, last))
}

async fn table_open(commits: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (first, last) = commit_many(tmp.path(), "ours", commits).await?;
    println!(
        "{commits} one-row commits (compacted every 100): first 100 took {first:.2}s, last 100 {last:.2}s"
    );
    // The same commits without checkpoints: the JSON log alone.
    let ours = tmp.path().join("ours");
    let bare = tmp.path().join("bare");
    std::fs::create_dir_all(bare.join("_delta_log"))?;
    for entry in std::fs::read_dir(ours.join("_delta_log"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap_or_default();
            std::fs::copy(&path, bare.join("_delta_log").join(name))?;
        }
    }
    let mut opened = Vec::new();
    for (label, path) in [("checkpoint every 100", &ours), ("no checkpoints", &bare)] {
        let url = parse_location(path.to_str().unwrap_or_default())?;
        let (secs, t) = best(3, || async {
            Ok(deltalake::open_table(url.clone()).await?)
        })
        .await?;
        let version = t.version().unwrap_or_default();
        println!("table open at version {version}, {label}: {secs:.3}s");
        opened.push(secs);
    }
    println!(
        "  without checkpoints, opening is {:.1}x slower",
        opened[1] / opened[0].max(1e-9)
    );
    Ok(())
}

/// Documents `docs` with `per_doc` chunks each and their embeddings.
async fn append(
    lake: &mut Lake,
    docs: std::ops::Range<usize>,
    per_doc: usize,
    day0: i64,
    model: &str,
) -> Result<()> {
    let (start, n) = (docs.start, docs.len());
    lake.append("documents", vec![documents_batch(start, n, day0)?])
        .await?;
    lake.append("chunks", vec![chunks_batch(docs, per_doc)?])
        .await?;
    let vectors = unit_vectors(n * per_doc, start as u64);
    let batch = embeddings_batch(start * per_doc, vectors, per_doc, model)?;
    lake.append("embeddings", vec![batch]).await?;
    Ok(())
}

/// Brings every index of the lake up to date.
async fn update_all(root: &url::Url, storage: &StorageOptions) -> Result<Vec<Updated>> {
    update(
        root,
        storage,
        &IndexesConfig::default(),
        false,
        &|_, _, _| {},
    )
    .await
}
