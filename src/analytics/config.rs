//! `[analytics]` in pipeline files: which providers embed queries and answer
//! questions, where extra reports live, `ask`'s similarity floor, the
//! memory a query may hold, and how hard vector search looks.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// Providers that embed queries. Default: the `embeddings` table's stage's.
    pub embed_providers: Vec<String>,
    /// Providers that answer `ask`. Default: the `summaries` table's stage's.
    pub answer_providers: Vec<String>,
    /// Folder of report SQL files (relative to the pipeline file); they are
    /// added to the built-in reports, replacing any of the same name.
    pub reports: Option<String>,
    /// `ask` shows the model only chunks at least this cosine-similar to
    /// the question. Depends on the embedding model: with MiniLM, related
    /// questions score 0.3 and up, unrelated ones about 0.1.
    pub min_similarity: f32,
    /// Sorts, joins and aggregations of one query hold at most this many
    /// MiB (0: no limit); past it they spill to disk or fail with a hint.
    pub memory_limit_mb: usize,
    /// Vector search scans a shard of the vector index, exactly, when its
    /// filters (tenant, dates) admit fewer rows than this; graph walks
    /// lose recall under selective filters.
    pub vector_exact_below: usize,
    /// Candidates a vector index search keeps while it walks the graph:
    /// higher finds more of the true nearest chunks, and is slower.
    pub vector_search_beam: usize,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            embed_providers: Vec::new(),
            answer_providers: Vec::new(),
            reports: None,
            min_similarity: 0.25,
            memory_limit_mb: 4096,
            vector_exact_below: 10_000,
            vector_search_beam: 64,
        }
    }
}
