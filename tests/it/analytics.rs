//! Analytics over a lake built from the sample documents with the real
//! local embedding model: `embed_query` and the vector functions, hybrid
//! `search`, `ask` against the real local LLM, and reports checked against
//! the raw rows.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use crate::harness::*;

/// The samples, embedded with MiniLM (documents, chunks, embeddings).
fn embedded_lake(lake: &Path) {
    ok(docstream()
        .args(["backfill", "samples", "--lake"])
        .arg(lake)
        .args(["--stages", "documents,chunks,embeddings"])
        .args(["--set", "chunks.max_tokens=96", "--set", "chunks.overlap=0"])
        .output()
        .unwrap());
}

fn search_json(lake: &str, query: &str, extra: &[&str]) -> Vec<Value> {
    let out = ok(docstream()
        .args(["search", query, "--format", "json", "--lake", lake])
        .args(extra)
        .output()
        .unwrap());
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A run of `n` words from the middle of `text`.
fn phrase(text: &str, n: usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let start = words.len().saturating_sub(n) / 2;
    words[start..(start + n).min(words.len())].join(" ")
}

#[test]
fn search_and_embed_query_find_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    embedded_lake(&lake);
    let chunks = query(
        lake_s,
        "SELECT doc_id, chunk_idx, text FROM chunks ORDER BY doc_id, chunk_idx",
        &[],
    );
    let docs: BTreeMap<&str, &str> = chunks
        .iter()
        .filter(|c| c["chunk_idx"] == 0)
        .map(|c| (c["doc_id"].as_str().unwrap(), c["text"].as_str().unwrap()))
        .collect();
    assert!(docs.len() >= 5, "{docs:?}");

    // A phrase from each document finds that document first.
    for (doc_id, text) in &docs {
        let q = phrase(text, 8);
        let hits = search_json(lake_s, &q, &["--k", "3"]);
        assert!(!hits.is_empty(), "no hits for {q:?}");
        assert_eq!(hits[0]["doc_id"], *doc_id, "query {q:?}: {hits:#?}");
        assert!(
            hits[0]["cosine"].is_f64() && hits[0]["bm25"].is_f64(),
            "{:#?}",
            hits[0]
        );
        assert!(hits.len() <= 3);
    }

    // embed_query of a chunk's own text is that chunk's vector: cosine 1.
    let chunk = &chunks[chunks.len() / 2];
    let text = chunk["text"].as_str().unwrap().replace('\'', "''");
    let rows = query(
        lake_s,
        &format!(
            "SELECT doc_id, chunk_idx, cosine_similarity(embedding, embed_query('{text}')) AS score, \
                    l2_distance(embedding, embed_query('{text}')) AS dist \
             FROM embeddings ORDER BY score DESC LIMIT 2"
        ),
        &[],
    );
    assert_eq!(rows[0]["doc_id"], chunk["doc_id"]);
    assert_eq!(rows[0]["chunk_idx"], chunk["chunk_idx"]);
    assert!(rows[0]["score"].as_f64().unwrap() > 0.999, "{rows:?}");
    assert!(rows[0]["dist"].as_f64().unwrap() < 0.01, "{rows:?}");
    assert!(rows[1]["score"].as_f64().unwrap() < 0.999, "{rows:?}");

    // Filters: another tenant's view is empty; a future --since too.
    assert!(search_json(lake_s, "budget", &["--tenant", "nobody"]).is_empty());
    assert!(search_json(lake_s, "budget", &["--since", "2999-01-01"]).is_empty());
    assert!(!search_json(lake_s, "budget", &["--tenant", "default"]).is_empty());
}

#[test]
fn search_hits_show_the_page_or_slide() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/formats/deck.pptx"),
        src.join("deck.pptx"),
    )
    .unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    backfill(
        &src,
        &lake,
        &["--set", "chunks.max_tokens=24", "--set", "chunks.overlap=0"],
    );
    let hits = search_json(lake_s, "conveyor retrofit", &[]);
    assert!(
        hits[0]["snippet"]
            .as_str()
            .unwrap()
            .contains("Conveyor retrofit"),
        "{hits:?}"
    );
    assert_eq!(hits[0]["page_start"], 3, "{hits:?}");
    let out = ok(docstream()
        .args(["search", "conveyor retrofit", "--k", "1", "--lake", lake_s])
        .output()
        .unwrap());
    assert!(out.contains("Logistics review Q3 p. 3 ["), "{out}");
}

#[test]
fn ask_cites_real_chunks_and_admits_what_it_does_not_know() {
    let _turn = generating_turn();
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    embedded_lake(&lake);
    let ask = |q: &str| -> Value {
        let out = ok(docstream()
            .args(["ask", q, "--format", "json", "--lake", lake_s])
            .output()
            .unwrap());
        serde_json::from_str(&out).unwrap()
    };
    let chunks: Vec<(String, i64)> = query(lake_s, "SELECT doc_id, chunk_idx FROM chunks", &[])
        .iter()
        .map(|c| {
            (
                c["doc_id"].as_str().unwrap().to_string(),
                c["chunk_idx"].as_i64().unwrap(),
            )
        })
        .collect();

    // SmolLM2-135M answers few questions well; what must hold for every
    // answer is that it is grounded: retrieved context, and citations only
    // of chunks that exist, shown as [doc_id#chunk_idx] after each claim.
    // Greedy decoding makes the model's choices repeatable, and at least
    // one of these is answered with citations.
    let mut answered = 0;
    for (question, source) in [
        (
            "When will wave one of the data migration happen?",
            "data-migration-plan.pdf",
        ),
        (
            "What caused the security incident in March 2024?",
            "security-incident-2024-03.txt",
        ),
        (
            "What did the vendor promise in the contract?",
            "vendor-contract-review.html",
        ),
    ] {
        let answer = ask(question);
        let context = answer["context"].as_array().unwrap();
        assert!(
            context
                .iter()
                .any(|h| h["source_uri"].as_str().unwrap().ends_with(source)),
            "{question}: {source} not retrieved: {answer:#}"
        );
        let text = answer["answer"].as_str().unwrap();
        if answer["found"] == false {
            assert_eq!(text, "The answer is not in the documents.");
            assert!(answer["claims"].as_array().unwrap().is_empty());
            continue;
        }
        answered += 1;
        let claims = answer["claims"].as_array().unwrap();
        assert!(!claims.is_empty(), "{answer:#}");
        for claim in claims {
            let citations = claim["citations"].as_array().unwrap();
            assert!(!citations.is_empty(), "uncited claim: {claim}");
            for c in citations {
                let key = (
                    c["doc_id"].as_str().unwrap().to_string(),
                    c["chunk_idx"].as_i64().unwrap(),
                );
                assert!(
                    chunks.contains(&key),
                    "cites a chunk that does not exist: {c}"
                );
                assert!(text.contains(&format!("[{}#{}]", key.0, key.1)), "{text}");
            }
        }
    }
    assert!(answered > 0, "no question was answered with citations");

    let unrelated = ask("What is the boiling point of liquid nitrogen in kelvin?");
    assert_eq!(unrelated["found"], false, "{unrelated:#}");
    assert!(unrelated["context"].as_array().unwrap().is_empty());
    assert_eq!(
        unrelated["answer"], "The answer is not in the documents.",
        "{unrelated:#}"
    );
}

/// Rows of `report` as JSON objects.
fn report(lake: &str, name: &str) -> Vec<Value> {
    let out = ok(docstream()
        .args(["report", name, "--format", "ndjson", "--lake", lake])
        .output()
        .unwrap());
    ndjson(&out)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// A pipeline whose risks and action items come from plain SQL over the
/// text, so the reports have known, varied input without an LLM.
fn seeded_pipeline(dir: &Path) -> std::path::PathBuf {
    let stages = repo().join("sql/stages");
    let text = format!(
        r#"
name = "seeded"
[[stages]]
name = "documents"
sql = "{stages}/documents.sql"
table = "documents"
params = {{ encoding = "cl100k_base" }}

[[stages]]
name = "chunks"
sql = "{stages}/chunks.sql"
table = "chunks"
params = {{ max_tokens = 64, overlap = 0, encoding = "cl100k_base" }}

[[stages]]
name = "embeddings"
sql = "{stages}/embeddings.sql"
table = "embeddings"
providers = ["minilm"]

[[stages]]
name = "risks"
table = "risks"
query = """
SELECT doc_id, content_hash, 'seed' AS model, 'Risk ' || CAST(chunk_idx AS VARCHAR) AS title,
       text AS description,
       CASE chunk_idx % 3 WHEN 0 THEN 'security' WHEN 1 THEN 'budget' ELSE 'vendor' END AS category,
       CASE (chunk_idx + n_tokens) % 4 WHEN 0 THEN 'low' WHEN 1 THEN 'medium' WHEN 2 THEN 'high' ELSE 'critical' END AS severity,
       'medium' AS likelihood,
       CASE WHEN n_tokens % 2 = 0 THEN NULL ELSE 'A plan' END AS mitigation,
       CASE WHEN chunk_idx % 2 = 0 THEN 'Dana' ELSE NULL END AS owner,
       NULL AS evidence
FROM chunks
"""

[[stages]]
name = "action_items"
table = "action_items"
query = """
SELECT doc_id, content_hash, 'seed' AS model, 'Task ' || CAST(chunk_idx AS VARCHAR) AS task,
       'Sam' AS owner,
       CAST(current_date() + CAST(CAST((n_tokens * 7 + chunk_idx) % 30 - 5 AS VARCHAR) || ' days' AS INTERVAL) AS DATE) AS due_date,
       'high' AS priority, NULL AS evidence
FROM chunks
"""

# No response cache: every run makes (and records) its embedding requests.
[models]
cache = "off"

[providers.minilm]
kind = "local"
model = "all-MiniLM-L6-v2"
context_tokens = 256
long_input = "split"
"#,
        stages = stages.display()
    );
    let path = dir.join("seeded.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn reports_agree_with_the_raw_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let pipeline = seeded_pipeline(tmp.path());
    backfill_with(
        &pipeline,
        &repo().join("samples"),
        &lake,
        &["--tenant", "acme"],
    );
    backfill_with(
        &pipeline,
        &repo().join("tests/fixtures/hostile"),
        &lake,
        &["--tenant", "beta"],
    );
    let rows = |sql: &str| query(lake_s, sql, &[]);
    let docs = rows("SELECT doc_id, content_hash, tenant, n_tokens FROM documents");
    let risks = rows("SELECT severity, category, mitigation, owner FROM risks");
    assert!(risks.len() > 10, "{}", risks.len());

    let listed = ok(docstream().args(["report", "--list"]).output().unwrap());
    for name in [
        "risks-by-week",
        "unmitigated-risks",
        "action-items-due",
        "documents-per-day",
        "model-cost",
        "failure-rate",
    ] {
        assert!(listed.contains(name), "{listed}");
    }

    // risks-by-week: every risk counted once, per severity and category.
    let mut want: HashMap<(String, String), i64> = HashMap::new();
    for r in &risks {
        let key = (r["severity"].to_string(), r["category"].to_string());
        *want.entry(key).or_default() += 1;
    }
    let mut got: HashMap<(String, String), i64> = HashMap::new();
    for r in report(lake_s, "risks-by-week") {
        assert!(r["week"].is_string());
        let key = (r["severity"].to_string(), r["category"].to_string());
        *got.entry(key).or_default() += int(&r["risks"]);
    }
    assert_eq!(got, want);

    // unmitigated-risks: high and critical without mitigation, owners kept.
    let unmitigated: Vec<&Value> = risks
        .iter()
        .filter(|r| {
            (r["severity"] == "high" || r["severity"] == "critical") && r["mitigation"].is_null()
        })
        .collect();
    let got = report(lake_s, "unmitigated-risks");
    assert!(!unmitigated.is_empty());
    assert_eq!(got.len(), unmitigated.len());
    let owned = |rows: &mut dyn Iterator<Item = bool>| rows.filter(|o| *o).count();
    assert_eq!(
        owned(&mut got.iter().map(|r| r["owner"] == "Dana")),
        owned(&mut unmitigated.iter().map(|r| r["owner"] == "Dana"))
    );
    assert!(got
        .iter()
        .all(|r| r["owner"] == "Dana" || r["owner"] == "(unowned)"));
    assert_eq!(got[0]["severity"], "critical");

    // action-items-due: due today through today + 14, computed here.
    let today = chrono::Utc::now().date_naive();
    let items = rows("SELECT CAST(due_date AS VARCHAR) AS due FROM action_items");
    let due = items
        .iter()
        .filter(|r| {
            let d =
                chrono::NaiveDate::parse_from_str(r["due"].as_str().unwrap(), "%Y-%m-%d").unwrap();
            d >= today && d <= today + chrono::Days::new(14)
        })
        .count();
    let got = report(lake_s, "action-items-due");
    assert!(due > 0 && due < items.len(), "{due} of {}", items.len());
    assert_eq!(got.len(), due);

    // documents-per-day: per tenant, versions, chunks and tokens.
    let chunk_rows = rows("SELECT doc_id, content_hash FROM chunks");
    for tenant in ["acme", "beta"] {
        let mine: Vec<&Value> = docs.iter().filter(|d| d["tenant"] == tenant).collect();
        let keys: Vec<(&Value, &Value)> = mine
            .iter()
            .map(|d| (&d["doc_id"], &d["content_hash"]))
            .collect();
        let chunks = chunk_rows
            .iter()
            .filter(|c| keys.contains(&(&c["doc_id"], &c["content_hash"])))
            .count() as i64;
        let tokens: i64 = mine.iter().map(|d| int(&d["n_tokens"])).sum();
        let got: Vec<Value> = report(lake_s, "documents-per-day")
            .into_iter()
            .filter(|r| r["tenant"] == tenant)
            .collect();
        assert_eq!(got.len(), 1, "one day, one row per tenant: {got:?}");
        assert_eq!(int(&got[0]["versions"]), mine.len() as i64);
        assert_eq!(int(&got[0]["chunks"]), chunks);
        assert_eq!(int(&got[0]["tokens"]), tokens);
    }

    // model-cost: the embedding requests, attributed to each tenant.
    let usage = rows("SELECT tenant, requests, input_tokens FROM usage");
    let got = report(lake_s, "model-cost");
    for tenant in ["acme", "beta"] {
        let sum = |rows: &[Value], col: &str| -> i64 {
            rows.iter()
                .filter(|r| r["tenant"] == tenant)
                .map(|r| int(&r[col]))
                .sum()
        };
        assert!(sum(&usage, "requests") > 0, "{tenant}: no usage rows");
        assert_eq!(sum(&got, "requests"), sum(&usage, "requests"), "{tenant}");
        assert_eq!(sum(&got, "input_tokens"), sum(&usage, "input_tokens"));
        assert!(got.iter().all(|r| r["model"] == "all-MiniLM-L6-v2"));
    }

    // failure-rate: failures per stage and kind, over all documents seen.
    let failures = rows("SELECT doc_id, stage, error_kind FROM failures");
    assert!(!failures.is_empty());
    let mut seen: Vec<&Value> = docs.iter().map(|d| &d["doc_id"]).collect();
    seen.extend(failures.iter().map(|f| &f["doc_id"]));
    seen.sort_by_key(|v| v.to_string());
    seen.dedup();
    let got = report(lake_s, "failure-rate");
    let total: i64 = got.iter().map(|r| int(&r["failures"])).sum();
    assert_eq!(total, failures.len() as i64);
    for r in &got {
        let mut docs: Vec<&Value> = failures
            .iter()
            .filter(|f| f["stage"] == r["stage"] && f["error_kind"] == r["error_kind"])
            .map(|f| &f["doc_id"])
            .collect();
        docs.sort_by_key(|v| v.to_string());
        docs.dedup();
        let pct = 100.0 * docs.len() as f64 / seen.len() as f64;
        assert!(
            (r["pct_of_documents"].as_f64().unwrap() - pct).abs() < 0.01,
            "{r} vs {pct}"
        );
    }

    // Any report can land in a Parquet file.
    let out = tmp.path().join("cost.parquet");
    ok(docstream()
        .args(["report", "model-cost", "--lake", lake_s, "--out"])
        .arg(&out)
        .output()
        .unwrap());
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
}
