//! What a changed pipeline costs, in one run:
//!
//! 1. Adding a model stage to a lake of DOCS documents (default 10,000)
//!    whose model stages call an OpenAI-compatible server with a fixed
//!    latency: the incremental backfill's time against that stage's model
//!    calls alone (the same client, the same texts, no lake), and against
//!    the previous design's only way out, rebuilding the lake with every
//!    stage.
//! 2. `plan` over a lake of PLAN_DOCS documents (default 1,000,000) with
//!    seven stages of lineage, against one scan of the columns it reads.
//!
//!   cargo bench --bench lineage      (DOCS=N, PLAN_DOCS=N, LATENCY_MS=N)

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use deltalake::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTableBuilder;
use docstream::config::Pipeline;
use docstream::contract::tables as contract;
use docstream::jobs::backfill::Backfill;
use docstream::lineage::ledger::Retry;
use docstream::lineage::plan::plan;
use docstream::lineage::scope::Scope;
use docstream::models::hub::ModelHub;
use docstream::sinks::lake::Lake;
use docstream::stages::runner::StageRunner;
use docstream::storage::parse_location;
use docstream_models::tasks::Task;

#[allow(dead_code)]
mod common;

const LABELS: &str = "report,meeting_notes,contract,email,policy,other";

fn pipeline_file(dir: &Path, url: &str, with_doc_types: bool) -> Result<std::path::PathBuf> {
    let sql = |name: &str| format!("{}/sql/stages/{name}.sql", env!("CARGO_MANIFEST_DIR"));
    let stage = |name: &str, provider: &str, params: &str| {
        format!(
            "[[stages]]\nname = \"{name}\"\nsql = \"{}\"\ntable = \"{name}\"\nproviders = [{provider}]\nparams = {{ {params} }}\n",
            sql(name)
        )
    };
    let mut text = format!(
        "name = \"bench\"\n[models]\ncache = \"off\"\n[batch]\nmax_rows = 2000\n{}{}{}",
        stage("documents", "", "encoding = \"cl100k_base\""),
        stage(
            "chunks",
            "",
            "max_tokens = 512, overlap = 64, encoding = \"cl100k_base\""
        ),
        stage("summaries", "\"fake\"", ""),
    );
    if with_doc_types {
        text.push_str(&stage(
            "doc_types",
            "\"fake\"",
            &format!("labels = \"{LABELS}\""),
        ));
    }
    text.push_str(&format!(
        "[providers.fake]\nkind = \"openai\"\nmodel = \"fake\"\nbase_url = \"{url}\"\nmax_in_flight = 32\ncircuit_failures = 100000\n"
    ));
    let path = dir.join(if with_doc_types {
        "with.toml"
    } else {
        "without.toml"
    });
    std::fs::write(&path, text)?;
    Ok(path)
}

fn folder(dir: &Path, docs: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..docs {
        std::fs::write(dir.join(format!("{i:06}.txt")), common::status_report(i))?;
    }
    Ok(())
}

/// Seconds a backfill of `source` into `lake` with `pipeline` takes.
async fn backfill(pipeline: &Path, source: &Path, lake: &Path) -> Result<f64> {
    let (p, stages) = Pipeline::load(Some(pipeline), &[])?;
    let runner = StageRunner::open(stages, &p.providers, &p.models, "bench")?;
    let job = Backfill::new(
        &p,
        parse_location(source.to_str().unwrap_or_default())?,
        parse_location(lake.to_str().unwrap_or_default())?,
        runner,
    );
    let started = Instant::now();
    job.run(&()).await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds the doc_types calls take alone: the same provider and texts
/// through the model client, with no lake and no stages.
async fn model_alone(pipeline: &Path, source: &Path) -> Result<f64> {
    let (p, _) = Pipeline::load(Some(pipeline), &[])?;
    let hub = ModelHub::open(&p.providers, &p.models, &["fake".to_string()])?;
    let chain = hub.chain("doc_types", &["fake".to_string()])?;
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(source)? {
        texts.push(std::fs::read_to_string(entry?.path())?);
    }
    let refs: Vec<Option<&str>> = texts.iter().map(|t| Some(t.as_str())).collect();
    let labels = LABELS.split(',').map(String::from).collect();
    let started = Instant::now();
    let out = chain.generate(&Task::Classify(labels), &refs).await;
    let secs = started.elapsed().as_secs_f64();
    let failed = out.iter().filter(|r| !matches!(r, Some(Ok(_)))).count();
    anyhow::ensure!(failed == 0, "{failed} classifications failed");
    Ok(secs)
}

async fn adding_a_stage(docs: usize, latency_ms: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("docs");
    folder(&source, docs)?;
    let latency = latency_ms.to_string();
    let (_server, url) = common::fault_server(&["--latency-ms", &latency])?;
    let without = pipeline_file(dir.path(), &url, false)?;
    let with = pipeline_file(dir.path(), &url, true)?;
    let lake = dir.path().join("lake");
    let first = backfill(&without, &source, &lake).await?;
    let added = backfill(&with, &source, &lake).await?;
    let alone = model_alone(&with, &source).await?;
    let rebuilt = backfill(&with, &source, &dir.path().join("rebuilt")).await?;
    println!(
        "adding doc_types to {docs} documents (endpoint latency {latency_ms} ms, 32 in flight):"
    );
    println!("  first backfill (documents, chunks, summaries): {first:7.2} s");
    println!("  doc_types' model calls alone:                  {alone:7.2} s  (1.00x)");
    println!(
        "  backfill after adding doc_types:               {added:7.2} s  ({:.2}x)",
        added / alone
    );
    println!(
        "  rebuilding the lake with every stage:          {rebuilt:7.2} s  ({:.2}x)",
        rebuilt / alone
    );
    Ok(())
}

fn lineage_batch(docs: std::ops::Range<usize>, stages: &[(String, String)]) -> Result<RecordBatch> {
    let schema = contract::schema("lineage").expect("contract table");
    let rows: Vec<(usize, usize)> = docs
        .flat_map(|d| (0..stages.len()).map(move |s| (d, s)))
        .collect();
    let n = rows.len();
    let column = |name: &str| -> ArrayRef {
        let strings = |f: &dyn Fn(usize, usize) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(d, s)| f(*d, *s)),
            ))
        };
        match name {
            "doc_id" => strings(&|d, _| format!("d{d:08}")),
            "content_hash" => Arc::new(StringArray::from(vec!["h"; n])),
            "tenant" => strings(&|d, _| format!("t{}", d % 7)),
            "stage" | "output_table" => strings(&|_, s| stages[s].0.clone()),
            // One version in 20 ran under an older fingerprint: stale.
            "stage_fingerprint" => strings(&|d, s| match d % 20 {
                0 => "old".into(),
                _ => stages[s].1.clone(),
            }),
            // One in 50 failed with a retryable error.
            "status" => strings(&|d, _| if d % 50 == 1 { "failed" } else { "ok" }.into()),
            "error_kind" => Arc::new(StringArray::from_iter(
                rows.iter()
                    .map(|(d, _)| (d % 50 == 1).then_some("model_timeout")),
            )),
            "rows" => Arc::new(Int64Array::from(vec![1; n])),
            "run_id" => Arc::new(StringArray::from(vec!["bench"; n])),
            "computed_at" => Arc::new(
                TimestampMicrosecondArray::from(vec![1_700_000_000_000_000; n])
                    .with_timezone("UTC"),
            ),
            other => panic!("lineage has no column {other}"),
        }
    };
    let columns = schema.fields().iter().map(|f| column(f.name())).collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}

async fn plan_at_scale(docs: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = parse_location(dir.path().to_str().unwrap_or_default())?;
    let (p, stages) = Pipeline::load(None, &[])?;
    let named: Vec<(String, String)> = stages
        .iter()
        .map(|s| (s.name.clone(), s.fingerprint.clone()))
        .collect();
    let built = Instant::now();
    let mut lineage = None;
    for start in (0..docs).step_by(100_000) {
        let end = (start + 100_000).min(docs);
        let batch = lineage_batch(start..end, &named)?;
        let table = match lineage.take() {
            Some(t) => t,
            None => DeltaTableBuilder::from_url(root.join("lineage/")?)?.build()?,
        };
        lineage = Some(
            table
                .write(vec![batch])
                .with_save_mode(SaveMode::Append)
                .await?,
        );
        let docs_table = DeltaTableBuilder::from_url(root.join("documents/")?)?.build()?;
        let docs_table = match start {
            0 => docs_table,
            _ => deltalake::open_table(root.join("documents/")?).await?,
        };
        docs_table
            .write(vec![common::lake::documents_batch(
                start,
                end - start,
                1_700_000_000_000_000,
            )?])
            .with_save_mode(SaveMode::Append)
            .await?;
    }
    println!(
        "plan over {docs} documents x {} stages of lineage (built in {:.1} s):",
        named.len(),
        built.elapsed().as_secs_f64()
    );

    let mut lake = Lake::open(&root, &Default::default()).await?;
    let started = Instant::now();
    let plans = plan(
        &mut lake,
        &stages,
        &p.providers,
        Retry::Retryable,
        &Scope::default(),
    )
    .await?;
    let planned = started.elapsed().as_secs_f64();
    let stale: i64 = plans.iter().map(|p| p.stale).sum();
    anyhow::ensure!(
        stale == (docs.div_ceil(20) * named.len()) as i64,
        "stale {stale}"
    );

    let ctx = SessionContext::new();
    lake.register_table(&ctx, "lineage").await?;
    lake.register_table(&ctx, "documents").await?;
    let started = Instant::now();
    ctx.sql("SELECT count(DISTINCT (doc_id, content_hash, stage, stage_fingerprint, status, error_kind)) FROM lineage")
        .await?
        .collect()
        .await?;
    ctx.sql("SELECT count(DISTINCT (doc_id, content_hash)) FROM documents")
        .await?
        .collect()
        .await?;
    let scan = started.elapsed().as_secs_f64();
    println!("  one scan of the columns plan reads: {scan:6.2} s  (1.00x)");
    println!(
        "  plan:                               {planned:6.2} s  ({:.2}x)",
        planned / scan
    );
    Ok(())
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(adding_a_stage(
        common::size("DOCS", 10_000),
        common::size("LATENCY_MS", 20),
    ))?;
    runtime.block_on(plan_at_scale(common::size("PLAN_DOCS", 1_000_000)))
}
