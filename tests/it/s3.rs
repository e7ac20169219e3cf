//! Backfill from and into a real S3-compatible server (s3s-fs on 127.0.0.1).

use std::process::{Command, Stdio};

use crate::harness::*;

const KEY: &str = "docstream-test";
const SECRET: &str = "docstream-test-secret";

fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
    ]
}

#[test]
fn backfill_from_bucket_into_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("s3");
    // A bucket is a folder under the server's data dir.
    std::fs::create_dir_all(data.join("archive/2019")).unwrap();
    std::fs::create_dir_all(data.join("lake")).unwrap();
    copy_tree(&repo().join("samples"), &data.join("archive/2019"));
    let n_files = file_count(&repo().join("samples")) as i64;

    let port = free_port();
    let _server = Server(
        Command::new(tool("s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", KEY, "--secret-key", SECRET])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs"),
    );
    wait_for_port(port);
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = s3_env(&endpoint);
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
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
