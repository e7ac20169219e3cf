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
for name in ["documents", "chunks", "failures"]:
    t = DeltaTable(sys.argv[1] + "/" + name)
    out[name] = t.to_pyarrow_table().num_rows
print(json.dumps(out), flush=True)
# Skip interpreter teardown: pyarrow's and delta-rs's thread pools can abort
# there under load ("terminate called without an active exception").
os._exit(0)
"#;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", script, lake_s])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python deltalake failed (pip install deltalake): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for table in ["documents", "chunks", "failures"] {
        let ours = count(lake_s, &format!("SELECT count(*) FROM {table}"));
        assert!(ours > 0, "{table} is empty");
        assert_eq!(counts[table].as_i64().unwrap(), ours, "{table}");
    }
}
