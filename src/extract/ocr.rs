//! OCR through Tesseract's command line (Debian's `tesseract-ocr`). The CLI
//! rather than a binding: it needs no libtesseract headers at build time, a
//! missing install is a plain "not found" at run time (the `auto` mode's
//! warning), and a crash in it cannot take the extraction worker down.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::{ExtractError, Limits, RawText};
use crate::contract::failure::ErrorKind;

/// `[extract] ocr`: when pages and images are read by OCR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OcrMode {
    /// PDF pages without a text layer, and images; without Tesseract they
    /// are skipped with an `ocr_unavailable` warning.
    #[default]
    Auto,
    /// Never; images fail as `unsupported`.
    Off,
    /// Every PDF page, replacing its text layer, and images; without
    /// Tesseract the document fails.
    Force,
}

/// What OCR read in one document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcrReport {
    /// Pages read by OCR (1 for an image).
    pub pages: Vec<u32>,
    /// Mean word confidence, 0 to 100, as Tesseract reports it.
    pub confidence: f32,
    /// Pages that needed OCR and were left out because Tesseract is missing.
    pub skipped: Vec<u32>,
}

/// An image document (png, jpeg, tiff): its text is what OCR reads.
pub(super) fn image(bytes: &[u8], limits: &Limits) -> Result<(RawText, OcrReport), ExtractError> {
    if limits.ocr == OcrMode::Off {
        return Err(ExtractError::new(
            ErrorKind::Unsupported,
            "an image, and OCR is off; set [extract] ocr = \"auto\" in the pipeline file to read it",
        ));
    }
    let read = recognize(bytes, &limits.ocr_languages.join("+"))?;
    let report = OcrReport {
        pages: vec![1],
        confidence: read.mean_confidence(),
        skipped: Vec::new(),
    };
    Ok((
        RawText {
            text: read.text,
            title: None,
        },
        report,
    ))
}

/// Text read from one image.
#[derive(Default)]
pub(super) struct Recognized {
    pub text: String,
    pub confidence_sum: f64,
    pub words: usize,
}

impl Recognized {
    pub fn mean_confidence(&self) -> f32 {
        if self.words == 0 {
            0.0
        } else {
            (self.confidence_sum / self.words as f64) as f32
        }
    }
}

/// Runs `tesseract` on an image (png, jpeg, tiff, pnm) with the languages
/// `languages` (`eng+deu`). `OcrUnavailable` when it is not installed.
pub(super) fn recognize(image: &[u8], languages: &str) -> Result<Recognized, ExtractError> {
    let mut command = Command::new("tesseract");
    command
        .args(["stdin", "stdout", "-l", languages, "tsv"])
        // One thread: the pool already runs one extraction per core.
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    super::worker::stop_with_parent(&mut command);
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            unavailable()
        } else {
            ExtractError::new(ErrorKind::Internal, format!("cannot start tesseract: {e}"))
        }
    })?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ExtractError::new(
            ErrorKind::Internal,
            "tesseract's pipes were not set up",
        ));
    };
    let (tsv, errors) = std::thread::scope(|scope| {
        // Tesseract reads all of stdin before it writes; a writer thread
        // keeps a large image from filling both pipes.
        scope.spawn(move || stdin.write_all(image));
        let errors = scope.spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut tsv = String::new();
        let _ = stdout.read_to_string(&mut tsv);
        (tsv, errors.join().unwrap_or_default())
    });
    let status = child
        .wait()
        .map_err(|e| ExtractError::new(ErrorKind::Internal, format!("tesseract: {e}")))?;
    if !status.success() {
        let reason = errors
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(ExtractError::new(
            ErrorKind::Corrupt,
            format!("tesseract could not read the image ({status}): {reason}"),
        ));
    }
    Ok(parse_tsv(&tsv))
}

pub(super) fn unavailable() -> ExtractError {
    ExtractError::new(
        ErrorKind::OcrUnavailable,
        "this needs OCR and tesseract is not installed; install Debian's tesseract-ocr (and a tesseract-ocr-<lang> package per language), or set [extract] ocr = \"off\"",
    )
}

/// Words from Tesseract's TSV, one line per text line and a blank line
/// between paragraphs, with their confidences.
fn parse_tsv(tsv: &str) -> Recognized {
    let mut out = Recognized::default();
    let mut last: Option<(&str, &str, &str, &str)> = None;
    for line in tsv.lines().skip(1) {
        let fields: Vec<&str> = line.splitn(12, '\t').collect();
        let [level, page, block, par, line_num, _, _, _, _, _, conf, word] = fields[..] else {
            continue;
        };
        let Ok(conf) = conf.trim().parse::<f64>() else {
            continue;
        };
        if level != "5" || conf < 0.0 || word.trim().is_empty() {
            continue;
        }
        let here = (page, block, par, line_num);
        match last {
            Some(prev) if prev == here => out.text.push(' '),
            Some(prev) if (prev.0, prev.1, prev.2) == (here.0, here.1, here.2) => {
                out.text.push('\n')
            }
            Some(_) => out.text.push_str("\n\n"),
            None => {}
        }
        last = Some(here);
        out.text.push_str(word.trim());
        out.confidence_sum += conf;
        out.words += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_words_become_lines_and_paragraphs() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
            1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\n\
            5\t1\t1\t1\t1\t1\t0\t0\t9\t9\t96.5\tInvoice\n\
            5\t1\t1\t1\t1\t2\t0\t0\t9\t9\t90\t42\n\
            5\t1\t1\t1\t2\t1\t0\t0\t9\t9\t80\tDue\n\
            5\t1\t2\t1\t1\t1\t0\t0\t9\t9\t70.5\tTotal\n";
        let r = parse_tsv(tsv);
        assert_eq!(r.text, "Invoice 42\nDue\n\nTotal");
        assert_eq!(r.words, 4);
        assert!((r.confidence_sum - 337.0).abs() < 1e-9);
    }
}
