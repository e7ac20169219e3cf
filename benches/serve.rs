//! `docstream serve` under load, against `docstream backfill` of the same
//! files, side by side in one run (spine stages: documents, chunks):
//!
//! - throughput: N small uploads from 32 clients, uploaded → all landed,
//!   as docs/s, and its ratio to backfill's docs/s (goal ≥ 0.8);
//! - upload → queryable latency (202, then the job's events to `landed`),
//!   p50 and p99, at 1, 8 and 32 concurrent clients.
//!
//! `cargo bench --bench serve` (UPLOADS=N, default 10000; LATENCY_UPLOADS=M,
//! default 200 per client count).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

// Each bench uses some of the shared helpers.
#[allow(dead_code)]
mod common;

struct Serve(Child, u16);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(lake: &Path) -> anyhow::Result<Serve> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_docstream"))
        .args(["serve", "--stages", "documents,chunks", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--lake")
        .arg(lake)
        .stdout(Stdio::null())
        .spawn()?;
    let server = Serve(child, port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

/// Uploads `text` as `name`, waiting out 429s as their Retry-After says;
/// returns the job id.
async fn upload(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    text: String,
) -> anyhow::Result<String> {
    let body = serde_json::json!({"text": text, "name": name}).to_string();
    let response = loop {
        let response = client
            .post(format!("{base}/v1/documents"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        if response.status() != 429 {
            break response;
        }
        let wait = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(1);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    };
    anyhow::ensure!(response.status() == 202, "upload: {}", response.status());
    let v: serde_json::Value = serde_json::from_slice(&response.bytes().await?)?;
    Ok(v["job_id"].as_str().unwrap_or_default().to_string())
}

/// Reads the job's event stream until it says `landed`.
async fn landed(client: &reqwest::Client, base: &str, job: &str) -> anyhow::Result<()> {
    let response = client
        .get(format!("{base}/v1/jobs/{job}/events"))
        .send()
        .await?;
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    while let Some(chunk) = stream.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk?));
        if seen.contains("\"state\":\"landed\"") {
            return Ok(());
        }
    }
    anyhow::bail!("the stream ended before the job landed")
}

async fn waiting(client: &reqwest::Client, base: &str) -> anyhow::Result<u64> {
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(metrics
        .lines()
        .find_map(|l| l.strip_prefix("docstream_uploads_waiting "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(u64::MAX))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let n = common::size("UPLOADS", 10_000);
    let per_level = common::size("LATENCY_UPLOADS", 200);
    let tmp = tempfile::tempdir()?;
    let archive = tmp.path().join("archive");
    std::fs::create_dir_all(&archive)?;
    for i in 0..n {
        std::fs::write(
            archive.join(format!("doc-{i:06}.txt")),
            common::status_report(i),
        )?;
    }

    // The reference: backfill of the same files.
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_docstream"))
        .args([
            "backfill",
            "--stages",
            "documents,chunks",
            "--no-index",
            "--lake",
        ])
        .arg(tmp.path().join("lake-backfill"))
        .arg(&archive)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "backfill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backfill_rate = n as f64 / started.elapsed().as_secs_f64();

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let server = serve(&tmp.path().join("lake-serve"))?;
        let base = format!("http://127.0.0.1:{}", server.1);
        let started = Instant::now();
        let clients = 32;
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, base, next) = (client.clone(), base.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return anyhow::Ok(());
                    }
                    upload(&client, &base, &format!("doc-{i:06}.txt"), common::status_report(i)).await?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        let uploaded = started.elapsed().as_secs_f64();
        while waiting(&client, &base).await? > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let serve_rate = n as f64 / started.elapsed().as_secs_f64();
        println!(
            "throughput, {n} small documents: backfill {backfill_rate:.0} docs/s; serve {serve_rate:.0} docs/s \
             (uploads answered in {uploaded:.1} s) — ratio {:.2} (goal ≥ 0.8)",
            serve_rate / backfill_rate
        );

        for clients in [1usize, 8, 32] {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let (client, base, next) = (client.clone(), base.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let mut times = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= per_level {
                            return anyhow::Ok(times);
                        }
                        let t = Instant::now();
                        let name = format!("latency-{clients}-{i:05}.txt");
                        let job = upload(&client, &base, &name, common::status_report(i + 1_000_000)).await?;
                        landed(&client, &base, &job).await?;
                        times.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }));
            }
            let mut times = Vec::new();
            for t in tasks {
                times.extend(t.await??);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "upload → queryable, {clients:>2} clients, {} uploads: p50 {:.0} ms, p99 {:.0} ms",
                times.len(),
                percentile(&times, 0.5),
                percentile(&times, 0.99)
            );
        }
        drop(server);
        anyhow::Ok(())
    })
}
