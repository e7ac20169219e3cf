//! Backfill from and into a real S3-compatible server (s3s-fs on 127.0.0.1).

use crate::harness::*;

#[test]
fn backfill_from_bucket_into_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("s3");
    // A bucket is a folder under the server's data dir.
    std::fs::create_dir_all(data.join("archive/2019")).unwrap();
    std::fs::create_dir_all(data.join("lake")).unwrap();
    copy_tree(&repo().join("samples"), &data.join("archive/2019"));
    let n_files = file_count(&repo().join("samples")) as i64;

    let s3 = S3Server::start(&data);
    let env_ref = s3.env();
    let run_backfill = || {
        ok(docstream()
            .args([
                "backfill",
                "s3://archive/2019/",
                "--lake",
                "s3://lake/warehouse/",
            ])
            .args(SPINE)
            .envs(env_ref.iter().copied())
            .output()
            .unwrap())
    };

    let out = run_backfill();
    assert!(out.contains(&format!("{n_files} landed")), "{out}");

    let rows = query(
        "s3://lake/warehouse/",
        "SELECT count(*) AS n, count(DISTINCT mime) AS m, min(source_uri) AS u FROM documents",
        &env_ref,
    );
    assert_eq!(rows[0]["n"].as_i64().unwrap(), n_files);
    assert_eq!(rows[0]["m"].as_i64().unwrap(), 5);
    assert!(rows[0]["u"]
        .as_str()
        .unwrap()
        .starts_with("s3://archive/2019/"));
    let chunks = query(
        "s3://lake/warehouse/",
        "SELECT count(DISTINCT doc_id) AS d FROM chunks",
        &env_ref,
    );
    assert_eq!(chunks[0]["d"].as_i64().unwrap(), n_files);
    // The Delta log really is in the bucket.
    assert!(data.join("lake/warehouse/documents/_delta_log").is_dir());

    // Re-running against the bucket skips everything.
    let again = run_backfill();
    assert!(again.contains(&format!("{n_files} skipped")), "{again}");
}
