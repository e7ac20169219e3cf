//! Extraction in a child process (`docstream extract-worker`), so that a
//! timeout or a memory cap really stops it: Rust cannot kill a thread, the
//! kernel can kill a process. Requests and replies are length-prefixed
//! frames on the child's stdin and stdout; one child serves many documents.

use std::any::Any;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::{extract, EmailHeaders, ExtractError, Extracted, Format, Limits, Member, OcrReport};
use crate::contract::failure::ErrorKind;

/// The subcommand a worker runs as (hidden from `--help`).
pub const SUBCOMMAND: &str = "extract-worker";

/// No frame is larger: inputs are capped far below this.
const MAX_FRAME_BYTES: u64 = 4 << 30;

#[derive(Serialize, Deserialize)]
struct Request {
    name: String,
    limits: Limits,
}

/// A reply. The text of an extracted document follows as a raw frame, then
/// the bytes of each member that was read, one frame each.
#[derive(Serialize, Deserialize)]
enum Reply {
    Extracted {
        format: Format,
        title: Option<String>,
        invalid_utf8: usize,
        ocr: Option<OcrReport>,
        email: Option<Box<EmailHeaders>>,
        members: Vec<MemberHead>,
    },
    Failed {
        kind: ErrorKind,
        message: String,
    },
}

/// A member without its bytes: `refused` says why it was not read.
#[derive(Serialize, Deserialize)]
struct MemberHead {
    path: String,
    name: String,
    refused: Option<ExtractError>,
}

/// The worker side: serves requests from stdin until it closes. Allocations
/// past `max_memory_mb` fail, which aborts the process.
pub fn serve(max_memory_mb: u64) -> io::Result<()> {
    limit_memory(max_memory_mb)?;
    die_with_parent();
    let mut input = BufReader::new(io::stdin().lock());
    let mut output = BufWriter::new(io::stdout().lock());
    while let Some(header) = read_frame(&mut input)? {
        let request: Request = serde_json::from_slice(&header).map_err(io::Error::other)?;
        let bytes = read_frame(&mut input)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            extract(&bytes, &request.name, &request.limits)
        }))
        .unwrap_or_else(|panic| Err(ExtractError::crashed(&panic_message(&*panic))));
        drop(bytes);
        match result {
            Ok(x) => {
                let (heads, contents): (Vec<_>, Vec<_>) = x
                    .members
                    .into_iter()
                    .map(|m| {
                        let (refused, bytes) = match m.content {
                            Ok(bytes) => (None, Some(bytes)),
                            Err(e) => (Some(e), None),
                        };
                        let head = MemberHead {
                            path: m.path,
                            name: m.name,
                            refused,
                        };
                        (head, bytes)
                    })
                    .unzip();
                let reply = Reply::Extracted {
                    format: x.format,
                    title: x.title,
                    invalid_utf8: x.invalid_utf8,
                    ocr: x.ocr,
                    email: x.email,
                    members: heads,
                };
                write_frame(&mut output, &serde_json::to_vec(&reply)?)?;
                write_frame(&mut output, x.text.as_bytes())?;
                for bytes in contents.into_iter().flatten() {
                    write_frame(&mut output, &bytes)?;
                }
            }
            Err(e) => {
                let reply = Reply::Failed {
                    kind: e.kind,
                    message: e.message,
                };
                write_frame(&mut output, &serde_json::to_vec(&reply)?)?;
            }
        }
        output.flush()?;
    }
    Ok(())
}

/// What a panic carried, for the failure row.
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// The parent side: one running worker process.
pub struct Worker {
    /// Shared with [`Killer`], which may stop the child from another thread
    /// while this side blocks on its pipes.
    child: Arc<Mutex<Child>>,
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
}

/// Stops a worker from outside the thread that talks to it.
pub struct Killer(Arc<Mutex<Child>>);

impl Killer {
    /// Kills the child. A child already reaped is left alone, so a reused
    /// pid is never signalled.
    pub fn kill(&self) {
        let mut child = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = child.kill() {
            tracing::warn!(error = %e, "could not stop an extraction process");
        }
    }
}

/// How a worker's call ended when it did not reply.
#[derive(Debug)]
pub enum Died {
    /// The process aborted or was killed by the kernel: almost always an
    /// allocation past its memory cap.
    OutOfMemory,
    /// It ended some other way (or never started).
    Other(String),
}

impl Worker {
    /// Starts `program extract-worker` with an empty environment but PATH
    /// (to find tesseract): a hostile file that subverts a parser finds no
    /// credentials there.
    pub fn spawn(program: &Path, max_memory_mb: u64) -> io::Result<Self> {
        let mut command = Command::new(program);
        command
            .arg(SUBCOMMAND)
            .arg("--max-memory-mb")
            .arg(max_memory_mb.to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for kept in ["RUST_LOG", "PATH"] {
            if let Some(value) = std::env::var_os(kept) {
                command.env(kept, value);
            }
        }
        let mut child = command.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(io::Error::other("the worker's pipes were not set up"));
        };
        Ok(Self {
            child: Arc::new(Mutex::new(child)),
            input: BufWriter::new(stdin),
            output: BufReader::new(stdout),
        })
    }

    pub fn killer(&self) -> Killer {
        Killer(self.child.clone())
    }

    /// Extracts one document in the worker. Blocks; `Err` when the worker
    /// died (or was killed) before replying, after reaping it.
    pub fn call(
        &mut self,
        bytes: &[u8],
        name: &str,
        limits: &Limits,
    ) -> Result<Result<Extracted, ExtractError>, Died> {
        match self.exchange(bytes, name, limits) {
            Ok(result) => Ok(result),
            Err(e) => Err(self.reap(e)),
        }
    }

    fn exchange(
        &mut self,
        bytes: &[u8],
        name: &str,
        limits: &Limits,
    ) -> io::Result<Result<Extracted, ExtractError>> {
        let request = Request {
            name: name.to_string(),
            limits: limits.clone(),
        };
        write_frame(&mut self.input, &serde_json::to_vec(&request)?)?;
        write_frame(&mut self.input, bytes)?;
        self.input.flush()?;
        let header = read_frame(&mut self.output)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        Ok(match serde_json::from_slice(&header)? {
            Reply::Extracted {
                format,
                title,
                invalid_utf8,
                ocr,
                email,
                members,
            } => {
                let text = read_frame(&mut self.output)?.ok_or(io::ErrorKind::UnexpectedEof)?;
                let text = String::from_utf8(text).map_err(io::Error::other)?;
                let members = members
                    .into_iter()
                    .map(|head| {
                        let content = match head.refused {
                            Some(e) => Err(e),
                            None => Ok(read_frame(&mut self.output)?
                                .ok_or(io::ErrorKind::UnexpectedEof)?),
                        };
                        Ok(Member {
                            path: head.path,
                            name: head.name,
                            content,
                        })
                    })
                    .collect::<io::Result<_>>()?;
                Ok(Extracted {
                    format,
                    text,
                    title,
                    invalid_utf8,
                    ocr,
                    email,
                    members,
                })
            }
            Reply::Failed { kind, message } => Err(ExtractError::new(kind, message)),
        })
    }

    /// Waits for a worker whose pipe failed, and says how it ended.
    fn reap(&mut self, error: io::Error) -> Died {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        // A worker that is still alive broke the protocol: stop it first.
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        match child.wait() {
            Ok(status) if ended_for_memory(status) => Died::OutOfMemory,
            Ok(status) => Died::Other(format!("{status}; {error}")),
            Err(e) => Died::Other(format!("{error}; then {e}")),
        }
    }
}

/// A worker no longer needed (the pool closed, or its call was abandoned)
/// is stopped and reaped rather than left to finish a document.
impl Drop for Worker {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if child.kill().is_ok() {
            let _ = child.wait();
        }
    }
}

/// SIGABRT is how Rust ends a process whose allocation failed (the cap),
/// SIGKILL how the kernel's OOM killer does. Timeouts are told apart by the
/// caller, which sent that SIGKILL itself.
fn ended_for_memory(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    matches!(status.signal(), Some(libc::SIGABRT | libc::SIGKILL))
}

/// Caps the data segment and private mappings (the heap), not the mapped
/// binary, so the cap means what `max_memory_mb` says.
fn limit_memory(max_memory_mb: u64) -> io::Result<()> {
    let bytes = max_memory_mb.saturating_mul(1 << 20);
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit reads a valid, initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A helper a worker starts (tesseract) dies with the worker, so a worker
/// killed for its timeout leaves nothing running.
pub(super) fn stop_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs between fork and exec and only calls prctl,
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            die_with_parent();
            Ok(())
        });
    }
}

/// A worker whose parent died (killed, crashed) stops too, instead of
/// finishing a document nobody will read.
fn die_with_parent() {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    out.write_all(&(payload.len() as u64).to_le_bytes())?;
    out.write_all(payload)
}

/// The next frame, or `None` at a clean end of stream.
fn read_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 8];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u64::from_le_bytes(len);
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::other(format!("a frame of {len} bytes")));
    }
    let mut payload = Vec::new();
    input.take(len).read_to_end(&mut payload)?;
    if payload.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_cut_frame_is_an_error() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").unwrap();
        write_frame(&mut buf, b"").unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"");
        assert!(read_frame(&mut r).unwrap().is_none());
        let mut cut = &buf[..10];
        assert!(read_frame(&mut cut).is_err());
    }

    #[test]
    fn a_worker_that_is_not_one_is_reaped_with_its_reason() {
        // `true` exits at once without replying.
        let mut worker = Worker::spawn(Path::new("/bin/true"), 64).unwrap();
        let died = worker.call(b"x", "x.txt", &Limits::default()).unwrap_err();
        assert!(
            matches!(died, Died::Other(ref s) if s.contains("exit status: 0")),
            "{died:?}"
        );
    }
}
