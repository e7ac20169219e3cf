//! Chunking and token counting throughput, side by side in one run:
//! tiktoken-rs vs bpe-openai counting, and the full chunker on prose and on
//! the same bytes without whitespace.
//!
//! `cargo bench --bench chunking`; throughput is per core (single-threaded).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use docstream_udfs::{chunk_text, count_tokens, ChunkParams, Encoding};

/// About 4 MB of real English prose: the shipped samples repeated with numbers
/// varied so BPE caches cannot make it trivially repetitive.
fn corpus() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");
    let mut base = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "txt" || e == "md") {
            base.push_str(&std::fs::read_to_string(path).unwrap());
            base.push_str("\n\n");
        }
    }
    let mut text = String::with_capacity(4 << 20);
    let mut i = 0u64;
    while text.len() < 4 << 20 {
        text.push_str(&base.replace("2024", &(1900 + i % 200).to_string()));
        i += 1;
    }
    text
}

fn bench(c: &mut Criterion) {
    let text = corpus();
    let mut g = c.benchmark_group("tokens");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10);
    let tiktoken = tiktoken_rs::cl100k_base_singleton();
    g.bench_function("count/tiktoken-rs", |b| {
        b.iter(|| tiktoken.encode_ordinary(&text).len())
    });
    g.bench_function("count/bpe-openai", |b| {
        b.iter(|| count_tokens(&text, Encoding::Cl100kBase))
    });
    let params = ChunkParams::new(512, 64, Encoding::Cl100kBase).unwrap();
    g.bench_function("chunk_text/512+64", |b| {
        b.iter(|| chunk_text(&text, &params).len())
    });
    let params = ChunkParams::new(512, 0, Encoding::Cl100kBase).unwrap();
    g.bench_function("chunk_text/512+0", |b| {
        b.iter(|| chunk_text(&text, &params).len())
    });
    g.finish();

    // The same number of bytes as one run without whitespace (a base64 blob,
    // a minified file): as fast per byte as prose, not quadratic.
    let word = "Qm9vayBvZiBkb2NzdHJlYW0".repeat(text.len() / 23);
    let mut g = c.benchmark_group("one_word");
    g.throughput(Throughput::Bytes(word.len() as u64));
    g.sample_size(10);
    let params = ChunkParams::new(512, 64, Encoding::Cl100kBase).unwrap();
    g.bench_function("chunk_text/512+64", |b| {
        b.iter(|| chunk_text(&word, &params).len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
