//! Pipelines that change: stage fingerprints, incremental recompute,
//! retries and `plan`, against the fault-injecting OpenAI server (it
//! counts every request, and the response cache is off, so each count is
//! what a run really sent).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::*;

/// Four small documents.
fn docs(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for (name, body) in [
        ("vendor.md", "# Vendor delay\n\nThe vendor shipped the storage array three weeks late. The migration slipped to March, and the budget grew by 40,000 euros. Maria owns the recovery plan."),
        ("hiring.txt", "Hiring update. Two backend engineers start in May. The on-call rotation stays thin until then, which is a risk for the payments launch."),
        ("security.md", "# Security review\n\nThe penetration test found an unauthenticated admin endpoint. It was closed within a day. A follow-up audit is planned for June."),
        ("notes.txt", "Meeting notes. Agreed to move the launch to Q3. Omar will draft the customer announcement. Legal must approve the new terms first."),
    ] {
        std::fs::write(src.join(name), body).unwrap();
    }
    src
}

fn stage(name: &str, provider: Option<&str>, params: &str) -> String {
    let sql = repo().join(format!("sql/stages/{name}.sql"));
    let providers = provider.map(|p| format!("\"{p}\"")).unwrap_or_default();
    format!(
        "[[stages]]\nname = \"{name}\"\nsql = \"{}\"\ntable = \"{name}\"\nproviders = [{providers}]\nparams = {{ {params} }}\n",
        sql.display(),
    )
}

/// A pipeline of the spine, embeddings and summaries on the fault server
/// at `url`, plus `extra` stages; no response cache.
fn pipeline(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let text = format!(
        "name = \"lineage\"\n[models]\ncache = \"off\"\n\n{}{}{}{}{extra}
[providers.fake]
kind = \"openai\"
model = \"fake-model\"
base_url = \"{url}\"
dims = 64
retries = 0
circuit_failures = 1000
price_input_per_1m = 2.0
",
        stage("documents", None, "encoding = \"cl100k_base\""),
        stage(
            "chunks",
            None,
            "max_tokens = 24, overlap = 0, encoding = \"cl100k_base\""
        ),
        stage("embeddings", Some("fake"), ""),
        stage("summaries", Some("fake"), ""),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(pipeline: &Path, lake: &Path, args: &[&str]) -> String {
    ok(docstream()
        .arg("--pipeline")
        .arg(pipeline)
        .arg("--lake")
        .arg(lake)
        .args(args)
        .output()
        .unwrap())
}

/// `plan --format json`, by stage.
fn plan(pipeline: &Path, lake: &Path, args: &[&str]) -> std::collections::HashMap<String, Value> {
    let out = run(
        pipeline,
        lake,
        &[&["plan", "--format", "json"][..], args].concat(),
    );
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    rows.into_iter()
        .map(|r| (r["stage"].as_str().unwrap().to_string(), r))
        .collect()
}

fn to_compute(plan: &std::collections::HashMap<String, Value>) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = plan
        .iter()
        .map(|(s, r)| (s.clone(), r["to_compute"].as_i64().unwrap()))
        .filter(|(_, n)| *n > 0)
        .collect();
    v.sort();
    v
}

/// Requests, embedding inputs and chat calls the server saw.
fn counts(port: u16) -> (i64, i64, i64) {
    let s = stats(port);
    let n = |k: &str| s[k].as_i64().unwrap();
    (n("requests"), n("embed_inputs"), n("chat"))
}

/// What the server saw while `f` ran, and what `f` printed.
fn sent(port: u16, f: impl FnOnce() -> String) -> ((i64, i64, i64), String) {
    let before = counts(port);
    let out = f();
    let after = counts(port);
    let delta = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    (delta, out)
}

fn count_of(lake: &Path, sql: &str) -> i64 {
    count(lake.to_str().unwrap(), sql)
}

#[test]
fn only_new_and_changed_stages_run_and_plan_predicts_each_run() {
    let dir = tempfile::tempdir().unwrap();
    let src = docs(dir.path());
    let lake = dir.path().join("lake");
    let (_server, url, port) = fault_server(&[]);
    let p = pipeline(dir.path(), &url, "");

    let fresh = plan(&p, &lake, &[]);
    assert!(
        fresh.is_empty() || to_compute(&fresh).is_empty(),
        "{fresh:?}"
    );
    run(&p, &lake, &["backfill", src.to_str().unwrap()]);
    let chunks = count_of(&lake, "SELECT count(*) FROM chunks");
    let (_, embedded, chats) = counts(port);
    assert_eq!(embedded, chunks, "one embedding input per chunk");
    assert_eq!(chats, 4, "one summary per document");
    assert_eq!(
        count_of(&lake, "SELECT count(*) FROM lineage WHERE status = 'ok'"),
        16,
        "4 documents x 4 stages"
    );
    assert_eq!(
        count_of(
            &lake,
            "SELECT count(DISTINCT stage_fingerprint) FROM chunks"
        ),
        1
    );

    // Nothing changed: nothing to compute, and a run sends nothing.
    assert!(to_compute(&plan(&p, &lake, &[])).is_empty());
    let (seen, out) = sent(port, || {
        run(&p, &lake, &["backfill", src.to_str().unwrap()])
    });
    assert!(out.contains("0 recomputed"), "{out}");
    assert_eq!(seen, (0, 0, 0));

    // A new stage runs alone, on every document already landed.
    let p = pipeline(
        dir.path(),
        &url,
        &stage("doc_types", Some("fake"), "labels = \"report,notes\""),
    );
    let planned = plan(&p, &lake, &[]);
    assert_eq!(to_compute(&planned), [("doc_types".to_string(), 4)]);
    assert_eq!(planned["doc_types"]["new"], 4);
    assert!(planned["doc_types"]["est_input_tokens"].as_i64().unwrap() > 0);
    assert!(planned["chunks"]["est_input_tokens"].is_null(), "no model");
    let (seen, out) = sent(port, || {
        run(&p, &lake, &["backfill", src.to_str().unwrap()])
    });
    assert!(out.contains("4 recomputed"), "{out}");
    assert_eq!(seen, (4, 0, 4), "doc_types' calls only");
    assert_eq!(count_of(&lake, "SELECT count(*) FROM doc_types"), 4);

    // Smaller chunks: chunks and the embeddings that read them, nothing else.
    let set = ["--set", "chunks.max_tokens=12"];
    let planned = plan(&p, &lake, &set);
    assert_eq!(
        to_compute(&planned),
        [("chunks".to_string(), 4), ("embeddings".to_string(), 4)]
    );
    assert_eq!(planned["chunks"]["stale"], 4);
    let backfill = [&set[..], &["backfill", src.to_str().unwrap()]].concat();
    let (seen, _) = sent(port, || run(&p, &lake, &backfill));
    let small = count_of(&lake, "SELECT count(*) FROM chunks");
    assert!(
        small > chunks,
        "{small} chunks of 12 tokens, {chunks} of 24"
    );
    assert_eq!(seen.1, small, "every new chunk embedded once");
    assert_eq!(seen.2, 0, "no chat call");
    assert_eq!(
        count_of(&lake, "SELECT count(*) FROM history.chunks"),
        small + chunks,
        "the old rows stay for comparison"
    );
    assert_eq!(
        count_of(
            &lake,
            "SELECT count(*) FROM embeddings e JOIN chunks c USING (doc_id, chunk_idx)"
        ),
        small,
        "the current embeddings are the current chunks'"
    );

    // A changed prompt (the classification's labels) re-runs that stage only.
    let p = pipeline(
        dir.path(),
        &url,
        &stage("doc_types", Some("fake"), "labels = \"report,notes,memo\""),
    );
    assert_eq!(
        to_compute(&plan(&p, &lake, &set)),
        [("doc_types".to_string(), 4)]
    );
    let (seen, _) = sent(port, || run(&p, &lake, &backfill));
    assert_eq!(seen, (4, 0, 4));
    assert_eq!(count_of(&lake, "SELECT count(*) FROM doc_types"), 4);

    // The superseded rows go when asked, and only they.
    run(
        &p,
        &lake,
        &["vacuum", "--superseded", "--retain-hours", "0", "--force"],
    );
    let raw = query(
        lake.to_str().unwrap(),
        "SELECT count(*) AS n FROM chunks",
        &[],
    );
    assert_eq!(raw[0]["n"], small);
    let tables = run(&p, &lake, &["query", "SHOW TABLES", "--format", "json"]);
    assert!(!tables.contains("\"history\""), "{tables}");

    // From the lake alone: a new stage after the source is gone.
    std::fs::remove_dir_all(&src).unwrap();
    let p = pipeline(
        dir.path(),
        &url,
        &[
            stage("doc_types", Some("fake"), "labels = \"report,notes,memo\""),
            stage("risks", Some("fake"), ""),
        ]
        .concat(),
    );
    let markdown = [
        &set[..],
        &["reprocess", "--where", "mime = 'text/markdown'"],
    ]
    .concat();
    let (seen, out) = sent(port, || run(&p, &lake, &markdown));
    assert!(out.contains("2 documents"), "{out}");
    assert_eq!(seen, (2, 0, 2), "risks of the two markdown files");
    let out = run(&p, &lake, &[&set[..], &["reprocess"]].concat());
    assert!(out.contains("2 documents"), "{out}");
    assert_eq!(
        count_of(
            &lake,
            "SELECT count(DISTINCT doc_id) FROM lineage WHERE stage = 'risks' AND status = 'ok'"
        ),
        4
    );
    assert!(to_compute(&plan(&p, &lake, &set)).is_empty());
}

/// With a response cache kept between runs, `plan` leaves out the calls
/// it answers (a dry run reads it), and the run then sends what `plan`
/// said, to the request.
#[test]
fn plan_leaves_out_what_the_response_cache_answers() {
    let dir = tempfile::tempdir().unwrap();
    let src = docs(dir.path());
    let lake = dir.path().join("lake");
    let (_server, url, port) = fault_server(&[]);
    let cached = |extra: &str| {
        let p = pipeline(dir.path(), &url, extra);
        let cache = dir.path().join("responses.redb");
        let text = std::fs::read_to_string(&p).unwrap().replace(
            "cache = \"off\"",
            &format!("cache = \"{}\"", cache.display()),
        );
        std::fs::write(&p, text).unwrap();
        p
    };
    let p = cached("");
    run(&p, &lake, &["backfill", src.to_str().unwrap()]);

    // The summaries' SQL, reworded: stale, but each answer is cached.
    let sql = std::fs::read_to_string(repo().join("sql/stages/summaries.sql")).unwrap();
    let reworded = dir.path().join("summaries.sql");
    std::fs::write(&reworded, format!("-- reworded\n{sql}")).unwrap();
    let p = cached("");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        &repo()
            .join("sql/stages/summaries.sql")
            .display()
            .to_string(),
        &reworded.display().to_string(),
    );
    std::fs::write(&p, text).unwrap();
    let planned = plan(&p, &lake, &[]);
    assert_eq!(to_compute(&planned), [("summaries".to_string(), 4)]);
    assert_eq!(planned["summaries"]["cached_calls"], 4);
    assert_eq!(planned["summaries"]["est_model_calls"], 0);
    assert_eq!(planned["summaries"]["est_input_tokens"], 0);
    assert_eq!(planned["summaries"]["est_cost_usd"], 0.0);
    let (seen, out) = sent(port, || {
        run(&p, &lake, &["backfill", src.to_str().unwrap()])
    });
    assert!(out.contains("4 recomputed"), "{out}");
    assert_eq!(seen, (0, 0, 0), "every summary came from the cache");

    // Smaller chunks: the plan counts the new chunks' embeddings exactly.
    let set = ["--set", "chunks.max_tokens=12"];
    let planned = plan(&p, &lake, &set);
    let calls = planned["embeddings"]["est_model_calls"].as_i64().unwrap();
    assert!(calls > 0, "{planned:?}");
    assert!(planned["embeddings"]["est_cost_usd"].as_f64().unwrap() > 0.0);
    let backfill = [&set[..], &["backfill", src.to_str().unwrap()]].concat();
    let (seen, _) = sent(port, || run(&p, &lake, &backfill));
    assert_eq!(seen.1, calls, "texts embedded, as planned");
}

/// `--max-cost-usd` stops the run before the batch that would pass it;
/// every batch whose calls were made lands first.
#[test]
fn a_cost_cap_stops_the_run_and_what_was_paid_for_lands() {
    let dir = tempfile::tempdir().unwrap();
    let src = docs(dir.path());
    let lake = dir.path().join("lake");
    let (_server, url, port) = fault_server(&[]);
    run(
        &pipeline(dir.path(), &url, ""),
        &lake,
        &["backfill", src.to_str().unwrap()],
    );
    // Four documents of about 30 tokens, at $2 per 1M: about $0.00006 each.
    let p = pipeline(dir.path(), &url, &stage("risks", Some("fake"), ""));
    let before = counts(port).2;
    let out = docstream()
        .arg("--pipeline")
        .arg(&p)
        .arg("--lake")
        .arg(&lake)
        .args([
            "reprocess",
            "--batch-rows",
            "1",
            "--max-cost-usd",
            "0.00015",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("over --max-cost-usd"), "{err}");
    let called = counts(port).2 - before;
    let landed = count_of(
        &lake,
        "SELECT count(*) FROM lineage WHERE stage = 'risks' AND status = 'ok'",
    );
    assert!((1..4).contains(&landed), "{landed} of 4 under the cap");
    assert_eq!(called, landed, "every call made landed");
}

#[test]
fn retryable_failures_run_again_and_leave_failures_once_they_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let src = docs(dir.path());
    let lake = dir.path().join("lake");
    {
        // Every call is rate limited: summaries fail, retryably.
        let (_server, url, _) = fault_server(&["--p429", "1.0", "--retry-after", "0"]);
        let p = pipeline(dir.path(), &url, "");
        run(&p, &lake, &["backfill", src.to_str().unwrap()]);
    }
    assert_eq!(
        count_of(&lake, "SELECT count(*) FROM failures WHERE stage = 'summaries' AND error_kind = 'model_rate_limited'"),
        4
    );
    let (_server, url, port) = fault_server(&[]);
    let p = pipeline(dir.path(), &url, "");
    let planned = plan(&p, &lake, &[]);
    assert_eq!(planned["summaries"]["retryable"], 4);
    assert_eq!(planned["embeddings"]["retryable"], 4);
    // --no-retry-failed leaves them.
    assert!(to_compute(&plan(&p, &lake, &["--no-retry-failed"])).is_empty());
    let out = run(
        &p,
        &lake,
        &["backfill", src.to_str().unwrap(), "--no-retry-failed"],
    );
    assert!(out.contains("0 recomputed"), "{out}");
    assert_eq!(counts(port).0, 0);

    run(&p, &lake, &["backfill", src.to_str().unwrap()]);
    assert_eq!(counts(port).2, 4, "each summary retried once");
    assert_eq!(count_of(&lake, "SELECT count(*) FROM summaries"), 4);
    assert_eq!(
        count_of(
            &lake,
            "SELECT count(*) FROM failures WHERE stage IN ('summaries', 'embeddings')"
        ),
        0,
        "nothing still failing"
    );
    assert_eq!(
        count_of(
            &lake,
            "SELECT count(*) FROM history.failures WHERE stage = 'summaries'"
        ),
        4,
        "the failures stay on record"
    );
    assert!(to_compute(&plan(&p, &lake, &[])).is_empty());
}

#[test]
fn a_changed_embedding_model_reembeds_each_tenants_current_chunks_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = docs(dir.path());
    let lake = dir.path().join("lake");
    let (_server, url, port) = fault_server(&[]);
    let p = pipeline(dir.path(), &url, "");
    // Two tenants, two documents each, in one batch of a reprocess.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    for name in ["vendor.md", "hiring.txt"] {
        std::fs::rename(src.join(name), other.join(name)).unwrap();
    }
    run(
        &p,
        &lake,
        &["backfill", src.to_str().unwrap(), "--tenant", "acme"],
    );
    run(
        &p,
        &lake,
        &["backfill", other.to_str().unwrap(), "--tenant", "globex"],
    );
    let chunks = count_of(&lake, "SELECT count(*) FROM chunks");

    // Another embedding model: embeddings only, from the chunks the lake
    // holds.
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "table = \"embeddings\"\nproviders = [\"fake\"]",
        "table = \"embeddings\"\nproviders = [\"other\"]",
    );
    let other_provider = format!(
        "[providers.other]\nkind = \"openai\"\nmodel = \"other-embedder\"\nbase_url = \"{url}\"\ndims = 64\n"
    );
    std::fs::write(&p, format!("{text}\n{other_provider}")).unwrap();
    let (seen, out) = sent(port, || run(&p, &lake, &["reprocess"]));
    assert!(out.contains("4 documents"), "{out}");
    assert_eq!(seen.1, chunks, "each chunk embedded once: {seen:?}");
    assert_eq!(seen.2, 0, "no chat call");
    assert_eq!(count_of(&lake, "SELECT count(*) FROM embeddings"), chunks);
    assert_eq!(
        count_of(&lake, "SELECT count(*) FROM history.embeddings"),
        2 * chunks,
        "the old model's vectors stay until vacuum --superseded"
    );
    assert_eq!(
        count_of(
            &lake,
            "SELECT count(DISTINCT tenant) FROM usage WHERE stage = 'embeddings' AND inputs > 0"
        ),
        2,
        "each tenant's calls are its own"
    );
}
