//! Ingest and backfills racing over the same objects into one lake, one
//! of them SIGKILLed and re-run; and events that name objects the worker
//! must not read.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::broker::*;
use crate::harness::*;
use crate::moto::MotoS3;

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

const DOCS: usize = 240;

/// `DOCS` small documents spread over `x/`, `y/` and `z/`.
fn archive(root: &Path) {
    for i in 0..DOCS {
        let dir = root.join(sub(i));
        std::fs::create_dir_all(&dir).unwrap();
        let body = format!(
            "Document {i}\n\nVendor {v} was late on delivery {i}.\n\nThe owner of risk {i} is team {t}.\n",
            v = i % 13,
            t = i % 5
        );
        std::fs::write(dir.join(format!("d{i:04}.txt")), body.repeat(1 + i % 4)).unwrap();
    }
}

fn sub(i: usize) -> &'static str {
    ["x", "y", "z"][i % 3]
}

/// Commit files in a table's log on disk.
fn commits_on_disk(log: &Path) -> usize {
    std::fs::read_dir(log).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
        })
        .count()
    })
}

/// Where the race runs: the archive as writers name it, the lake, a
/// scratch folder, the pipeline, the environment, and how many commits the
/// lake's `documents` table has.
struct Arena<'a> {
    source: String,
    lake: String,
    local: std::path::PathBuf,
    pipeline: Option<std::path::PathBuf>,
    env: Vec<(&'a str, &'a str)>,
    commits: Box<dyn Fn() -> usize + 'a>,
}

impl Arena<'_> {
    fn docstream(&self) -> Command {
        let mut c = docstream();
        if let Some(p) = &self.pipeline {
            c.arg("--pipeline").arg(p);
        }
        c.envs(self.env.iter().copied());
        c
    }

    fn backfill(&self, sub: &str, batch_rows: &str) -> Child {
        self.docstream()
            .args(["backfill", &format!("{}{sub}", self.source), "--lake"])
            .arg(&self.lake)
            .args(["--batch-rows", batch_rows])
            .args(SPINE)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn count(&self, sql: &str) -> i64 {
        query(&self.lake, sql, &self.env)[0]["n"].as_i64().unwrap()
    }
}

/// One ingest of events for a quarter of the documents and three backfills
/// of overlapping folders start at random offsets; the whole-archive
/// backfill is SIGKILLed after some commits and re-run.
fn race(broker: &Broker, topic: &str, arena: &Arena) {
    broker.create_topic(topic, 2);
    let events: Vec<String> = (0..DOCS)
        .step_by(4)
        .map(|i| {
            let path = format!("{}{}/d{i:04}.txt", arena.source, sub(i));
            let uri = if path.starts_with('/') {
                format!("file://{path}")
            } else {
                path
            };
            serde_json::json!({"object": {"uri": uri}}).to_string()
        })
        .collect();
    let file = arena.local.join("events.ndjson");
    std::fs::write(&file, events.join("\n")).unwrap();
    publish_ndjson(broker, topic, &file, &[]);

    let pause = || std::thread::sleep(Duration::from_millis(fastrand::u64(0..400)));
    let mut worker = arena.docstream();
    worker
        .args([
            "ingest",
            "--brokers",
            &broker.addr,
            "--topic",
            topic,
            "--lake",
        ])
        .arg(&arena.lake)
        .args(["--exit-when-idle", "3", "--batch-rows", "7"])
        .args(SPINE)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let worker = worker.spawn().unwrap();
    pause();
    let mut whole = arena.backfill("", "4");
    pause();
    let x = arena.backfill("x", "3");
    pause();
    let y = arena.backfill("y", "5");

    // Kill the whole-archive run once the lake has some commits.
    let deadline = Instant::now() + Duration::from_secs(120);
    while (arena.commits)() < 12 {
        assert!(
            whole.try_wait().unwrap().is_none(),
            "the whole-archive run ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no writer made progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    whole.kill().unwrap(); // SIGKILL
    whole.wait().unwrap();
    for child in [worker, x, y] {
        ok(child.wait_with_output().unwrap());
    }
    ok(arena.backfill("", "4").wait_with_output().unwrap());

    assert_eq!(
        arena.count("SELECT count(*) AS n FROM documents"),
        DOCS as i64
    );
    assert_eq!(
        arena.count("SELECT count(*) AS n FROM (SELECT doc_id, content_hash FROM documents GROUP BY 1, 2 HAVING count(*) > 1)"),
        0
    );
    let chunks = arena.count("SELECT count(*) AS n FROM chunks");
    assert_eq!(
        arena.count("SELECT count(DISTINCT (doc_id, chunk_idx)) AS n FROM chunks"),
        chunks,
        "a chunk landed twice"
    );
    assert_eq!(
        arena.count("SELECT count(DISTINCT doc_id) AS n FROM chunks"),
        DOCS as i64
    );
    // No gap: every document's chunks are numbered 0..n.
    assert_eq!(
        arena.count("SELECT count(*) AS n FROM (SELECT doc_id FROM chunks GROUP BY doc_id HAVING max(chunk_idx) + 1 <> count(*))"),
        0
    );
    assert_eq!(arena.count("SELECT count(*) AS n FROM failures"), 0);
}

#[test]
fn ingest_and_overlapping_backfills_on_a_local_lake_land_each_version_once() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("archive");
    archive(&source);
    race(
        &broker,
        "race-local",
        &Arena {
            source: format!("{}/", source.display()),
            lake: tmp.path().join("lake").display().to_string(),
            local: tmp.path().to_path_buf(),
            pipeline: Some(pipeline_allowing(tmp.path(), &source)),
            env: Vec::new(),
            commits: Box::new(|| commits_on_disk(&tmp.path().join("lake/documents/_delta_log"))),
        },
    );
}

#[test]
fn ingest_and_overlapping_backfills_on_s3_land_each_version_once() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("archive");
    archive(&source);
    // The lake on an S3 server with atomic conditional puts; the archive
    // stays local, as only the lake's commits race.
    let s3 = MotoS3::start(&["lake"]);
    race(
        &broker,
        "race-s3",
        &Arena {
            source: format!("{}/", source.display()),
            lake: "s3://lake/".into(),
            local: tmp.path().to_path_buf(),
            pipeline: Some(pipeline_allowing(tmp.path(), &source)),
            env: s3.env(),
            commits: Box::new(|| {
                s3.keys("lake", "documents/_delta_log/")
                    .iter()
                    .filter(|k| k.ends_with(".json"))
                    .count()
            }),
        },
    );
}
