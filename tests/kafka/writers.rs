//! Ingest beside backfills of the same objects, and events that name
//! objects the worker must not read.

use std::path::Path;
use std::process::Stdio;

use crate::broker::*;
use crate::harness::*;

/// A pipeline like the default one whose events may name files under `allowed`.
fn pipeline_allowing(dir: &Path, allowed: &Path) -> std::path::PathBuf {
    let default = std::fs::read_to_string(repo().join("pipelines/default.toml")).unwrap();
    let stages = repo().join("sql/stages");
    let path = dir.join("pipeline.toml");
    let allowed = format!("[kafka]\nallowed_objects = [\"{}\"]", allowed.display());
    std::fs::write(
        &path,
        default
            .replace("../sql/stages", stages.to_str().unwrap())
            .replace("[kafka]", &allowed),
    )
    .unwrap();
    path
}

#[test]
fn events_cannot_make_a_worker_read_local_files() {
    let broker = Broker::start();
    broker.create_topic("hostile", 1);
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "the root password is hunter2").unwrap();
    let events = tmp.path().join("events.ndjson");
    let lines = [
        serde_json::json!({"object": {"uri": format!("file://{}", secret.display())}, "tenant": "attacker"}),
        serde_json::json!({"doc_id": "fine", "text": "An ordinary document."}),
    ];
    let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&events, lines.join("\n")).unwrap();
    publish_ndjson(&broker, "hostile", &events, &["--verbatim"]);

    let lake = tmp.path().join("lake");
    ok(
        ingest_command(&broker, "hostile", &lake, &["--exit-when-idle", "3"])
            .output()
            .unwrap(),
    );
    let lake_s = lake.to_str().unwrap();
    let failures = query(lake_s, "SELECT stage, error_kind, error FROM failures", &[]);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["error_kind"], "forbidden");
    assert!(failures[0]["error"]
        .as_str()
        .unwrap()
        .contains("allowed_objects"));
    assert_eq!(count(lake_s, "SELECT count(*) FROM documents"), 1);
    assert_eq!(
        count(
            lake_s,
            "SELECT count(*) FROM chunks WHERE text LIKE '%hunter2%'"
        ),
        0
    );
}

#[test]
fn ingest_and_backfills_of_the_same_objects_land_each_version_once() {
    const DOCS: usize = 300;
    let broker = Broker::start();
    broker.create_topic("same", 2);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    for i in 0..DOCS {
        let dir = archive.join(if i % 2 == 0 { "even" } else { "odd" });
        std::fs::create_dir_all(&dir).unwrap();
        let body = format!("Document {i}.\n\nVendor {} slipped delivery {i}.\n", i % 7);
        std::fs::write(dir.join(format!("d{i:04}.txt")), body.repeat(1 + i % 3)).unwrap();
    }
    let pipeline = pipeline_allowing(tmp.path(), &archive);
    // Events for every other document: the same objects the backfills read.
    let events: Vec<String> = (0..DOCS)
        .step_by(2)
        .map(|i| {
            let path = archive.join("even").join(format!("d{i:04}.txt"));
            serde_json::json!({"object": {"uri": format!("file://{}", path.display())}}).to_string()
        })
        .collect();
    let events_file = tmp.path().join("events.ndjson");
    std::fs::write(&events_file, events.join("\n")).unwrap();
    publish_ndjson(&broker, "same", &events_file, &[]);

    let lake = tmp.path().join("lake");
    let backfill = |source: &Path, rows: &str| {
        docstream()
            .arg("--pipeline")
            .arg(&pipeline)
            .arg("backfill")
            .arg(source)
            .arg("--lake")
            .arg(&lake)
            .args(["--batch-rows", rows])
            .args(SPINE)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let worker = ingest_command(
        &broker,
        "same",
        &lake,
        &["--exit-when-idle", "3", "--batch-rows", "7"],
    )
    .arg("--pipeline")
    .arg(&pipeline)
    .spawn()
    .unwrap();
    let whole = backfill(&archive, "2");
    let even = backfill(&archive.join("even"), "3");
    for child in [worker, whole, even] {
        ok(child.wait_with_output().unwrap());
    }

    let lake_s = lake.to_str().unwrap();
    assert_eq!(count(lake_s, "SELECT count(*) FROM documents"), DOCS as i64);
    assert_eq!(
        count(
            lake_s,
            "SELECT count(DISTINCT (doc_id, content_hash)) FROM documents"
        ),
        DOCS as i64
    );
    let chunks = count(lake_s, "SELECT count(*) FROM chunks");
    assert_eq!(
        count(
            lake_s,
            "SELECT count(DISTINCT (doc_id, chunk_idx)) FROM chunks"
        ),
        chunks
    );
    assert_eq!(
        count(lake_s, "SELECT count(DISTINCT doc_id) FROM chunks"),
        DOCS as i64
    );
    assert_eq!(count(lake_s, "SELECT count(*) FROM failures"), 0);
}
