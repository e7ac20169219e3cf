//! The SQL doors at scale, side by side in one run:
//! 1. a ROWS-row result (`chunks` without `text`) moved to a Python client
//!    over Flight SQL into pyarrow (by ADBC's driver and by pyarrow's own
//!    Flight client), over Postgres into psycopg, and read straight from the
//!    Delta table with delta-rs Python, the anchor, with the CPU each side
//!    spent;
//! 2. the latency of a small query, `SELECT count(*) FROM documents WHERE
//!    tenant = $1`, over Flight SQL, Postgres and HTTP `/v1/query`.
//!
//! `cargo bench --bench sql_doors`. ROWS (default 10000000); DOORS_LAKE=DIR
//! builds the lake there and keeps it, and a later run reuses it. Needs
//! python3 with adbc-driver-flightsql, psycopg and deltalake (`.ci/run`
//! installs them).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use docstream::sinks::lake::Lake;
use docstream::storage::{parse_location, StorageOptions};

// Each bench uses some of the shared helpers.
#[allow(dead_code)]
mod common;
use common::lake::documents_and_chunks;
use common::{free_port, size, wait_for_port};

/// Chunks per document.
const PER_DOC: usize = 10;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> Result<()> {
    let rows = size("ROWS", 10_000_000);
    let tmp = tempfile::tempdir()?;
    let lake = std::env::var("DOORS_LAKE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("lake"));
    if !lake.join("chunks/_delta_log").exists() {
        let started = Instant::now();
        tokio::runtime::Runtime::new()?.block_on(build(&lake, rows))?;
        println!(
            "lake: {rows} chunks of {} documents written in {:.0} s",
            rows / PER_DOC,
            started.elapsed().as_secs_f64()
        );
    }
    // No limit of the server's gets in the way of a large result.
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("pipelines"))?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let default = std::fs::read_to_string(repo.join("pipelines/default.toml"))?;
    let pipeline = home.join("pipelines/doors.toml");
    std::fs::write(
        &pipeline,
        format!("{default}\n[serve]\nquery_timeout_s = 3600\nmax_concurrent_queries = 8\n"),
    )?;
    std::os::unix::fs::symlink(repo.join("sql"), home.join("sql"))?;
    let (http, flight, pg) = (free_port()?, free_port()?, free_port()?);
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_docstream"))
            .args(["serve", "--stages", "documents,chunks", "--pipeline"])
            .arg(&pipeline)
            .args(["--addr", &format!("127.0.0.1:{http}")])
            .args(["--flight-addr", &format!("127.0.0.1:{flight}")])
            .args(["--pg-addr", &format!("127.0.0.1:{pg}")])
            .arg("--lake")
            .arg(&lake)
            .stdout(Stdio::null())
            .spawn()?,
    );
    for port in [http, flight, pg] {
        wait_for_port(port)?;
    }
    let status = Command::new("python3")
        .arg(repo.join("benches/sql_doors.py"))
        .arg(&lake)
        .args([http, flight, pg].map(|p| p.to_string()))
        .arg(server.0.id().to_string())
        .status()
        .context("cannot run python3")?;
    anyhow::ensure!(status.success(), "benches/sql_doors.py failed: {status}");
    Ok(())
}

/// `rows` chunks and their documents.
async fn build(lake: &Path, rows: usize) -> Result<()> {
    let root = parse_location(lake.to_str().context("lake path")?)?;
    let mut lake = Lake::open(&root, &StorageOptions::default()).await?;
    let day0 = chrono::Utc::now().timestamp_micros() - 30 * 86_400_000_000;
    documents_and_chunks(&mut lake, rows / PER_DOC, PER_DOC, day0).await
}
