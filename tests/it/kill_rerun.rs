//! SIGKILL a backfill mid-run, re-run it, and check for duplicates and gaps.

use std::time::{Duration, Instant};

use crate::harness::*;

/// Every 50th file is a zip of this many text files: child documents land
/// with their parent or not at all.
const ZIP_MEMBERS: usize = 3;

/// An archive of `n` small files in several formats; returns how many
/// documents they hold.
fn archive(dir: &std::path::Path, n: usize) -> usize {
    let mut docs = 0;
    for i in 0..n {
        let body = format!(
            "Document {i}\n\nThis is paragraph one of document {i}. It mentions vendor {v}.\n\n\
             Paragraph two talks about risk number {i} and its owner.\n",
            v = i % 17
        );
        docs += 1;
        if i % 50 == 49 {
            let file = std::fs::File::create(dir.join(format!("d{i:05}.zip"))).unwrap();
            let mut zip = zip::ZipWriter::new(file);
            for m in 0..ZIP_MEMBERS {
                let options = zip::write::SimpleFileOptions::default();
                zip.start_file(format!("part-{m}.txt"), options).unwrap();
                std::io::Write::write_all(&mut zip, format!("Part {m}. {body}").as_bytes())
                    .unwrap();
            }
            zip.finish().unwrap();
            docs += ZIP_MEMBERS;
            continue;
        }
        let (name, bytes) = match i % 3 {
            0 => (format!("d{i:05}.txt"), body.into_bytes()),
            1 => (
                format!("d{i:05}.md"),
                format!("# Doc {i}\n\n{body}").into_bytes(),
            ),
            _ => (
                format!("d{i:05}.html"),
                format!(
                    "<html><body><p>{}</p></body></html>",
                    body.replace("\n\n", "</p><p>")
                )
                .into_bytes(),
            ),
        };
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    docs
}

fn commits(lake: &std::path::Path, table: &str) -> usize {
    std::fs::read_dir(lake.join(table).join("_delta_log"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .map(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .unwrap_or(false)
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn sigkill_then_rerun_leaves_no_duplicates_and_no_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("archive");
    std::fs::create_dir_all(&src).unwrap();
    let docs = archive(&src, 600);

    // Kill at several points: after the first commit and later ones.
    let lake = tmp.path().join("lake");
    let args = |lake: &std::path::Path| {
        let mut a: Vec<std::ffi::OsString> = vec!["backfill".into(), src.clone().into()];
        a.extend(["--lake".into(), lake.into()]);
        a.extend(["--batch-rows", "20", "--parallelism", "2"].map(Into::into));
        a.extend(SPINE.map(Into::into));
        a
    };
    let killed = kill_at_commits(&args(&lake), &lake, "documents");
    assert!(
        killed > 0,
        "every backfill finished before it could be killed"
    );

    let out = backfill(&src, &lake, &["--batch-rows", "20"]);
    assert!(out.contains("0 failed, 0 stage failures"), "{out}");
    let l = lake.to_str().unwrap();
    assert_eq!(
        count(l, "SELECT count(*) FROM documents"),
        docs as i64,
        "{out}"
    );
    assert_eq!(
        count(l, "SELECT count(DISTINCT doc_id) FROM documents"),
        docs as i64
    );
    assert_eq!(
        count(l, "SELECT count(DISTINCT doc_id) FROM chunks"),
        docs as i64
    );
    // Every zip's members landed, each once, linked to it.
    assert_eq!(
        count(
            l,
            "SELECT count(*) FROM documents c JOIN documents p ON c.parent_doc_id = p.doc_id \
             WHERE p.mime = 'application/zip'"
        ),
        (12 * ZIP_MEMBERS) as i64
    );
    let chunks = count(l, "SELECT count(*) FROM chunks");
    assert_eq!(
        count(l, "SELECT count(DISTINCT (doc_id, chunk_idx)) FROM chunks"),
        chunks
    );
    assert_eq!(
        count(
            l,
            "SELECT count(*) FROM (SELECT doc_id, max(chunk_idx) + 1 AS n, count(*) AS c FROM chunks GROUP BY doc_id) WHERE n <> c"
        ),
        0
    );

    // A clean run of the same archive into a fresh lake gives the same chunks.
    let fresh = tmp.path().join("fresh");
    backfill(&src, &fresh, &[]);
    let f = fresh.to_str().unwrap();
    assert_eq!(count(f, "SELECT count(*) FROM chunks"), chunks);
}

/// Runs docstream with `args` three times, each killed (SIGKILL) once
/// `table` has 1, 3 and then 6 more commits; returns how many runs were
/// killed rather than finished.
fn kill_at_commits(args: &[std::ffi::OsString], lake: &std::path::Path, table: &str) -> usize {
    let mut killed = 0;
    for kill_after_commits in [1, 3, 6] {
        let mut child = docstream()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = commits(lake, table);
        let deadline = Instant::now() + Duration::from_secs(120);
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success());
                break true;
            }
            if commits(lake, table) >= start + kill_after_commits {
                break false;
            }
            assert!(Instant::now() < deadline, "docstream made no progress");
            std::thread::sleep(Duration::from_millis(5));
        };
        if !finished {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            killed += 1;
        }
    }
    killed
}

#[test]
fn sigkill_during_reprocess_then_rerun_leaves_no_duplicates_and_no_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("archive");
    std::fs::create_dir_all(&src).unwrap();
    let docs = archive(&src, 600) as i64;
    let lake = tmp.path().join("lake");
    backfill(&src, &lake, &[]);
    // The reference: the same archive with small chunks, in one clean run.
    let fresh = tmp.path().join("fresh");
    let set = ["--set", "chunks.max_tokens=32", "--set", "chunks.overlap=8"];
    backfill(&src, &fresh, &set);
    let small = count(fresh.to_str().unwrap(), "SELECT count(*) FROM chunks");
    std::fs::remove_dir_all(&src).unwrap();

    let mut args: Vec<std::ffi::OsString> =
        vec!["reprocess".into(), "--lake".into(), lake.clone().into()];
    args.extend(["--batch-rows", "10"].map(Into::into));
    args.extend(set.map(Into::into));
    args.extend(SPINE.map(Into::into));
    let killed = kill_at_commits(&args, &lake, "chunks");
    assert!(
        killed > 0,
        "every reprocess finished before it could be killed"
    );
    let out = ok(docstream().args(&args).output().unwrap());
    assert!(out.contains("0 stage failures"), "{out}");

    let l = lake.to_str().unwrap();
    let current = "SELECT count(*) FROM chunks";
    assert_eq!(count(l, current), small, "no gap, no duplicate: {out}");
    assert_eq!(
        count(l, "SELECT count(DISTINCT (doc_id, chunk_idx)) FROM chunks"),
        small
    );
    assert_eq!(count(l, "SELECT count(DISTINCT doc_id) FROM chunks"), docs);
    assert_eq!(
        count(
            l,
            "SELECT count(*) FROM (SELECT doc_id, max(chunk_idx) + 1 AS n, count(*) AS c FROM chunks GROUP BY doc_id) WHERE n <> c"
        ),
        0
    );
    // Every fingerprint's rows are whole and once: the old chunks stay.
    let all = count(l, "SELECT count(*) FROM history.chunks");
    assert_eq!(
        count(
            l,
            "SELECT count(DISTINCT (doc_id, chunk_idx, stage_fingerprint)) FROM history.chunks"
        ),
        all
    );
    assert_eq!(
        count(
            l,
            "SELECT count(*) FROM lineage WHERE stage = 'chunks' AND status = 'ok'"
        ),
        2 * docs,
        "one ok run per version and fingerprint"
    );
}
