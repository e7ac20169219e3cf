//! Several backfills of overlapping folders race into one lake, one is
//! SIGKILLed and re-run; every document version lands exactly once.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const DOCS: usize = 240;

/// `DOCS` small documents spread over `x/`, `y/` and `z/`.
fn archive(root: &Path) {
    for i in 0..DOCS {
        let dir = root.join(["x", "y", "z"][i % 3]);
        std::fs::create_dir_all(&dir).unwrap();
        let body = format!(
            "Document {i}\n\nVendor {v} was late on delivery {i}.\n\nThe owner of risk {i} is team {t}.\n",
            v = i % 13,
            t = i % 5
        );
        std::fs::write(dir.join(format!("d{i:04}.txt")), body.repeat(1 + i % 4)).unwrap();
    }
}

fn start(source: &str, lake: &str, batch_rows: &str, env: &[(&str, &str)]) -> Child {
    docstream()
        .args([
            "backfill",
            source,
            "--lake",
            lake,
            "--batch-rows",
            batch_rows,
        ])
        .args(SPINE)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) {
    ok(child.wait_with_output().unwrap());
}

/// Commits in `table`'s log under a local folder.
fn commits(log: &Path) -> usize {
    std::fs::read_dir(log).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
        })
        .count()
    })
}

/// Three overlapping backfills start at random offsets; the whole-archive
/// one is SIGKILLed after some commits and re-run. `local` is where the
/// lake's files are on disk (the S3 server's folder for a bucket).
fn race(source: &Path, lake: &str, local: &Path, env: &[(&str, &str)]) {
    let at = |sub: &str| -> String {
        match lake.strip_prefix("s3://") {
            // The source bucket is `archive`, beside the lake's bucket.
            Some(_) => format!("s3://archive/{sub}"),
            None => source.join(sub).to_str().unwrap().to_string(),
        }
    };
    let pause = || std::thread::sleep(Duration::from_millis(fastrand::u64(0..400)));
    let whole = start(&at(""), lake, "4", env);
    pause();
    let x = start(&at("x"), lake, "3", env);
    pause();
    let y = start(&at("y"), lake, "5", env);

    // Kill the whole-archive run once it has landed some batches of its own.
    let log = local.join("documents/_delta_log");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut whole = whole;
    let killed = loop {
        if whole.try_wait().unwrap().is_some() {
            break false;
        }
        if commits(&log) >= 12 {
            whole.kill().unwrap(); // SIGKILL
            whole.wait().unwrap();
            break true;
        }
        assert!(Instant::now() < deadline, "no backfill made progress");
        std::thread::sleep(Duration::from_millis(5));
    };
    finish(x);
    finish(y);
    if killed {
        finish(start(&at(""), lake, "4", env));
    }

    let count = |sql: &str| query(lake, sql, env)[0]["n"].as_i64().unwrap();
    assert_eq!(count("SELECT count(*) AS n FROM documents"), DOCS as i64);
    assert_eq!(
        count("SELECT count(*) AS n FROM (SELECT doc_id, content_hash FROM documents GROUP BY 1, 2 HAVING count(*) > 1)"),
        0
    );
    let chunks = count("SELECT count(*) AS n FROM chunks");
    assert_eq!(
        count("SELECT count(DISTINCT (doc_id, chunk_idx)) AS n FROM chunks"),
        chunks,
        "a chunk landed twice"
    );
    assert_eq!(
        count("SELECT count(DISTINCT doc_id) AS n FROM chunks"),
        DOCS as i64
    );
    // No gap: every document's chunks are numbered 0..n.
    assert_eq!(
        count("SELECT count(*) AS n FROM (SELECT doc_id FROM chunks GROUP BY doc_id HAVING max(chunk_idx) + 1 <> count(*))"),
        0
    );
    assert_eq!(count("SELECT count(*) AS n FROM failures"), 0);
}

#[test]
fn overlapping_backfills_on_a_local_lake_land_each_version_once() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("archive");
    archive(&source);
    let lake = tmp.path().join("lake");
    race(&source, lake.to_str().unwrap(), &lake, &[]);
}

#[test]
fn overlapping_backfills_on_s3_land_each_version_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("s3");
    archive(&data.join("archive"));
    std::fs::create_dir_all(data.join("lake")).unwrap();
    let s3 = S3Server::start(&data);
    race(
        &data.join("archive"),
        "s3://lake/race/",
        &data.join("lake/race"),
        &s3.env(),
    );
}
