//! docstream's SQL functions, registered in one place for every SQL door:
//! pipeline stages, `query`/`search`, and any future server.
//!
//! `register_all` adds the functions that need nothing but their arguments
//! (text, tokens, PII, vectors). Functions bound to a model chain are added
//! where a chain exists: `model::register` for a stage's providers,
//! `embed_query::register` for the query embedder.

pub mod embed_query;
pub mod model;
pub mod text;
pub mod vector;

use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

/// Registers `chunk_text`, `count_tokens`, `redact_pii`,
/// `cosine_similarity`, `dot_product` and `l2_distance` on `ctx`.
pub fn register_all(ctx: &SessionContext) {
    text::register(ctx);
    vector::register(ctx);
}

/// A DataFusion session over `partitions` cores with every function of
/// `register_all`.
pub fn session(partitions: usize) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(partitions.max(1))
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    register_all(&ctx);
    ctx
}
