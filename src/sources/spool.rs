//! The upload spool: a folder where each accepted upload is durable
//! (written, synced and renamed into place) before the client hears
//! "accepted", and stays until its document version has landed.
//!
//! An upload is two files named by its job id: `<id>.bin` (the bytes),
//! then `<id>.json` (the record). The record's rename is the commit
//! point, so a crash leaves either a whole upload or leftovers that
//! `open` removes. The job id is the document version (doc_id plus the
//! start of the content hash), so the same bytes under the same name make
//! one upload, however often they are sent.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::identity::{content_hash, doc_id};

/// Hex digits of the content hash in a job id.
const HASH_PREFIX: usize = 16;
/// Hex digits of a doc id.
const DOC_ID_LEN: usize = 32;
/// Characters of an upload's name kept (its end, where the extension is).
const MAX_NAME_CHARS: usize = 200;

/// An accepted upload, as recorded in the spool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Upload {
    pub job_id: String,
    pub doc_id: String,
    pub content_hash: String,
    pub tenant: String,
    /// The file's name, which extraction detects the format from.
    pub name: String,
    pub source_uri: String,
    pub title: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub received_at: DateTime<Utc>,
    pub size: u64,
}

impl Upload {
    /// The upload of `bytes` named `name` by `tenant`. Its source URI is
    /// `upload://<tenant>/<name>`, so a new upload under the same name is
    /// a new version of the same document.
    pub fn new(tenant: &str, name: &str, bytes: &[u8]) -> Self {
        let name = clean_name(name);
        let source_uri = format!("upload://{tenant}/{name}");
        let doc_id = doc_id(&source_uri);
        let content_hash = content_hash(bytes);
        Self {
            job_id: job_id(&doc_id, &content_hash),
            doc_id,
            content_hash,
            tenant: tenant.to_string(),
            name,
            source_uri,
            title: None,
            metadata: serde_json::Map::new(),
            received_at: Utc::now(),
            size: bytes.len() as u64,
        }
    }
}

/// The job id of a document version.
pub fn job_id(doc_id: &str, content_hash: &str) -> String {
    let n = HASH_PREFIX.min(content_hash.len());
    format!("{doc_id}{}", &content_hash[..n])
}

/// The doc id and content-hash prefix a job id names, if it is one.
pub fn parse_job_id(job_id: &str) -> Option<(&str, &str)> {
    let valid = job_id.len() == DOC_ID_LEN + HASH_PREFIX
        && job_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    valid.then(|| job_id.split_at(DOC_ID_LEN))
}

/// A file name without folders or control characters, never empty, and
/// at most [`MAX_NAME_CHARS`] long (the end kept, for the extension).
fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    let n = clean.chars().count();
    let kept: String = clean
        .chars()
        .skip(n.saturating_sub(MAX_NAME_CHARS))
        .collect();
    match kept.trim_start_matches('.') {
        "" => "upload.txt".to_string(),
        _ => kept,
    }
}

/// Whether an accepted upload was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New,
    /// The same version was already waiting.
    Waiting,
}

pub struct Spool {
    dir: PathBuf,
    waiting: AtomicUsize,
    syncs: GroupSync,
}

/// Group commit: uploads accepted at the same time share their syncs.
/// Whoever finds no sync running syncs every file written so far and the
/// folder once, so 32 concurrent uploads cost about one journal commit,
/// not two each.
#[derive(Default)]
struct GroupSync {
    group: Mutex<Group>,
    synced: Condvar,
}

#[derive(Default)]
struct Group {
    /// Files written and renamed into place, not yet synced.
    unsynced: Vec<PathBuf>,
    /// Tickets handed out, and the highest one synced.
    issued: u64,
    synced: u64,
    running: bool,
}

fn lock(m: &Mutex<Group>) -> MutexGuard<'_, Group> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GroupSync {
    /// Returns once `files` (and the folder's entries for them) are on disk.
    fn sync(&self, dir: &Path, files: [PathBuf; 2]) -> Result<()> {
        let mut g = lock(&self.group);
        g.unsynced.extend(files);
        g.issued += 1;
        let ticket = g.issued;
        loop {
            if g.synced >= ticket {
                return Ok(());
            }
            if g.running {
                g = self.synced.wait(g).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            g.running = true;
            let files = std::mem::take(&mut g.unsynced);
            let upto = g.issued;
            drop(g);
            let synced = files
                .iter()
                .try_for_each(|f| File::open(f)?.sync_all())
                .and_then(|()| File::open(dir)?.sync_all());
            g = lock(&self.group);
            g.running = false;
            self.synced.notify_all();
            match synced {
                Ok(()) => g.synced = g.synced.max(upto),
                Err(e) => {
                    // The next caller syncs them again.
                    g.unsynced.extend(files);
                    return Err(e)
                        .with_context(|| format!("cannot sync the spool {}", dir.display()));
                }
            }
        }
    }
}

impl Spool {
    /// Opens (creating) the spool at `dir`, removing what a crash left
    /// half-written.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the upload spool {}", dir.display()))?;
        let mut waiting = 0;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let orphan = ext == "bin" && !path.with_extension("json").exists();
            if ext == "tmp" || orphan {
                fs::remove_file(&path)
                    .with_context(|| format!("cannot clean up {}", path.display()))?;
            }
            waiting += usize::from(ext == "json");
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            waiting: AtomicUsize::new(waiting),
            syncs: GroupSync::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Uploads waiting to land.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Makes `upload` durable with its bytes. Blocking: it syncs to disk.
    pub fn accept(&self, upload: &Upload, bytes: &[u8]) -> Result<Accepted> {
        let record = self.path(&upload.job_id, "json");
        if record.exists() {
            return Ok(Accepted::Waiting);
        }
        let bin = self.path(&upload.job_id, "bin");
        write_renamed(&bin, bytes)?;
        write_renamed(&record, &serde_json::to_vec(upload)?)?;
        self.syncs.sync(&self.dir, [bin, record])?;
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Ok(Accepted::New)
    }

    /// Every waiting upload, oldest first. A record that cannot be read
    /// is logged and left where it is, for a person to look at.
    pub fn list(&self) -> Result<Vec<Upload>> {
        let mut uploads = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let parsed = fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice::<Upload>(&b)?));
            match parsed {
                Ok(u) => uploads.push(u),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "unreadable upload record; left in the spool")
                }
            }
        }
        uploads.sort_by(|a, b| (a.received_at, &a.job_id).cmp(&(b.received_at, &b.job_id)));
        Ok(uploads)
    }

    /// The upload with this job id, if it is waiting.
    pub fn get(&self, job_id: &str) -> Option<Upload> {
        parse_job_id(job_id)?;
        let bytes = fs::read(self.path(job_id, "json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The upload's bytes. Bytes that are not the version the record names
    /// (a power cut before their sync, so no 202 was sent) are an error.
    pub fn read(&self, upload: &Upload) -> Result<Bytes> {
        let path = self.path(&upload.job_id, "bin");
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if content_hash(&bytes) != upload.content_hash {
            anyhow::bail!(
                "{} does not hold the bytes its record names",
                path.display()
            );
        }
        Ok(Bytes::from(bytes))
    }

    /// Drops a landed upload: the record first, so a crash leaves at
    /// most an orphan that `open` removes.
    pub fn remove(&self, upload: &Upload) -> Result<()> {
        let record = self.path(&upload.job_id, "json");
        if record.exists() {
            fs::remove_file(&record)?;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        let bin = self.path(&upload.job_id, "bin");
        if bin.exists() {
            fs::remove_file(bin)?;
        }
        Ok(())
    }

    fn path(&self, job_id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{job_id}.{ext}"))
    }
}

/// Writes `bytes` to a temporary file and renames it to `path`; the
/// caller syncs it.
fn write_renamed(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut f = File::create(&tmp)
        .with_context(|| format!("cannot write to the spool: {}", tmp.display()))?;
    f.write_all(bytes)?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_same_name_is_one_upload() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let a = Upload::new("acme", "../../etc/contract.txt", b"hello");
        assert_eq!(a.name, "contract.txt");
        assert_eq!(a.source_uri, "upload://acme/contract.txt");
        assert_eq!(spool.accept(&a, b"hello").unwrap(), Accepted::New);
        let again = Upload::new("acme", "contract.txt", b"hello");
        assert_eq!(again.job_id, a.job_id);
        assert_eq!(spool.accept(&again, b"hello").unwrap(), Accepted::Waiting);
        let other = Upload::new("globex", "contract.txt", b"hello");
        assert_ne!(other.job_id, a.job_id, "tenants never share a document");
        assert_eq!(spool.waiting(), 1);
        let listed = spool.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(&spool.read(&listed[0]).unwrap()[..], b"hello");
        assert_eq!(
            parse_job_id(&a.job_id),
            Some((a.doc_id.as_str(), &a.content_hash[..16]))
        );
        assert!(parse_job_id("../../x").is_none());
        fs::write(dir.path().join(format!("{}.bin", a.job_id)), b"hellO").unwrap();
        assert!(
            spool.read(&listed[0]).is_err(),
            "bytes that are not the version"
        );
    }

    #[test]
    fn concurrent_uploads_share_syncs_and_all_become_durable() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let spool = &spool;
                s.spawn(move || {
                    for i in 0..20 {
                        let bytes = format!("upload {t}-{i}");
                        let u = Upload::new("acme", &format!("{t}-{i}.txt"), bytes.as_bytes());
                        assert_eq!(spool.accept(&u, bytes.as_bytes()).unwrap(), Accepted::New);
                    }
                });
            }
        });
        let g = spool.syncs.group.lock().unwrap();
        assert_eq!((g.issued, g.synced), (160, 160));
        assert!(g.unsynced.is_empty() && !g.running);
        drop(g);
        assert_eq!(Spool::open(dir.path()).unwrap().list().unwrap().len(), 160);
    }

    #[test]
    fn reopening_keeps_whole_uploads_and_drops_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let kept = Upload::new("acme", "a.md", b"# a");
        spool.accept(&kept, b"# a").unwrap();
        // A crash between the two renames, and one inside a write.
        fs::write(dir.path().join("0123.bin"), b"half").unwrap();
        fs::write(dir.path().join("0123.bin.abc.tmp"), b"half").unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.waiting(), 1);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        spool.remove(&kept).unwrap();
        assert_eq!(spool.waiting(), 0);
        assert!(spool.list().unwrap().is_empty());
        assert_eq!(clean_name("\u{7}"), "upload.txt");
        assert_eq!(clean_name(".."), "upload.txt");
    }
}
