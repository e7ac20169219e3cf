//! The tables are plain Delta: delta-rs's Python package reads them with the
//! same row counts docstream reports.

use std::process::Command;

use crate::harness::*;

#[test]
fn python_deltalake_reads_every_table() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    backfill(&repo().join("samples"), &lake, &[]);
    backfill(
        &repo().join("tests/fixtures/hostile"),
        &lake,
        &["--set", "chunks.max_tokens=64"],
    );

    let script = r#"
import json, os, sys
from deltalake import DeltaTable
out = {}
for name in ["documents", "chunks", "failures", "extracted", "lineage"]:
    t = DeltaTable(sys.argv[1] + "/" + name)
    out[name] = t.to_pyarrow_table().num_rows
print(json.dumps(out), flush=True)
# Skip interpreter teardown: pyarrow's and delta-rs's thread pools can abort
# there under load ("terminate called without an active exception").
os._exit(0)
"#;
    let counts: serde_json::Value = serde_json::from_str(&python(script, &[lake_s])).unwrap();
    for table in ["documents", "chunks", "failures", "extracted", "lineage"] {
        let ours = count(lake_s, &format!("SELECT count(*) FROM {table}"));
        assert!(ours > 0, "{table} is empty");
        assert_eq!(counts[table].as_i64().unwrap(), ours, "{table}");
    }
}

/// Active data files of a table, from delta-rs's Python reader.
const PY_READ: &str = r#"
import json, os, sys
from deltalake import DeltaTable
out = {}
for name in sys.argv[2:]:
    t = DeltaTable(sys.argv[1] + "/" + name)
    out[name] = {"rows": t.to_pyarrow_table().num_rows, "files": len(t.file_uris())}
print(json.dumps(out), flush=True)
os._exit(0)
"#;

fn python_read(lake: &str, tables: &[&str]) -> serde_json::Value {
    let args: Vec<&str> = [lake].iter().chain(tables).copied().collect();
    serde_json::from_str(&python(PY_READ, &args)).unwrap()
}

/// Runs a Python `script` with `args`; its standard output.
fn python(script: &str, args: &[&str]) -> String {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python deltalake failed (pip install deltalake pyarrow): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn optimize_and_vacuum_keep_every_row_for_other_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    // Checkpoints every 4 commits; one document per batch: many small files.
    let pipeline = tmp.path().join("small.toml");
    let default = std::fs::read_to_string(repo().join("pipelines/default.toml")).unwrap();
    let stages = repo().join("sql/stages");
    std::fs::write(
        &pipeline,
        default
            .replace("checkpoint_interval = 100", "checkpoint_interval = 4")
            .replace("../sql/stages", stages.to_str().unwrap()),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        ok(docstream()
            .arg("--pipeline")
            .arg(&pipeline)
            .args(extra)
            .args(["--lake", lake_s])
            .output()
            .unwrap())
    };
    run(&[
        "backfill",
        "samples",
        "--stages",
        "documents,chunks",
        "--batch-rows",
        "1",
    ]);
    let tables = ["documents", "chunks", "failures"];
    let before = python_read(lake_s, &tables);
    let checkpoints = |table: &str| {
        std::fs::read_dir(lake.join(table).join("_delta_log"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".checkpoint.parquet")
            })
            .count()
    };
    assert!(
        checkpoints("documents") > 0,
        "no checkpoint after 6+ commits"
    );
    assert!(before["chunks"]["files"].as_u64().unwrap() >= 6, "{before}");

    let out = run(&["optimize", "--zorder"]);
    assert!(out.contains("documents:"), "{out}");
    let out = run(&["vacuum", "--retain-hours", "0", "--dry-run", "--force"]);
    assert!(out.contains("would delete"), "{out}");
    let refused = docstream()
        .arg("--pipeline")
        .arg(&pipeline)
        .args(["vacuum", "--retain-hours", "0", "--lake", lake_s])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("--force"),
        "a 0-hour retention needs --force: {stderr}"
    );
    run(&["vacuum", "--retain-hours", "0", "--force"]);

    let after = python_read(lake_s, &tables);
    for table in tables {
        let rows = |v: &serde_json::Value| v[table]["rows"].as_i64().unwrap();
        assert_eq!(rows(&after), rows(&before), "{table}");
        assert_eq!(
            rows(&after),
            count(lake_s, &format!("SELECT count(*) FROM {table}")),
            "{table}"
        );
    }
    assert_eq!(after["chunks"]["files"], 1, "{after}");
    assert_eq!(after["documents"]["files"], 1, "{after}");
    // Vacuum removed the replaced files from storage too.
    let parquet = std::fs::read_dir(lake.join("chunks"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "parquet")
        })
        .count();
    assert_eq!(parquet, 1);
}

#[test]
fn vacuum_spares_files_a_running_writer_has_not_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    backfill(&repo().join("samples"), &lake, &[]);
    let rows = count(lake_s, "SELECT count(*) FROM chunks");
    let committed = std::fs::read_dir(lake.join("chunks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    // A writer's file before its commit, and one a killed writer left behind.
    let in_flight = lake.join("chunks/part-00000-in-flight.parquet");
    let orphan = lake.join("chunks/part-00000-orphan.parquet");
    std::fs::copy(&committed, &in_flight).unwrap();
    std::fs::copy(&committed, &orphan).unwrap();
    let aged = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&orphan)
        .status()
        .unwrap();
    assert!(aged.success());
    let vacuum = |extra: &[&str]| {
        ok(docstream()
            .args(["vacuum", "--retain-hours", "0", "--force", "--lake", lake_s])
            .args(extra)
            .output()
            .unwrap())
    };

    vacuum(&[]);
    assert!(
        in_flight.exists() && orphan.exists(),
        "unreferenced files are left alone by default"
    );
    vacuum(&["--orphans"]);
    assert!(
        in_flight.exists(),
        "a file younger than an hour may still be committed"
    );
    assert!(
        !orphan.exists(),
        "an hour-old unreferenced file is an orphan"
    );
    assert!(committed.exists());
    assert_eq!(count(lake_s, "SELECT count(*) FROM chunks"), rows);
}

/// A `documents` table as a release before child documents wrote it: the
/// contract without `parent_doc_id`.
const PY_OLD_DOCUMENTS: &str = r#"
import datetime, os, sys
import pyarrow as pa
from deltalake import write_deltalake
ts = pa.timestamp("us", tz="UTC")
now = datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc)
table = pa.table({
    "doc_id": ["old-doc"], "tenant": ["default"], "source_uri": ["file:///old/notes.txt"],
    "content_hash": ["0" * 64], "mime": ["text/plain"], "title": pa.array(["Old notes"]),
    "n_chars": pa.array([9], pa.int64()), "n_tokens": pa.array([2], pa.int64()),
    "event_time": pa.array([now], ts), "ingested_at": pa.array([now], ts),
    "metadata": ["{}"],
})
write_deltalake(sys.argv[1] + "/documents", table)
os._exit(0)
"#;

const PY_PARENTS: &str = r#"
import json, os, sys
from deltalake import DeltaTable
rows = DeltaTable(sys.argv[1] + "/documents").to_pyarrow_table(columns=["doc_id", "parent_doc_id"]).to_pylist()
print(json.dumps(rows), flush=True)
os._exit(0)
"#;

#[test]
fn a_lake_from_before_child_documents_takes_the_column_and_stays_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    python(PY_OLD_DOCUMENTS, &[lake_s]);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/formats/contract-renewal.eml"),
        src.join("contract-renewal.eml"),
    )
    .unwrap();
    let out = backfill(&src, &lake, &[]);
    assert!(out.contains("3 landed"), "{out}");

    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&python(PY_PARENTS, &[lake_s])).unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let old = rows.iter().find(|r| r["doc_id"] == "old-doc").unwrap();
    assert!(old["parent_doc_id"].is_null(), "{old}");
    let children = rows
        .iter()
        .filter(|r| r["parent_doc_id"].is_string())
        .count();
    assert_eq!(children, 2, "{rows:?}");
    // docstream reads the old row too.
    assert_eq!(
        count(
            lake_s,
            "SELECT count(*) FROM current_documents WHERE parent_doc_id IS NULL"
        ),
        2
    );
    // The old version is adopted as the documents stage's output, the only
    // table it had; its other stages are new, and with no text in the lake
    // they wait for a backfill of its source.
    assert_eq!(
        count(
            lake_s,
            "SELECT count(*) FROM lineage WHERE doc_id = 'old-doc' AND status = 'adopted' AND stage = 'documents'"
        ),
        1
    );
    assert_eq!(
        count(
            lake_s,
            "SELECT count(*) FROM lineage WHERE doc_id = 'old-doc'"
        ),
        1
    );
    let plan = ok(docstream()
        .args(["plan", "--lake", lake_s, "--format", "json"])
        .args(SPINE)
        .output()
        .unwrap());
    let plan: Vec<serde_json::Value> = serde_json::from_str(&plan).unwrap();
    let chunks = plan.iter().find(|p| p["stage"] == "chunks").unwrap();
    assert_eq!(
        (&chunks["up_to_date"], &chunks["new"]),
        (&3.into(), &1.into())
    );
    let read = python_read(lake_s, &["documents", "lineage", "extracted"]);
    assert_eq!(read["documents"]["rows"], 4);
    assert_eq!(read["extracted"]["rows"], 3);
}
