//! Each built plugin, called through its exported symbols as Arroyo's worker
//! calls it, against docstream's own functions on the same inputs.
//!
//! The model UDFs need `docstream serve-models` (real MiniLM and SmolLM2):
//! `DOCSTREAM_BIN` names the docstream binary (`.ci/run` sets it).

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, Int64Array};
use arroyo_ffi_host::{text_column, AsyncUdf, SyncUdf};
use docstream_models::chain::{ModelChain, NoHooks};
use docstream_models::endpoint::Endpoint;
use docstream_models::openai::OpenAiClient;
use docstream_models::provider::ProviderConfig;
use docstream_models::tasks::Task;
use docstream_udfs::{ChunkParams, Encoding};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UDFS: [&str; 7] = [
    "chunk_text",
    "redact_pii",
    "count_tokens",
    "embed",
    "summarize",
    "extract_risks",
    "extract_action_items",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `[dependencies]` table in a single-file UDF's header comment, the
/// way Arroyo reads it.
fn header_dependencies(source: &str) -> toml::Table {
    let start = source
        .find("/*\n[dependencies]\n")
        .expect("the file opens with a /*\\n[dependencies]\\n header");
    let body = &source[start + 3..];
    let end = body.find("*/").expect("the header comment is closed");
    assert!(
        source[start + 3 + end..]
            .find("/*\n[dependencies]\n")
            .is_none(),
        "Arroyo allows one dependencies header"
    );
    let parsed: toml::Table = toml::from_str(&body[..end]).expect("the header is TOML");
    parsed["dependencies"].as_table().unwrap().clone()
}

#[test]
fn single_files_are_the_crates_sources_with_their_dependencies() {
    for name in UDFS {
        let dir = workspace().join(name);
        let manifest: toml::Table =
            toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
        let lib = manifest["lib"].as_table().unwrap();
        assert_eq!(lib["path"].as_str(), Some(format!("{name}.rs").as_str()));
        assert_eq!(lib["crate-type"], toml::Value::from(vec!["cdylib"]));
        let source = std::fs::read_to_string(dir.join(format!("{name}.rs"))).unwrap();

        // Arroyo adds arroyo-udf-plugin itself; the rest must match, with the
        // docstream crates' paths taken from the compiler's environment.
        let mut want = manifest["dependencies"].as_table().unwrap().clone();
        want.remove("arroyo-udf-plugin");
        let mut got = header_dependencies(&source);
        let mut ours = 0;
        for (krate, local, placeholder) in [
            ("docstream-udfs", "../..", "{{ DOCSTREAM_UDFS }}"),
            (
                "docstream-models",
                "../../../models",
                "{{ DOCSTREAM_MODELS }}",
            ),
        ] {
            let Some(dep) = want.get(krate) else { continue };
            assert_eq!(dep["path"].as_str(), Some(local), "{name}: {krate}");
            let header = got[krate].as_table_mut().unwrap();
            assert_eq!(
                header["path"].as_str(),
                Some(placeholder),
                "{name}: {krate}"
            );
            header.insert("path".into(), toml::Value::from(local));
            ours += 1;
        }
        assert_eq!(ours, 1, "{name} depends on exactly one docstream crate");
        assert_eq!(got, want, "{name}.rs header vs {name}/Cargo.toml");

        assert_eq!(source.matches("#[udf").count(), 1, "{name}: one #[udf]");
        assert!(
            source.contains(&format!("fn {name}(")),
            "{name}.rs defines fn {name}"
        );
    }
}

fn texts() -> Vec<Option<String>> {
    let long = "The vendor has not delivered the export tool, so the migration slips. ".repeat(40);
    vec![
        Some(long),
        Some("Короткий текст. 短い文章です。 Emoji 🚀🚀 and combining é̃ marks.".repeat(12)),
        Some(String::new()),
        None,
        Some("one line".into()),
    ]
}

#[test]
fn chunk_text_matches_docstream_including_nulls_and_bad_parameters() {
    let udf = SyncUdf::load("chunk_text");
    let texts = texts();
    let refs: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
    for (max, overlap, encoding) in [(32, 4, Encoding::Cl100kBase), (20, 0, Encoding::O200kBase)] {
        let n = refs.len();
        let got = udf
            .call_strings(vec![
                text_column(&refs),
                Int64Array::from(vec![max; n]).into_data(),
                Int64Array::from(vec![overlap; n]).into_data(),
                text_column(&vec![Some(encoding.to_string().as_str()); n]),
            ])
            .unwrap();
        let params = ChunkParams::new(max, overlap, encoding).unwrap();
        for (text, got) in refs.iter().zip(&got) {
            let want = text
                .map(|t| serde_json::to_string(&docstream_udfs::chunk_text(t, &params)).unwrap());
            assert_eq!(got, &want, "{text:?} with {max}/{overlap}/{encoding}");
        }
        let first: Vec<Value> = serde_json::from_str(got[0].as_ref().unwrap()).unwrap();
        assert!(first.len() > 3, "a long text makes several chunks");
        assert_eq!(
            first[1].as_object().unwrap().keys().collect::<Vec<_>>(),
            [
                "char_end",
                "char_start",
                "idx",
                "n_tokens",
                "page_end",
                "page_start",
                "text"
            ],
            "the chunks table's fields"
        );
    }

    // A NULL parameter gives NULL for its row only.
    let got = udf
        .call_strings(vec![
            text_column(&[Some("a b c"), Some("a b c")]),
            Int64Array::from(vec![Some(32), None]).into_data(),
            Int64Array::from(vec![4, 4]).into_data(),
            text_column(&[Some("cl100k_base"), Some("cl100k_base")]),
        ])
        .unwrap();
    assert!(got[0].is_some() && got[1].is_none(), "{got:?}");

    // Bad parameters fail the call, as docstream's chunk_text fails the query.
    for (max, overlap, encoding) in [
        (32, 20, "cl100k_base"),
        (1, 0, "cl100k_base"),
        (32, 4, "p50k"),
    ] {
        let docstream = encoding
            .parse::<Encoding>()
            .map_err(|e| e.to_string())
            .and_then(|e| ChunkParams::new(max, overlap, e).map_err(|e| e.to_string()));
        assert!(docstream.is_err(), "{max}/{overlap}/{encoding}");
        let plugin = udf.call(vec![
            text_column(&[Some("text")]),
            Int64Array::from(vec![max]).into_data(),
            Int64Array::from(vec![overlap]).into_data(),
            text_column(&[Some(encoding)]),
        ]);
        assert!(plugin.is_err(), "{max}/{overlap}/{encoding}");
    }
}

#[test]
fn redact_pii_matches_docstream() {
    let udf = SyncUdf::load("redact_pii");
    let mut texts = texts();
    texts.push(Some(
        "Mail maria.lopez@example.com or call +1 (555) 010-9999; card 4111 1111 1111 1111.".into(),
    ));
    let refs: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
    let got = udf.call_strings(vec![text_column(&refs)]).unwrap();
    let want: Vec<Option<String>> = refs
        .iter()
        .map(|t| t.map(docstream_udfs::redact_pii))
        .collect();
    assert_eq!(got, want);
    assert!(!got
        .last()
        .unwrap()
        .as_ref()
        .unwrap()
        .contains("maria.lopez"));
}

#[test]
fn count_tokens_matches_docstream() {
    let udf = SyncUdf::load("count_tokens");
    let texts = texts();
    let refs: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
    for encoding in [Encoding::Cl100kBase, Encoding::O200kBase] {
        let name = encoding.to_string();
        let got = udf
            .call(vec![
                text_column(&refs),
                text_column(&vec![Some(name.as_str()); refs.len()]),
            ])
            .unwrap();
        let got = Int64Array::from(got);
        for (i, text) in refs.iter().enumerate() {
            match text {
                Some(t) => assert_eq!(
                    got.value(i),
                    docstream_udfs::count_tokens(t, encoding) as i64,
                    "{t:?}"
                ),
                None => assert!(got.is_null(i)),
            }
        }
    }
    let bad = udf.call(vec![
        text_column(&[Some("x")]),
        text_column(&[Some("gpt2")]),
    ]);
    assert!(bad.is_err());
}

// ---- model UDFs -------------------------------------------------------------

/// The plugins read their provider from the process environment; tests that
/// set it run one at a time.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `docstream serve-models`: MiniLM embeddings and SmolLM2 chat over HTTP.
fn serve_models() -> (Server, String) {
    let bin = std::env::var("DOCSTREAM_BIN").expect(
        "set DOCSTREAM_BIN to the docstream binary (cargo build --release at the repo root); .ci/run does",
    );
    let port = free_port();
    let child = Command::new(bin)
        .args(["serve-models", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .expect("docstream serve-models starts");
    let server = Server(child);
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (server, format!("http://127.0.0.1:{port}/v1"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("serve-models did not listen on {port}");
}

/// Forwards requests to `upstream` and records each embeddings request's
/// input count; answers the first `throttle` requests with 429 instead.
async fn recording_proxy(upstream: String, throttle: usize) -> (String, Arc<Mutex<Vec<usize>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let throttled = Arc::new(Mutex::new(0usize));
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (http, upstream, log, throttled) = (
                http.clone(),
                upstream.clone(),
                log.clone(),
                throttled.clone(),
            );
            tokio::spawn(async move {
                let Some((path, body)) = read_request(&mut socket).await else {
                    return;
                };
                let throttle_this = {
                    let mut t = throttled.lock().unwrap();
                    *t += 1;
                    *t <= throttle
                };
                let (status, reply) = if throttle_this {
                    (429, r#"{"error":{"message":"slow down"}}"#.to_string())
                } else {
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        if let Some(inputs) = v["input"].as_array() {
                            log.lock().unwrap().push(inputs.len());
                        }
                    }
                    let path = path.trim_start_matches("/v1");
                    let r = http
                        .post(format!("{upstream}{path}"))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    (r.status().as_u16(), r.text().await.unwrap())
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nretry-after: 0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    reply.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}/v1"), seen)
}

/// A request's path and body (HTTP/1.1 with content-length, as reqwest sends).
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split_whitespace().nth(1)?.to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((path, buf[head_end..head_end + length].to_vec()))
}

fn set_provider(prefix: &str, fields: &[(&str, String)]) {
    for (k, v) in fields {
        std::env::set_var(format!("{prefix}{k}"), v);
    }
}

/// docstream's chain for one provider, as its DataFusion UDFs use it.
fn docstream_chain(stage: &str, config: ProviderConfig) -> ModelChain {
    let client = OpenAiClient::new(
        &config.base_url,
        None,
        &config.model,
        config.timeout(),
        true,
    )
    .unwrap();
    let endpoint = Endpoint::new("test", config, Box::new(client));
    ModelChain::new(stage, vec![Arc::new(endpoint)], Arc::new(NoHooks)).unwrap()
}

fn sentences() -> Vec<Option<String>> {
    let mut rows: Vec<Option<String>> = (0..23)
        .map(|i| {
            Some(format!(
                "Sentence number {i} is about migration risk {}.",
                i % 5
            ))
        })
        .collect();
    rows[7] = None;
    rows
}

fn rows(texts: &[Option<String>]) -> Vec<Vec<arrow::array::ArrayData>> {
    texts
        .iter()
        .map(|t| vec![text_column(&[t.as_deref()])])
        .collect()
}

/// `sentences()` through the embed plugin, one row per call, via a proxy to
/// `url` that throttles its first `throttle` requests; the results and the
/// input count of each request that reached the model.
async fn embed_through_proxy(
    url: &str,
    throttle: usize,
    extra: &[(&str, String)],
) -> (Vec<Option<String>>, Vec<usize>) {
    let (proxy, requests) = recording_proxy(url.to_string(), throttle).await;
    let mut fields = vec![
        ("BASE_URL", proxy),
        ("MODEL", "all-MiniLM-L6-v2".into()),
        ("DIMS", "384".into()),
        ("MAX_INPUTS_PER_REQUEST", "8".into()),
    ];
    fields.extend(extra.iter().cloned());
    set_provider("DOCSTREAM_EMBED_", &fields);
    let udf = AsyncUdf::start("embed", Duration::from_secs(7200), 1000);
    let got = udf
        .call_rows(rows(&sentences()), Duration::from_secs(300))
        .await
        .unwrap();
    let sizes = requests.lock().unwrap().clone();
    (got, sizes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_coalesces_one_row_calls_and_matches_docstream() {
    let _env = ENV.lock().await;
    let (_server, url) = serve_models();
    let (got, sizes) = embed_through_proxy(&url, 0, &[]).await;
    let texts = sentences();

    // 22 texts, one row per call: batched into requests of at most 8.
    assert_eq!(sizes.iter().sum::<usize>(), 22, "{sizes:?}");
    assert!(
        sizes.len() <= 4 && sizes.iter().all(|s| *s <= 8),
        "{sizes:?}"
    );

    let config = ProviderConfig {
        base_url: url,
        model: "all-MiniLM-L6-v2".into(),
        dims: Some(384),
        ..Default::default()
    };
    let refs: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
    let want = docstream_chain("embeddings", config).embed(&refs).await;
    for ((text, got), want) in texts.iter().zip(&got).zip(want) {
        let Some(want) = want else {
            assert_eq!(text, &None);
            assert_eq!(got, &None, "NULL in, NULL out");
            continue;
        };
        let want = want.unwrap();
        let got: Vec<f32> = serde_json::from_str(got.as_ref().expect("a vector")).unwrap();
        assert_eq!(got.len(), 384);
        // Batches are padded differently, so the floats may differ in the last bits.
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "{text:?}: max difference {diff}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_waits_out_429s_and_a_dead_endpoint_gives_null() {
    let _env = ENV.lock().await;
    let (_server, url) = serve_models();
    // Fault test: the first three requests are throttled (Retry-After: 0).
    let (got, sizes) = embed_through_proxy(&url, 3, &[("RETRIES", "5".into())]).await;
    let texts = sentences();
    for (text, got) in texts.iter().zip(&got) {
        assert_eq!(
            text.is_some(),
            got.is_some(),
            "{text:?}: every row answered after the 429s"
        );
    }
    assert_eq!(sizes.iter().sum::<usize>(), 22);

    // Nothing listens here: the rows get NULL within the deadline instead of
    // timing the engine out.
    set_provider(
        "DOCSTREAM_EMBED_",
        &[
            ("BASE_URL", format!("http://127.0.0.1:{}/v1", free_port())),
            ("RETRIES", "1".into()),
            ("BACKOFF_BASE_SECS", "0.05".into()),
        ],
    );
    let udf = AsyncUdf::start("embed", Duration::from_secs(7200), 1000);
    let got = udf
        .call_rows(rows(&texts[..3]), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(got, [None, None, None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_udfs_match_docstream() {
    let _env = ENV.lock().await;
    let (_server, url) = serve_models();
    let fields = [
        ("BASE_URL", url.clone()),
        ("MODEL", "SmolLM2-135M-Instruct".into()),
        ("CONTEXT_TOKENS", "2048".into()),
        ("MAX_OUTPUT_TOKENS", "384".into()),
        ("MAX_IN_FLIGHT", "1".into()),
        ("TIMEOUT_SECS", "300".into()),
    ];
    set_provider("DOCSTREAM_CHAT_", &fields);
    let note = "Project Falcon status, 3 March 2026. The data migration is two weeks late because the vendor has not delivered the export tool. If it slips again the launch date is at risk and the budget will overrun. Maria Lopez must confirm the new vendor timeline by 2026-03-10.";
    let texts = vec![Some(note.to_string()), None];
    let config = ProviderConfig {
        base_url: url,
        model: "SmolLM2-135M-Instruct".into(),
        context_tokens: 2048,
        max_output_tokens: 384,
        max_in_flight: 1,
        timeout_secs: 300.0,
        ..Default::default()
    };
    let chain = docstream_chain("structured", config);
    let mut compared = 0;
    for (name, task) in [
        ("summarize", Task::Summary),
        ("extract_risks", Task::Risks),
        ("extract_action_items", Task::ActionItems),
    ] {
        let udf = AsyncUdf::start(name, Duration::from_secs(7200), 64);
        let got = udf
            .call_rows(rows(&texts), Duration::from_secs(600))
            .await
            .unwrap();
        drop(udf);
        assert_eq!(got[1], None, "{name}: NULL in, NULL out");
        let want = chain
            .generate(&task, &[Some(note)])
            .await
            .remove(0)
            .unwrap();
        match (&got[0], want) {
            (Some(got), Ok(want)) => {
                let got: Value = serde_json::from_str(got).unwrap();
                assert_eq!(got, want.value, "{name}");
                let schema = task.schema();
                assert_eq!(docstream_models::schema::validate(&got, &schema), Ok(()));
                compared += 1;
            }
            // The small model failing validation twice fails both the same way.
            (None, Err(_)) => {}
            (got, want) => panic!("{name}: plugin {got:?}, docstream {want:?}"),
        }
    }
    assert!(compared >= 2, "the model answered too few tasks to compare");
}
