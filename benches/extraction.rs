//! Extraction throughput per format on the shipped samples.
//!
//! `cargo bench --bench extraction`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use docstream::extract::{extract, Limits};

fn bench(c: &mut Criterion) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");
    let limits = Limits::default();
    let mut g = c.benchmark_group("extract");
    for file in [
        "security-incident-2024-03.txt",
        "project-atlas-status.md",
        "vendor-contract-review.html",
        "data-migration-plan.pdf",
        "board-minutes-q3.docx",
    ] {
        let bytes = std::fs::read(format!("{dir}/{file}")).unwrap();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(file, |b| b.iter(|| extract(&bytes, file, &limits).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
