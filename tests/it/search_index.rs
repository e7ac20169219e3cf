//! The text index against the exact scan: equal results on a quiet lake,
//! and current results after appends, new versions and deletes, before and
//! after the index catches up, on a local lake and on S3; a SIGKILL during
//! an index update leaves a working index.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// Queries whose indexed and exact results must agree.
const QUERIES: [&str; 4] = [
    "vendor delay",
    "budget overrun on the migration",
    "owner mitigation plan",
    "zq7marker",
];

/// How far indexed BM25 scores may stray from the scan's, relative: none
/// after a full build; after an update that added a layer, its statistics
/// still count the rows newer versions replaced, as Lucene's count deleted
/// documents until a merge.
const REBUILT: f64 = 1e-4;
const LAYERED: f64 = 0.1;

/// A lake and how to reach it.
pub struct Target<'a> {
    pub lake: String,
    pub env: Vec<(&'a str, &'a str)>,
    /// `--stages` and the stages backfills run.
    pub stages: [&'a str; 2],
}

impl Target<'_> {
    pub fn run(&self, args: &[&str]) -> String {
        ok(docstream()
            .args(args)
            .args(["--lake", &self.lake])
            .envs(self.env.iter().copied())
            .output()
            .unwrap())
    }

    fn backfill(&self, src: &Path, tenant: &str, extra: &[&str]) -> String {
        let src = src.to_str().unwrap();
        let mut args = vec!["backfill", src, "--tenant", tenant];
        args.extend(self.stages);
        args.extend(extra);
        self.run(&args)
    }

    pub fn search(&self, q: &str, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["search", q, "--format", "json", "--k", "10"];
        args.extend(extra);
        serde_json::from_str(&self.run(&args)).unwrap()
    }

    fn status(&self) -> Value {
        self.status_of("text index")
    }

    /// The `index --status` row of the index whose label starts with `label`.
    pub fn status_of(&self, label: &str) -> Value {
        let out = self.run(&["index", "--status", "--format", "json"]);
        let all: Vec<Value> = serde_json::from_str(&out).unwrap();
        all.into_iter()
            .find(|s| s["index"].as_str().unwrap().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} in {out}"))
    }

    /// Indexed and exact searches agree, chunk for chunk, and score for
    /// score within `tolerance`.
    fn agrees_with_exact(&self, q: &str, extra: &[&str], tolerance: f64) -> Vec<Value> {
        let indexed = self.search(q, extra);
        let mut exact_args = extra.to_vec();
        exact_args.push("--exact");
        let exact = self.search(q, &exact_args);
        assert_eq!(keys(&indexed), keys(&exact), "query {q:?} {extra:?}");
        for (a, b) in indexed.iter().zip(&exact) {
            let (a, b) = (a["bm25"].as_f64().unwrap(), b["bm25"].as_f64().unwrap());
            assert!(
                (a - b).abs() < tolerance * b.abs().max(1.0),
                "query {q:?}: {a} vs {b}"
            );
        }
        indexed
    }
}

pub fn keys(hits: &[Value]) -> Vec<(String, i64)> {
    hits.iter()
        .map(|h| {
            (
                h["doc_id"].as_str().unwrap().to_string(),
                h["chunk_idx"].as_i64().unwrap(),
            )
        })
        .collect()
}

pub fn sources(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| h["source_uri"].as_str().unwrap().to_string())
        .collect()
}

/// Document `i`: shared vocabulary in varying amounts, a word of its own
/// (`zq{i}marker`), and, for every fifth, several chunks' worth of text.
pub fn document(i: usize) -> String {
    let mut text = format!(
        "Report {i}. The vendor delay on project {p} pushed the launch back {w} weeks.\n\n\
         The budget overrun on the migration reached {c} thousand. zq{i}marker.\n\n\
         Owner {o} wrote a mitigation plan.\n",
        p = i % 5,
        w = i % 4 + 1,
        c = i * 7 % 90,
        o = ["Ana", "Bo", "Chen"][i % 3]
    );
    if i.is_multiple_of(5) {
        for n in 0..400 {
            text.push_str(&format!(
                "Paragraph filler {n} on vendor matters and schedules. "
            ));
        }
    }
    text
}

fn write_archive(dir: &Path, range: std::ops::Range<usize>) {
    std::fs::create_dir_all(dir).unwrap();
    for i in range {
        std::fs::write(dir.join(format!("d{i:03}.txt")), document(i)).unwrap();
    }
}

fn zip(path: &Path, members: &[(&str, &str)]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, body) in members {
        z.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut z, body.as_bytes()).unwrap();
    }
    z.finish().unwrap();
}

/// Two tenants' archives, backfilled (which builds the index).
pub fn seed(t: &Target, root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (root.join("acme"), root.join("globex"));
    write_archive(&a, 0..30);
    write_archive(&b, 30..40);
    zip(
        &a.join("bundle.zip"),
        &[
            ("keep.txt", "The keeper word is wombatword."),
            ("gone.txt", "The leaving word is pangolinword."),
        ],
    );
    t.backfill(&a, "acme", &[]);
    let out = t.backfill(&b, "globex", &[]);
    assert!(out.contains("text index:"), "{out}");
    (a, b)
}

/// Changes under `a`: a new document, a new version of d003 and a zip
/// that lost a member; backfilled without updating the index.
pub fn change(t: &Target, a: &Path) {
    std::fs::write(
        a.join("new.txt"),
        "A late arrival mentions zebrafishword and the vendor delay.",
    )
    .unwrap();
    std::fs::write(
        a.join("d003.txt"),
        document(3).replace("zq3marker", "okapiword"),
    )
    .unwrap();
    zip(
        &a.join("bundle.zip"),
        &[("keep.txt", "The keeper word is wombatword.")],
    );
    let out = t.backfill(a, "acme", &["--no-index"]);
    assert!(!out.contains("index:"), "{out}");
}

/// What every search must show after `change`, whether or not the index
/// has caught up. Once it has, it also ranks as the scan does, and scores
/// within `caught_up`'s tolerance.
fn shows_the_changes(t: &Target, caught_up: Option<f64>) {
    let hits = t.search("zebrafishword", &[]);
    assert_eq!(hits.len(), 1);
    assert!(sources(&hits)[0].ends_with("new.txt"), "{hits:?}");
    let hits = t.search("okapiword", &[]);
    assert!(
        !hits.is_empty() && sources(&hits).iter().all(|s| s.ends_with("d003.txt")),
        "{hits:?}"
    );
    // The old version of d003 never comes back, nor the erased member.
    assert!(t.search("zq3marker", &[]).is_empty());
    assert!(t.search("pangolinword", &[]).is_empty());
    assert_eq!(t.search("wombatword", &[]).len(), 1);
    if let Some(tolerance) = caught_up {
        for q in QUERIES {
            t.agrees_with_exact(q, &[], tolerance);
        }
    }
    tenants_stay_apart(t, caught_up);
}

fn tenants_stay_apart(t: &Target, caught_up: Option<f64>) {
    for (tenant, other) in [("acme", "globex"), ("globex", "acme")] {
        let filter = ["--tenant", tenant];
        let hits = match caught_up {
            Some(tolerance) => t.agrees_with_exact("vendor delay", &filter, tolerance),
            None => t.search("vendor delay", &filter),
        };
        assert!(!hits.is_empty());
        assert!(
            hits.iter().all(|h| h["tenant"] == tenant),
            "{other} leaked: {hits:?}"
        );
    }
}

fn lifecycle(t: &Target, root: &Path) {
    let (a, _) = seed(t, root);
    let s = t.status();
    assert_eq!(s["rows_behind"], 0, "{s}");
    assert_eq!(s["covers"], s["latest"], "{s}");
    assert!(s["rows"].as_u64().unwrap() > 40, "{s}");
    // The second tenant's backfill added a layer; with nothing replaced,
    // the layers' statistics together are the scan's.
    assert_eq!(s["layers"], 2, "{s}");
    for q in QUERIES {
        assert!(!t.agrees_with_exact(q, &[], REBUILT).is_empty(), "{q}");
    }
    tenants_stay_apart(t, Some(REBUILT));

    change(t, &a);
    let s = t.status();
    assert!(s["rows_behind"].as_u64().unwrap() > 0, "{s}");
    shows_the_changes(t, None);

    let out = t.run(&["index"]);
    assert!(
        out.contains("text index:") && out.contains("rows indexed"),
        "{out}"
    );
    assert_eq!(t.status()["rows_behind"], 0);
    assert!(t.run(&["index"]).contains("up to date"));
    shows_the_changes(t, Some(LAYERED));
}

#[test]
fn text_index_stays_exact_through_appends_versions_and_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Target {
        lake: tmp.path().join("lake").to_str().unwrap().to_string(),
        env: Vec::new(),
        stages: SPINE,
    };
    lifecycle(&t, tmp.path());

    // optimize compacts the tables and rebuilds the index over them; the
    // files it replaced can go, and searches stay exact.
    let out = t.run(&["optimize"]);
    assert!(
        out.contains("text index:") && out.contains("rows indexed"),
        "{out}"
    );
    let s = t.status();
    assert_eq!(
        (s["rows_behind"].clone(), &s["covers"]),
        (0.into(), &s["latest"]),
        "{s}"
    );
    assert_eq!(s["layers"], 1, "{s}");
    t.run(&["vacuum", "--retain-hours", "0", "--force"]);
    shows_the_changes(&t, Some(REBUILT));
}

#[test]
fn updates_add_layers_that_merge_and_stay_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Target {
        lake: tmp.path().join("lake").to_str().unwrap().to_string(),
        env: Vec::new(),
        stages: SPINE,
    };
    let (a, _) = seed(&t, tmp.path());
    let mut layers = vec![t.status()["layers"].as_u64().unwrap()];
    for i in 0..9 {
        std::fs::write(
            a.join(format!("late{i}.txt")),
            format!("Late note {i}: the vendor delay again, quokka{i}word."),
        )
        .unwrap();
        match i {
            1 => zip(
                &a.join("pack.zip"),
                &[("stay.txt", "capybaraword"), ("leave.txt", "tapirword")],
            ),
            // A new version of a document that an older layer holds.
            4 => {
                std::fs::write(a.join("late1.txt"), "Late note 1, rewritten: no animals.").unwrap()
            }
            // A member erased from an older layer's zip.
            5 => zip(&a.join("pack.zip"), &[("stay.txt", "capybaraword")]),
            _ => {}
        }
        t.backfill(&a, "acme", &["--no-index"]);
        t.run(&["index"]);
        layers.push(t.status()["layers"].as_u64().unwrap());
        for seen in 0..=i {
            let hits = t.search(&format!("quokka{seen}word"), &[]);
            let want = usize::from(seen != 1 || i < 4);
            assert_eq!(
                hits.len(),
                want,
                "quokka{seen}word after update {i}: {hits:?}"
            );
        }
        if i >= 1 {
            assert_eq!(t.search("capybaraword", &[]).len(), 1);
            assert_eq!(t.search("tapirword", &[]).len(), usize::from(i < 5));
        }
    }
    // One layer per update on top of the full build, until there are 8:
    // then the layers above the full build are merged into one.
    for pair in layers.windows(2) {
        let next = if pair[0] == 8 { 2 } else { pair[0] + 1 };
        assert_eq!(pair[1], next, "{layers:?}");
    }
    assert!(layers.contains(&8), "{layers:?}");
    for q in QUERIES {
        t.agrees_with_exact(q, &[], LAYERED);
    }
}

/// Runs `check` on a lake in a bucket of a fresh S3 server; it gets the
/// target, a scratch folder and the server's data folder.
pub fn on_s3(stages: [&str; 2], check: impl FnOnce(&Target, &Path, &Path)) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("s3");
    std::fs::create_dir_all(data.join("lake")).unwrap();
    let s3 = S3Server::start(&data);
    let t = Target {
        lake: "s3://lake/warehouse/".to_string(),
        env: s3.env(),
        stages,
    };
    check(&t, tmp.path(), &data);
}

#[test]
fn text_index_on_s3_stays_exact() {
    on_s3(SPINE, |t, tmp, data| {
        lifecycle(t, tmp);
        // The index lives in the bucket, beside the tables.
        let manifest = data.join("lake/warehouse/_indexes/text/manifest.json");
        assert!(manifest.is_file());
        // A backfill adds a layer, which searches download beside the others.
        let acme = tmp.join("acme");
        std::fs::write(acme.join("late.txt"), "A later note on quokkaword.").unwrap();
        t.backfill(&acme, "acme", &[]);
        assert_eq!(t.status()["layers"], 2);
        assert_eq!(t.search("quokkaword", &[]).len(), 1);
        shows_the_changes(t, Some(LAYERED));
    });
}

fn generations(lake: &Path) -> usize {
    std::fs::read_dir(lake.join("_indexes/text"))
        .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
        .unwrap_or(0)
}

#[test]
fn sigkill_during_an_index_update_leaves_a_working_index() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let t = Target {
        lake: lake.to_str().unwrap().to_string(),
        env: Vec::new(),
        stages: SPINE,
    };
    let (a, _) = seed(&t, tmp.path());
    change(&t, &a);

    // Kill as soon as the process runs, and once its new generation's
    // upload has begun (before the manifest names it).
    let mut killed = 0;
    for wait_for_upload in [false, true] {
        let before = generations(&lake);
        let mut child = docstream()
            .args(["index", "--rebuild", "--lake", &t.lake])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success());
                break true;
            }
            if !wait_for_upload || generations(&lake) > before {
                break false;
            }
            assert!(Instant::now() < deadline, "index made no progress");
            std::thread::sleep(Duration::from_millis(1));
        };
        if !finished {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            killed += 1;
        }
        // Whatever the manifest names is whole, and searches stay current.
        shows_the_changes(&t, None);
    }
    assert!(
        killed > 0,
        "every index update finished before it could be killed"
    );

    t.run(&["index"]);
    assert_eq!(t.status()["rows_behind"], 0);
    shows_the_changes(&t, Some(LAYERED));
}

#[test]
fn eval_and_sql_search_run_on_the_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    backfill(&repo().join("samples"), &lake, &[]);
    let l = lake.to_str().unwrap();

    let out = ok(docstream()
        .args([
            "eval",
            "tests/fixtures/search/queries.jsonl",
            "--format",
            "json",
            "--lake",
            l,
        ])
        .output()
        .unwrap());
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let row = |search: &str, indexed: bool| {
        rows.iter()
            .find(|r| r["retrievers"] == search && r["indexed"] == indexed)
            .unwrap_or_else(|| panic!("no {search} row in {out}"))
            .clone()
    };
    let (indexed, exact) = (row("keyword", true), row("keyword", false));
    for metric in ["recall", "mrr", "ndcg"] {
        assert_eq!(indexed[metric], exact[metric], "{metric}: {out}");
    }
    // Real text, real words: BM25 finds nearly every labelled document first.
    assert!(indexed["recall"].as_f64().unwrap() >= 0.9, "{out}");
    assert!(indexed["mrr"].as_f64().unwrap() >= 0.8, "{out}");
    assert_eq!(indexed["queries"], 12);

    // Search in SQL, joined like any table.
    let rows = query(
        l,
        "SELECT d.source_uri, s.chunk_idx, s.score FROM text_search('expired certificate outage', 3) s \
         JOIN current_documents d USING (doc_id) ORDER BY s.score DESC",
        &[],
    );
    assert!(!rows.is_empty());
    assert!(
        rows[0]["source_uri"]
            .as_str()
            .unwrap()
            .ends_with("security-incident-2024-03.txt"),
        "{rows:?}"
    );
    let none = query(
        l,
        "SELECT count(*) AS n FROM text_search('budget', 5, 'nobody')",
        &[],
    );
    assert_eq!(none[0]["n"], 0);
    let bad = docstream()
        .args(["query", "SELECT * FROM text_search(42)", "--lake", l])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("text_search('words', k"));
}
