//! `docstream serve` under load, against `docstream backfill` of the same
//! files, side by side in one run (spine stages: documents, chunks):
//!
//! - throughput: N small uploads, uploaded → all landed, as docs/s, and its
//!   ratio to backfill's docs/s (goal ≥ 0.8): one file a request from 32
//!   clients, then 100 files a request (`/v1/documents/batch`) from 4;
//! - upload → queryable latency (202, then the job's events to `landed`),
//!   p50 and p99, at 1, 8 and 32 concurrent clients, with the spine stages
//!   and with every stage on the local models.
//!
//! `cargo bench --bench serve` (UPLOADS=N, default 10000; LATENCY_UPLOADS=M,
//! default 200 per client count; MODEL_UPLOADS=K, default 8, 0 skips the
//! local models).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

// Each bench uses some of the shared helpers.
#[allow(dead_code)]
mod common;

struct Serve(Child, u16);

const SPINE: [&str; 2] = ["--stages", "documents,chunks"];
/// Files per request in the batch-upload throughput run.
const BATCH_FILES: usize = 100;

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `docstream serve` on `lake` with `stages` (every stage when empty).
fn serve(lake: &Path, stages: &[&str]) -> anyhow::Result<Serve> {
    let port = common::free_port()?;
    let child = Command::new(env!("CARGO_BIN_EXE_docstream"))
        .arg("serve")
        .args(stages)
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--lake")
        .arg(lake)
        .stdout(Stdio::null())
        .spawn()?;
    let server = Serve(child, port);
    common::wait_for_port(port)?;
    Ok(server)
}

/// POSTs `body` as `content_type` to `url` until the answer is not a 429,
/// waiting as each Retry-After says; the answer must be 202.
async fn post_accepted(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: String,
) -> anyhow::Result<reqwest::Response> {
    loop {
        let response = client
            .post(url)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await?;
        match response.status().as_u16() {
            202 => return Ok(response),
            429 => {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            status => anyhow::bail!("{url}: {status} {}", response.text().await?),
        }
    }
}

/// Uploads `text` as `name`; returns the job id.
async fn upload(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    text: String,
) -> anyhow::Result<String> {
    let body = serde_json::json!({"text": text, "name": name}).to_string();
    let url = format!("{base}/v1/documents");
    let response = post_accepted(client, &url, "application/json", body).await?;
    let v: serde_json::Value = serde_json::from_slice(&response.bytes().await?)?;
    Ok(v["job_id"].as_str().unwrap_or_default().to_string())
}

/// Uploads `files` (name, text) in one multipart request to the batch route.
async fn upload_batch(
    client: &reqwest::Client,
    base: &str,
    files: &[(String, String)],
) -> anyhow::Result<()> {
    const BOUNDARY: &str = "docstream-bench-boundary";
    let mut body = String::new();
    for (name, text) in files {
        body.push_str(&format!(
            "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             content-type: text/plain\r\n\r\n{text}\r\n"
        ));
    }
    body.push_str(&format!("--{BOUNDARY}--\r\n"));
    let url = format!("{base}/v1/documents/batch");
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    post_accepted(client, &url, &content_type, body).await?;
    Ok(())
}

/// `n` uploads, `per_request` files a request, from `clients` at once:
/// docs/s from the first upload until the spool is empty, seconds until
/// the last 202, and how many answers were 429.
async fn throughput(
    client: &reqwest::Client,
    base: &str,
    n: usize,
    clients: usize,
    per_request: usize,
) -> anyhow::Result<(f64, f64, u64)> {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, base, next) = (client.clone(), base.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(per_request, std::sync::atomic::Ordering::Relaxed);
                if first >= n {
                    return anyhow::Ok(());
                }
                let files: Vec<(String, String)> = (first..(first + per_request).min(n))
                    .map(|i| (format!("doc-{i:06}.txt"), common::status_report(i)))
                    .collect();
                if per_request == 1 {
                    let (name, text) = files.into_iter().next().unwrap_or_default();
                    upload(&client, &base, &name, text).await?;
                } else {
                    upload_batch(&client, &base, &files).await?;
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let uploaded = started.elapsed().as_secs_f64();
    while metric(client, base, "uploads_waiting").await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let refused = metric(client, base, "uploads_refused_total").await?;
    Ok((rate, uploaded, refused))
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

/// A counter or gauge from the server's `/metrics`.
async fn metric(client: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<u64> {
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let prefix = format!("docstream_{name} ");
    Ok(metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
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
    let model_uploads = common::size("MODEL_UPLOADS", 8);
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
        // A fresh server and lake per way of uploading.
        for (clients, per_request) in [(32, 1), (4, BATCH_FILES)] {
            let lake = tmp.path().join(format!("lake-serve-{per_request}"));
            let server = serve(&lake, &SPINE)?;
            let base = format!("http://127.0.0.1:{}", server.1);
            let (rate, uploaded, refused) =
                throughput(&client, &base, n, clients, per_request).await?;
            println!(
                "throughput, {n} small documents, {per_request} per request from {clients} clients: \
                 backfill {backfill_rate:.0} docs/s; serve {rate:.0} docs/s (uploads answered in \
                 {uploaded:.1} s, {refused} told to retry) — ratio {:.2} (goal ≥ 0.8)",
                rate / backfill_rate
            );
        }
        // Latency on a lake that already holds the N documents.
        let server = serve(&tmp.path().join("lake-serve-1"), &SPINE)?;
        let base = format!("http://127.0.0.1:{}", server.1);
        latency(&client, &base, "spine", per_level).await?;
        drop(server);

        // The same through every stage with the local models.
        if model_uploads > 0 {
            let server = serve(&tmp.path().join("lake-models"), &[])?;
            let base = format!("http://127.0.0.1:{}", server.1);
            latency(&client, &base, "local models", model_uploads).await?;
        }
        anyhow::Ok(())
    })
}

/// Upload → queryable latency, p50 and p99, at 1, 8 and 32 clients, with
/// `per_level` uploads per level (one per client at least).
async fn latency(
    client: &reqwest::Client,
    base: &str,
    label: &str,
    per_level: usize,
) -> anyhow::Result<()> {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    for clients in [1usize, 8, 32] {
        let per_level = per_level.max(clients);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, base, next) = (client.clone(), base.to_string(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= per_level {
                        return anyhow::Ok(times);
                    }
                    let t = Instant::now();
                    let name = format!("latency-{clients}-{i:05}.txt");
                    // New text every level and run: no cached model answer.
                    let text = format!("Run {run}, level {clients}.\n{}", common::status_report(i));
                    let job = upload(&client, &base, &name, text).await?;
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
            "upload → queryable, {label}, {clients:>2} clients, {} uploads: p50 {:.0} ms, p99 {:.0} ms",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    Ok(())
}
