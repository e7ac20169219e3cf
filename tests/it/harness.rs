//! Helpers: run the docstream binary, query a lake, start servers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn docstream() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_docstream"));
    c.current_dir(repo());
    c.env_remove("AWS_ENDPOINT_URL");
    c
}

pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "docstream failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The default pipeline's stages that call no model: spine tests use them.
pub const SPINE: [&str; 2] = ["--stages", "documents,chunks"];

/// A backfill with the default pipeline's spine stages.
pub fn backfill(source: &Path, lake: &Path, extra: &[&str]) -> String {
    ok(docstream()
        .arg("backfill")
        .arg(source)
        .arg("--lake")
        .arg(lake)
        .args(SPINE)
        .args(extra)
        .output()
        .unwrap())
}

/// A backfill with a pipeline file.
pub fn backfill_with(pipeline: &Path, source: &Path, lake: &Path, extra: &[&str]) -> String {
    ok(docstream()
        .arg("--pipeline")
        .arg(pipeline)
        .arg("backfill")
        .arg(source)
        .arg("--lake")
        .arg(lake)
        .args(extra)
        .output()
        .unwrap())
}

/// Rows of a query as JSON objects.
pub fn query(lake: &str, sql: &str, env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let out = ok(docstream()
        .args(["query", sql, "--format", "ndjson", "--lake", lake])
        .envs(env.iter().copied())
        .output()
        .unwrap());
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn count(lake: &str, sql: &str) -> i64 {
    let rows = query(lake, sql, &[]);
    rows[0]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_i64()
        .unwrap()
}

/// Copies a folder tree (fixtures into a temp archive).
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Files under `dir`, recursively.
pub fn file_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                file_count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// A binary from PATH or the tool cache `.ci/run` installs into.
pub fn tool(name: &str) -> PathBuf {
    let cached = std::env::var("HOME")
        .map(|h| {
            PathBuf::from(h)
                .join(".cache/docstream/tools/bin")
                .join(name)
        })
        .ok();
    if let Some(p) = cached.filter(|p| p.exists()) {
        return p;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.exists())
    });
    on_path.unwrap_or_else(|| {
        panic!("{name} is not installed: run .ci/run, or `cargo install` it (see README, Testing)")
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

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

/// An S3-compatible server (s3s-fs) on a free port; each folder under
/// `data` is a bucket. Stopped when dropped.
pub struct S3Server {
    pub endpoint: String,
    _server: Server,
}

impl S3Server {
    const KEY: &'static str = "docstream-test";
    const SECRET: &'static str = "docstream-test-secret";

    pub fn start(data: &Path) -> Self {
        let port = free_port();
        let server = Server(
            Command::new(tool("s3s-fs"))
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", Self::KEY, "--secret-key", Self::SECRET])
                .arg(data)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start s3s-fs"),
        );
        wait_for_port(port);
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            _server: server,
        }
    }

    /// The environment docstream reads S3 settings from.
    pub fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("AWS_ACCESS_KEY_ID", Self::KEY),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
        ]
    }
}
