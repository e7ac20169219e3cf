//! Helpers the benches share: sizes from the environment, folder sizes,
//! this process's peak memory, small status reports to ingest, and
//! synthetic table rows (`lake`).

pub mod lake;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

/// A size from environment variable `var`, else `default`.
pub fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        total += if entry.file_type()?.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(total)
}

/// Starts a new peak-memory measurement (Linux: resets VmHWM).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident memory since the last reset, in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The `i`th of many small, varied status reports.
pub fn status_report(i: usize) -> String {
    format!(
        "Status report {i}\n\nThe project {p} is on track. Budget spent: {b}%. \
         Risks: vendor delay on milestone {m}; owner team {t}.\n\n\
         Next steps: review the contract, update the plan, and report back by Friday.\n",
        p = i % 97,
        b = i % 100,
        m = i % 7,
        t = i % 13
    )
}

/// A TCP port free on loopback now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits up to two minutes for a server to listen on `port`.
pub fn wait_for_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A child process killed when dropped.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// tests/servers/fault_openai.py with `args` (64-dim embeddings); returns
/// it with its OpenAI base URL.
pub fn fault_server(args: &[&str]) -> Result<(Server, String)> {
    let port = free_port()?;
    let child = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/servers/fault_openai.py"
        ))
        .args(["--port", &port.to_string(), "--dims", "64"])
        .args(args)
        .spawn()?;
    let server = Server(child);
    wait_for_port(port)?;
    Ok((server, format!("http://127.0.0.1:{port}/v1")))
}
