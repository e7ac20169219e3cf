//! What landing each version once costs when writers overlap: docs/s of
//! two backfills of disjoint folders running at once, and of two backfills
//! of the same folder at once, against one backfill of both folders, in
//! one process and one run.
//!
//! `cargo bench --bench concurrent_writers` (DOCS=N per folder, default 3000;
//! BATCH=N rows per commit, default 200). ONLY_ONE=1 runs only the single
//! writer, to compare its docs/s across builds (before and after a change).

use std::path::Path;
use std::time::Instant;

use docstream::config::Pipeline;
use docstream::jobs::backfill::{Backfill, Summary};
use docstream::stages::config::select_stages;
use docstream::stages::runner::StageRunner;
use docstream::storage::parse_location;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn folder(dir: &Path, name: &str, docs: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..docs {
        let text = format!(
            "Memo {name}-{i}\n\nShipment {i} from vendor {v} arrived {d} days late. \
             The owner, team {t}, will renegotiate the penalty clause.\n",
            v = i % 31,
            d = i % 9,
            t = i % 11
        );
        std::fs::write(dir.join(format!("{name}-{i:06}.txt")), text)?;
    }
    Ok(())
}

fn job(source: &Path, lake: &Path, batch: usize) -> anyhow::Result<Backfill> {
    let (pipeline, stages) = Pipeline::load(None, &[])?;
    let stages = select_stages(stages, &["documents".into(), "chunks".into()])?;
    let mut job = Backfill::new(
        &pipeline,
        parse_location(source.to_str().unwrap_or_default())?,
        parse_location(lake.to_str().unwrap_or_default())?,
        StageRunner::new(stages, None, "bench")?,
    );
    job.batch.max_rows = batch;
    Ok(job)
}

/// Runs the backfills at once; returns the seconds until all are done.
fn race(
    runtime: &tokio::runtime::Runtime,
    jobs: Vec<Backfill>,
) -> anyhow::Result<(f64, Vec<Summary>)> {
    let started = Instant::now();
    let summaries = runtime.block_on(async {
        let runs = jobs
            .into_iter()
            .map(|j| tokio::spawn(async move { j.run(&()).await }));
        let mut out = Vec::new();
        for run in futures::future::join_all(runs).await {
            out.push(run??);
        }
        anyhow::Ok(out)
    })?;
    Ok((started.elapsed().as_secs_f64(), summaries))
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo bench --no-run` / `cargo test --benches` probes
    }
    let docs = env("DOCS", 3000);
    let batch = env("BATCH", 200);
    let tmp = tempfile::tempdir()?;
    let archive = tmp.path().join("archive");
    folder(&archive.join("a"), "a", docs)?;
    folder(&archive.join("b"), "b", docs)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let total = 2 * docs;

    let (one, s) = race(
        &runtime,
        vec![job(&archive, &tmp.path().join("one"), batch)?],
    )?;
    assert_eq!(s[0].landed, total);
    let rate = |secs: f64| total as f64 / secs;
    if std::env::var_os("ONLY_ONE").is_some() {
        println!(
            "{total} docs, {batch} rows per commit: {:.0} docs/s",
            rate(one)
        );
        return Ok(());
    }
    let lake = tmp.path().join("disjoint");
    let (disjoint, s) = race(
        &runtime,
        vec![
            job(&archive.join("a"), &lake, batch)?,
            job(&archive.join("b"), &lake, batch)?,
        ],
    )?;
    assert_eq!(s.iter().map(|s| s.landed).sum::<usize>(), total);
    let lake = tmp.path().join("same");
    let (same, s) = race(
        &runtime,
        vec![job(&archive, &lake, batch)?, job(&archive, &lake, batch)?],
    )?;
    assert_eq!(
        s.iter().map(|s| s.landed).sum::<usize>(),
        total,
        "each version lands once"
    );

    println!("{total} docs, {batch} rows per commit");
    println!("  one backfill of both folders:   {:7.0} docs/s", rate(one));
    println!(
        "  two backfills, disjoint folders: {:7.0} docs/s  ({:.2}x the single writer)",
        rate(disjoint),
        one / disjoint
    );
    println!(
        "  two backfills, the same folder:  {:7.0} docs/s  ({:.2}x the single writer)",
        rate(same),
        one / same
    );
    Ok(())
}
