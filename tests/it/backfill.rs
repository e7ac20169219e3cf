//! Backfill into a local lake: counts, re-runs, failures, query output.

use crate::harness::*;

#[test]
fn samples_land_and_rerun_adds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let samples = repo().join("samples");
    let n_files = file_count(&samples) as i64;

    let out = backfill(&samples, &lake, &[]);
    assert!(out.contains(&format!("{n_files} landed")), "{out}");

    assert_eq!(count(lake_s, "SELECT count(*) FROM documents"), n_files);
    assert_eq!(
        count(lake_s, "SELECT count(DISTINCT mime) FROM documents"),
        5
    );
    assert_eq!(count(lake_s, "SELECT count(*) FROM failures"), 0);
    // Every document has chunks, numbered from 0 without gaps.
    assert_eq!(
        count(lake_s, "SELECT count(DISTINCT doc_id) FROM chunks"),
        n_files
    );
    assert_eq!(
        count(
            lake_s,
            "SELECT count(*) FROM (SELECT doc_id, max(chunk_idx) + 1 AS n, count(*) AS c \
             FROM chunks GROUP BY doc_id) WHERE n <> c"
        ),
        0
    );
    // Token counts agree between the two stages.
    assert_eq!(
        count(
            lake_s,
            "SELECT count(*) FROM documents d JOIN (SELECT doc_id, max(n_tokens) AS m FROM chunks GROUP BY doc_id) c \
             USING (doc_id) WHERE c.m > d.n_tokens"
        ),
        0
    );
    // Titles come from each format's own metadata.
    let titles = query(lake_s, "SELECT title FROM documents ORDER BY title", &[]);
    let titles: Vec<&str> = titles
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect();
    assert!(titles.contains(&"Board minutes Q3 2024"), "{titles:?}");
    assert!(titles.contains(&"Data migration plan 2024"), "{titles:?}");
    assert!(titles.contains(&"Vendor contract review: Northwind Logistics"));
    // html: no script or style text anywhere.
    assert_eq!(
        count(lake_s, "SELECT count(*) FROM chunks WHERE text LIKE '%do not index me%' OR text LIKE '%font-family%' OR text LIKE '%internal note%'"),
        0
    );

    let again = backfill(&samples, &lake, &[]);
    assert!(
        again.contains("0 landed") && again.contains(&format!("{n_files} skipped")),
        "{again}"
    );
    assert_eq!(count(lake_s, "SELECT count(*) FROM documents"), n_files);
    let chunks = count(lake_s, "SELECT count(*) FROM chunks");
    assert_eq!(
        count(
            lake_s,
            "SELECT count(DISTINCT (doc_id, chunk_idx)) FROM chunks"
        ),
        chunks
    );
}

/// Like rsync and `aws s3 sync`: an object whose listing (key, size,
/// ETag, modification time) is unchanged is not read again; one whose
/// listing changed is read, and lands only if its bytes changed.
#[test]
fn an_object_with_an_unchanged_listing_is_not_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (docs, lake) = (tmp.path().join("docs"), tmp.path().join("lake"));
    std::fs::create_dir(&docs).unwrap();
    let lake_s = lake.to_str().unwrap();
    for name in ["same.txt", "touched.txt", "edited.txt"] {
        std::fs::write(docs.join(name), format!("{name}: the first text")).unwrap();
    }
    backfill(&docs, &lake, &[]);
    let versions = "SELECT count(*) FROM documents";
    assert_eq!(count(lake_s, versions), 3);
    assert_eq!(
        count(
            lake_s,
            "SELECT count(*) FROM documents WHERE metadata LIKE '%\"object_version\":\"meta:%'"
        ),
        3
    );

    let rewrite = |name: &str, text: &str, shift: u64| {
        let path = docs.join(name);
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, text).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(modified + std::time::Duration::from_secs(shift))
            .unwrap();
    };
    // New bytes behind the same listing: not read, so not seen.
    rewrite("same.txt", "same.txt: THE FIRST TEXT", 0);
    // A new modification time, the same bytes: read, hashed, skipped.
    rewrite("touched.txt", "touched.txt: the first text", 60);
    // New bytes and a new time: a new version.
    rewrite("edited.txt", "edited.txt: the second one", 60);
    let again = backfill(&docs, &lake, &[]);
    assert!(
        again.contains("1 landed") && again.contains("2 skipped"),
        "{again}"
    );
    assert_eq!(count(lake_s, versions), 4);
    assert_eq!(
        count(
            lake_s,
            "SELECT count(*) FROM documents WHERE source_uri LIKE '%edited.txt'"
        ),
        2
    );
}

#[test]
fn hostile_inputs_become_failure_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let out = backfill(&repo().join("tests/fixtures/hostile"), &lake, &[]);
    // The unicode-path markdown and the invalid-UTF-8 text land; five fail.
    assert!(out.contains("2 landed (1 with warnings)"), "{out}");
    assert!(out.contains("5 failed"), "{out}");

    let rows = query(
        lake_s,
        "SELECT source_uri, stage, error_kind, error FROM failures ORDER BY source_uri",
        &[],
    );
    let kind_of = |file: &str| -> String {
        rows.iter()
            .find(|r| r["source_uri"].as_str().unwrap().ends_with(file))
            .map(|r| r["error_kind"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no failure for {file}: {rows:?}"))
    };
    assert_eq!(kind_of("truncated.pdf"), "corrupt");
    assert_eq!(kind_of("random-bytes.pdf"), "corrupt");
    assert_eq!(kind_of("zip-bomb.docx"), "decompression_limit");
    assert_eq!(kind_of("deep.html"), "too_deep");
    assert_eq!(kind_of("empty.txt"), "empty");
    assert_eq!(kind_of("invalid-utf8.txt"), "invalid_utf8");
    for r in &rows {
        assert!(
            r["error"].as_str().unwrap().len() > 10,
            "unreadable message: {r}"
        );
    }
    let landed = query(
        lake_s,
        "SELECT source_uri, title FROM documents ORDER BY source_uri",
        &[],
    );
    assert_eq!(landed.len(), 2);
    assert!(landed.iter().any(|r| r["title"] == "Résumé"));

    // A re-run adds no rows anywhere.
    let again = backfill(&repo().join("tests/fixtures/hostile"), &lake, &[]);
    assert!(
        again.contains("0 landed") && again.contains("7 skipped"),
        "{again}"
    );
    assert_eq!(count(lake_s, "SELECT count(*) FROM failures"), 6);
}

#[test]
fn query_is_read_only_and_formats_output() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    backfill(&repo().join("samples"), &lake, &[]);
    for sql in [
        "DROP TABLE documents",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO documents SELECT * FROM documents",
    ] {
        let out = docstream()
            .args(["query", sql, "--lake", lake.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{sql} ran");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("read-only"), "{sql}: {err}");
    }
    let sql = "SELECT mime, count(*) AS n FROM documents GROUP BY mime ORDER BY mime";
    let run = |format: &str| {
        ok(docstream()
            .args([
                "query",
                sql,
                "--format",
                format,
                "--lake",
                lake.to_str().unwrap(),
            ])
            .output()
            .unwrap())
    };
    let csv = run("csv");
    assert!(csv.starts_with("mime,n\n"), "{csv}");
    assert_eq!(csv.lines().count(), 6);
    let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 5);
    let table = run("table");
    assert!(
        table.contains("| mime") && table.contains("text/html"),
        "{table}"
    );
    let missing = docstream()
        .args([
            "query",
            "SELECT * FROM nope",
            "--lake",
            lake.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("tables in"));
}

#[test]
fn stage_params_come_from_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    backfill(
        &repo().join("samples"),
        &lake,
        &["--set", "chunks.max_tokens=32", "--set", "chunks.overlap=0"],
    );
    assert_eq!(
        count(lake_s, "SELECT count(*) FROM chunks WHERE n_tokens > 32"),
        0
    );
    assert!(count(lake_s, "SELECT count(*) FROM chunks") > 20);
}

#[test]
fn a_stage_failing_on_one_document_fails_only_that_document() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    // A custom stage whose chunk budget is invalid for one document only.
    let pipeline = tmp.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        r#"
name = "one-bad-row"
[[stages]]
name = "documents"
query = "SELECT doc_id, tenant, source_uri, content_hash, mime, title, n_chars, count_tokens(text) AS n_tokens, event_time, ingested_at, metadata FROM extracted"
table = "documents"
[[stages]]
name = "tiny_chunks"
query = "SELECT doc_id, content_hash, unnest(chunk_text(text, CASE WHEN mime = 'application/pdf' THEN 1 ELSE 64 END, 0))['text'] AS chunk FROM extracted"
table = "tiny_chunks"
"#,
    )
    .unwrap();
    let out = backfill_with(&pipeline, &repo().join("samples"), &lake, &[]);
    let n_files = file_count(&repo().join("samples")) as i64;
    assert!(out.contains("1 stage failures"), "{out}");
    assert_eq!(count(lake_s, "SELECT count(*) FROM documents"), n_files);
    assert_eq!(
        count(lake_s, "SELECT count(DISTINCT doc_id) FROM tiny_chunks"),
        n_files - 1
    );
    let rows = query(
        lake_s,
        "SELECT stage, error_kind, error, source_uri FROM failures",
        &[],
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["stage"], "tiny_chunks");
    assert_eq!(rows[0]["error_kind"], "stage");
    assert!(rows[0]["source_uri"].as_str().unwrap().ends_with(".pdf"));
    assert!(rows[0]["error"].as_str().unwrap().contains("max_tokens"));
}

#[test]
fn a_stage_failure_does_not_hide_a_document_that_never_landed() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let pipeline = tmp.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        r#"
name = "one-bad-row"
[[stages]]
name = "tiny_chunks"
query = "SELECT doc_id, content_hash, unnest(chunk_text(text, CASE WHEN mime = 'application/pdf' THEN 1 ELSE 64 END, 0))['text'] AS chunk FROM extracted"
table = "tiny_chunks"
[[stages]]
name = "documents"
query = "SELECT doc_id, tenant, source_uri, content_hash, mime, title, n_chars, count_tokens(text) AS n_tokens, event_time, ingested_at, metadata FROM extracted"
table = "documents"
"#,
    )
    .unwrap();
    let samples = repo().join("samples");
    let n_files = file_count(&samples) as i64;
    backfill_with(&pipeline, &samples, &lake, &[]);
    // What a kill after the extracted, failures and tiny_chunks commits
    // leaves: `documents` and `lineage`, which commit last, never got the
    // batch. The re-run recomputes from the text the lake holds.
    std::fs::remove_dir_all(lake.join("documents")).unwrap();
    std::fs::remove_dir_all(lake.join("lineage")).unwrap();

    let out = backfill_with(&pipeline, &samples, &lake, &[]);
    assert!(out.contains(&format!("{n_files} recomputed")), "{out}");
    assert_eq!(count(lake_s, "SELECT count(*) FROM documents"), n_files);
    // The stage failed again on the re-run; its row is not doubled.
    assert_eq!(count(lake_s, "SELECT count(*) FROM failures"), 1);
    assert_eq!(
        count(lake_s, "SELECT count(*) FROM tiny_chunks"),
        count(
            lake_s,
            "SELECT count(DISTINCT (doc_id, chunk)) FROM tiny_chunks"
        )
    );
}
