//! Archives whose files land as child documents: zip, tar, and gzip (a
//! tarball or one compressed file). Nothing is written to disk, so a path
//! can only trick the child's id: a member whose path escapes the archive
//! is not read and gets its own failure row. Counts and decompressed bytes
//! are bounded over the whole archive.

use std::io::{self, Cursor, Read};

use flate2::read::MultiGzDecoder;
use zip::ZipArchive;

use super::{decompression_limit, too_large, ExtractError, Limits, Member, RawText};
use crate::contract::failure::ErrorKind;

pub(super) fn zip(bytes: &[u8], limits: &Limits) -> Result<(RawText, Vec<Member>), ExtractError> {
    let mut zip = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| corrupt(format!("a damaged zip archive (truncated?): {e}")))?;
    let mut members = Members::new(limits);
    for index in 0..zip.len() {
        let path = match zip.name_for_index(index) {
            Some(Ok(name)) => name.into_owned(),
            _ => return Err(corrupt(format!("zip member {index} has no readable name"))),
        };
        let mut file = match zip.by_index(index) {
            Ok(file) => file,
            Err(zip::result::ZipError::UnsupportedArchive(why)) => {
                members.refuse(&path, ErrorKind::Unsupported, why.to_string())?;
                continue;
            }
            Err(e) => return Err(corrupt(format!("a damaged zip member: {e}"))),
        };
        if file.is_dir() || file.is_symlink() {
            continue;
        }
        members.read(&path, &mut file)?;
    }
    Ok(members.finish("zip archive"))
}

pub(super) fn tar(bytes: &[u8], limits: &Limits) -> Result<(RawText, Vec<Member>), ExtractError> {
    let mut members = Members::new(limits);
    read_tar(bytes, &mut members)?;
    Ok(members.finish("tar archive"))
}

/// A gzip file holds a tarball or one compressed file (`report.pdf.gz`),
/// told apart by the tar magic in the first block.
pub(super) fn gzip(
    bytes: &[u8],
    name: &str,
    limits: &Limits,
) -> Result<(RawText, Vec<Member>), ExtractError> {
    let mut members = Members::new(limits);
    let budget = limits.max_decompressed_bytes;
    let mut inflated = Budgeted::new(MultiGzDecoder::new(bytes), budget);
    let mut head = Vec::with_capacity(512);
    (&mut inflated)
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| inflate_error(e, limits))?;
    let is_tar = head.get(257..262) == Some(b"ustar");
    let mut whole = Cursor::new(head).chain(inflated);
    if is_tar {
        read_tar(whole, &mut members)?;
        return Ok(members.finish("tar archive"));
    }
    let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let inner = file
        .strip_suffix(".gz")
        .or_else(|| file.strip_suffix(".GZ"))
        .filter(|s| !s.is_empty())
        .unwrap_or("content");
    members.read(inner, &mut whole)?;
    Ok(members.finish("gzip file"))
}

fn read_tar(reader: impl Read, members: &mut Members) -> Result<(), ExtractError> {
    let limits = members.limits.clone();
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| corrupt(format!("a damaged tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| tar_error(e, &limits))?;
        if !entry.header().entry_type().is_file() {
            // Directories, links and devices: nothing to read, and a link
            // must not be followed.
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        members.read(&path, &mut entry)?;
    }
    Ok(())
}

/// The members read so far, under the container's budgets.
pub(super) struct Members {
    limits: Limits,
    found: Vec<Member>,
    bytes_left: u64,
}

impl Members {
    pub(super) fn new(limits: &Limits) -> Self {
        Self {
            limits: limits.clone(),
            found: Vec::new(),
            bytes_left: limits.max_decompressed_bytes,
        }
    }

    fn count(&mut self) -> Result<(), ExtractError> {
        if self.found.len() as u64 >= self.limits.max_members {
            return Err(ExtractError::new(
                ErrorKind::TooLarge,
                format!(
                    "holds more than {} files (extract.max_members); split it or raise the limit in the pipeline file",
                    self.limits.max_members
                ),
            ));
        }
        Ok(())
    }

    /// A member already in memory (a message, an attachment).
    pub(super) fn add(
        &mut self,
        path: String,
        name: String,
        bytes: Vec<u8>,
    ) -> Result<(), ExtractError> {
        self.count()?;
        let size = bytes.len() as u64;
        if size > self.bytes_left {
            return Err(decompression_limit(&self.limits));
        }
        self.bytes_left -= size;
        let content = if size > self.limits.max_input_bytes {
            Err(too_large(size, &self.limits))
        } else {
            Ok(bytes)
        };
        self.found.push(Member {
            path,
            name,
            content,
        });
        Ok(())
    }

    pub(super) fn into_inner(self) -> Vec<Member> {
        self.found
    }

    /// A member that is not read, with the reason.
    fn refuse(&mut self, path: &str, kind: ErrorKind, why: String) -> Result<(), ExtractError> {
        self.count()?;
        self.found.push(Member {
            path: path.to_string(),
            name: path.to_string(),
            content: Err(ExtractError::new(kind, why)),
        });
        Ok(())
    }

    /// Reads a member's bytes: a member over `max_input_bytes` is refused
    /// alone; the archive fails once all members pass the decompression
    /// budget.
    fn read(&mut self, raw_path: &str, reader: &mut impl Read) -> Result<(), ExtractError> {
        let Some(path) = enclosed(raw_path) else {
            let why = format!("the member path {raw_path:?} escapes the archive (a zip-slip path); it was not read");
            return self.refuse(raw_path, ErrorKind::UnsafePath, why);
        };
        self.count()?;
        let cap = self.limits.max_input_bytes.min(self.bytes_left);
        let mut bytes = Vec::new();
        reader
            .take(cap.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| inflate_error(e, &self.limits))?;
        let read = bytes.len() as u64;
        if read > cap && cap == self.bytes_left {
            return Err(decompression_limit(&self.limits));
        }
        self.bytes_left -= read.min(self.bytes_left);
        let content = if read > cap {
            Err(too_large(read, &self.limits))
        } else {
            Ok(bytes)
        };
        self.found.push(Member {
            name: path.clone(),
            path,
            content,
        });
        Ok(())
    }

    /// The archive's own text lists its files, so it is found by their names.
    fn finish(self, what: &str) -> (RawText, Vec<Member>) {
        let mut text = format!("A {what} of {} files:\n\n", self.found.len());
        for member in &self.found {
            text.push_str("- ");
            text.push_str(&member.path);
            text.push('\n');
        }
        if self.found.is_empty() {
            text.clear();
        }
        (RawText { text, title: None }, self.found)
    }
}

/// The member's path relative to the archive root, or `None` when it is
/// absolute or climbs out with `..`. `./` and empty segments are dropped.
fn enclosed(raw: &str) -> Option<String> {
    let unified = raw.replace('\\', "/");
    if unified.starts_with('/') || unified.contains('\0') || unified.get(1..2) == Some(":") {
        return None;
    }
    let mut parts = Vec::new();
    for part in unified.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A reader that fails once more than `left` bytes came out of it.
struct Budgeted<R> {
    inner: R,
    left: u64,
}

/// The io error a [`Budgeted`] reader fails with.
const OVER_BUDGET: &str = "decompression budget spent";

impl<R> Budgeted<R> {
    fn new(inner: R, left: u64) -> Self {
        Self { inner, left }
    }
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self
            .left
            .checked_sub(n as u64)
            .ok_or_else(|| io::Error::other(OVER_BUDGET))?;
        Ok(n)
    }
}

fn inflate_error(e: io::Error, limits: &Limits) -> ExtractError {
    if e.to_string() == OVER_BUDGET {
        return decompression_limit(limits);
    }
    corrupt(format!("the compressed data is damaged: {e}"))
}

fn tar_error(e: io::Error, limits: &Limits) -> ExtractError {
    match inflate_error(e, limits) {
        e if e.kind == ErrorKind::DecompressionLimit => e,
        e => corrupt(format!("a damaged tar archive (truncated?): {}", e.message)),
    }
}

fn corrupt(message: String) -> ExtractError {
    ExtractError::new(ErrorKind::Corrupt, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_escape_are_refused() {
        assert_eq!(enclosed("docs/./a.txt").as_deref(), Some("docs/a.txt"));
        assert_eq!(enclosed("docs\\b.txt").as_deref(), Some("docs/b.txt"));
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "C:\\w",
            "a/..",
            "",
            "./",
        ] {
            assert_eq!(enclosed(bad), None, "{bad}");
        }
    }
}
