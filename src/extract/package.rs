//! Zip-packaged formats (OOXML, OpenDocument, EPUB): parts read under one
//! decompression budget per document, since every one of them is a zip and
//! zip bombs are real, and OOXML relationships resolved inside the package.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use super::xml::{self, Node};
use super::{decompression_limit, ExtractError, Limits};
use crate::contract::failure::ErrorKind;

/// A document package has dozens of parts; thousands is a hostile archive.
const MAX_ENTRIES: usize = 10_000;

pub(super) struct Package<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    /// Decompressed bytes this document may still read.
    budget: u64,
    limits: &'a Limits,
}

impl<'a> Package<'a> {
    pub fn open(bytes: &'a [u8], limits: &'a Limits) -> Result<Self, ExtractError> {
        let zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
            ExtractError::new(ErrorKind::Corrupt, format!("not a readable zip: {e}"))
        })?;
        if zip.len() > MAX_ENTRIES {
            return Err(ExtractError::new(
                ErrorKind::Corrupt,
                format!(
                    "the zip has {} entries, more than a document package ever needs",
                    zip.len()
                ),
            ));
        }
        Ok(Self {
            zip,
            budget: limits.max_decompressed_bytes,
            limits,
        })
    }

    pub fn limits(&self) -> &'a Limits {
        self.limits
    }

    /// `dc:title` from OOXML's `docProps/core.xml`, when there is one.
    pub fn core_title(&mut self) -> Option<String> {
        let core = self.read("docProps/core.xml").ok().flatten()?;
        xml::text_of(&core, "title", self.limits)
    }

    /// Reads one part, charging its real decompressed size against the
    /// budget. `None` when the package has no such part.
    pub fn read(&mut self, name: &str) -> Result<Option<String>, ExtractError> {
        let file = match self.zip.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => {
                return Err(ExtractError::new(
                    ErrorKind::Corrupt,
                    format!("cannot open {name}: {e}"),
                ))
            }
        };
        // The declared size can lie, so the read itself is capped too.
        if file.size() > self.budget {
            return Err(decompression_limit(self.limits));
        }
        let mut out = Vec::new();
        file.take(self.budget + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                ExtractError::new(ErrorKind::Corrupt, format!("cannot inflate {name}: {e}"))
            })?;
        if out.len() as u64 > self.budget {
            return Err(decompression_limit(self.limits));
        }
        self.budget -= out.len() as u64;
        let out = out
            .strip_prefix(b"\xef\xbb\xbf")
            .map(<[u8]>::to_vec)
            .unwrap_or(out);
        String::from_utf8(out)
            .map(Some)
            .map_err(|_| ExtractError::new(ErrorKind::Corrupt, format!("{name} is not UTF-8")))
    }

    /// Reads a part the format cannot do without.
    pub fn require(&mut self, name: &str, format: &str) -> Result<String, ExtractError> {
        self.read(name)?.ok_or_else(|| {
            ExtractError::new(
                ErrorKind::Corrupt,
                format!("the {format} has no {name} (truncated or damaged?)"),
            )
        })
    }

    /// The OOXML relationships of `part`, from `<dir>/_rels/<file>.rels`,
    /// with targets resolved to part names. External targets and targets
    /// that climb out of the package are dropped.
    pub fn relationships(&mut self, part: &str) -> Result<Vec<Relationship>, ExtractError> {
        let (dir, file) = part.rsplit_once('/').unwrap_or(("", part));
        let rels_part = if dir.is_empty() {
            format!("_rels/{file}.rels")
        } else {
            format!("{dir}/_rels/{file}.rels")
        };
        let Some(rels) = self.read(&rels_part)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        xml::walk(&rels, &rels_part, self.limits, |node| {
            if let Node::Open(e) | Node::Empty(e) = node {
                if xml::local(e) != "Relationship"
                    || xml::attr(e, "TargetMode").is_some_and(|m| m == "External")
                {
                    return Ok(());
                }
                let (Some(id), Some(kind), Some(target)) = (
                    xml::attr(e, "Id"),
                    xml::attr(e, "Type"),
                    xml::attr(e, "Target"),
                ) else {
                    return Ok(());
                };
                if let Some(target) = resolve(dir, &target) {
                    let kind = kind.rsplit('/').next().unwrap_or_default().to_string();
                    out.push(Relationship { id, kind, target });
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// One OOXML relationship: `kind` is the last segment of its type URI
/// (`slide`, `notesSlide`, `worksheet`, ...).
pub(super) struct Relationship {
    pub id: String,
    pub kind: String,
    pub target: String,
}

/// Resolves `target` against the folder `dir` into a part name, or `None`
/// when it leaves the package (`..` above the root, a URL).
pub(super) fn resolve(dir: &str, target: &str) -> Option<String> {
    if target.contains("://") {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    let (start, rest) = match target.strip_prefix('/') {
        Some(absolute) => ("", absolute),
        None => (dir, target),
    };
    for segment in start.split('/').chain(rest.split('/')) {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/")).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve_inside_the_package_only() {
        assert_eq!(
            resolve("ppt", "slides/slide1.xml").as_deref(),
            Some("ppt/slides/slide1.xml")
        );
        assert_eq!(
            resolve("ppt/slides", "../notesSlides/notesSlide1.xml").as_deref(),
            Some("ppt/notesSlides/notesSlide1.xml")
        );
        assert_eq!(
            resolve("xl", "/xl/worksheets/sheet1.xml").as_deref(),
            Some("xl/worksheets/sheet1.xml")
        );
        assert_eq!(resolve("ppt", "../../etc/passwd"), None);
        assert_eq!(resolve("ppt", "https://example.com/x.xml"), None);
    }
}
