//! docstream's SQL functions, registered in one place for every SQL door:
//! pipeline stages, `query`/`search`, and any future server.
//!
//! `register_all` adds the functions that need nothing but their arguments
//! (text, tokens, PII, vectors). Functions bound to a model chain are added
//! where a chain exists: `model::register` for a stage's providers,
//! `embed_query::register` for the query embedder. Query sessions add
//! `postgres::register` (pg_catalog, `version()`).

mod bounded;
pub mod embed_query;
pub mod model;
pub mod postgres;
pub mod text;
pub mod vector;

use anyhow::Result;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

/// Registers `chunk_text`, `count_tokens`, `redact_pii`,
/// `cosine_similarity`, `dot_product` and `l2_distance` on `ctx`.
pub fn register_all(ctx: &SessionContext) {
    text::register(ctx);
    vector::register(ctx);
}

/// A generated column is copied several times on its way out (a 1 GB
/// `repeat` took 4 GB of RSS), so one batch of it gets this share of the
/// memory limit.
const GENERATED_SHARE: u64 = 8;

/// A DataFusion session over `partitions` cores with every function of
/// `register_all`. With `memory_limit` bytes, operators that buffer (sort,
/// join, aggregate) spill or fail past it instead of growing unbounded, and
/// functions that generate (`repeat`, `range`, ...) refuse outputs larger
/// than an eighth of it.
pub fn session(partitions: usize, memory_limit: Option<usize>) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_target_partitions(partitions.max(1))
        .with_information_schema(true);
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(bytes) = memory_limit {
        runtime = runtime.with_memory_limit(bytes, 1.0);
    }
    let ctx = SessionContext::new_with_config_rt(config, runtime.build_arc()?);
    register_all(&ctx);
    if let Some(bytes) = memory_limit {
        bounded::register(&ctx, bytes as u64 / GENERATED_SHARE);
    }
    Ok(ctx)
}
