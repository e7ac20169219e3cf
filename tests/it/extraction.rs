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
