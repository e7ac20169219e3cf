//! Extraction throughput per format on the shipped samples, then the
//! binary formats through the extraction pool: in worker processes against
//! on threads (the round trip's cost).
//!
//! `cargo bench --bench extraction`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use docstream::extract::{extract, Limits};
use docstream::jobs::extract_pool::{Ended, ExtractPool, Isolation};

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

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("pool");
    let worker = Isolation::Process(env!("CARGO_BIN_EXE_docstream").into());
    for file in ["data-migration-plan.pdf", "board-minutes-q3.docx"] {
        let bytes = Bytes::from(std::fs::read(format!("{dir}/{file}")).unwrap());
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        for (label, isolation) in [
            ("threads", Isolation::Thread),
            ("processes", worker.clone()),
        ] {
            let pool = ExtractPool::new(1, isolation);
            g.bench_function(format!("{file}/{label}"), |b| {
                b.iter(|| {
                    let ended =
                        runtime.block_on(pool.extract(bytes.clone(), file.into(), limits.clone()));
                    assert!(matches!(ended, Ended::Done(Ok(_))), "{ended:?}");
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
