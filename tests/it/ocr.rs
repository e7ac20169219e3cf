//! OCR with the real Tesseract CLI on pages rendered from known text by
//! tests/fixtures/make_formats.py: images, and a PDF whose first page has a
//! text layer and whose other two are scans (one JPEG, one raw gray), and
//! a fax whose scan is CCITT Group 4.

use docstream::contract::failure::ErrorKind;
use docstream::extract::{extract, Format, Limits, OcrMode};

use crate::harness::{docstream, ok, query, repo, SPINE};

/// The words of each scanned page (make_formats.py's SCAN_PAGES).
const INVOICE: &str =
    "Invoice 20417 from Nordfrakt AB Freight from Gothenburg to Gdansk Total due 18,450 euros by 31 May";
const INSPECTION: &str =
    "Inspection report for crane four Hydraulic hose worn near the boom Replace before the next heavy lift";

fn scan(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/scans").join(name)).unwrap()
}

/// The share of `expected`'s words that OCR gave back.
fn recall(expected: &str, got: &str) -> f64 {
    let got: Vec<String> = got.split_whitespace().map(str::to_lowercase).collect();
    let words: Vec<&str> = expected.split_whitespace().collect();
    let found = words
        .iter()
        .filter(|w| got.contains(&w.to_lowercase()))
        .count();
    found as f64 / words.len() as f64
}

#[test]
fn images_are_read_by_ocr() {
    for (file, format, expected) in [
        ("invoice.png", Format::Png, INVOICE),
        ("invoice.tiff", Format::Tiff, INVOICE),
        ("inspection.jpg", Format::Jpeg, INSPECTION),
    ] {
        let x = extract(&scan(file), file, &Limits::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(x.format, format);
        let r = recall(expected, &x.text);
        assert!(r >= 0.95, "{file}: recall {r} in {:?}", x.text);
        let report = x.ocr.expect("an OCR report");
        assert_eq!(report.pages, [1]);
        assert!(report.confidence > 50.0, "{report:?}");
    }
}

#[test]
fn scanned_pdf_pages_are_read_and_numbered() {
    let x = extract(&scan("scanned.pdf"), "scanned.pdf", &Limits::default()).unwrap();
    assert!(
        x.text.starts_with("Cover letter for the freight"),
        "{:?}",
        x.text
    );
    // Pages are separated by form feeds, so chunks know their page.
    let pages: Vec<&str> = x.text.split('\u{c}').collect();
    assert_eq!(pages.len(), 3, "{:?}", x.text);
    assert!(pages[0].contains("Cover letter"), "{pages:?}");
    assert!(recall(INVOICE, pages[1]) >= 0.95, "{pages:?}");
    assert!(recall(INSPECTION, pages[2]) >= 0.95, "{pages:?}");
    assert_eq!(x.ocr.unwrap().pages, [2, 3]);

    let forced = Limits {
        ocr: OcrMode::Force,
        ..Limits::default()
    };
    let x = extract(&scan("scanned.pdf"), "scanned.pdf", &forced).unwrap();
    // Page 1 has no image: OCR has nothing to read there, its text stays.
    assert!(x.text.contains("Cover letter"));
    assert_eq!(x.ocr.unwrap().pages, [2, 3]);

    let off = Limits {
        ocr: OcrMode::Off,
        ..Limits::default()
    };
    let x = extract(&scan("scanned.pdf"), "scanned.pdf", &off).unwrap();
    assert!(!x.text.contains("Invoice"), "{:?}", x.text);
    assert!(x.ocr.is_none());
    let e = extract(&scan("invoice.png"), "invoice.png", &off).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.message.contains("ocr"), "{}", e.message);
}

#[test]
fn a_fax_scan_in_ccitt_group_4_is_read() {
    let x = extract(&scan("fax.pdf"), "fax.pdf", &Limits::default()).unwrap();
    let pages: Vec<&str> = x.text.split('\u{c}').collect();
    assert_eq!(pages.len(), 2, "{:?}", x.text);
    assert!(pages[0].contains("Fax cover sheet"), "{pages:?}");
    assert!(recall(INSPECTION, pages[1]) >= 0.95, "{pages:?}");
    assert_eq!(x.ocr.unwrap().pages, [2]);
}

#[test]
fn ocr_lands_with_its_confidence_and_a_missing_tesseract_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for file in ["scanned.pdf", "invoice.png"] {
        std::fs::write(src.join(file), scan(file)).unwrap();
    }
    let backfill = |lake: &std::path::Path, path: Option<&str>| {
        let mut cmd = docstream();
        cmd.arg("backfill")
            .arg(&src)
            .arg("--lake")
            .arg(lake)
            .args(SPINE)
            .args(["--set", "chunks.max_tokens=32", "--set", "chunks.overlap=0"]);
        if let Some(path) = path {
            cmd.env("PATH", path);
        }
        ok(cmd.output().unwrap())
    };

    let lake = tmp.path().join("lake");
    backfill(&lake, None);
    // Chunks know the pages of their words, scanned pages included.
    let chunks = query(
        lake.to_str().unwrap(),
        "SELECT c.text, c.page_start, c.page_end FROM chunks c JOIN documents d USING (doc_id) \
         WHERE d.source_uri LIKE '%.pdf' ORDER BY c.chunk_idx",
        &[],
    );
    assert!(chunks.len() >= 2, "{chunks:?}");
    for (word, page) in [("Cover", 1), ("20417", 2), ("Hydraulic", 3)] {
        let chunk = chunks
            .iter()
            .find(|c| c["text"].as_str().unwrap().contains(word))
            .unwrap_or_else(|| panic!("{word} in {chunks:?}"));
        let (first, last) = (chunk["page_start"].as_i64(), chunk["page_end"].as_i64());
        assert!(
            first <= Some(page) && Some(page) <= last,
            "{word} on page {page}: {chunk}"
        );
    }
    assert_eq!(chunks.last().unwrap()["page_end"], 3);
    let docs = query(
        lake.to_str().unwrap(),
        "SELECT source_uri, metadata FROM documents ORDER BY source_uri",
        &[],
    );
    assert_eq!(docs.len(), 2, "{docs:?}");
    for doc in &docs {
        let metadata: serde_json::Value =
            serde_json::from_str(doc["metadata"].as_str().unwrap()).unwrap();
        let pages = if doc["source_uri"].as_str().unwrap().ends_with(".pdf") {
            serde_json::json!([2, 3])
        } else {
            serde_json::json!([1])
        };
        assert_eq!(metadata["ocr"]["pages"], pages, "{metadata}");
        assert!(metadata["ocr"]["confidence"].as_f64().unwrap() > 50.0);
    }

    // Without tesseract on PATH: the PDF lands without its scanned pages and
    // a warning; the image, which is nothing but a scan, fails.
    let lake = tmp.path().join("lake-no-ocr");
    let out = backfill(&lake, Some("/nonexistent"));
    assert!(out.contains("1 landed (1 with warnings)"), "{out}");
    let failures = query(
        lake.to_str().unwrap(),
        "SELECT source_uri, error_kind, error FROM failures ORDER BY source_uri",
        &[],
    );
    assert_eq!(failures.len(), 2, "{failures:?}");
    for f in &failures {
        assert_eq!(f["error_kind"], "ocr_unavailable", "{f}");
        assert!(
            f["error"].as_str().unwrap().contains("tesseract-ocr"),
            "{f}"
        );
    }
    assert_eq!(
        crate::harness::count(lake.to_str().unwrap(), "SELECT count(*) FROM documents"),
        1
    );
}
