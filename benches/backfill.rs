//! End-to-end backfill of 10,000 small text documents into a local lake:
//! docs/s, peak RSS and Delta data files per table. It runs twice side by
//! side: extraction in worker processes (what the CLI does) against
//! extraction on threads (the previous design, and what a library gets).
//!
//! `cargo bench --bench backfill` (set DOCS=N to change the count).

use std::time::Instant;

use docstream::config::Pipeline;
use docstream::jobs::backfill::Backfill;
use docstream::jobs::extract_pool::Isolation;
use docstream::stages::config::select_stages;
use docstream::stages::runner::StageRunner;
use docstream::storage::parse_location;

// Each bench uses some of the shared helpers.
#[allow(dead_code)]
mod common;

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo bench --no-run` / `cargo test --benches` probes
    }
    let docs: usize = std::env::var("DOCS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(10_000);
    let tmp = tempfile::tempdir()?;
    let archive = tmp.path().join("archive");
    std::fs::create_dir_all(&archive)?;
    for i in 0..docs {
        let text = common::status_report(i);
        std::fs::write(archive.join(format!("doc-{i:06}.txt")), text)?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let worker = Isolation::Process(env!("CARGO_BIN_EXE_docstream").into());
    let mut rates = Vec::new();
    for (label, isolation) in [("threads", Isolation::Thread), ("worker processes", worker)] {
        let lake = tmp.path().join(format!("lake-{}", rates.len()));
        // The spine only: this bench measures extraction, chunking and Delta writes.
        let (pipeline, stages) = Pipeline::load(None, &[])?;
        let stages = select_stages(stages, &["documents".into(), "chunks".into()])?;
        let mut job = Backfill::new(
            &pipeline,
            parse_location(archive.to_str().unwrap_or_default())?,
            parse_location(lake.to_str().unwrap_or_default())?,
            StageRunner::new(stages, None, "bench")?,
        );
        job.tenant = "bench".into();
        job.isolation = isolation;
        let started = Instant::now();
        let summary = runtime.block_on(job.run(&()))?;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(summary.landed, docs);
        println!(
            "backfill {docs} docs, extraction in {label}: {secs:.2}s, {:.0} docs/s, peak RSS so far {} MiB, {} commits",
            docs as f64 / secs,
            peak_rss_kib() / 1024,
            summary.commits
        );
        for table in ["documents", "chunks", "failures"] {
            let files = std::fs::read_dir(lake.join(table))?
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
                })
                .count();
            println!("  {table}: {files} data files");
        }
        rates.push(docs as f64 / secs);
    }
    println!("worker processes / threads: {:.2}", rates[1] / rates[0]);
    Ok(())
}

/// VmHWM from /proc: the process's peak resident set.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
