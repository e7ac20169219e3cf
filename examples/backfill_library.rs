//! A backfill driven through the library: the built-in pipeline's spine
//! stages (documents, chunks; no model calls) over the bundled samples into
//! a lake folder, then the summary.
//!
//! `cargo run --release --example backfill_library -- [LAKE]` (default ./example-lake)

use docstream::config::Pipeline;
use docstream::jobs::backfill::Backfill;
use docstream::stages::config::select_stages;
use docstream::stages::runner::StageRunner;
use docstream::storage::parse_location;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let lake = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "example-lake".into());
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");

    let (pipeline, stages) = Pipeline::load(None, &[])?;
    let stages = select_stages(stages, &["documents".into(), "chunks".into()])?;
    let runner = StageRunner::new(stages, None, "example")?;
    let job = Backfill::new(
        &pipeline,
        parse_location(samples)?,
        parse_location(&lake)?,
        runner,
    );
    // `()` reports no progress; the CLI passes a progress bar here.
    let summary = job.run(&()).await?;
    println!(
        "{} landed, {} skipped, {} failed, {} commits into {lake}",
        summary.landed, summary.skipped, summary.failed, summary.commits
    );
    Ok(())
}
