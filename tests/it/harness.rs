//! Helpers: run the docstream binary, query a lake, start servers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// Tests that run the local generating model take turns: on a 2-core
/// machine, llama.cpp in two processes, each with a thread per core, slows
/// both tenfold and pushes a one-document job past any sane wait.
#[cfg_attr(not(feature = "local-models"), allow(dead_code))]
pub fn generating_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    // A test that failed holding the turn still hands it on.
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

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

/// A tokens file: tenants acme and globex, and an admin.
pub const TOKENS: &str = r#"
[[token]]
token = "acme-token"
tenant = "acme"
[[token]]
token = "globex-token"
tenant = "globex"
[[token]]
token = "root-token"
tenant = "*"
"#;

/// SQL that tries every way around tenant scoping, from a token of tenant
/// acme against a lake where globex has a walrus merger; every door runs
/// it.
pub const HOSTILE_SQL: [&str; 13] = [
    "SELECT doc_id FROM documents",
    "SELECT doc_id FROM chunks",
    "SELECT c.doc_id FROM chunks c JOIN documents d ON c.doc_id = d.doc_id",
    "SELECT doc_id FROM chunks WHERE doc_id IN (SELECT doc_id FROM documents WHERE tenant <> 'acme') OR text LIKE '%walrus%'",
    "WITH x AS (SELECT * FROM chunks) SELECT doc_id FROM x WHERE text LIKE '%merger%' OR true",
    "SELECT doc_id FROM documents UNION ALL SELECT doc_id FROM chunks UNION SELECT doc_id FROM current_documents",
    "SELECT doc_id FROM documents -- WHERE tenant = 'acme'\n",
    "SELECT doc_id FROM /* tenant globex */ documents WHERE tenant = 'globex' OR 1 = 1",
    "SELECT doc_id FROM text_search('walrus merger', 10)",
    "SELECT doc_id FROM text_search('walrus merger', 10, 'globex')",
    "SELECT doc_id FROM hybrid_search('walrus merger', 10, 'globex')",
    "SELECT doc_id FROM datafusion.public.documents",
    "SELECT doc_id FROM (SELECT * FROM documents) AS d, (SELECT count(*) FROM chunks) AS c",
    ];

/// The default pipeline with `extra` TOML appended, as
/// `dir/pipelines/custom.toml` (beside a link to the stages' SQL).
pub fn pipeline_appending(dir: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    let pipeline = dir.join("pipelines/custom.toml");
    let default = std::fs::read_to_string(repo().join("pipelines/default.toml")).unwrap();
    std::fs::write(&pipeline, format!("{default}\n{extra}")).unwrap();
    if !dir.join("sql").exists() {
        std::os::unix::fs::symlink(repo().join("sql"), dir.join("sql")).unwrap();
    }
    pipeline
}

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
    ndjson(&out)
}

/// One JSON value per non-empty line.
pub fn ndjson(out: &str) -> Vec<serde_json::Value> {
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

/// tests/servers/fault_openai.py with `args`.
pub fn fault_server(args: &[&str]) -> (Server, String, u16) {
    let port = free_port();
    let child = Command::new("python3")
        .arg(repo().join("tests/servers/fault_openai.py"))
        .args(["--port", &port.to_string()])
        .args(args)
        .spawn()
        .unwrap();
    let server = Server(child);
    wait_for_port(port);
    (server, format!("http://127.0.0.1:{port}/v1"), port)
}

/// The fault server's counters: requests, embed_inputs, chat, ok, faults.
pub fn stats(port: u16) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /stats HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}
