//! Extraction against peer tools on the same files, side by side in one run:
//! 200-page text PDFs (one and two columns) against poppler's `pdftotext`, OCR of a scanned page
//! against Tesseract's own CLI, a 20 MB zip against Info-ZIP's `unzip -p`
//! and a 10,000-message mbox against Python's `mailbox`; then MB/s for
//! every format's fixture.
//! The peers run as processes, as users run them; so does docstream's
//! extraction in production (an extract-worker), so both sides pay a
//! process round trip or neither does: `docstream` is timed through the
//! worker pool. Prints the word agreement with `pdftotext`, and whether
//! each tool keeps the reading order.
//!
//! `cargo bench --bench formats` (needs poppler-utils, tesseract-ocr and unzip)

use std::process::Command;

#[path = "../tests/it/pdf_file.rs"]
mod pdf_file;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use docstream::extract::{extract, Limits};
use docstream::jobs::extract_pool::{Ended, ExtractPool, Isolation};

/// A text PDF of `pages` pages of 45 lines in each of `columns` columns,
/// uncompressed content streams (as many generators write them), and its
/// words in reading order: each column top to bottom, left column first.
/// The columns' lines share baselines, so reading across them interleaves.
fn text_pdf(pages: usize, columns: usize) -> (Vec<u8>, Vec<String>) {
    let words = [
        "freight",
        "invoice",
        "contract",
        "delivery",
        "warehouse",
        "pallet",
        "customs",
        "vessel",
        "berth",
        "crane",
        "inspection",
        "schedule",
        "penalty",
        "clause",
        "supplier",
        "budget",
    ];
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        Vec::new(), // the page tree, once the kids are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    let per_line = if columns == 1 { 11 } else { 3 };
    let mut kids = Vec::new();
    let mut order = Vec::new();
    for p in 0..pages {
        let mut ops = String::new();
        for c in 0..columns {
            ops.push_str(&format!("BT /F1 10 Tf 12 TL {} 760 Td\n", 50 + 300 * c));
            for l in 0..45 {
                let line: Vec<&str> = (0..per_line)
                    .map(|w| words[(p * 7 + l * 3 + w * 5 + c) % words.len()])
                    .collect();
                let text = format!("Line {l} of page {p}: {}", line.join(" "));
                order.extend(text.split_whitespace().map(str::to_string));
                ops.push_str(&format!("({text}) Tj T*\n"));
            }
            ops.push_str("ET\n");
        }
        let content = objects.len() + 2;
        kids.push(objects.len() + 1);
        objects.push(
            format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>")
                .into_bytes(),
        );
        objects.push(format!("<< /Length {} >>\nstream\n{ops}\nendstream", ops.len()).into_bytes());
    }
    let kids: Vec<String> = kids.iter().map(|k| format!("{k} 0 R")).collect();
    objects[1] = format!(
        "<< /Type /Pages /Kids [{}] /Count {pages} >>",
        kids.join(" ")
    )
    .into_bytes();
    (pdf_file::pdf_file(&objects), order)
}

/// A zip of `files` text files of about `size` bytes each, deflated.
fn records_zip(files: usize, size: usize) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for f in 0..files {
        zip.start_file(
            format!("records/r{f:04}.txt"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        let mut written = 0;
        let mut line = 0;
        while written < size {
            let text = format!(
                "Record {f} line {line}: vessel {} berth {} pallets {}\n",
                line % 97,
                line % 13,
                line * 7 % 1000
            );
            zip.write_all(text.as_bytes()).unwrap();
            written += text.len();
            line += 1;
        }
    }
    zip.finish().unwrap().into_inner()
}

/// An mbox of `messages` short messages.
fn mailbox(messages: usize) -> Vec<u8> {
    let mut mbox = String::new();
    for m in 0..messages {
        mbox.push_str(&format!(
            "From ops@harbour.example Mon Apr  1 08:00:00 2024\nFrom: ops@harbour.example\nTo: team@harbour.example\nSubject: Berth change {m}\nDate: Mon, 1 Apr 2024 08:00:00 +0000\n\nVessel {m} moves to berth {}.\nThe pilot boards at 06:00.\n\n",
            m % 13
        ));
    }
    mbox.into_bytes()
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("OMP_THREAD_LIMIT", "1")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `bytes` to `dir/name` for a peer tool; its path.
fn saved(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// docstream and a peer tool on the same input, side by side in one group.
fn side_by_side(
    c: &mut Criterion,
    group: &str,
    throughput: Throughput,
    mut ours: impl FnMut(),
    (peer, theirs): (&str, &dyn Fn()),
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    g.throughput(throughput);
    g.bench_function("docstream", |bench| bench.iter(&mut ours));
    g.bench_function(peer, |bench| bench.iter(theirs));
    g.finish();
}

fn sorted_words(text: &str) -> Vec<&str> {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    words.sort_unstable();
    words
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pool = ExtractPool::new(
        1,
        Isolation::Process(env!("CARGO_BIN_EXE_docstream").into()),
    );
    let through_pool = |bytes: &Bytes, name: &str| {
        let ended = runtime.block_on(pool.extract(bytes.clone(), name.into(), limits.clone()));
        match ended {
            Ended::Done(Ok(x)) => x,
            other => panic!("{name}: {other:?}"),
        }
    };
    let dir = tempfile::tempdir().unwrap();

    for columns in [1, 2] {
        let (pdf, order) = text_pdf(200, columns);
        let pdf_path = saved(dir.path(), "report.pdf", &pdf);
        let ours = extract(&pdf, "report.pdf", &limits).unwrap().text;
        let theirs = run("pdftotext", &[&pdf_path, "-"]);
        let in_order = |text: &str| text.split_whitespace().eq(order.iter().map(String::as_str));
        println!(
            "pdf, {columns} column(s): words docstream {}, pdftotext {}; identical word lists: {}; in reading order: docstream {}, pdftotext {}",
            ours.split_whitespace().count(),
            theirs.split_whitespace().count(),
            sorted_words(&ours) == sorted_words(&theirs),
            in_order(&ours),
            in_order(&theirs),
        );
        let pdf = Bytes::from(pdf);
        side_by_side(
            c,
            &format!("pdf-200-pages-{columns}-column"),
            Throughput::Bytes(pdf.len() as u64),
            || {
                through_pool(&pdf, "report.pdf");
            },
            ("pdftotext", &|| {
                run("pdftotext", &[&pdf_path, "-"]);
            }),
        );
    }

    let png_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/scans/invoice.png"
    );
    let png = Bytes::from(std::fs::read(png_path).unwrap());
    side_by_side(
        c,
        "ocr-page",
        Throughput::Elements(1),
        || {
            through_pool(&png, "invoice.png");
        },
        ("tesseract", &|| {
            run("tesseract", &[png_path, "stdout"]);
        }),
    );

    let zip = records_zip(200, 100_000);
    let zip_path = saved(dir.path(), "records.zip", &zip);
    let zip = Bytes::from(zip);
    side_by_side(
        c,
        "zip-200-files",
        Throughput::Bytes(zip.len() as u64),
        || {
            through_pool(&zip, "records.zip");
        },
        ("unzip", &|| {
            run("unzip", &["-p", &zip_path]);
        }),
    );

    let mbox = mailbox(10_000);
    let mbox_path = saved(dir.path(), "ops.mbox", &mbox);
    let mbox = Bytes::from(mbox);
    let split =
        "import mailbox, sys\nfor m in mailbox.mbox(sys.argv[1]): m.as_bytes(); m['subject']";
    side_by_side(
        c,
        "mbox-10k-messages",
        Throughput::Bytes(mbox.len() as u64),
        || {
            through_pool(&mbox, "ops.mbox");
        },
        ("python-mailbox", &|| {
            run("python3", &["-c", split, &mbox_path]);
        }),
    );

    let formats = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/formats");
    let mut g = c.benchmark_group("fixture");
    for entry in std::fs::read_dir(formats).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let bytes = std::fs::read(&path).unwrap();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(&name, |bench| {
            bench.iter(|| extract(&bytes, &name, &limits).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
