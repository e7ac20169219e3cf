//! Which document versions a recompute or a plan looks at: the current
//! version of each document, optionally under a source prefix or matching
//! a SQL condition over `documents`.

use anyhow::Result;
use deltalake::datafusion::prelude::SessionContext;

use crate::sinks::lake::Lake;

#[derive(Debug, Default, Clone)]
pub struct Scope {
    /// Only documents whose source URI starts with this.
    pub under: Option<String>,
    /// Only documents matching this SQL condition over `documents`.
    pub filter: Option<String>,
}

impl Scope {
    /// Registers what it needs on `ctx` and returns SQL for the current
    /// versions in scope: `doc_id`, `content_hash`, `n_tokens` (NULL where
    /// unknown). `None` when the lake holds no documents.
    pub async fn current_versions(
        &self,
        lake: &mut Lake,
        ctx: &SessionContext,
    ) -> Result<Option<String>> {
        let has_documents = lake.register_table(ctx, "documents").await?.is_some();
        let has_text = lake.register_table(ctx, "extracted").await?.is_some();
        // `extracted` lands first; `documents` holds versions from before it.
        let mut sources = Vec::new();
        if has_text {
            sources.push("SELECT doc_id, content_hash, source_uri, ingested_at, CAST(NULL AS BIGINT) AS n_tokens_ FROM extracted");
        }
        if has_documents {
            sources.push("SELECT doc_id, content_hash, source_uri, ingested_at, n_tokens AS n_tokens_ FROM documents");
        }
        if sources.is_empty() {
            return Ok(None);
        }
        let mut conditions = vec!["rank_ = 1".to_string()];
        if let Some(prefix) = &self.under {
            conditions.push(format!(
                "starts_with(source_uri, '{}')",
                prefix.replace('\'', "''")
            ));
        }
        if let Some(filter) = &self.filter {
            anyhow::ensure!(
                has_documents,
                "--where reads the documents table, which this lake does not have"
            );
            conditions.push(format!(
                "v.doc_id IN (SELECT d.doc_id FROM documents d WHERE {filter})"
            ));
        }
        // One row per version, though both tables hold it, and a changed
        // documents stage may have written it twice.
        Ok(Some(format!(
            "SELECT doc_id, content_hash, max(n_tokens_) AS n_tokens FROM (
                SELECT *, dense_rank() OVER (PARTITION BY doc_id ORDER BY ingested_at DESC, content_hash) AS rank_
                FROM ({})) v WHERE {} GROUP BY doc_id, content_hash",
            sources.join(" UNION ALL "),
            conditions.join(" AND ")
        )))
    }
}
