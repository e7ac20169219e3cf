//! The SQL doors through real clients nobody here wrote: Arrow Flight SQL
//! through the ADBC driver (PyPI), and the Postgres wire protocol through
//! psql (Debian) and psycopg (PyPI). Each answers like
//! `docstream query` on the same lake, holds a token to its tenant,
//! refuses writes, and stops a runaway query while the server goes on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::*;

/// The stages of these lakes: the spine and MiniLM embeddings, so the
/// vector functions and `hybrid_search` have vectors.
const STAGES: [&str; 2] = ["--stages", "documents,chunks,embeddings"];

/// A `docstream serve` with its HTTP API and both SQL doors.
struct Doors {
    _server: Server,
    flight: u16,
    pg: u16,
}

/// Runs a Python client of `tests/clients` with `request` on its stdin;
/// one result per op.
fn client(script: &str, request: Value) -> Vec<Value> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(python)
        .arg(repo().join("tests/clients").join(script))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        results.len(),
        request["ops"].as_array().unwrap().len(),
        "{stdout}"
    );
    results
}

impl Doors {
    fn start(lake: &Path, extra: &[&str]) -> Self {
        let (http, flight, pg) = (free_port(), free_port(), free_port());
        let child = docstream()
            .arg("serve")
            .args(extra)
            .args(["--addr", &format!("127.0.0.1:{http}")])
            .args(["--flight-addr", &format!("127.0.0.1:{flight}")])
            .args(["--pg-addr", &format!("127.0.0.1:{pg}")])
            .arg("--lake")
            .arg(lake)
            .args(STAGES)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server(child);
        for port in [http, flight, pg] {
            wait_for_port(port);
        }
        Self {
            _server: server,
            flight,
            pg,
        }
    }

    /// Runs `ops` through the ADBC Flight SQL driver; one result each.
    fn flight(&self, auth: Value, ops: &[Value]) -> Vec<Value> {
        let uri = format!("grpc://127.0.0.1:{}", self.flight);
        client(
            "flight_sql.py",
            json!({"uri": uri, "auth": auth, "ops": ops}),
        )
    }

    /// Runs `ops` through psycopg and SQLAlchemy as `user`.
    fn postgres(&self, user: &str, password: &str, ops: &[Value]) -> Vec<Value> {
        let request = json!({
            "host": "127.0.0.1", "port": self.pg, "user": user, "password": password, "ops": ops,
        });
        client("postgres.py", request)
    }

    /// psql's output for `command` (`-c`), unaligned; `Err` with its
    /// standard error when it fails.
    fn psql(&self, user: &str, password: &str, command: &str) -> Result<String, String> {
        self.psql_with(user, password, command, "prefer")
    }

    fn psql_with(
        &self,
        user: &str,
        password: &str,
        command: &str,
        sslmode: &str,
    ) -> Result<String, String> {
        let out = Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={} user={user} dbname=docstream sslmode={sslmode}",
                self.pg
            ))
            .args(["-X", "-A", "-c", command])
            .env("PGPASSWORD", password)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        match out.status.success() {
            true => Ok(stdout),
            false => Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))),
        }
    }

    /// The rows of `sql`, which must succeed.
    fn rows(&self, auth: &Value, sql: &str, params: Value) -> Vec<Value> {
        let r = self.flight(auth.clone(), &[json!({"sql": sql, "params": params})]);
        let rows = r[0]["rows"].as_array();
        rows.unwrap_or_else(|| panic!("{sql}: {}", r[0])).clone()
    }
}

/// Statements that would change something; every door refuses them.
const WRITES: [&str; 7] = [
    "INSERT INTO documents (doc_id) VALUES ('x')",
    "DELETE FROM chunks",
    "CREATE TABLE t AS SELECT 1",
    "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
    "DROP TABLE chunks",
    "COPY chunks TO '/tmp/docstream-copy.csv'",
    "SET datafusion.execution.batch_size = 1",
];

/// The samples under tenant acme, and one globex document about a walrus
/// merger that acme must never see.
fn two_tenants(dir: &Path) -> PathBuf {
    let lake = dir.join("lake");
    let globex = dir.join("globex");
    std::fs::create_dir_all(&globex).unwrap();
    std::fs::write(
        globex.join("deal.txt"),
        "Globex walrus budget and the secret merger.",
    )
    .unwrap();
    for (source, tenant) in [(repo().join("samples"), "acme"), (globex, "globex")] {
        ok(docstream()
            .arg("backfill")
            .arg(&source)
            .arg("--lake")
            .arg(&lake)
            .args(["--tenant", tenant])
            .args(STAGES)
            .output()
            .unwrap());
    }
    lake
}

#[test]
fn both_doors_answer_like_query_scoped_by_token_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let lake = two_tenants(dir.path());
    let l = lake.to_str().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, TOKENS).unwrap();
    let d = Doors::start(&lake, &[]);
    // Started without tokens it is open on loopback; with them, below.
    let all = json!(null);
    let same = [
        "SELECT doc_id, chunk_idx, n_tokens, text FROM chunks ORDER BY doc_id, chunk_idx",
        "SELECT tenant, count(*) AS n FROM documents GROUP BY tenant ORDER BY tenant",
        "SELECT doc_id, chunk_idx FROM hybrid_search('vendor delay', 5) ORDER BY score DESC, doc_id, chunk_idx",
        "SELECT doc_id, chunk_idx FROM embeddings \
         ORDER BY cosine_similarity(embedding, embed_query('expired certificate outage')) DESC, doc_id, chunk_idx LIMIT 3",
    ];
    for sql in same {
        let ours = query(l, sql, &[]);
        assert!(!ours.is_empty(), "{sql}");
        assert_eq!(d.rows(&all, sql, json!(null)), ours, "{sql}");
    }
    drop(d);

    let d = Doors::start(&lake, &["--tokens", tokens.to_str().unwrap()]);
    let root = json!({"bearer": "root-token"});
    let acme = json!({"bearer": "acme-token"});
    let acme_basic = json!({"user": "acme", "password": "acme-token"});

    // A prepared statement with a parameter, as the driver binds it.
    let doc = query(l, "SELECT min(doc_id) AS d FROM chunks", &[])[0]["d"].clone();
    let n = query(
        l,
        &format!(
            "SELECT count(*) AS n FROM chunks WHERE doc_id = '{}'",
            doc.as_str().unwrap()
        ),
        &[],
    );
    let sql = "SELECT count(*) AS n FROM chunks WHERE doc_id = $1";
    assert_eq!(d.rows(&root, sql, json!([doc])), n);
    let two = d.rows(
        &root,
        "SELECT count(*) AS n FROM chunks WHERE doc_id = $1 AND chunk_idx >= $2",
        json!([doc, 0]),
    );
    assert_eq!(two, n);

    // The catalog: tables a driver lists, and a table's columns.
    let r = d.flight(
        root.clone(),
        &[json!({"tables": true}), json!({"schema_of": "chunks"})],
    );
    let tables = r[0]["tables"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r[0]));
    for t in ["chunks", "current_documents", "documents", "embeddings"] {
        assert!(tables.contains(&json!(t)), "{t}: {tables:?}");
    }
    let columns = r[1]["columns"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r[1]));
    for c in ["doc_id", "chunk_idx", "text", "n_tokens"] {
        assert!(columns.contains(&json!(c)), "{c}: {columns:?}");
    }

    // A tenant's token, bearer or basic, sees its own rows only.
    for auth in [&acme, &acme_basic] {
        let tenants = d.rows(auth, "SELECT DISTINCT tenant FROM documents", json!(null));
        assert_eq!(tenants, vec![json!({"tenant": "acme"})], "{auth}");
    }
    let globex_doc = query(
        l,
        "SELECT doc_id FROM documents WHERE tenant = 'globex'",
        &[],
    )[0]["doc_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ops: Vec<Value> = HOSTILE_SQL.iter().map(|q| json!({"sql": q})).collect();
    for (q, r) in HOSTILE_SQL.iter().zip(d.flight(acme.clone(), &ops)) {
        let text = r.to_string();
        assert!(
            !text.contains(&globex_doc),
            "{q} showed globex's document: {text}"
        );
        assert!(!text.to_lowercase().contains("walrus"), "{q}: {text}");
    }
    let ops = [json!({"tables": true})];
    let acme_tables = d.flight(acme.clone(), &ops);
    assert!(acme_tables[0]["tables"]
        .as_array()
        .unwrap()
        .contains(&json!("chunks")));

    // No token, a wrong one, a wrong password: refused, and nothing leaks.
    let probe = [json!({"sql": "SELECT doc_id FROM documents"})];
    for auth in [
        json!(null),
        json!({"bearer": "acme-tokenx"}),
        json!({"user": "acme", "password": "wrong"}),
    ] {
        let r = d.flight(auth.clone(), &probe);
        let error = r[0]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{auth}: {}", r[0]));
        assert!(
            error.to_lowercase().contains("unauthenticated"),
            "{auth}: {error}"
        );
        assert!(!error.contains("acme-token"), "{error}");
    }

    // Writes of every kind get the one read-only answer.
    let ops: Vec<Value> = WRITES.iter().map(|q| json!({"sql": q})).collect();
    for (q, r) in WRITES.iter().zip(d.flight(root.clone(), &ops)) {
        let error = r["error"].as_str().unwrap_or_else(|| panic!("{q}: {r}"));
        assert!(error.contains("read-only"), "{q}: {error}");
    }
    assert!(!Path::new("/tmp/docstream-copy.csv").exists());
    // The admin still sees both tenants.
    let tenants = d.rows(
        &root,
        "SELECT DISTINCT tenant FROM documents ORDER BY 1",
        json!(null),
    );
    assert_eq!(
        tenants,
        vec![json!({"tenant": "acme"}), json!({"tenant": "globex"})]
    );

    postgres_door(&d, l, &globex_doc, (&doc, &n));
}

/// The Postgres door, on the server `both_doors_answer_...` started.
/// `doc` has the chunk count `n`, as `docstream query` counts it.
fn postgres_door(d: &Doors, l: &str, globex_doc: &str, (doc, n): (&Value, &[Value])) {
    // psql: \dt, \d and a query, as a person types them.
    // A tenant's tables are listed as tables too (they are its views).
    for (user, token) in [("root", "root-token"), ("acme", "acme-token")] {
        let listed = d.psql(user, token, "\\dt").unwrap();
        for t in ["chunks", "documents", "embeddings"] {
            assert!(
                listed.contains(&format!("|{t}|table|")),
                "{user} {t}: {listed}"
            );
        }
    }
    let described = d.psql("root", "root-token", "\\d chunks").unwrap();
    for c in ["doc_id", "chunk_idx", "text", "n_tokens"] {
        assert!(described.contains(c), "{c}: {described}");
    }
    let counted = d
        .psql(
            "acme",
            "acme-token",
            "SELECT tenant, count(*) AS n FROM documents GROUP BY tenant ORDER BY tenant",
        )
        .unwrap();
    let ours = query(
        l,
        "SELECT count(*) AS n FROM documents WHERE tenant = 'acme'",
        &[],
    );
    assert!(
        counted.contains(&format!("acme|{}", ours[0]["n"])),
        "{counted}"
    );
    assert!(!counted.contains("globex"), "{counted}");
    // A wrong password, or a token of another tenant: refused.
    for (user, password) in [
        ("acme", "wrong"),
        ("acme", "globex-token"),
        ("globex", "acme-token"),
    ] {
        let e = d.psql(user, password, "SELECT 1").unwrap_err();
        assert!(
            e.to_lowercase().contains("password authentication failed"),
            "{user}: {e}"
        );
    }

    // psycopg with bound parameters.
    let r = d.postgres(
        "root",
        "root-token",
        &[
            json!({"sql": "SELECT count(*) AS n FROM chunks WHERE doc_id = %s AND chunk_idx >= %s", "params": [doc, 0]}),
            json!({"sql": "SELECT doc_id, chunk_idx, n_tokens, text FROM chunks ORDER BY doc_id, chunk_idx"}),
            json!({"sql": "SELECT doc_id, chunk_idx FROM hybrid_search('vendor delay', 5) ORDER BY score DESC, doc_id, chunk_idx"}),
        ],
    );
    assert_eq!(r[0]["rows"], json!(n), "{}", r[0]);
    for (i, sql) in [
        (1, "SELECT doc_id, chunk_idx, n_tokens, text FROM chunks ORDER BY doc_id, chunk_idx"),
        (2, "SELECT doc_id, chunk_idx FROM hybrid_search('vendor delay', 5) ORDER BY score DESC, doc_id, chunk_idx"),
    ] {
        assert_eq!(r[i]["rows"], json!(query(l, sql, &[])), "{sql}: {}", r[i]);
    }

    // SQLAlchemy's inspector, as Superset runs it, lists the tables and
    // the columns `docstream query` sees; a tenant's too.
    let ours: Vec<Value> = query(
        l,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'chunks'",
        &[],
    )
    .iter()
    .map(|r| r["column_name"].clone())
    .collect();
    assert!(ours.contains(&json!("chunk_idx")), "{ours:?}");
    for (user, token) in [("root", "root-token"), ("acme", "acme-token")] {
        let r = &d.postgres(user, token, &[json!({"inspect": "chunks"})])[0];
        assert_eq!(r["schemas"], json!(["public"]), "{user}: {r}");
        let tables: Vec<&str> = r["tables"]
            .as_array()
            .unwrap_or_else(|| panic!("{user}: {r}"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for t in ["chunks", "documents", "embeddings"] {
            assert!(tables.contains(&t), "{user} {t}: {r}");
        }
        let columns = r["columns"].as_array().unwrap();
        assert_eq!(columns.len(), ours.len(), "{user}: {r}");
        assert!(ours.iter().all(|c| columns.contains(c)), "{user}: {r}");
    }

    // Tenant scoping, the same hostile SQL as every door.
    let ops: Vec<Value> = HOSTILE_SQL.iter().map(|q| json!({"sql": q})).collect();
    for (q, r) in HOSTILE_SQL
        .iter()
        .zip(d.postgres("acme", "acme-token", &ops))
    {
        let text = r.to_string();
        assert!(
            !text.contains(globex_doc),
            "{q} showed globex's document: {text}"
        );
        assert!(!text.to_lowercase().contains("walrus"), "{q}: {text}");
    }
    // Writes refused, with the same answer.
    let ops: Vec<Value> = WRITES.iter().map(|q| json!({"sql": q})).collect();
    for (q, r) in WRITES.iter().zip(d.postgres("root", "root-token", &ops)) {
        let error = r["error"].as_str().unwrap_or_else(|| panic!("{q}: {r}"));
        assert!(error.contains("read-only"), "{q}: {error}");
    }
}

#[test]
fn both_doors_stop_a_runaway_query_and_serve_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline_appending(
        dir.path(),
        "[serve]\nquery_timeout_s = 1.0\nmax_result_mb = 1\n",
    );
    let d = Doors::start(
        &dir.path().join("lake"),
        &["--pipeline", pipeline.to_str().unwrap()],
    );
    let ops = [
        json!({"sql": "SELECT sum(value) AS s FROM range(1, 100000000000)"}),
        json!({"sql": "SELECT value FROM range(1, 100000000)"}),
        json!({"sql": "SELECT 1 AS one"}),
    ];
    for r in [d.flight(json!(null), &ops), d.postgres("anyone", "", &ops)] {
        let error = r[0]["error"].as_str().unwrap_or_else(|| panic!("{}", r[0]));
        assert!(error.contains("query_timeout_s"), "{error}");
        let error = r[1]["error"].as_str().unwrap_or_else(|| panic!("{}", r[1]));
        assert!(error.contains("max_result_mb"), "{error}");
        assert_eq!(r[2]["rows"], json!([{"one": 1}]));
    }
}

#[test]
fn postgres_takes_passwords_over_tls_and_refuses_clear_text_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, TOKENS).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let pipeline = pipeline_appending(
        dir.path(),
        &format!(
            "[serve]\npg_tls_cert = \"{}\"\npg_tls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let lake = dir.path().join("lake");
    let tokens_arg = tokens.to_str().unwrap();
    let d = Doors::start(
        &lake,
        &[
            "--pipeline",
            pipeline.to_str().unwrap(),
            "--tokens",
            tokens_arg,
        ],
    );
    let ssl = d
        .psql_with("acme", "acme-token", "SELECT 1 AS one", "require")
        .unwrap();
    assert!(ssl.contains("one\n1\n"), "{ssl}");
    drop(d);

    // Off loopback without TLS the server does not start.
    let out = docstream()
        .args([
            "serve",
            "--tokens",
            tokens_arg,
            "--pg-addr",
            "0.0.0.0:0",
            "--lake",
        ])
        .arg(&lake)
        .args(STAGES)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("pg_tls_cert"), "{e}");
}
