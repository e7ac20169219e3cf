//! Extraction per format, on the shipped samples and hostile fixtures.

use docstream::contract::failure::ErrorKind;
use docstream::extract::{extract, Format, Limits};

use crate::harness::{backfill, docstream, ok, repo};

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("samples").join(name)).unwrap()
}

fn hostile(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/hostile").join(name)).unwrap()
}

#[test]
fn every_format_extracts_its_text() {
    let limits = Limits::default();
    let cases = [
        (
            "project-atlas-status.md",
            Format::Markdown,
            "budget overrun",
        ),
        (
            "vendor-contract-review.html",
            Format::Html,
            "ninety days' notice",
        ),
        (
            "security-incident-2024-03.txt",
            Format::Text,
            "expired TLS certificate",
        ),
        ("board-minutes-q3.docx", Format::Docx, "2.4 million euros"),
        ("data-migration-plan.pdf", Format::Pdf, "freeze window"),
    ];
    for (file, format, phrase) in cases {
        let x = extract(&sample(file), file, &limits).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(x.format, format, "{file}");
        let flat = x.text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(phrase), "{file}: {phrase:?} not in {flat:?}");
        assert!(x.title.is_some(), "{file}");
        assert_eq!(x.invalid_utf8, 0);
    }
}

#[test]
fn format_comes_from_magic_bytes_not_the_name() {
    let pdf = sample("data-migration-plan.pdf");
    assert_eq!(
        extract(&pdf, "misnamed.txt", &Limits::default())
            .unwrap()
            .format,
        Format::Pdf
    );
    let docx = sample("board-minutes-q3.docx");
    assert_eq!(
        extract(&docx, "noext", &Limits::default()).unwrap().format,
        Format::Docx
    );
}

#[test]
fn hostile_inputs_fail_cleanly() {
    let limits = Limits::default();
    let kind = |name: &str| extract(&hostile(name), name, &limits).unwrap_err().kind;
    assert_eq!(kind("truncated.pdf"), ErrorKind::Corrupt);
    assert_eq!(kind("random-bytes.pdf"), ErrorKind::Corrupt);
    assert_eq!(kind("zip-bomb.docx"), ErrorKind::DecompressionLimit);
    assert_eq!(kind("deep.html"), ErrorKind::TooDeep);
    assert_eq!(kind("empty.txt"), ErrorKind::Empty);

    let lossy = extract(&hostile("invalid-utf8.txt"), "invalid-utf8.txt", &limits).unwrap();
    assert_eq!(lossy.invalid_utf8, 3);
    assert!(lossy.text.contains("real words"));
}

#[test]
fn size_guard_applies_before_parsing() {
    let limits = Limits {
        max_input_bytes: 100,
        ..Limits::default()
    };
    let e = extract(&sample("data-migration-plan.pdf"), "x.pdf", &limits).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert!(e.message.contains("extract.max_input_bytes"));
}

#[test]
fn truncations_and_bit_flips_never_panic() {
    let limits = Limits::default();
    for file in [
        "data-migration-plan.pdf",
        "board-minutes-q3.docx",
        "vendor-contract-review.html",
    ] {
        let bytes = sample(file);
        for cut in (1..bytes.len()).step_by(37) {
            let _ = extract(&bytes[..cut], file, &limits);
        }
        let mut flipped = bytes.clone();
        for i in (0..flipped.len()).step_by(13) {
            flipped[i] ^= 0x5a;
            let _ = extract(&flipped, file, &limits);
        }
    }
}

#[test]
fn escape_sequences_in_titles_never_reach_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("evil.html"),
        "<html><head><title>Q3\u{1b}]0;pwned\u{7}\u{1b}[2J report</title></head><body><p>Quarterly numbers.</p></body></html>",
    )
    .unwrap();
    let lake = tmp.path().join("lake");
    backfill(&src, &lake, &[]);
    let out = ok(docstream()
        .args([
            "query",
            "--lake",
            lake.to_str().unwrap(),
            "SELECT title FROM documents",
        ])
        .output()
        .unwrap());
    assert!(out.contains("Q3"), "{out}");
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
}

/// A one-page PDF whose content stream shows `lines` lines of text: parsing
/// it takes time and memory in proportion (about 1.5 s and 1 GB for 300k).
fn heavy_pdf(lines: usize) -> Vec<u8> {
    let content = b"BT /F1 12 Tf 10 10 Td (Hello world, this is text) Tj ET\n".repeat(lines);
    let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
    stream.extend_from_slice(&content);
    stream.extend_from_slice(b"\nendstream");
    let objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_vec(),
        stream,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    crate::pdf_file::pdf_file(&objects)
}

/// Backfills a heavy PDF (first, with one slot) and two small samples under
/// these limits; returns the failure rows and the number of documents landed.
fn backfill_heavy(timeout_secs: f64, max_memory_mb: u64) -> (Vec<serde_json::Value>, i64) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a-heavy.pdf"), heavy_pdf(300_000)).unwrap();
    for small in ["project-atlas-status.md", "security-incident-2024-03.txt"] {
        std::fs::write(src.join(small), sample(small)).unwrap();
    }
    let pipeline = tmp.path().join("pipeline.toml");
    let base = std::fs::read_to_string(repo().join("pipelines/default.toml")).unwrap();
    let limited = base
        .replace(
            "timeout_secs = 30.0",
            &format!("timeout_secs = {timeout_secs:?}"),
        )
        .replace(
            "max_memory_mb = 2048",
            &format!("max_memory_mb = {max_memory_mb}"),
        );
    assert_eq!(limited.matches(&format!("{timeout_secs:?}")).count(), 1);
    let sql = format!("\"{}/sql/", repo().display());
    std::fs::write(&pipeline, limited.replace("\"../sql/", &sql)).unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    crate::harness::backfill_with(
        &pipeline,
        &src,
        &lake,
        &["--stages", "documents", "--parallelism", "1"],
    );
    let failures = crate::harness::query(
        lake_s,
        "SELECT source_uri, error_kind, error FROM failures",
        &[],
    );
    (
        failures,
        crate::harness::count(lake_s, "SELECT count(*) FROM documents"),
    )
}

#[test]
fn a_runaway_extraction_is_stopped_at_its_memory_cap_and_the_rest_land() {
    let (failures, landed) = backfill_heavy(60.0, 200);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0]["source_uri"]
        .as_str()
        .unwrap()
        .ends_with("a-heavy.pdf"));
    assert_eq!(failures[0]["error_kind"], "memory_limit", "{failures:?}");
    assert!(failures[0]["error"]
        .as_str()
        .unwrap()
        .contains("extract.max_memory_mb"));
    assert_eq!(landed, 2);
}

#[test]
fn a_timed_out_extraction_is_stopped_and_the_rest_land() {
    let (failures, landed) = backfill_heavy(0.3, 2048);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0]["source_uri"]
        .as_str()
        .unwrap()
        .ends_with("a-heavy.pdf"));
    assert_eq!(failures[0]["error_kind"], "timeout", "{failures:?}");
    assert_eq!(landed, 2);
}
