//! Reading a lake with the analytics session: every table registered, the
//! `current_documents` view, and docstream's SQL functions.
//!
//! `cargo run --release --example read_lake -- [LAKE]` (default ./example-lake;
//! fill it with `--example backfill_library` first)

use deltalake::arrow::util::pretty::pretty_format_batches;
use docstream::analytics::config::AnalyticsConfig;
use docstream::analytics::query::Analytics;
use docstream::storage::{parse_location, StorageOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let lake = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "example-lake".into());
    // No query embedder: `embed_query` is unavailable, everything else works.
    let analytics = Analytics::open(
        &parse_location(&lake)?,
        &StorageOptions::default(),
        None,
        &AnalyticsConfig::default(),
    )
    .await?;
    let rows = analytics
        .sql(
            "SELECT d.title, d.mime, count(c.chunk_idx) AS chunks, sum(c.n_tokens) AS tokens \
             FROM current_documents d JOIN chunks c USING (doc_id) \
             GROUP BY d.title, d.mime ORDER BY tokens DESC",
        )
        .await?;
    println!("{}", pretty_format_batches(&rows)?);
    Ok(())
}
