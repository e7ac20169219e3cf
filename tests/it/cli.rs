//! The command line refuses out-of-range values with a usage error (never a
//! panic) and does not print secrets from the environment.

use crate::harness::*;

fn refused(args: &[&str]) -> String {
    let out = docstream().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    stderr
}

#[test]
fn out_of_range_values_are_usage_errors() {
    let err = refused(&["vacuum", "--retain-hours", "9999999999999999"]);
    assert!(err.contains("--retain-hours"), "{err}");
    #[cfg(feature = "kafka")]
    for args in [
        ["ingest", "--exit-when-idle=-1"],
        ["ingest", "--exit-when-idle=inf"],
        ["ingest", "--batch-age=nan"],
        ["watch", "--interval=inf"],
    ] {
        let err = refused(&args);
        assert!(err.contains("seconds"), "{args:?}: {err}");
    }
}

#[test]
fn help_hides_environment_values() {
    let out = docstream()
        .arg("--help")
        .env(
            "AWS_ENDPOINT_URL",
            "http://admin:s3cr3t-value@127.0.0.1:9000",
        )
        .env("DOCSTREAM_PIPELINE", "/secret/path/pipeline.toml")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("AWS_ENDPOINT_URL"), "{help}");
    assert!(!help.contains("s3cr3t-value"), "{help}");
    assert!(!help.contains("/secret/path"), "{help}");
}

#[test]
fn a_deeply_nested_query_gets_an_answer_or_an_error_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    backfill(&repo().join("samples"), &lake, &[]);
    let lake = lake.to_str().unwrap();
    let sum = |terms: usize| format!("SELECT {} AS n", vec!["1"; terms].join("+"));
    assert_eq!(count(lake, &sum(500)), 500);
    let out = docstream()
        .args(["query", "--lake", lake, &sum(8000)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nests expressions"), "{stderr}");
}

#[test]
fn a_generated_value_larger_than_memory_allows_is_refused_before_it_is_built() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake = lake.to_str().unwrap();
    assert_eq!(count(lake, "SELECT length(repeat('x', 1000)) AS n"), 1000);
    // 1 GB of 'x' is over an eighth of the default 4096 MB limit.
    let out = docstream()
        .args([
            "query",
            "--lake",
            lake,
            "SELECT length(repeat('x', 1000000000))",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("repeat") && stderr.contains("memory_limit_mb"),
        "{stderr}"
    );
}

#[test]
fn a_query_past_the_memory_limit_fails_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    backfill(&repo().join("samples"), &lake, &[]);
    let default = std::fs::read_to_string(repo().join("pipelines/default.toml")).unwrap();
    let sql = repo().join("sql").to_str().unwrap().to_owned() + "/";
    let limited = default
        .replace("../sql/", &sql)
        .replace("memory_limit_mb = 4096", "memory_limit_mb = 1");
    assert_ne!(limited, default.replace("../sql/", &sql));
    let pipeline = tmp.path().join("limited.toml");
    std::fs::write(&pipeline, limited).unwrap();
    let hoard = "SELECT cardinality(array_agg(value)) AS n FROM generate_series(1, 2000000)";
    let rows = tmp.path().join("rows.csv");
    let run = |pipeline: Option<&std::path::Path>| {
        let mut cmd = docstream();
        if let Some(p) = pipeline {
            cmd.arg("--pipeline").arg(p);
        }
        cmd.args(["query", "--lake", lake.to_str().unwrap(), hoard, "--out"]);
        cmd.arg(&rows).output().unwrap()
    };
    let out = run(Some(&pipeline));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("memory_limit_mb"), "{stderr}");
    // A failed query leaves no output file, not even a partial one.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("rows"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let out = run(None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&rows).unwrap(), "n\n2000000\n");
}
