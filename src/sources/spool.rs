//! The upload spool: a write-ahead log where each accepted upload is
//! durable before the client hears "accepted", and stays until its
//! document version has landed.
//!
//! Uploads are appended as frames to segment files (`<seq>.log`):
//! magic, lengths, a CRC of the frame, the JSON record, then the bytes.
//! Uploads accepted at the same time share one sync of the segment (a
//! group commit), so durability costs about one disk flush per group,
//! not several per upload. A crash mid-append leaves a torn last frame,
//! which fails its CRC and is cut off on open; nothing after it was
//! acknowledged. A segment is deleted once every upload in it landed;
//! one that is replayed after a crash holds versions the lake already
//! has, which the lander skips. The job id is the document version
//! (doc_id plus the start of the content hash), so the same bytes under
//! the same name make one upload, however often they are sent.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

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
        Self::at(tenant, name, source_uri, bytes)
    }

    /// The upload of the object `uri`'s `bytes`: a version of the same
    /// document a backfill of its bucket lands.
    pub fn of_object(tenant: &str, uri: &str, bytes: &[u8]) -> Self {
        let name = clean_name(uri);
        Self::at(tenant, name, uri.to_string(), bytes)
    }

    fn at(tenant: &str, name: String, source_uri: String, bytes: &[u8]) -> Self {
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

/// Frames start with this, then the record's and the bytes' lengths and
/// the CRC-32 of both.
const MAGIC: &[u8; 4] = b"DSU1";
const FRAME_HEAD: usize = 4 + 4 + 8 + 4;
/// A segment takes no new frames past this size.
const SEGMENT_BYTES: u64 = 64 << 20;

pub struct Spool {
    dir: PathBuf,
    log: Mutex<Log>,
    syncs: GroupSync,
}

/// The segments and the uploads waiting in them.
struct Log {
    active: Segment,
    /// Roll to a new segment before the next append (the active one is
    /// empty of waiting uploads, or a write to it failed).
    roll: bool,
    /// Waiting uploads by acceptance order, and their order by job id.
    waiting: BTreeMap<u64, Entry>,
    by_job: HashMap<String, u64>,
    next_order: u64,
    /// Waiting uploads per segment; a segment at zero is deleted.
    live: BTreeMap<u64, usize>,
}

struct Segment {
    seq: u64,
    file: Arc<File>,
    len: u64,
}

struct Entry {
    upload: Upload,
    segment: u64,
    /// Where the bytes start in the segment.
    offset: u64,
    /// The group sync that makes it durable.
    ticket: u64,
}

/// Group commit: uploads accepted at the same time share their syncs.
/// Whoever finds no sync running syncs every segment written since the
/// last one, so 32 concurrent uploads cost about one flush.
#[derive(Default)]
struct GroupSync {
    group: Mutex<Group>,
    synced: Condvar,
}

#[derive(Default)]
struct Group {
    /// Segments appended to and not yet synced.
    unsynced: Vec<Arc<File>>,
    /// Tickets handed out, and the highest one synced.
    issued: u64,
    synced: u64,
    running: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GroupSync {
    /// A ticket for a write to `file`, for [`GroupSync::wait`].
    fn issue(&self, file: &Arc<File>) -> u64 {
        let mut g = lock(&self.group);
        if !g.unsynced.iter().any(|f| Arc::ptr_eq(f, file)) {
            g.unsynced.push(file.clone());
        }
        g.issued += 1;
        g.issued
    }

    fn synced(&self) -> u64 {
        lock(&self.group).synced
    }

    /// Returns once the write of `ticket` is on disk.
    fn wait(&self, ticket: u64) -> Result<()> {
        let mut g = lock(&self.group);
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
            let synced = files.iter().try_for_each(|f| f.sync_data());
            g = lock(&self.group);
            g.running = false;
            self.synced.notify_all();
            match synced {
                Ok(()) => g.synced = g.synced.max(upto),
                Err(e) => {
                    // The next caller syncs them again.
                    g.unsynced.extend(files);
                    return Err(e).context("cannot sync the upload spool");
                }
            }
        }
    }
}

impl Spool {
    /// Opens (creating) the spool at `dir`: reads every segment, cuts off a
    /// frame torn by a crash, and deletes segments with nothing waiting.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the upload spool {}", dir.display()))?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".json") {
                anyhow::bail!(
                    "{} holds uploads in the spool format of an earlier docstream; \
                     land them with that version, or start with an empty --spool",
                    dir.display()
                );
            }
            if let Some(seq) = name
                .strip_suffix(".log")
                .and_then(|s| s.parse::<u64>().ok())
            {
                segments.push(seq);
            }
        }
        segments.sort_unstable();
        let mut log = Log {
            active: Segment::create(dir, segments.last().map_or(0, |s| s + 1))?,
            roll: false,
            waiting: BTreeMap::new(),
            by_job: HashMap::new(),
            next_order: 0,
            live: BTreeMap::new(),
        };
        for seq in segments {
            log.live.insert(seq, 0);
            for (upload, offset) in read_segment(&segment_path(dir, seq))? {
                log.insert(upload, seq, offset, 0);
            }
        }
        log.live.insert(log.active.seq, 0);
        let empty: Vec<u64> = log
            .live
            .iter()
            .filter(|(s, n)| **n == 0 && **s != log.active.seq)
            .map(|(s, _)| *s)
            .collect();
        for seq in empty {
            log.live.remove(&seq);
            remove_segment(dir, seq)?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            log: Mutex::new(log),
            syncs: GroupSync::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Uploads waiting to land.
    pub fn waiting(&self) -> usize {
        lock(&self.log).waiting.len()
    }

    /// Makes `upload` durable with its bytes. Blocking: it syncs to disk.
    pub fn accept(&self, upload: &Upload, bytes: &[u8]) -> Result<Accepted> {
        let accepted = self.accept_all(&[(upload, bytes)])?;
        Ok(accepted.first().copied().unwrap_or(Accepted::Waiting))
    }

    /// Makes every upload durable with its bytes, sharing one sync.
    /// Blocking. A failed write leaves the ones before it accepted: a
    /// retry finds them waiting.
    pub fn accept_all(&self, uploads: &[(&Upload, &[u8])]) -> Result<Vec<Accepted>> {
        // Built before the lock, which every accept and the lander share.
        let frames = uploads
            .iter()
            .map(|(u, bytes)| frame(u, bytes))
            .collect::<Result<Vec<_>>>()?;
        let mut accepted = Vec::with_capacity(uploads.len());
        let mut last = 0;
        {
            let mut log = lock(&self.log);
            for ((upload, bytes), frame) in uploads.iter().zip(frames) {
                if let Some(e) = log.entry(&upload.job_id) {
                    last = last.max(e.ticket);
                    accepted.push(Accepted::Waiting);
                    continue;
                }
                let offset = log.append(&self.dir, &frame)?;
                let ticket = self.syncs.issue(&log.active.file);
                let seq = log.active.seq;
                let body = offset + (frame.len() - bytes.len()) as u64;
                log.insert((*upload).clone(), seq, body, ticket);
                last = ticket;
                accepted.push(Accepted::New);
            }
        }
        self.syncs.wait(last)?;
        Ok(accepted)
    }

    /// The oldest durable waiting uploads, up to `max_rows` and `max_bytes`
    /// (one at least, however large).
    pub fn batch(&self, max_rows: usize, max_bytes: u64) -> Vec<Upload> {
        let synced = self.syncs.synced();
        let log = lock(&self.log);
        let mut bytes = 0u64;
        let mut batch = Vec::new();
        for e in log.waiting.values().filter(|e| e.ticket <= synced) {
            let full =
                batch.len() >= max_rows.max(1) || bytes.saturating_add(e.upload.size) > max_bytes;
            if full && !batch.is_empty() {
                break;
            }
            bytes = bytes.saturating_add(e.upload.size);
            batch.push(e.upload.clone());
        }
        batch
    }

    /// Every waiting upload, oldest first.
    pub fn list(&self) -> Vec<Upload> {
        let log = lock(&self.log);
        log.waiting.values().map(|e| e.upload.clone()).collect()
    }

    /// The upload with this job id, if it is waiting.
    pub fn get(&self, job_id: &str) -> Option<Upload> {
        let log = lock(&self.log);
        Some(log.entry(job_id)?.upload.clone())
    }

    /// The upload's bytes. Bytes that are not the version the record names
    /// are an error.
    pub fn read(&self, upload: &Upload) -> Result<Bytes> {
        let (seq, offset) = {
            let log = lock(&self.log);
            let e = log
                .entry(&upload.job_id)
                .with_context(|| format!("upload {} is not in the spool", upload.job_id))?;
            (e.segment, e.offset)
        };
        let path = segment_path(&self.dir, seq);
        let mut bytes = vec![0; usize::try_from(upload.size)?];
        let mut f = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        anyhow::ensure!(
            content_hash(&bytes) == upload.content_hash,
            "{} does not hold the bytes its record names",
            path.display()
        );
        Ok(Bytes::from(bytes))
    }

    /// Drops a landed upload; its segment goes once nothing in it waits.
    pub fn remove(&self, upload: &Upload) -> Result<()> {
        let mut log = lock(&self.log);
        let Some(order) = log.by_job.remove(&upload.job_id) else {
            return Ok(());
        };
        let Some(entry) = log.waiting.remove(&order) else {
            return Ok(());
        };
        let live = log.live.entry(entry.segment).or_default();
        *live = live.saturating_sub(1);
        if *live > 0 {
            return Ok(());
        }
        if entry.segment == log.active.seq {
            log.roll = true;
            return Ok(());
        }
        log.live.remove(&entry.segment);
        remove_segment(&self.dir, entry.segment)
    }
}

impl Log {
    /// The waiting upload with this job id.
    fn entry(&self, job_id: &str) -> Option<&Entry> {
        self.waiting.get(self.by_job.get(job_id)?)
    }

    fn insert(&mut self, upload: Upload, segment: u64, offset: u64, ticket: u64) {
        if self.by_job.contains_key(&upload.job_id) {
            return;
        }
        *self.live.entry(segment).or_default() += 1;
        let order = self.next_order;
        self.next_order += 1;
        self.by_job.insert(upload.job_id.clone(), order);
        let entry = Entry {
            upload,
            segment,
            offset,
            ticket,
        };
        self.waiting.insert(order, entry);
    }

    /// Appends `frame` to the active segment (rolling first when it is
    /// full or done with); returns the frame's offset.
    fn append(&mut self, dir: &Path, frame: &[u8]) -> Result<u64> {
        if self.roll || self.active.len >= SEGMENT_BYTES {
            let next = Segment::create(dir, self.active.seq + 1)?;
            let old = std::mem::replace(&mut self.active, next);
            self.live.insert(self.active.seq, 0);
            self.roll = false;
            if self.live.get(&old.seq) == Some(&0) {
                self.live.remove(&old.seq);
                remove_segment(dir, old.seq)?;
            }
        }
        let offset = self.active.len;
        if let Err(e) = (&*self.active.file).write_all(frame) {
            // What was written is a torn frame: later frames go elsewhere.
            self.roll = true;
            return Err(e).context("cannot write to the upload spool");
        }
        self.active.len += frame.len() as u64;
        Ok(offset)
    }
}

impl Segment {
    /// A new, empty segment, its name durable in the folder.
    fn create(dir: &Path, seq: u64) -> Result<Self> {
        let path = segment_path(dir, seq);
        let file = File::options()
            .create_new(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        File::open(dir)?
            .sync_all()
            .with_context(|| format!("cannot sync the spool {}", dir.display()))?;
        Ok(Self {
            seq,
            file: Arc::new(file),
            len: 0,
        })
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:012}.log"))
}

fn remove_segment(dir: &Path, seq: u64) -> Result<()> {
    let path = segment_path(dir, seq);
    fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))
}

/// One upload as a frame: head, JSON record, bytes.
fn frame(upload: &Upload, bytes: &[u8]) -> Result<Vec<u8>> {
    let record = serde_json::to_vec(upload)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&record);
    crc.update(bytes);
    let mut frame = Vec::with_capacity(FRAME_HEAD + record.len() + bytes.len());
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&u32::try_from(record.len())?.to_le_bytes());
    frame.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    frame.extend_from_slice(&crc.finalize().to_le_bytes());
    frame.extend_from_slice(&record);
    frame.extend_from_slice(bytes);
    Ok(frame)
}

/// The whole frames of a segment with their bytes' offsets. The first
/// frame that is short or fails its CRC was torn by a crash before its
/// sync, so nothing from it on was acknowledged: it is cut off.
fn read_segment(path: &Path) -> Result<Vec<(Upload, u64)>> {
    let data = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut frames = Vec::new();
    let mut at = 0usize;
    while let Some((upload, body, end)) = parse_frame(&data, at) {
        frames.push((upload, body as u64));
        at = end;
    }
    if at < data.len() {
        tracing::warn!(path = %path.display(), at, "cutting off a torn upload frame");
        let f = File::options().write(true).open(path)?;
        f.set_len(at as u64)?;
        f.sync_all()?;
    }
    Ok(frames)
}

/// The frame at `at`: its record, where its bytes start, and where it ends.
fn parse_frame(data: &[u8], at: usize) -> Option<(Upload, usize, usize)> {
    let head = data.get(at..at.checked_add(FRAME_HEAD)?)?;
    if &head[..4] != MAGIC {
        return None;
    }
    let record_len = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    let body_len = usize::try_from(u64::from_le_bytes(head[8..16].try_into().ok()?)).ok()?;
    let crc = u32::from_le_bytes(head[16..20].try_into().ok()?);
    let body = at.checked_add(FRAME_HEAD)?.checked_add(record_len)?;
    let end = body.checked_add(body_len)?;
    let record = data.get(body - record_len..body)?;
    let bytes = data.get(body..end)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(record);
    hasher.update(bytes);
    if hasher.finalize() != crc {
        return None;
    }
    let upload = serde_json::from_slice(record).ok()?;
    Some((upload, body, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

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
        let listed = spool.batch(10, u64::MAX);
        assert_eq!(listed.len(), 1);
        assert_eq!(&spool.read(&listed[0]).unwrap()[..], b"hello");
        assert_eq!(
            parse_job_id(&a.job_id),
            Some((a.doc_id.as_str(), &a.content_hash[..16]))
        );
        assert!(parse_job_id("../../x").is_none());
        let mut forged = listed[0].clone();
        forged.content_hash = content_hash(b"hellO");
        assert!(
            spool.read(&forged).is_err(),
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
        assert_eq!(spool.batch(1000, u64::MAX).len(), 160);
        let reopened = Spool::open(dir.path()).unwrap();
        let batch = reopened.batch(1000, u64::MAX);
        assert_eq!(batch.len(), 160);
        for u in &batch {
            let bytes = reopened.read(u).unwrap();
            assert!(bytes.starts_with(b"upload "), "{bytes:?}");
        }
    }

    #[test]
    fn a_batch_of_uploads_is_durable_at_once_and_each_version_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let a = Upload::new("acme", "a.txt", b"alpha");
        let b = Upload::new("acme", "b.txt", b"beta");
        let accepted = spool
            .accept_all(&[(&a, b"alpha"), (&b, b"beta"), (&a, b"alpha")])
            .unwrap();
        assert_eq!(
            accepted,
            [Accepted::New, Accepted::New, Accepted::Waiting],
            "the same version twice is one upload"
        );
        let g = spool.syncs.group.lock().unwrap();
        assert_eq!((g.issued, g.synced), (2, 2));
        drop(g);
        let reopened = Spool::open(dir.path()).unwrap();
        let batch = reopened.batch(10, u64::MAX);
        let names: Vec<&str> = batch.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "b.txt"]);
        assert_eq!(&reopened.read(&batch[1]).unwrap()[..], b"beta");
    }

    #[test]
    fn a_torn_frame_is_cut_off_and_what_came_before_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let kept = Upload::new("acme", "a.md", b"# a");
        spool.accept(&kept, b"# a").unwrap();
        let torn = Upload::new("acme", "b.md", b"# b");
        spool.accept(&torn, b"# b").unwrap();
        drop(spool);
        // A crash in the middle of the second frame's write.
        let seg = dir.path().join(&files(dir.path())[0]);
        let len = fs::metadata(&seg).unwrap().len();
        let f = File::options().write(true).open(&seg).unwrap();
        f.set_len(len - 2).unwrap();
        drop(f);
        let spool = Spool::open(dir.path()).unwrap();
        let batch = spool.batch(10, u64::MAX);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].job_id, kept.job_id);
        assert_eq!(&spool.read(&batch[0]).unwrap()[..], b"# a");
        // New frames go to a new segment; the cut one holds only whole frames.
        let again = Upload::new("acme", "b.md", b"# b");
        assert_eq!(spool.accept(&again, b"# b").unwrap(), Accepted::New);
        assert_eq!(Spool::open(dir.path()).unwrap().waiting(), 2);
    }

    #[test]
    fn segments_go_once_everything_in_them_landed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let a = Upload::new("acme", "a.md", b"# a");
        let b = Upload::new("acme", "b.md", b"# b");
        spool.accept(&a, b"# a").unwrap();
        spool.accept(&b, b"# b").unwrap();
        assert_eq!(
            spool.batch(1, u64::MAX).len(),
            1,
            "batches close at max_rows"
        );
        assert_eq!(
            spool.batch(10, 4).len(),
            1,
            "and at max_bytes, one at least"
        );
        spool.remove(&a).unwrap();
        assert_eq!(spool.get(&a.job_id).map(|u| u.job_id), None);
        assert_eq!(spool.list().len(), 1);
        // Removal is not synced: a crash replays the segment, and the
        // lander skips what the lake holds.
        assert_eq!(Spool::open(dir.path()).unwrap().list().len(), 2);
        let spool = Spool::open(dir.path()).unwrap();
        spool.remove(&a).unwrap();
        spool.remove(&b).unwrap();
        assert_eq!(spool.waiting(), 0);
        // The next upload rolls to a new segment and the drained ones go.
        let c = Upload::new("acme", "c.md", b"# c");
        spool.accept(&c, b"# c").unwrap();
        assert_eq!(files(dir.path()).len(), 1, "{:?}", files(dir.path()));
        spool.remove(&c).unwrap();
        drop(spool);
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.waiting(), 1, "c's segment is replayed");
        spool.remove(&c).unwrap();
        assert_eq!(files(dir.path()).len(), 1, "only the new active segment");
        assert_eq!(clean_name("\u{7}"), "upload.txt");
        assert_eq!(clean_name(".."), "upload.txt");
    }
}
