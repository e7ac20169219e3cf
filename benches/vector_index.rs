//! The vector index at scale, side by side in one run, on N × 384 unit
//! vectors drawn like real embeddings (clusters in a 12-d latent space,
//! projected to 384 dimensions):
//! 1. build: vectors/s, size on disk against the raw f32 vectors, and peak
//!    RSS, with shards bounded by MEMORY_MB;
//! 2. top-10 through the graph: p50 and p99 latency and recall@10 against
//!    the exact answer, at several beams;
//! 3. the exact scan of the packed vectors, warm, against the memory
//!    bandwidth bound measured on the same files in the same run;
//! 4. top-10 in one tenant holding 2% of the rows.
//!
//! `cargo bench --bench vector_index`. Sizes: VECTORS (default 1000000),
//! MEMORY_MB (256), QUERIES (200).

use std::collections::HashSet;
use std::time::Instant;

use anyhow::Result;
use docstream::indexes::fresh::Scope;
use docstream::indexes::vector::{Admit, Effort, VectorIndex, VectorRow, VectorWriter};

// Each bench uses some of the shared helpers.
#[allow(dead_code)]
mod common;
use common::{dir_bytes, peak_rss_mib, reset_peak_rss, size};

const DIMS: usize = 384;
const LATENT: usize = 12;

/// Deterministic standard normal numbers.
struct Gauss(fastrand::Rng);

impl Gauss {
    fn next(&mut self) -> f32 {
        let (u, v) = (self.0.f32().max(1e-9), self.0.f32());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

/// Vector `i` of the data set: cluster `i % clusters`, plus noise, projected.
struct Data {
    projection: Vec<f32>,
    centers: Vec<Vec<f32>>,
    gauss: Gauss,
}

impl Data {
    fn new(clusters: usize) -> Self {
        let mut gauss = Gauss(fastrand::Rng::with_seed(42));
        let projection = (0..LATENT * DIMS).map(|_| gauss.next()).collect();
        let centers = (0..clusters)
            .map(|_| (0..LATENT).map(|_| gauss.next() * 3.0).collect())
            .collect();
        Self {
            projection,
            centers,
            gauss,
        }
    }

    fn vector(&mut self, i: usize) -> Vec<f32> {
        let c = i % self.centers.len();
        let z: Vec<f32> = (0..LATENT)
            .map(|l| self.centers[c][l] + self.gauss.next())
            .collect();
        (0..DIMS)
            .map(|d| {
                (0..LATENT)
                    .map(|l| z[l] * self.projection[l * DIMS + d])
                    .sum()
            })
            .collect()
    }
}

fn percentiles(mut secs: Vec<f64>) -> (f64, f64) {
    secs.sort_by(f64::total_cmp);
    let at = |p: f64| secs[((secs.len() - 1) as f64 * p).round() as usize];
    (at(0.5) * 1e3, at(0.99) * 1e3)
}

fn main() -> Result<()> {
    let n = size("VECTORS", 1_000_000);
    let memory = size("MEMORY_MB", 256) << 20;
    let queries = size("QUERIES", 200);
    println!(
        "vector index: {n} x {DIMS}, shards within {} MiB",
        memory >> 20
    );
    let dir = tempfile::tempdir()?;

    // 1. Build.
    let mut data = Data::new(1000);
    reset_peak_rss();
    let started = Instant::now();
    let mut writer = VectorWriter::create(dir.path(), "bench", DIMS, memory)?;
    let doc_ids: Vec<String> = (0..n).map(|i| format!("doc{:08}", i / 8)).collect();
    for (i, doc_id) in doc_ids.iter().enumerate() {
        let row = VectorRow {
            doc_id,
            chunk_idx: (i % 8) as i32,
            content_hash: "h",
            // Every 50th row in tenant "small": 2% of the rows.
            tenant: Some(if i % 50 == 0 { "small" } else { "big" }),
            date: Some(i as i64),
        };
        writer.add(&row, &data.vector(i))?;
    }
    writer.finish()?;
    let build = started.elapsed().as_secs_f64();
    let bytes = dir_bytes(dir.path())?;
    let raw = (n * DIMS * 4) as f64;
    println!(
        "  build (data generation included): {build:.1}s, {:.0} vectors/s, {:.0} MiB on disk = {:.2}x the raw f32 vectors, peak RSS {:.0} MiB",
        n as f64 / build,
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / raw,
        peak_rss_mib()
    );

    let open = Instant::now();
    let index = VectorIndex::open(dir.path())?;
    println!("  open: {:.2} ms", open.elapsed().as_secs_f64() * 1e3);
    let qs: Vec<Vec<f32>> = (0..queries).map(|i| data.vector(n + i)).collect();
    let (everyone, none) = (Scope::default(), HashSet::new());
    let all = Admit {
        scope: &everyone,
        changed: &none,
    };
    let small_scope = Scope {
        tenant: Some("small".into()),
        ..Default::default()
    };
    let small = Admit {
        scope: &small_scope,
        changed: &none,
    };

    // 3 first, since its answers are the truth for 2.
    let scan = Effort {
        exact_below: usize::MAX,
        beam: 64,
    };
    index.search(&qs[0], 10, &all, scan)?;
    let mut truth = Vec::new();
    let mut secs = Vec::new();
    for q in &qs {
        let t = Instant::now();
        truth.push(top(&index, q, &all, scan)?);
        secs.push(t.elapsed().as_secs_f64());
    }
    let (scan_p50, scan_p99) = percentiles(secs);
    let bound = bandwidth_bound(dir.path())?;
    println!(
        "  exact scan of the packed vectors, warm: p50 {scan_p50:.1} ms, p99 {scan_p99:.1} ms; bandwidth bound {:.1} ms ({:.2}x)",
        bound * 1e3,
        scan_p50 / (bound * 1e3)
    );

    // 2. Through the graph.
    for beam in [32, 64, 128] {
        let effort = Effort {
            exact_below: 0,
            beam,
        };
        let (p50, p99, recall) = measure(&index, &qs, &truth, &all, effort)?;
        println!(
            "  graph top-10, beam {beam}: p50 {p50:.2} ms, p99 {p99:.2} ms, recall@10 {recall:.3} ({:.0}x faster than the scan at p50)",
            scan_p50 / p50
        );
    }

    // 4. One small tenant: its shards' filters admit 2% of the rows.
    let mut truth = Vec::new();
    for q in &qs {
        truth.push(top(&index, q, &small, scan)?);
    }
    for (label, exact_below) in [
        ("graph, filtered walk", 0),
        ("default (scan below 10000 admitted rows)", 10_000),
    ] {
        let effort = Effort {
            exact_below,
            beam: 64,
        };
        let (p50, p99, recall) = measure(&index, &qs, &truth, &small, effort)?;
        println!("  2% tenant, {label}: p50 {p50:.2} ms, p99 {p99:.2} ms, recall@10 {recall:.3}");
    }
    Ok(())
}

type Chunk = (String, i32);

/// The top 10 chunks for `q`.
fn top(index: &VectorIndex, q: &[f32], admit: &Admit, effort: Effort) -> Result<HashSet<Chunk>> {
    Ok(index
        .search(q, 10, admit, effort)?
        .into_iter()
        .map(|h| (h.doc_id, h.chunk_idx))
        .collect())
}

/// p50 and p99 milliseconds of top-10 searches for `qs`, and their mean
/// recall@10 against `truth`.
fn measure(
    index: &VectorIndex,
    qs: &[Vec<f32>],
    truth: &[HashSet<Chunk>],
    admit: &Admit,
    effort: Effort,
) -> Result<(f64, f64, f64)> {
    let mut secs = Vec::new();
    let mut found = 0;
    for (q, truth) in qs.iter().zip(truth) {
        let t = Instant::now();
        let hits = top(index, q, admit, effort)?;
        secs.push(t.elapsed().as_secs_f64());
        found += hits.intersection(truth).count();
    }
    let (p50, p99) = percentiles(secs);
    Ok((p50, p99, found as f64 / (10 * qs.len()) as f64))
}

/// Seconds to read every packed vector file once from memory: the floor
/// for any exact scan. Best of three, after a warm-up read.
fn bandwidth_bound(dir: &std::path::Path) -> Result<f64> {
    let mut maps = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "f32") {
            let file = std::fs::File::open(&path)?;
            // SAFETY: the bench's own files, not written while mapped.
            maps.push(unsafe { memmap2::Mmap::map(&file) }?);
        }
    }
    let mut best = f64::MAX;
    for _ in 0..4 {
        let t = Instant::now();
        let mut sum = 0u64;
        for m in &maps {
            let words: &[u64] = bytemuck::cast_slice(&m[..m.len() / 8 * 8]);
            sum = words.iter().fold(sum, |a, w| a.wrapping_add(*w));
        }
        std::hint::black_box(sum);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}
