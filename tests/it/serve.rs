//! `docstream serve` through curl: uploads of every format followed to
//! `landed` over SSE, documents, search and SQL; tenant isolation; limits;
//! and SIGKILL while uploads are in flight.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// A running `docstream serve`, killed when dropped.
struct Serve {
    _process: Server,
    port: u16,
}

impl Serve {
    fn start(lake: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(lake, extra, &[])
    }

    fn start_with_env(lake: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = docstream()
            .args(["serve", "--addr", &addr, "--lake"])
            .arg(lake)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            _process: Server(child),
            port,
        };
        wait_for_port(port);
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn kill(self) {
        drop(self);
    }
}

/// An HTTP answer: status, headers (lowercase names) and body.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// Runs curl with `args` (plus -s, headers shown) and splits its answer.
fn curl(args: &[&str]) -> Answer {
    let out = Command::new("curl")
        .args(["-s", "-S", "-D", "-", "--max-time", "120"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // A 100 Continue comes before the real head.
    let mut rest = text.as_str();
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        if status == 100 {
            rest = body;
            continue;
        }
        return Answer {
            status,
            headers: head.to_lowercase(),
            body: body.to_string(),
        };
    }
}

fn get(url: &str, token: Option<&str>) -> Answer {
    get_within(url, token, "120")
}

/// A GET given `seconds` to finish (curl takes the last --max-time).
fn get_within(url: &str, token: Option<&str>, seconds: &str) -> Answer {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec![url, "--max-time", seconds];
    if let Some(a) = &auth {
        args.extend(["-H", a.as_str()]);
    }
    curl(&args)
}

fn post_json(url: &str, body: &Value, token: Option<&str>) -> Answer {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let body = body.to_string();
    let mut args = vec![
        url,
        "-H",
        "content-type: application/json",
        "--data-binary",
        &body,
    ];
    if let Some(a) = &auth {
        args.extend(["-H", a.as_str()]);
    }
    curl(&args)
}

fn upload_file(s: &Serve, file: &Path, token: Option<&str>) -> Answer {
    let form = format!("file=@{}", file.display());
    let url = s.url("/v1/documents");
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec![url.as_str(), "-F", form.as_str()];
    if let Some(a) = &auth {
        args.extend(["-H", a.as_str()]);
    }
    curl(&args)
}

fn sql(s: &Serve, sql: &str, token: Option<&str>) -> Answer {
    post_json(&s.url("/v1/query"), &json!({ "sql": sql }), token)
}

fn rows(s: &Serve, q: &str, token: Option<&str>) -> Vec<Value> {
    let a = sql(s, q, token);
    assert_eq!(a.status, 200, "{q}: {}", a.body);
    a.json()["rows"].as_array().unwrap().clone()
}

/// Follows a job's events until the stream ends; returns the event names.
fn follow(s: &Serve, job: &str, token: Option<&str>) -> Vec<(String, Value)> {
    // The stream lasts as long as the job.
    let a = get_within(&s.url(&format!("/v1/jobs/{job}/events")), token, "300");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.headers.contains("text/event-stream"), "{}", a.headers);
    let mut events = Vec::new();
    for block in a.body.split("\n\n") {
        let mut name = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            }
        }
        if !name.is_empty() {
            events.push((name, serde_json::from_str(&data).unwrap()));
        }
    }
    events
}

fn sample_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["samples", "tests/fixtures/formats"]
        .iter()
        .flat_map(|d| std::fs::read_dir(repo().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn uploads_of_every_format_land_and_can_be_read_searched_and_queried() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let s = Serve::start(&lake, &SPINE);
    let files = sample_files();
    assert!(files.len() >= 15, "{files:?}");
    // Half one request each, half in one batch request.
    let (single, batched) = files.split_at(files.len() / 2);
    let mut accepted = Vec::new();
    for f in single {
        let a = upload_file(&s, f, None);
        assert_eq!(a.status, 202, "{}: {}", f.display(), a.body);
        accepted.push(a.json());
    }
    let forms: Vec<String> = batched
        .iter()
        .map(|f| format!("file=@{}", f.display()))
        .collect();
    let url = s.url("/v1/documents/batch");
    let mut args = vec![url.as_str()];
    for form in &forms {
        args.extend(["-F", form.as_str()]);
    }
    let a = curl(&args);
    assert_eq!(a.status, 202, "{}", a.body);
    let batch = a.json()["accepted"].as_array().unwrap().clone();
    assert_eq!(batch.len(), batched.len(), "{batch:?}");
    for (f, v) in batched.iter().zip(&batch) {
        assert_eq!(v["name"], f.file_name().unwrap().to_str().unwrap());
    }
    accepted.extend(batch);
    let mut jobs = Vec::new();
    for (f, v) in files.iter().zip(&accepted) {
        // The lander may have picked it up before the answer was written.
        let state = v["state"].as_str().unwrap();
        assert!(["queued", "running", "landed"].contains(&state), "{state}");
        jobs.push((
            f.clone(),
            v["job_id"].as_str().unwrap().to_string(),
            v["doc_id"].as_str().unwrap().to_string(),
        ));
    }
    for (f, job, doc_id) in &jobs {
        let events = follow(&s, job, None);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"state"), "{names:?}");
        // The stream ends with the job landed: a `landed` event, or the
        // first `state` when it had landed before the stream began.
        let (last, data) = events.last().unwrap();
        assert!(["landed", "state"].contains(&last.as_str()), "{names:?}");
        assert_eq!(
            data["job"]["state"],
            "landed",
            "{}: {names:?} {data}",
            f.display()
        );
        assert_eq!(data["job"]["doc_id"], doc_id.as_str());
        // Every step a job passes through after it was seen, in order.
        if names.contains(&"running") {
            let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
            assert!(
                at("running") < at("extracted") && at("extracted") < at("landed"),
                "{names:?}"
            );
            assert!(events.iter().any(|(n, d)| n == "stage"
                && d["step"]["table"] == "documents"
                && d["step"]["version"].is_u64()));
        }
        let job_view = get(&s.url(&format!("/v1/jobs/{job}")), None).json();
        assert_eq!(job_view["state"], "landed");
        assert_eq!(job_view["stages"]["documents"]["state"], "done");
        let doc = get(&s.url(&format!("/v1/documents/{doc_id}")), None);
        assert_eq!(doc.status, 200, "{}", doc.body);
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(doc.json()["document"]["source_uri"]
            .as_str()
            .unwrap()
            .ends_with(&name));
    }
    // Every upload is one top-level document, listed once.
    let listed = get(&s.url("/v1/documents?limit=500"), None).json();
    let ids: HashSet<&str> = listed["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["doc_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), files.len());
    assert!(jobs.iter().all(|(_, _, d)| ids.contains(d.as_str())));

    // The same bytes under the same name: the same job, one version.
    let again = upload_file(&s, &files[0], None).json();
    assert_eq!(again["job_id"].as_str().unwrap(), jobs[0].1);
    follow(&s, &jobs[0].1, None);
    let versions = rows(
        &s,
        &format!(
            "SELECT count(*) AS n FROM documents WHERE doc_id = '{}'",
            jobs[0].2
        ),
        None,
    );
    assert_eq!(versions[0]["n"], 1);

    // Inline text, searched by a word only it holds.
    let a = post_json(
        &s.url("/v1/documents"),
        &json!({"text": "The quokka survey found the harbour fence broken.", "name": "survey.md", "title": "Quokka survey"}),
        None,
    );
    assert_eq!(a.status, 202, "{}", a.body);
    let inline = a.json();
    let events = follow(&s, inline["job_id"].as_str().unwrap(), None);
    assert_eq!(events.last().unwrap().1["job"]["state"], "landed");
    let hits = get(&s.url("/v1/search?q=quokka&k=3&retrievers=keyword"), None).json();
    let first = &hits["hits"][0];
    assert_eq!(first["doc_id"], inline["doc_id"]);
    assert_eq!(first["title"], "Quokka survey");
    assert!(first["snippet"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("quokka"));

    // SQL as JSON, and as an Arrow stream pyarrow reads.
    let n = rows(
        &s,
        "SELECT count(*) AS n FROM current_documents WHERE parent_doc_id IS NULL",
        None,
    );
    assert_eq!(n[0]["n"], files.len() as i64 + 1);
    let stream = dir.path().join("rows.arrows");
    let arrow = Command::new("curl")
        .args(["-s", "-o"])
        .arg(&stream)
        .args([
            "-H",
            "accept: application/vnd.apache.arrow.stream",
            "-H",
            "content-type: application/json",
        ])
        .args([
            "--data-binary",
            r#"{"sql": "SELECT doc_id, title FROM documents ORDER BY doc_id"}"#,
        ])
        .arg(s.url("/v1/query"))
        .status()
        .unwrap();
    assert!(arrow.success());
    let read = ok(Command::new("python3")
        .args(["-c", "import sys, pyarrow.ipc as i; t = i.open_stream(open(sys.argv[1], 'rb').read()).read_all(); print(t.num_rows, t.column_names)"])
        .arg(&stream)
        .output()
        .unwrap());
    let total = rows(&s, "SELECT count(*) AS n FROM documents", None)[0]["n"]
        .as_i64()
        .unwrap();
    assert_eq!(read.trim(), format!("{total} ['doc_id', 'title']"));

    // Errors are JSON with a hint, and the server goes on.
    let bad = sql(&s, "DROP TABLE documents", None);
    assert_eq!(bad.status, 400);
    assert!(bad.json()["hint"].is_string());
    let missing = get(
        &s.url("/v1/documents/0123456789abcdef0123456789abcdef"),
        None,
    );
    assert_eq!(missing.status, 404);
    assert_eq!(get(&s.url("/v1/nothing"), None).status, 404);
    assert_eq!(get(&s.url("/healthz"), None).status, 200);

    // Erasure: gone from every table, the job included.
    let erased = curl(&[
        "-X",
        "DELETE",
        &s.url(&format!("/v1/documents/{}", jobs[1].2)),
    ]);
    assert_eq!(erased.status, 200, "{}", erased.body);
    for table in ["documents", "chunks"] {
        let left = rows(
            &s,
            &format!(
                "SELECT count(*) AS n FROM {table} WHERE doc_id = '{}'",
                jobs[1].2
            ),
            None,
        );
        assert_eq!(left[0]["n"], 0, "{table}");
    }
    assert_eq!(
        get(&s.url(&format!("/v1/documents/{}", jobs[1].2)), None).status,
        404
    );
}

#[test]
fn openapi_is_valid_3_1_and_lists_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(&dir.path().join("lake"), &SPINE);
    let a = get(&s.url("/openapi.json"), None);
    assert_eq!(a.status, 200);
    let spec = a.json();
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    let paths = spec["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/documents", &["get", "post"][..]),
        ("/v1/documents/{doc_id}", &["get", "delete"]),
        ("/v1/documents/batch", &["post"]),
        ("/v1/jobs", &["get"]),
        ("/v1/jobs/{job_id}", &["get"]),
        ("/v1/jobs/{job_id}/events", &["get"]),
        ("/v1/search", &["get"]),
        ("/v1/ask", &["post"]),
        ("/v1/query", &["post"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
        ("/", &["get"]),
    ] {
        for m in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(*m)).is_some(),
                "{m} {path} is not in the spec"
            );
        }
    }
    // Every documented GET without parameters answers (no route is only on paper).
    for (path, item) in paths {
        if item.get("get").is_some()
            && !path.contains('{')
            && path != "/v1/search"
            && !path.ends_with("/events")
        {
            let status = get(&s.url(path), None).status;
            assert_eq!(status, 200, "GET {path}");
        }
    }
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &a.body).unwrap();
    ok(Command::new("python3")
        .args(["-c", "import sys, json; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')"])
        .arg(&file)
        .output()
        .unwrap());
}

#[test]
fn a_tenant_never_sees_another_tenants_rows() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, TOKENS).unwrap();
    let lake = dir.path().join("lake");
    let s = Serve::start(
        &lake,
        &["--tokens", tokens.to_str().unwrap(), SPINE[0], SPINE[1]],
    );
    let (acme, globex, root) = (Some("acme-token"), Some("globex-token"), Some("root-token"));

    // No token, a wrong one, a malformed header: 401, with no row.
    assert_eq!(get(&s.url("/v1/documents"), None).status, 401);
    assert_eq!(
        get(&s.url("/v1/documents"), Some("acme-tokenx")).status,
        401
    );
    let a = curl(&[
        "-H",
        "Authorization: Basic YWNtZTphY21l",
        &s.url("/v1/documents"),
    ]);
    assert_eq!(a.status, 401);
    assert!(!a.body.contains("acme-token"));

    let mut jobs = Vec::new();
    for (token, text, claimed) in [
        (
            acme,
            "Acme pelican contract with the harbour authority.",
            "globex",
        ),
        (
            globex,
            "Globex walrus budget and the secret merger.",
            "acme",
        ),
    ] {
        // The body names the other tenant: the token's tenant wins.
        let body = json!({"text": text, "name": "deal.txt", "tenant": claimed});
        let a = post_json(&s.url("/v1/documents"), &body, token);
        assert_eq!(a.status, 202, "{}", a.body);
        jobs.push(a.json());
    }
    for j in &jobs {
        let job = j["job_id"].as_str().unwrap();
        let owner = if jobs[0]["job_id"] == j["job_id"] {
            acme
        } else {
            globex
        };
        assert_eq!(
            follow(&s, job, owner).last().unwrap().1["job"]["state"],
            "landed"
        );
    }
    let (acme_doc, globex_doc) = (
        jobs[0]["doc_id"].as_str().unwrap(),
        jobs[1]["doc_id"].as_str().unwrap(),
    );
    assert_ne!(
        acme_doc, globex_doc,
        "the same name under two tenants is two documents"
    );

    // The other tenant's job and document do not exist for them.
    let other_job = format!("/v1/jobs/{}", jobs[1]["job_id"].as_str().unwrap());
    assert_eq!(get(&s.url(&other_job), acme).status, 404);
    assert_eq!(
        get(&s.url(&format!("{other_job}/events")), acme).status,
        404
    );
    assert_eq!(
        get(&s.url(&format!("/v1/documents/{globex_doc}")), acme).status,
        404
    );
    assert_eq!(
        get(&s.url(&format!("/v1/documents/{acme_doc}")), acme).status,
        200
    );
    let del = curl(&[
        "-X",
        "DELETE",
        "-H",
        "Authorization: Bearer acme-token",
        &s.url(&format!("/v1/documents/{globex_doc}")),
    ]);
    assert_eq!(del.status, 404);
    let listed = get(&s.url("/v1/documents?tenant=globex"), acme).json();
    let listed: Vec<&str> = listed["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["doc_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        Vec::<&str>::new(),
        "asking for another tenant gives nothing"
    );
    let listed = get(&s.url("/v1/documents"), acme).json();
    assert_eq!(listed["documents"].as_array().unwrap().len(), 1);
    assert_eq!(listed["documents"][0]["tenant"], "acme");

    // Search: the other tenant's words find nothing.
    let hits = get(
        &s.url("/v1/search?q=walrus+merger&retrievers=keyword"),
        acme,
    )
    .json();
    assert_eq!(hits["hits"].as_array().unwrap().len(), 0, "{hits}");
    let hits = get(
        &s.url("/v1/search?q=walrus+merger&retrievers=keyword&tenant=globex"),
        acme,
    )
    .json();
    assert_eq!(hits["hits"].as_array().unwrap().len(), 0, "{hits}");
    let hits = get(
        &s.url("/v1/search?q=walrus+merger&retrievers=keyword"),
        root,
    )
    .json();
    assert_eq!(hits["hits"][0]["doc_id"], globex_doc);

    // SQL, however it is written, sees acme's rows only.
    for q in HOSTILE_SQL {
        let a = sql(&s, q, acme);
        if a.status != 200 {
            assert!(
                !a.body.contains(globex_doc) && !a.body.to_lowercase().contains("walrus"),
                "{q}: {}",
                a.body
            );
            continue;
        }
        assert!(
            !a.body.contains(globex_doc),
            "{q} showed globex's document: {}",
            a.body
        );
        assert!(!a.body.to_lowercase().contains("walrus"), "{q}: {}", a.body);
    }
    let mine = rows(&s, "SELECT DISTINCT doc_id FROM chunks", acme);
    assert_eq!(mine, vec![json!({"doc_id": acme_doc})]);
    // information_schema names tables and columns, never rows; usage and
    // failures are scoped like every table.
    let tables = rows(
        &s,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        acme,
    );
    assert!(
        tables.iter().any(|t| t["table_name"] == "documents"),
        "{tables:?}"
    );
    let tenants = rows(&s, "SELECT DISTINCT tenant FROM documents", acme);
    assert_eq!(tenants, vec![json!({"tenant": "acme"})]);
    // A failing cast does not quote another tenant's text.
    let a = sql(&s, "SELECT CAST(text AS INT) FROM chunks", acme);
    assert!(!a.body.to_lowercase().contains("walrus"), "{}", a.body);

    // The admin sees both.
    let all = rows(&s, "SELECT DISTINCT tenant FROM documents ORDER BY 1", root);
    assert_eq!(
        all,
        vec![json!({"tenant": "acme"}), json!({"tenant": "globex"})]
    );
}

#[test]
fn uploads_by_uri_read_only_the_objects_the_policy_allows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("s3");
    std::fs::create_dir_all(data.join("inbox/acme")).unwrap();
    std::fs::create_dir_all(data.join("inbox/globex")).unwrap();
    let contract = "# Harbour contract\n\nThe pelican berth lease runs to 2031.";
    std::fs::write(data.join("inbox/acme/contract.md"), contract).unwrap();
    std::fs::write(data.join("inbox/globex/secret.md"), "walrus merger").unwrap();
    let s3 = S3Server::start(&data);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, TOKENS).unwrap();
    let pipeline = pipeline_appending(
        dir.path(),
        "[serve]\nallowed_objects = [\"s3://inbox/\"]\n[serve.tenant_objects]\nacme = [\"s3://inbox/acme/\"]\n",
    );
    let pipeline = pipeline.to_str().unwrap();
    let tokens = tokens.to_str().unwrap();
    let s = Serve::start_with_env(
        &dir.path().join("lake"),
        &[
            "--pipeline",
            pipeline,
            "--tokens",
            tokens,
            SPINE[0],
            SPINE[1],
        ],
        &s3.env(),
    );
    let acme = Some("acme-token");
    let by_uri =
        |uri: &str, token| post_json(&s.url("/v1/documents"), &json!({ "uri": uri }), token);

    let uri = "s3://inbox/acme/contract.md";
    let a = by_uri(uri, acme);
    assert_eq!(a.status, 202, "{}", a.body);
    let job = a.json()["job_id"].as_str().unwrap().to_string();
    let events = follow(&s, &job, acme);
    assert_eq!(
        events.last().unwrap().1["job"]["state"],
        "landed",
        "{events:?}"
    );
    let doc = rows(&s, "SELECT tenant, source_uri FROM documents", acme);
    assert_eq!(doc, vec![json!({"tenant": "acme", "source_uri": uri})]);
    let chunk = rows(&s, "SELECT text FROM chunks", acme);
    assert!(chunk[0]["text"].as_str().unwrap().contains("pelican berth"));
    // The same object again is the same version: the same job.
    assert_eq!(by_uri(uri, acme).json()["job_id"], job.as_str());

    // Outside the tenant's prefixes, outside every bucket, or missing.
    for (uri, status, says) in [
        ("s3://inbox/globex/secret.md", 403, "tenant_objects"),
        ("file:///etc/passwd", 403, "tenant_objects"),
        ("s3://inbox/acme/missing.md", 422, "cannot read"),
    ] {
        let a = by_uri(uri, acme);
        assert_eq!(a.status, status, "{uri}: {}", a.body);
        assert!(
            a.json()["error"].as_str().unwrap().contains(says),
            "{}",
            a.body
        );
        assert!(a.json()["hint"].as_str().is_some());
    }
    // A tenant with no prefixes of its own gets [serve] allowed_objects.
    let g = by_uri("s3://inbox/globex/secret.md", Some("globex-token"));
    assert_eq!(g.status, 202, "{}", g.body);
    let both = json!({"uri": uri, "text": "x"});
    assert_eq!(post_json(&s.url("/v1/documents"), &both, acme).status, 400);
    // Nothing acme was refused landed.
    assert_eq!(
        rows(&s, "SELECT count(*) AS n FROM documents", acme)[0]["n"],
        1
    );
}

#[test]
fn limits_answer_413_429_and_504_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline_appending(
        dir.path(),
        "[serve]\nmax_upload_mb = 1\nquery_timeout_s = 0.5\nqueue_depth = 0\n",
    );
    let lake = dir.path().join("lake");
    let s = Serve::start(
        &lake,
        &["--pipeline", pipeline.to_str().unwrap(), SPINE[0], SPINE[1]],
    );

    let big = dir.path().join("big.txt");
    std::fs::write(&big, "word ".repeat(300_000)).unwrap();
    let a = upload_file(&s, &big, None);
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.json()["hint"].as_str().unwrap().contains("max_upload_mb"));

    let small = dir.path().join("small.txt");
    std::fs::write(&small, "a small note").unwrap();
    // A batch with one file too large is refused whole, naming it.
    let (small_form, big_form) = (
        format!("file=@{}", small.display()),
        format!("file=@{}", big.display()),
    );
    let batch_url = s.url("/v1/documents/batch");
    let a = curl(&[&batch_url, "-F", &small_form, "-F", &big_form]);
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.json()["error"].as_str().unwrap().contains("big.txt"));
    // One request, one file.
    let a = curl(&[
        &s.url("/v1/documents"),
        "-F",
        &small_form,
        "-F",
        &small_form,
    ]);
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.json()["hint"]
        .as_str()
        .unwrap()
        .contains("/v1/documents/batch"));

    let a = upload_file(&s, &small, None);
    assert_eq!(a.status, 429, "{}", a.body);
    let retry_after: u64 = a
        .headers
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {}", a.headers));
    assert!((1..=30).contains(&retry_after), "{retry_after}");

    let slow = sql(
        &s,
        "SELECT sum(value) AS s FROM range(1, 100000000000)",
        None,
    );
    assert_eq!(slow.status, 504, "{}", slow.body);
    assert!(slow.json()["hint"]
        .as_str()
        .unwrap()
        .contains("query_timeout_s"));

    // Still serving.
    assert_eq!(rows(&s, "SELECT 1 AS one", None), vec![json!({"one": 1})]);
    let metrics = get(&s.url("/metrics"), None).body;
    assert!(
        metrics.contains("docstream_uploads_refused_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("docstream_uploads_accepted_total 0"),
        "{metrics}"
    );
}

/// `n` uploads from 8 client threads; returns (name, status), and counts
/// the 202s in `accepted` as they come.
fn upload_storm(
    port: u16,
    dir: &Path,
    start: usize,
    n: usize,
    accepted: &AtomicUsize,
) -> Vec<(String, u16)> {
    let url = format!("http://127.0.0.1:{port}/v1/documents");
    let clients = 8;
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for c in 0..clients {
            let (url, results) = (&url, &results);
            scope.spawn(move || {
                for i in (start + c..start + n).step_by(clients) {
                    let name = format!("note-{i:04}.txt");
                    let file = dir.join(&name);
                    std::fs::write(
                        &file,
                        format!("Note {i}: the crane on berth {} needs a new cable.", i % 7),
                    )
                    .unwrap();
                    let out = Command::new("curl")
                        .args([
                            "-s",
                            "-o",
                            "/dev/null",
                            "-w",
                            "%{http_code}",
                            "--max-time",
                            "30",
                            "-F",
                        ])
                        .arg(format!("file=@{}", file.display()))
                        .arg(url)
                        .output()
                        .unwrap();
                    let status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
                    if status == 202 {
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                    results.lock().unwrap().push((name, status));
                }
            });
        }
    });
    results.into_inner().unwrap()
}

#[test]
fn every_accepted_upload_lands_once_across_kills() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let mut outcomes: HashMap<String, u16> = HashMap::new();
    for round in 0..3 {
        let s = Serve::start(&lake, &SPINE);
        let port = s.port;
        let accepted = AtomicUsize::new(0);
        // Kill the server while 200 uploads are in flight: after the
        // first 40 to 80 were accepted, at a different point each round.
        std::thread::scope(|scope| {
            let accepted = &accepted;
            scope.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while accepted.load(Ordering::SeqCst) < 40 + 20 * round && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                s.kill();
            });
            for (name, status) in upload_storm(port, &files, round * 200, 200, accepted) {
                outcomes.insert(name, status);
            }
        });
    }
    let accepted: HashSet<&str> = outcomes
        .iter()
        .filter(|(_, s)| **s == 202)
        .map(|(n, _)| n.as_str())
        .collect();
    let refused = outcomes.values().filter(|s| **s != 202).count();
    assert!(
        accepted.len() > 50 && refused > 0,
        "{} accepted, {refused} cut off: the kills came too late or too early",
        accepted.len()
    );

    // Restarted, the server lands what waits in its spool.
    let s = Serve::start(&lake, &SPINE);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let metrics = get(&s.url("/metrics"), None).body;
        if metrics.contains("docstream_uploads_waiting 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uploads still waiting: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let landed = rows(
        &s,
        "SELECT source_uri, count(*) AS n FROM documents GROUP BY source_uri",
        None,
    );
    let mut seen = HashMap::new();
    for r in &landed {
        let name = r["source_uri"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        seen.insert(name, r["n"].as_i64().unwrap());
    }
    for name in &accepted {
        assert_eq!(
            seen.get(*name),
            Some(&1),
            "{name} got a 202 and landed {:?} times",
            seen.get(*name)
        );
    }
    assert!(seen.values().all(|n| *n == 1), "a document landed twice");
    let chunk_dups = rows(&s, "SELECT count(*) AS n FROM (SELECT doc_id, chunk_idx FROM chunks GROUP BY 1, 2 HAVING count(*) > 1)", None);
    assert_eq!(chunk_dups[0]["n"], 0);
}

#[test]
#[cfg(feature = "local-models")]
fn an_upload_streams_every_step_through_the_local_models_and_is_found_by_search_and_ask() {
    let _turn = generating_turn();
    let dir = tempfile::tempdir().unwrap();
    // Real local models: embeddings and one generating stage, which keeps
    // the test within its time on a busy 2-core machine.
    let stages = ["--stages", "documents,chunks,embeddings,summaries"];
    let s = Serve::start(&dir.path().join("lake"), &stages);
    // A reference new to every run, so no model answer is cached and
    // every model stage makes requests.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let text = format!(
        "# Ocelot enclosure inspection {run}\n\nThe ocelot enclosure at the north zoo failed its \
         fence inspection on 2 June. Priya Nair owns the repair and must replace the \
         mesh by 30 June. Until then the ocelots stay indoors, which delays the public opening.\n"
    );
    let a = post_json(
        &s.url("/v1/documents"),
        &json!({"text": text, "name": "ocelot-inspection.md"}),
        None,
    );
    assert_eq!(a.status, 202, "{}", a.body);
    let accepted = a.json();
    let (job, doc_id) = (
        accepted["job_id"].as_str().unwrap(),
        accepted["doc_id"].as_str().unwrap(),
    );
    let events = follow(&s, job, None);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let last = &events.last().unwrap().1["job"];
    assert_eq!(last["state"], "landed", "{names:?}");
    // Generation takes seconds, so the stream sees the model stages work:
    // their requests counted up, then each table committed.
    let calls: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "calls")
        .map(|(_, d)| &d["step"])
        .collect();
    assert!(calls.iter().any(|c| c["stage"] == "summaries"), "{names:?}");
    for c in &calls {
        assert!(c["done"].as_u64() <= c["planned"].as_u64(), "{c}");
    }
    assert!(events
        .iter()
        .any(|(n, d)| n == "computed" && d["step"]["stage"] == "summaries"));
    let at = |n: &str| names.iter().rposition(|x| *x == n).unwrap();
    assert!(at("calls") < at("landed"), "{names:?}");
    // The job keeps each model stage's request count.
    for stage in ["embeddings", "summaries"] {
        let p = &last["stages"][stage];
        assert_eq!(p["state"], "done", "{stage}: {p}");
        assert!(p["calls_planned"].as_u64().unwrap() >= 1, "{stage}: {p}");
        assert_eq!(p["calls_done"], p["calls_planned"], "{stage}: {p}");
    }
    assert!(last["stages"]["chunks"]["rows"].as_u64().unwrap() >= 1);

    let doc = get(&s.url(&format!("/v1/documents/{doc_id}")), None).json();
    let summary = doc["summary"]["summary"].as_str().unwrap_or_default();
    assert!(!summary.trim().is_empty(), "{doc}");
    let hits = get(&s.url("/v1/search?q=ocelot%20fence&k=3"), None).json();
    assert_eq!(hits["hits"][0]["doc_id"], doc_id, "{hits}");
    let asked = post_json(
        &s.url("/v1/ask"),
        &json!({"question": "Who owns the ocelot fence repair?"}),
        None,
    );
    assert_eq!(asked.status, 200, "{}", asked.body);
    let answer = asked.json();
    // Whatever the small model answers, a citation points at this document.
    for c in answer["citations"].as_array().unwrap() {
        assert_eq!(c["doc_id"], doc_id, "{answer}");
    }
    assert!(answer["answer"].is_string(), "{answer}");
}

#[test]
#[cfg(feature = "local-models")]
fn the_page_uploads_shows_searches_and_asks_in_a_real_browser() {
    let _turn = generating_turn();
    let dir = tempfile::tempdir().unwrap();
    // Real embeddings (hybrid search, ask's retrieval) and the real answer
    // model; the generating stages would only slow the suite's other
    // local-model tests, which run beside this one.
    let stages = ["--stages", "documents,chunks,embeddings"];
    let s = Serve::start(&dir.path().join("lake"), &stages);
    let file = dir.path().join("harbour-crane-report.md");
    std::fs::write(
        &file,
        "# Harbour crane report\n\nThe gantry crane on berth 4 failed its load test on 3 March. \
         Marta Ruiz owns the repair and must replace the hoist cable by 30 April. \
         Until then the berth handles no containers over 20 tonnes, which delays the Nordline vessel.\n",
    )
    .unwrap();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page");
    std::fs::create_dir_all(&out).unwrap();
    let printed = ok(Command::new("python3")
        .arg(repo().join("tests/browser/serve_page.py"))
        .arg(s.url("/"))
        .arg(&file)
        .arg("Harbour crane report")
        .arg("gantry")
        .arg(&out)
        .output()
        .unwrap());
    assert!(printed.trim_end().ends_with("ok"), "{printed}");
    for shot in ["laptop-1280x800", "phone-390x844"] {
        let png = std::fs::read(out.join(format!("{shot}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{shot}");
    }
}
