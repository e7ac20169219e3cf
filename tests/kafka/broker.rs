//! The Kafka side of the tests: a tansu broker, and `ingest` / `publish` runs.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

/// A tansu broker (Kafka protocol) on a free port, with SQLite storage in
/// its own folder; stopped when dropped.
pub struct Broker {
    pub addr: String,
    _server: Server,
    _dir: tempfile::TempDir,
}

impl Broker {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let server = Server(
            Command::new(tool("tansu"))
                .arg("broker")
                .current_dir(dir.path())
                .env("CLUSTER_ID", "docstream-test")
                .env("LISTENER_URL", &url)
                .env("ADVERTISED_LISTENER_URL", &url)
                // sqlite://, not memory://: tansu's memory engine skips
                // records when a consumer resumes mid-batch.
                .env("STORAGE_ENGINE", "sqlite://tansu.db")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start tansu"),
        );
        wait_for_port(port);
        Self {
            addr: format!("127.0.0.1:{port}"),
            _server: server,
            _dir: dir,
        }
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tool("tansu"))
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://{}", self.addr))
            .args(["--partitions", &partitions.to_string(), name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every message on `topic`, read from the start by a plain consumer.
    pub fn messages(&self, topic: &str) -> Vec<(Option<String>, Vec<u8>)> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::{Message, Offset, TopicPartitionList};

        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("group.id", "docstream-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let timeout = std::time::Duration::from_secs(10);
        let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
        let partitions: Vec<i32> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        let mut tpl = TopicPartitionList::new();
        let mut left = 0;
        for p in &partitions {
            let (_, high) = consumer.fetch_watermarks(topic, *p, timeout).unwrap();
            left += high;
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while left > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "topic {topic} not read in time"
            );
            if let Some(m) = consumer.poll(std::time::Duration::from_millis(200)) {
                let m = m.unwrap();
                out.push((
                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    m.payload().unwrap_or_default().to_vec(),
                ));
                left -= 1;
            }
        }
        out
    }
}

/// `docstream ingest` against `broker`, with the spine stages.
pub fn ingest_command(broker: &Broker, topic: &str, lake: &Path, extra: &[&str]) -> Command {
    let mut c = docstream();
    c.args(["ingest", "--brokers", &broker.addr, "--topic", topic])
        .arg("--lake")
        .arg(lake)
        .args(SPINE)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// `ingest` as a child process (the caller kills or waits for it).
pub fn ingest(broker: &Broker, topic: &str, lake: &Path, extra: &[&str]) -> std::process::Child {
    ingest_command(broker, topic, lake, extra).spawn().unwrap()
}

/// `docstream publish` of an ndjson file to `broker`.
pub fn publish_ndjson(broker: &Broker, topic: &str, file: &Path, extra: &[&str]) -> String {
    ok(docstream()
        .args([
            "publish",
            "--brokers",
            &broker.addr,
            "--topic",
            topic,
            "--ndjson",
        ])
        .arg(file)
        .args(extra)
        .output()
        .unwrap())
}

/// Sends SIGTERM and waits for a clean exit.
pub fn terminate(child: std::process::Child) -> String {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    ok(out)
}

/// Polls `check` until it holds, failing after `secs`.
pub fn wait_until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Commit files in every table's log under `lake`.
pub fn log_files(lake: &Path) -> usize {
    let Ok(tables) = std::fs::read_dir(lake) else {
        return 0;
    };
    tables
        .filter_map(|t| std::fs::read_dir(t.ok()?.path().join("_delta_log")).ok())
        .map(|log| {
            log.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
            })
            .count()
        })
        .sum()
}
