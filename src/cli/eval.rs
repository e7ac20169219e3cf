//! `docstream eval`: retrieval quality on a labelled query set.

use anyhow::{Context, Result};

use super::output::Format;
use super::resolved::Resolved;
use crate::analytics::eval::{evaluate, read_set, Row, CUTOFF};
use crate::analytics::query::Analytics;

/// Measure search quality: recall@k, MRR@10 and nDCG@10 for keyword,
/// vector and hybrid search, through the indexes and exact, side by side.
///
/// Each line of FILE is {"query": "...", "relevant": [...]}; an entry is a
/// doc_id, a doc_id#chunk_idx, or a file name a document's source URI ends
/// with.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream eval tests/fixtures/search/queries.jsonl\n  \
    docstream eval queries.jsonl --k 20 --format json\n\n\
    A line of FILE:\n  \
    {\"query\": \"who owns the vendor contract?\", \"relevant\": [\"vendor-contract-review.html\"]}")]
pub struct Args {
    /// The labelled query set (JSON lines).
    pub file: std::path::PathBuf,

    /// Results per query, for recall@k.
    #[arg(long, default_value_t = 10)]
    pub k: usize,

    /// table (default) or json.
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let text = std::fs::read_to_string(&self.file)
            .with_context(|| format!("cannot read {}", self.file.display()))?;
        let set = read_set(&text).with_context(|| format!("in {}", self.file.display()))?;
        let models = r.models(true, true, false)?;
        let analytics =
            Analytics::open(&r.lake, &r.storage, models.embedder, &r.pipeline.analytics).await?;
        let rows = evaluate(&analytics, &set, self.k.max(1)).await?;
        match self.format {
            Format::Json | Format::Ndjson => println!("{}", serde_json::to_string_pretty(&rows)?),
            Format::Table | Format::Csv => print_rows(&rows),
        }
        Ok(())
    }
}

fn print_rows(rows: &[Row]) {
    if let Some(r) = rows.first() {
        println!(
            "{} queries; recall@{}, MRR@{CUTOFF}, nDCG@{CUTOFF}",
            r.queries, r.k
        );
    }
    println!(
        "{:<8} {:<8} {:>8} {:>8} {:>8}",
        "search", "path", "recall", "MRR", "nDCG"
    );
    for r in rows {
        let name = serde_json::to_value(r.retrievers)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let path = if r.indexed { "indexed" } else { "exact" };
        println!(
            "{name:<8} {path:<8} {:>8.3} {:>8.3} {:>8.3}",
            r.mean.recall, r.mean.mrr, r.mean.ndcg
        );
    }
}
