//! `docstream query`.

use std::path::Path;

use anyhow::Result;

use crate::analytics::output::OutputArgs;
use crate::analytics::query::{mentions_embed_query, Analytics, Models};
use crate::stages::pipeline::Pipeline;
use crate::storage::{parse_location, StorageOptions};

/// Run read-only SQL over every table in the lake.
///
/// Tables: documents, chunks, embeddings, summaries, risks, action_items,
/// doc_types, usage, failures (and any table a custom stage writes), plus
/// the view current_documents (each document's latest version).
/// Functions: cosine_similarity, dot_product and l2_distance over vectors;
/// embed_query('text') embeds a constant with the pipeline's embedding
/// provider, once per query; chunk_text, count_tokens and redact_pii.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream query \"SELECT mime, count(*), sum(n_tokens) FROM documents GROUP BY mime\"\n  \
    docstream query \"SELECT doc_id, chunk_idx, cosine_similarity(embedding, embed_query('vendor delay')) AS score FROM embeddings ORDER BY score DESC LIMIT 10\"\n  \
    docstream query \"SELECT error_kind, count(*) FROM failures GROUP BY 1\" --format csv\n  \
    docstream query \"SELECT * FROM risks\" --out risks.parquet\n  \
    docstream query \"SHOW TABLES\" --lake s3://lake/ --format ndjson")]
pub struct Args {
    /// The SQL to run (SELECT, WITH, EXPLAIN or SHOW).
    pub sql: String,

    /// Lake root. Default: the pipeline's lake.uri.
    #[arg(long)]
    pub lake: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,
}

impl Args {
    pub async fn run(self, pipeline: Option<&Path>, storage: StorageOptions) -> Result<()> {
        let (p, _) = Pipeline::load(pipeline, &[])?;
        let models = Models::open(&p, mentions_embed_query(&self.sql), false, false)?;
        let lake = parse_location(&self.lake.unwrap_or(p.lake.uri))?;
        let analytics = Analytics::open(&lake, &storage, models.embedder).await?;
        self.output.emit(&analytics.sql(&self.sql).await?)
    }
}
