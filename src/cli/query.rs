//! `docstream query`.

use anyhow::Result;

use super::output::OutputArgs;
use super::resolved::Resolved;
use crate::analytics::query::{mentions_embed_query, Analytics};

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

    #[command(flatten)]
    pub output: OutputArgs,
}

impl Args {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let models = r.models(mentions_embed_query(&self.sql), false, false)?;
        let analytics =
            Analytics::open(&r.lake, &r.storage, models.embedder, &r.pipeline.analytics).await?;
        self.output
            .emit_stream(analytics.stream(&self.sql).await?)
            .await
    }
}
