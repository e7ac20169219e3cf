//! Containers land their files as child documents: zip and tar members,
//! mailbox messages and email attachments, on real files made by
//! tests/fixtures/make_formats.py with Python's zipfile, tarfile, mailbox
//! and email packages. Children link to their parent by `parent_doc_id`, a
//! parent's new version replaces them, and hostile archives fail alone.

use std::io::Write;
use std::path::Path;

use docstream::contract::failure::ErrorKind;
use docstream::contract::identity::child_doc_id;
use docstream::extract::{extract, Extracted, Format, Limits};

use crate::harness::{backfill, count, query, repo};

fn fixture(folder: &str, name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures").join(folder).join(name)).unwrap()
}

fn extract_fixture(folder: &str, name: &str) -> Extracted {
    extract(&fixture(folder, name), name, &Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn paths(x: &Extracted) -> Vec<&str> {
    x.members.iter().map(|m| m.path.as_str()).collect()
}

#[test]
fn containers_list_their_files_as_members() {
    let zip = extract_fixture("formats", "shipment-records.zip");
    assert_eq!(zip.format, Format::Zip);
    assert_eq!(
        paths(&zip),
        [
            "manifests/manifest-0412.csv",
            "letters/delay-notice.md",
            "nested/logs.zip"
        ]
    );
    assert!(
        zip.text.contains("- letters/delay-notice.md"),
        "{}",
        zip.text
    );
    assert_eq!(zip.title.as_deref(), Some("shipment-records"));

    let tarball = extract_fixture("formats", "port-archive.tar.gz");
    assert_eq!(tarball.format, Format::Gzip);
    assert_eq!(paths(&tarball), ["port/berth-plan.html", "port/readme.txt"]);
    let readme = tarball.members[1].content.as_ref().unwrap();
    assert_eq!(readme, b"Pilotage is compulsory above 90 metres.\n");

    let mailbox = extract_fixture("formats", "ops-mailbox.mbox");
    assert_eq!(mailbox.format, Format::Mbox);
    assert_eq!(paths(&mailbox), ["message/1", "message/2", "message/3"]);
    assert!(
        mailbox.text.contains("message 2: Reefer alarm"),
        "{}",
        mailbox.text
    );
    // The mbox quoting of a body line that starts with "From " is undone.
    let first = String::from_utf8(mailbox.members[0].content.clone().unwrap()).unwrap();
    assert!(first.contains("\nFrom now on, bookings"), "{first}");

    let mail = extract_fixture("formats", "contract-renewal.eml");
    assert_eq!(paths(&mail), ["attachment/1", "attachment/2"]);
    assert_eq!(mail.members[0].name, "data-migration-plan.pdf");
    assert_eq!(
        mail.members[1].content.as_ref().unwrap(),
        &std::fs::read(repo().join("samples/board-minutes-q3.docx")).unwrap()
    );
}

/// A tar.gz of `files`, written with the tar and flate2 crates.
fn tar_gz(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, &data[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn hostile_containers_fail_alone_and_with_the_right_kind() {
    let limits = Limits::default();
    // A zip-slip path is refused; the harmless member beside it is read.
    let slip = extract_fixture("hostile-formats", "zip-slip.zip");
    assert_eq!(
        slip.members[0].content.as_ref().unwrap_err().kind,
        ErrorKind::UnsafePath
    );
    assert_eq!(slip.members[1].path, "harmless.txt");
    assert!(slip.members[1].content.is_ok());

    // 50,000 messages: over extract.max_members, so the mailbox fails
    // before holding them all.
    let mut mbox = Vec::new();
    for n in 0..50_000 {
        write!(
            mbox,
            "From sender@example Mon Jan  1 00:00:00 2024\nSubject: note {n}\n\nbody {n}\n\n"
        )
        .unwrap();
    }
    let e = extract(&mbox, "huge.mbox", &limits).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert!(e.message.contains("max_members"), "{e}");

    // Decompressed bytes are bounded over the whole archive; a single
    // member over max_input_bytes is refused alone.
    let small = Limits {
        max_input_bytes: 300_000,
        max_decompressed_bytes: 1_000_000,
        ..Limits::default()
    };
    let zeros = vec![0u8; 400_000];
    let one_big = tar_gz(&[("big.txt", zeros.clone()), ("note.txt", b"ok".to_vec())]);
    let x = extract(&one_big, "a.tar.gz", &small).unwrap();
    assert_eq!(
        x.members[0].content.as_ref().unwrap_err().kind,
        ErrorKind::TooLarge
    );
    assert_eq!(x.members[1].content.as_ref().unwrap(), b"ok");
    let bomb: Vec<(&str, Vec<u8>)> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| (*n, vec![0u8; 290_000]))
        .collect();
    let e = extract(&tar_gz(&bomb), "bomb.tgz", &small).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DecompressionLimit, "{e}");

    // Cut short anywhere, an archive fails or yields what it holds; it never panics.
    for file in [
        "shipment-records.zip",
        "port-archive.tar.gz",
        "ops-mailbox.mbox",
    ] {
        let bytes = fixture("formats", file);
        for cut in 1..bytes.len() {
            let _ = extract(&bytes[..cut], file, &limits);
        }
    }
}

fn doc_id_of(lake: &str, file_suffix: &str) -> String {
    let rows = query(
        lake,
        &format!("SELECT DISTINCT doc_id FROM documents WHERE source_uri LIKE '%{file_suffix}'"),
        &[],
    );
    assert_eq!(rows.len(), 1, "{file_suffix}: {rows:?}");
    rows[0]["doc_id"].as_str().unwrap().to_string()
}

fn write_zip(path: &Path, files: &[(&str, &str)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, text) in files {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn children_land_linked_to_their_parent_and_follow_its_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for (folder, file) in [
        ("formats", "contract-renewal.eml"),
        ("formats", "shipment-records.zip"),
        ("formats", "port-archive.tar.gz"),
        ("formats", "ops-mailbox.mbox"),
        ("hostile-formats", "zip-slip.zip"),
        ("hostile-formats", "nested-deep.zip"),
    ] {
        std::fs::write(src.join(file), fixture(folder, file)).unwrap();
    }
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let out = backfill(&src, &lake, &[]);
    // eml 1+2, zip 1+3+1, tar.gz 1+2, mbox 1+3, zip-slip 1+1, nested 1+4.
    assert!(out.contains("22 landed"), "{out}");
    assert!(out.contains("2 failed"), "{out}");

    // An email's attachments are its children, with stable ids and its Date.
    let mail_id = doc_id_of(lake_s, "contract-renewal.eml");
    let attachments = query(
        lake_s,
        &format!(
            "SELECT doc_id, source_uri, mime, event_time, title FROM documents \
             WHERE parent_doc_id = '{mail_id}' ORDER BY source_uri"
        ),
        &[],
    );
    assert_eq!(attachments.len(), 2, "{attachments:?}");
    assert_eq!(
        attachments[0]["doc_id"],
        child_doc_id(&mail_id, "attachment/1")
    );
    assert!(attachments[0]["source_uri"]
        .as_str()
        .unwrap()
        .ends_with("contract-renewal.eml!/attachment/1"));
    assert_eq!(attachments[0]["mime"], "application/pdf");
    assert_eq!(attachments[1]["mime"], Format::Docx.mime());
    for a in &attachments {
        assert!(
            a["event_time"]
                .as_str()
                .unwrap()
                .starts_with("2024-03-14T09:30:00"),
            "{a:?}"
        );
    }
    let pdf_text = query(
        lake_s,
        &format!(
            "SELECT string_agg(text, ' ') AS text FROM chunks WHERE doc_id = '{}'",
            attachments[0]["doc_id"].as_str().unwrap()
        ),
        &[],
    );
    assert!(
        pdf_text[0]["text"]
            .as_str()
            .unwrap()
            .contains("freeze window"),
        "{pdf_text:?}"
    );

    // A zip in a zip: the grandchild's parent is the inner zip.
    let outer = doc_id_of(lake_s, "shipment-records.zip");
    let inner = doc_id_of(lake_s, "shipment-records.zip!/nested/logs.zip");
    assert_eq!(inner, child_doc_id(&outer, "nested/logs.zip"));
    let log = query(
        lake_s,
        "SELECT parent_doc_id, source_uri FROM documents WHERE source_uri LIKE '%crane-log.txt'",
        &[],
    );
    assert_eq!(log[0]["parent_doc_id"], inner.as_str());
    assert_eq!(
        count(
            lake_s,
            "SELECT count(*) FROM documents WHERE parent_doc_id IS NULL"
        ),
        6
    );

    // The hostile members became failure rows of their own kind.
    let failures = query(
        lake_s,
        "SELECT source_uri, error_kind FROM failures ORDER BY error_kind",
        &[],
    );
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert_eq!(failures[0]["error_kind"], "too_deep");
    assert!(failures[0]["source_uri"]
        .as_str()
        .unwrap()
        .ends_with("level-4.zip!/level-5.zip"));
    assert_eq!(failures[1]["error_kind"], "unsafe_path");

    // A new version of the zip: changed members get new versions, removed
    // ones (and what they held) leave every table.
    let gone = [
        child_doc_id(&outer, "letters/delay-notice.md"),
        inner.clone(),
        child_doc_id(&inner, "logs/crane-log.txt"),
    ];
    let gone_list = gone.map(|id| format!("'{id}'")).join(", ");
    let rows_of_gone = |table: &str| {
        count(
            lake_s,
            &format!("SELECT count(*) FROM {table} WHERE doc_id IN ({gone_list})"),
        )
    };
    assert_eq!(rows_of_gone("documents"), 3);
    assert!(rows_of_gone("chunks") >= 3);
    write_zip(
        &src.join("shipment-records.zip"),
        &[
            (
                "manifests/manifest-0412.csv",
                "container,weight\nMSKU 7719,26 tonnes\n",
            ),
            (
                "letters/customs-hold.md",
                "# Customs hold\n\nMSKU 7719 is held for inspection.",
            ),
        ],
    );
    let out = backfill(&src, &lake, &[]);
    assert!(out.contains("3 landed"), "{out}");
    let current = query(
        lake_s,
        &format!(
            "SELECT source_uri FROM current_documents WHERE parent_doc_id = '{outer}' ORDER BY source_uri"
        ),
        &[],
    );
    let current: Vec<&str> = current
        .iter()
        .map(|r| {
            r["source_uri"]
                .as_str()
                .unwrap()
                .rsplit("!/")
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(
        current,
        ["letters/customs-hold.md", "manifests/manifest-0412.csv"]
    );
    assert_eq!(rows_of_gone("documents"), 0);
    assert_eq!(rows_of_gone("chunks"), 0);
    let chunks = query(
        lake_s,
        "SELECT c.text FROM chunks c JOIN current_documents d USING (doc_id, content_hash) \
         WHERE d.source_uri LIKE '%manifest-0412.csv'",
        &[],
    );
    assert!(
        chunks[0]["text"].as_str().unwrap().contains("26 tonnes"),
        "{chunks:?}"
    );
    // Nothing new: a third run skips every file.
    let out = backfill(&src, &lake, &[]);
    assert!(out.contains("0 landed"), "{out}");
}
