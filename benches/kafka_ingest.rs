//! Kafka → Delta with the model stages off, against a real broker (tansu):
//! landing rate (events/s, MB/s) for the `documents` stage alone and with
//! `chunks`, Delta files per 100k events, and publish-to-queryable latency
//! at a low rate.
//!
//! `cargo bench --workspace --bench kafka_ingest`; `EVENTS=N` (default
//! 200000) sets the volume. Needs `tansu` on PATH or in the tool cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use docstream::sinks::lake::Lake;
use docstream::sources::kafka::send;
use docstream::sources::kafka_config::KafkaConfig;
use docstream::storage::{parse_location, StorageOptions};

fn main() -> Result<()> {
    let Some(tansu) = tansu() else {
        println!("kafka_ingest: tansu not found; install it with .ci/run");
        return Ok(());
    };
    let events: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let tmp = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut broker = Command::new(&tansu)
        .arg("broker")
        .current_dir(tmp.path())
        .env("CLUSTER_ID", "docstream-bench")
        .env("LISTENER_URL", &url)
        .env("ADVERTISED_LISTENER_URL", &url)
        .env("STORAGE_ENGINE", "sqlite://tansu.db")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = run(&tansu, &format!("127.0.0.1:{port}"), tmp.path(), events);
    let _ = broker.kill();
    let _ = broker.wait();
    result
}

fn run(tansu: &Path, brokers: &str, dir: &Path, events: usize) -> Result<()> {
    wait_for(brokers)?;
    topic(tansu, brokers, "bench")?;
    let file = dir.join("events.ndjson");
    let bytes = write_events(&file, events)?;
    let started = Instant::now();
    docstream(
        &[
            "publish",
            "--brokers",
            brokers,
            "--topic",
            "bench",
            "--ndjson",
        ],
        Some(&file),
    )?;
    let publish = started.elapsed().as_secs_f64();
    println!(
        "publish: {events} events ({:.1} MB) in {publish:.2}s = {:.0} events/s",
        bytes as f64 / 1e6,
        events as f64 / publish
    );

    let raw = raw_consume(brokers, events)?;
    println!("a plain consumer reads the topic at {raw:.0} events/s (the broker's ceiling here)");

    // Batches close on rows, so the busy span ends with the last commit.
    let batch_rows = (events / 4).clamp(1, 50_000).to_string();
    for stages in ["documents", "documents,chunks"] {
        let lake = dir.join(format!("lake-{}", stages.replace(',', "-")));
        let out = docstream(
            &[
                "ingest",
                "--brokers",
                brokers,
                "--topic",
                "bench",
                "--group",
                stages,
                "--stages",
                stages,
                "--batch-rows",
                &batch_rows,
                "--exit-when-idle",
                "3",
                "--lake",
                lake.to_str().context("lake path")?,
            ],
            None,
        )?;
        let rate: f64 = out
            .split(" at ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|r| r.parse().ok())
            .with_context(|| format!("no rate in: {out}"))?;
        let files = parquet_files(&lake);
        println!(
            "ingest --stages {stages}: {rate:.0} events/s, {:.1} MB/s of events; {:.1} Delta data files per 100k events ({files} in all tables)",
            rate * (bytes as f64 / events as f64) / 1e6,
            files as f64 * 100_000.0 / events as f64
        );
    }

    latency(tansu, brokers, dir)
}

/// Publishes 200 events at 20/s to a running ingest (0.2 s batches) and
/// measures when each becomes visible in `documents`.
fn latency(tansu: &Path, brokers: &str, dir: &Path) -> Result<()> {
    const N: usize = 200;
    topic(tansu, brokers, "latency")?;
    let lake = dir.join("lake-latency");
    let log = dir.join("latency-ingest.log");
    let mut ingest = Command::new(env!("CARGO_BIN_EXE_docstream"))
        .args([
            "ingest",
            "-v",
            "--brokers",
            brokers,
            "--topic",
            "latency",
            "--group",
            "latency",
        ])
        .args([
            "--stages",
            "documents,chunks",
            "--batch-age",
            "0.2",
            "--lake",
        ])
        .arg(&lake)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)?.contains("assigned") {
        if Instant::now() > deadline {
            bail!("ingest never got partitions");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Runtime::new()?;
    let latencies = rt.block_on(async {
        let mut kafka = KafkaConfig {
            brokers: brokers.to_string(),
            topic: "latency".into(),
            ..KafkaConfig::default()
        };
        kafka.properties.insert("linger.ms".into(), "0".into());
        let producer = kafka.producer()?;
        let sender = async {
            let mut sent = Vec::new();
            for i in 0..N {
                let id = format!("lat{i:04}");
                let event =
                    serde_json::json!({"doc_id": id, "text": format!("Latency probe {i}.")});
                let at = Instant::now();
                send(&producer, "latency", &id, event.to_string().as_bytes()).await?;
                sent.push((id, at));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok(sent)
        };
        // Polls the table while the events go out, noting when each appears.
        let poller = async {
            let location = parse_location(lake.to_str().context("lake")?)?;
            let mut lake_handle = Lake::open(&location, &StorageOptions::default()).await?;
            let mut seen = std::collections::HashMap::new();
            let (mut polls, mut polling) = (0u32, Duration::ZERO);
            let deadline = Instant::now() + Duration::from_secs(60);
            while seen.len() < N && Instant::now() < deadline {
                let started = Instant::now();
                lake_handle.refresh("documents").await?;
                for (doc, _) in lake_handle.keys("documents", None).await? {
                    seen.entry(doc).or_insert(started);
                }
                polls += 1;
                polling += started.elapsed();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            println!(
                "  (the reader's poll takes {:.0} ms on average, plus 10 ms between polls)",
                polling.as_secs_f64() * 1e3 / f64::from(polls.max(1))
            );
            anyhow::Ok(seen)
        };
        // A plain consumer beside ingest: the broker's own share of the latency.
        let consumer: rdkafka::consumer::StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "latency-probe")
            .set("auto.offset.reset", "earliest")
            .create()?;
        rdkafka::consumer::Consumer::subscribe(&consumer, &["latency"])?;
        let delivered = async {
            let mut at = std::collections::HashMap::new();
            while at.len() < N {
                let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await??;
                let key =
                    rdkafka::Message::key(&m).map(|k| String::from_utf8_lossy(k).into_owned());
                at.entry(key.unwrap_or_default())
                    .or_insert_with(Instant::now);
            }
            anyhow::Ok(at)
        };
        let (sent, seen, delivered) = tokio::join!(sender, poller, delivered);
        let (sent, seen, delivered) = (sent?, seen?, delivered?);
        let mut kafka_only: Vec<f64> = sent
            .iter()
            .filter_map(|(id, at)| {
                delivered
                    .get(id)
                    .map(|d| d.duration_since(*at).as_secs_f64())
            })
            .collect();
        kafka_only.sort_by(f64::total_cmp);
        let pct = |v: &[f64], p: f64| {
            v.get(((v.len().max(1) - 1) as f64 * p) as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        println!(
            "  (the broker alone, publish→a plain consumer: p50 {:.0} ms, p99 {:.0} ms)",
            pct(&kafka_only, 0.5) * 1e3,
            pct(&kafka_only, 0.99) * 1e3
        );
        let mut latencies: Vec<f64> = sent
            .iter()
            .filter_map(|(id, at)| seen.get(id).map(|s| s.duration_since(*at).as_secs_f64()))
            .collect();
        latencies.sort_by(f64::total_cmp);
        anyhow::Ok(latencies)
    })?;
    let _ = ingest.kill();
    let _ = ingest.wait();
    if latencies.len() < N {
        bail!(
            "only {} of {N} latency probes became queryable",
            latencies.len()
        );
    }
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "latency publish→queryable at 20 events/s, --batch-age 0.2: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(0.5) * 1e3,
        pct(0.99) * 1e3,
        latencies[latencies.len() - 1] * 1e3
    );
    Ok(())
}

/// Events per second a bare rdkafka consumer reads `bench` at, from its
/// first message to its last.
fn raw_consume(brokers: &str, events: usize) -> Result<f64> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let consumer: rdkafka::consumer::StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "raw")
            .set("auto.offset.reset", "earliest")
            .create()?;
        rdkafka::consumer::Consumer::subscribe(&consumer, &["bench"])?;
        let mut first = None;
        for _ in 0..events {
            let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await??;
            std::hint::black_box(rdkafka::Message::payload(&m));
            first.get_or_insert_with(Instant::now);
        }
        let span = first.map_or(Duration::ZERO, |f| f.elapsed());
        anyhow::Ok(events as f64 / span.as_secs_f64().max(1e-3))
    })
}

fn write_events(file: &Path, n: usize) -> Result<u64> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    let mut bytes = 0u64;
    for i in 0..n {
        let line = serde_json::json!({
            "doc_id": format!("d{i:07}"),
            "tenant": "acme",
            "text": format!("Invoice {i} from vendor {}: delivery delayed by {} days; penalty clause applies.", i % 97, i % 13),
        })
        .to_string();
        bytes += line.len() as u64;
        writeln!(out, "{line}")?;
    }
    Ok(bytes)
}

fn docstream(args: &[&str], file: Option<&Path>) -> Result<String> {
    let mut c = Command::new(env!("CARGO_BIN_EXE_docstream"));
    c.args(args);
    if let Some(f) = file {
        c.arg(f);
    }
    let out = c.output()?;
    if !out.status.success() {
        bail!(
            "docstream {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn topic(tansu: &Path, brokers: &str, name: &str) -> Result<()> {
    let ok = Command::new(tansu)
        .args([
            "topic",
            "create",
            "--broker",
            &format!("tcp://{brokers}"),
            "--partitions",
            "3",
            name,
        ])
        .status()?
        .success();
    if !ok {
        bail!("cannot create topic {name}");
    }
    Ok(())
}

fn wait_for(addr: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("tansu did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn parquet_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                let p = e.path();
                if p.is_dir() {
                    parquet_files(&p)
                } else {
                    usize::from(p.extension().is_some_and(|x| x == "parquet"))
                }
            })
            .sum()
    })
}

fn tansu() -> Option<PathBuf> {
    let cached = std::env::var("HOME")
        .ok()
        .map(|h| PathBuf::from(h).join(".cache/docstream/tools/bin/tansu"))
        .filter(|p| p.exists());
    cached.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join("tansu"))
            .find(|p| p.exists())
    })
}
