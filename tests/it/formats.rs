//! Office, ebook, data and email formats, on real files made by
//! tests/fixtures/make_formats.py with python-pptx, openpyxl, odfpy,
//! ebooklib, reportlab, Python's email package and pandoc, and the hostile files made
//! beside them.

use docstream::contract::failure::ErrorKind;
use docstream::extract::{extract, Extracted, Format, Limits};

use crate::harness::{backfill, query, repo};

fn fixture(folder: &str, name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures").join(folder).join(name)).unwrap()
}

fn extract_fixture(name: &str) -> Extracted {
    extract(&fixture("formats", name), name, &Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The text with whitespace runs collapsed, so phrases match across lines.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Each format's words, in the order they must appear.
const EXPECTED: &[(&str, Format, &str, &[&str])] = &[
    (
        "deck.pptx",
        Format::Pptx,
        "Logistics review Q3",
        &[
            "## Slide 1 Agenda Opening remarks by the operations director Notes: Keep this under five minutes",
            "## Slide 2 Quarterly logistics review Carrier onboarding delayed by three weeks Notes: Mention the penalty clause",
            "## Slide 3 Warehouse automation Conveyor retrofit finished in Malmo",
            "| Site | Throughput | | --- | --- | | Malmo | 1,250 pallets | | Oslo | 830 pallets |",
        ],
    ),
    (
        "terminal.odp",
        Format::Odp,
        "Tender for the Gdansk terminal closes on 14 March",
        &[
            "## Slide 1 Tender for the Gdansk terminal closes on 14 March Notes: Ask legal about the bid bond",
            "## Slide 2 Crane maintenance budget approved at 310 thousand euros",
        ],
    ),
    (
        "budget.xlsx",
        Format::Xlsx,
        "Operations budget 2024",
        &[
            "## Budget",
            "| Line item | Owner | Amount | Due | |",
            "| Scanner fleet renewal | Ingrid Holm | 48200 | 2024-03-15 | |",
            "| Cold storage audit | Tomas Berg | 12500.5 | 2024-06-01 | |",
            "| | | | | | far corner note |",
            "## Risks | Risk | Severity | | --- | --- | | Single supplier for pallet wrap | high |",
        ],
    ),
    (
        "inventory.ods",
        Format::Ods,
        "inventory",
        &["## Inventory | Part | Count | | --- | --- | | Hydraulic pump | 14 | | Brake pad set | 260 |"],
    ),
    (
        "safety-memo.odt",
        Format::Odt,
        "Site safety memo",
        &[
            "Site safety memo",
            "Forklift inspections are now weekly at every depot.",
            "| Depot | Inspector | | --- | --- | | Vasteras | Karin Lund |",
            "Report near misses within 24 hours.",
        ],
    ),
    (
        "quay-repair.rtf",
        Format::Rtf,
        "Quay repair notice",
        &[
            "Quay repair notice",
            "needs repairs costing 95 000 € before the winter storms.",
            "Contact Åsa Nyström for the schedule.",
            "| Task | Weeks |",
            "| Divers survey | 2 |",
        ],
    ),
    (
        // reportlab's frames: two columns whose paragraphs sit side by side
        // (pdftotext reads them interleaved), a ruled table in the left one.
        "port-report.pdf",
        Format::Pdf,
        "Port operations report",
        &[
            "Quarterly port operations report for the Baltic terminals",
            "The northern quay handled record volumes this quarter while the dredging contract stayed on schedule and under budget.",
            "Crane availability fell to ninety one percent because two spreaders waited six weeks for replacement parts from the supplier.",
            "| Port | Cranes | Berths | | --- | --- | --- | | Gdansk | 14 | 6 | | Rotterdam | 92 | 41 |",
            "Customs clearance times improved after the new pre-arrival filing rules took effect in the second month of the quarter.",
            "The board asked for a plan to cut diesel use by a fifth before the winter season starts at the container terminal.",
        ],
    ),
    (
        "handbook.epub",
        Format::Epub,
        "Harbour Operations Handbook",
        &[
            "Tugs assist every vessel above 200 metres.",
            "Reefer containers are checked every four hours.",
        ],
    ),
    (
        "contract-renewal.eml",
        Format::Email,
        "Renewal of the Nordfrakt freight contract",
        &[
            "Subject: Renewal of the Nordfrakt freight contract From: Ingrid Holm",
            "Date: Thu, 14 Mar 2024 09:30:00 +0000",
            "the renewed contract keeps the penalty clause at 2 percent per late day.",
            "Attachments: data-migration-plan.pdf, board-minutes-q3.docx",
        ],
    ),
    (
        "shipment-records.zip",
        Format::Zip,
        "shipment-records",
        &["- manifests/manifest-0412.csv - letters/delay-notice.md - nested/logs.zip"],
    ),
    (
        "port-archive.tar.gz",
        Format::Gzip,
        "port-archive",
        &["- port/berth-plan.html - port/readme.txt"],
    ),
    (
        "ops-mailbox.mbox",
        Format::Mbox,
        "ops-mailbox",
        &["message 1: Tug schedule (from ops@harbour.example, Mon, 01 Apr 2024 08:00:00 +0000)"],
    ),
    (
        "vendors.csv",
        Format::Csv,
        "vendors",
        &["| vendor | country | contract end | | --- | --- | --- | | Nordfrakt AB | Sweden | 2025-06-30 |"],
    ),
    (
        "vendors.tsv",
        Format::Tsv,
        "vendors",
        &["| Baltic Cranes | Poland | 2026-01-31 |"],
    ),
    (
        "ticket.json",
        Format::Json,
        "ticket",
        &["subject: Gate scanner offline", "comments.body: Replaced the power supply"],
    ),
    (
        "events.ndjson",
        Format::Ndjson,
        "events",
        &["event: berth assigned", "vessel: MV Kattegat"],
    ),
];

#[test]
fn every_format_extracts_its_words_in_reading_order() {
    for (file, format, title, phrases) in EXPECTED {
        let x = extract_fixture(file);
        assert_eq!(x.format, *format, "{file}");
        assert_eq!(x.title.as_deref(), Some(*title), "{file}");
        let text = flat(&x.text);
        let mut from = 0;
        for phrase in *phrases {
            let at = text[from..]
                .find(phrase)
                .unwrap_or_else(|| panic!("{file}: {phrase:?} not after byte {from} of {text:?}"));
            if matches!(
                format,
                Format::Pptx
                    | Format::Pdf
                    | Format::Odp
                    | Format::Epub
                    | Format::Odt
                    | Format::Rtf
                    | Format::Email
            ) {
                from += at + phrase.len();
            }
        }
    }
}

#[test]
fn the_real_type_wins_over_a_lying_name() {
    for (file, format, _, _) in EXPECTED.iter().filter(|e| !e.1.is_text()) {
        let x = extract(
            &fixture("formats", file),
            "scan.pdf.txt",
            &Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(x.format, *format, "{file}");
    }
    let e = extract(b"just words", "deck.pptx", &Limits::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt);
    let e = extract(b"\x00\x01\x02binary", "table.csv", &Limits::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
}

#[test]
fn hostile_files_fail_with_the_right_kind() {
    let limits = Limits::default();
    for (file, kind) in [
        ("truncated.pptx", ErrorKind::Corrupt),
        // Its only slide points outside the package: nothing is read.
        ("escaping-rels.pptx", ErrorKind::NoText),
        ("ten-million-cells.xlsx", ErrorKind::TooLarge),
        ("repeated-cells.ods", ErrorKind::TooLarge),
        ("deep.json", ErrorKind::TooDeep),
        ("deep.rtf", ErrorKind::TooDeep),
    ] {
        let e = extract(&fixture("hostile-formats", file), file, &limits)
            .map(|x| x.text.len())
            .unwrap_err();
        assert_eq!(e.kind, kind, "{file}: {e}");
    }
}

#[test]
fn truncated_and_bit_flipped_packages_never_panic() {
    let limits = Limits::default();
    for (file, ..) in EXPECTED.iter().filter(|e| !e.1.is_text()) {
        let bytes = fixture("formats", file);
        for cut in (1..bytes.len()).step_by(97) {
            let _ = extract(&bytes[..cut], file, &limits);
        }
        let mut flipped = bytes.clone();
        for i in (0..flipped.len()).step_by(31) {
            flipped[i] ^= 0x5a;
            let _ = extract(&flipped, file, &limits);
        }
    }
}

#[test]
fn every_format_lands_in_the_lake_and_hostile_ones_become_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    crate::harness::copy_tree(&repo().join("tests/fixtures/formats"), &src);
    crate::harness::copy_tree(&repo().join("tests/fixtures/hostile-formats"), &src);
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let out = backfill(&src, &lake, &[]);
    // Every file, the 11 files inside the eml, zip, tar.gz and mbox, and the
    // 7 documents of the two hostile zips that land beside their failures
    // (tests/it/containers.rs).
    assert!(
        out.contains(&format!("{} landed", EXPECTED.len() + 11 + 7)),
        "{out}"
    );
    assert!(out.contains("8 failed"), "{out}");
    let docs = query(
        lake_s,
        "SELECT d.source_uri, d.mime, string_agg(c.text, ' ' ORDER BY c.chunk_idx) AS text \
         FROM documents d JOIN chunks c USING (doc_id) WHERE d.parent_doc_id IS NULL \
         GROUP BY d.source_uri, d.mime",
        &[],
    );
    for (file, format, _, phrases) in EXPECTED {
        let doc = docs
            .iter()
            .find(|d| {
                d["source_uri"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{file}"))
            })
            .unwrap_or_else(|| panic!("{file} did not land: {docs:?}"));
        assert_eq!(doc["mime"], format.mime(), "{file}");
        let text = flat(doc["text"].as_str().unwrap());
        for phrase in *phrases {
            assert!(text.contains(phrase), "{file}: {phrase:?} not in {text:?}");
        }
    }
    // A message's Date is its event time; its headers are metadata.
    let mail = query(
        lake_s,
        "SELECT event_time, metadata FROM documents WHERE source_uri LIKE '%contract-renewal.eml'",
        &[],
    );
    assert!(
        mail[0]["event_time"]
            .as_str()
            .unwrap()
            .starts_with("2024-03-14T09:30:00"),
        "{mail:?}"
    );
    let metadata: serde_json::Value =
        serde_json::from_str(mail[0]["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(
        metadata["email"]["message_id"],
        "<renewal-4711@nordfrakt.example>"
    );
    assert_eq!(metadata["email"]["attachments"][1], "board-minutes-q3.docx");

    let failures = query(lake_s, "SELECT source_uri, error_kind FROM failures", &[]);
    assert_eq!(failures.len(), 8, "{failures:?}");
    let kind = |file: &str| {
        failures
            .iter()
            .find(|f| f["source_uri"].as_str().unwrap().ends_with(file))
            .map(|f| f["error_kind"].as_str().unwrap().to_string())
    };
    assert_eq!(kind("ten-million-cells.xlsx").as_deref(), Some("too_large"));
    assert_eq!(kind("truncated.pptx").as_deref(), Some("corrupt"));
}
