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
        write_synced(&self.path(&upload.job_id, "bin"), bytes)?;
        write_synced(&record, &serde_json::to_vec(upload)?)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync the spool {}", self.dir.display()))?;
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

    pub fn read(&self, upload: &Upload) -> Result<Bytes> {
        let path = self.path(&upload.job_id, "bin");
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
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

/// Writes `bytes` to a temporary file, syncs it and renames it to `path`.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut f = File::create(&tmp)
        .with_context(|| format!("cannot write to the spool: {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
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
