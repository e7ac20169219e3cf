//! Extractions that run at once, each under the timeout: in worker
//! processes when the binary can serve them (the CLI), so a timed-out or
//! runaway extraction is killed and its memory returned; on blocking threads
//! otherwise (a library embedding docstream), where a timed-out extraction
//! runs on and keeps its slot until it ends. Small text files skip the
//! process round trip: their extraction is one linear pass.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinError;
use tokio::time::error::Elapsed;

use crate::contract::failure::ErrorKind;
use crate::extract::worker::{Died, Worker};
use crate::extract::{detect, extract, ExtractError, Extracted, Limits};

/// Text files up to this size extract on a thread even under process
/// isolation: a round trip costs more than the work (0.83× docs/s on
/// 200-byte files, `cargo bench --bench backfill`).
const SMALL_TEXT_BYTES: usize = 64 << 10;

/// Where extractions run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// On the tokio blocking pool, in this process.
    Thread,
    /// In `program extract-worker` processes (the docstream binary).
    Process(PathBuf),
}

/// How one extraction ended.
#[derive(Debug)]
pub enum Ended {
    Done(Result<Extracted, ExtractError>),
    TimedOut,
    OutOfMemory,
    /// The extractor panicked or its process died; a bug to report.
    Crashed(String),
}

impl Ended {
    /// The extraction's result, with each way it can be cut short as the
    /// error its failure row carries.
    pub fn into_result(self, limits: &Limits) -> Result<Extracted, ExtractError> {
        match self {
            Ended::Done(result) => result,
            Ended::TimedOut => Err(ExtractError::new(
                ErrorKind::Timeout,
                format!(
                    "extraction took longer than {}s (extract.timeout_secs)",
                    limits.timeout_secs
                ),
            )),
            Ended::OutOfMemory => Err(ExtractError::new(
                ErrorKind::MemoryLimit,
                format!(
                    "extraction needed more than {} MB of memory and was stopped; raise extract.max_memory_mb in the pipeline file if the file is legitimate",
                    limits.max_memory_mb
                ),
            )),
            Ended::Crashed(what) => Err(ExtractError::crashed(&what)),
        }
    }
}

pub struct ExtractPool {
    slots: Arc<Semaphore>,
    isolation: Isolation,
    /// Workers between documents, reused to spare a process start each.
    idle: Arc<Mutex<Vec<Worker>>>,
}

impl ExtractPool {
    pub fn new(slots: usize, isolation: Isolation) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            isolation,
            idle: Arc::default(),
        }
    }

    /// Extracts `bytes` once a slot is free; the wait for a slot does not
    /// count against `limits.timeout_secs`.
    pub async fn extract(&self, bytes: Bytes, name: String, limits: Limits) -> Ended {
        let timeout = limits.timeout();
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            return Ended::Crashed("the extraction pool was closed".into());
        };
        let small_text =
            || bytes.len() <= SMALL_TEXT_BYTES && detect(&bytes, &name).is_ok_and(|f| f.is_text());
        let program = match &self.isolation {
            Isolation::Process(program) if !small_text() => program,
            _ => {
                let work = move || extract(&bytes, &name, &limits);
                return match on_blocking_thread(permit, timeout, work).await {
                    Err(_) => Ended::TimedOut,
                    Ok(Err(panic)) => Ended::Crashed(panic.to_string()),
                    Ok(Ok(result)) => Ended::Done(result),
                };
            }
        };
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut worker = match idle.map_or_else(|| Worker::spawn(program, limits.max_memory_mb), Ok)
        {
            Ok(w) => w,
            Err(e) => {
                let msg = format!(
                    "could not start `{} extract-worker`: {e}",
                    program.display()
                );
                return Ended::Crashed(msg);
            }
        };
        let killer = worker.killer();
        let work = move || {
            let result = worker.call(&bytes, &name, &limits);
            (worker, result)
        };
        match on_blocking_thread(permit, timeout, work).await {
            Err(_) => {
                killer.kill();
                Ended::TimedOut
            }
            Ok(Err(panic)) => Ended::Crashed(panic.to_string()),
            Ok(Ok((worker, Ok(result)))) => {
                self.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(worker);
                Ended::Done(result)
            }
            Ok(Ok((_, Err(Died::OutOfMemory)))) => Ended::OutOfMemory,
            Ok(Ok((_, Err(Died::Other(why))))) => Ended::Crashed(why),
        }
    }
}

/// Runs `work` on a blocking thread that holds `slot` until it really ends,
/// so a timed-out thread still counts against the parallelism.
async fn on_blocking_thread<T: Send + 'static>(
    slot: OwnedSemaphorePermit,
    timeout: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<Result<T, JoinError>, Elapsed> {
    let job = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    });
    tokio::time::timeout(timeout, job).await
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use futures::FutureExt;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timed_out_thread_keeps_its_slot_until_it_ends() {
        let slots = Arc::new(Semaphore::new(1));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let slot = slots.clone().acquire_owned().await.unwrap();
        let stuck = on_blocking_thread(slot, Duration::ZERO, move || wait.recv().is_ok()).await;
        assert!(stuck.is_err(), "timed out");
        let mut next = Box::pin(slots.clone().acquire_owned());
        assert!(
            (&mut next).now_or_never().is_none(),
            "the stuck thread holds the slot"
        );
        release.send(()).unwrap();
        drop(next.await.unwrap());
    }

    /// Whether a process with exactly this command line runs.
    fn running(cmdline: &str) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
            std::fs::read(p.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == cmdline)
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timed_out_worker_process_is_killed_and_its_slot_freed() {
        let dir = tempfile::tempdir().unwrap();
        let hang = dir.path().join("hang");
        let seconds = format!("{}.{}", 900, std::process::id());
        std::fs::write(&hang, format!("#!/bin/sh\nexec /bin/sleep {seconds}\n")).unwrap();
        std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pool = ExtractPool::new(1, Isolation::Process(hang));
        let limits = Limits {
            timeout_secs: 1.0,
            ..Limits::default()
        };
        let sleeping = format!("/bin/sleep {seconds}");
        let ended = pool.extract(Bytes::from_static(b"%PDF-1.4"), "x.pdf".into(), limits);
        assert!(matches!(ended.await, Ended::TimedOut));
        // The slot comes back once the worker is gone and reaped.
        let slot =
            tokio::time::timeout(Duration::from_secs(60), pool.slots.clone().acquire_owned())
                .await
                .expect("the slot never came back: the worker was not killed")
                .unwrap();
        assert!(!running(&sleeping), "the worker still runs");
        drop(slot);
        assert!(
            pool.idle.lock().unwrap().is_empty(),
            "a killed worker is not reused"
        );
    }
}
