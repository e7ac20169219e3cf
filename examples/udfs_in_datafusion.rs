//! docstream's SQL functions in a plain DataFusion `SessionContext`: token
//! chunking, token counts, PII redaction and vector similarity, with no lake.
//!
//! `cargo run --release --example udfs_in_datafusion`

use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::datafusion::prelude::SessionContext;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ctx = SessionContext::new();
    docstream::functions::register_all(&ctx);

    let text = "Call Dana at +1 415 555 0100 or dana@example.com about the vendor delay. \
                The migration slips two weeks; the budget overrun is 12%.";
    let sql = format!(
        "SELECT count_tokens(t, 'cl100k_base') AS tokens, redact_pii(t) AS redacted \
         FROM (VALUES ('{text}')) AS docs(t)"
    );
    println!(
        "{}",
        pretty_format_batches(&ctx.sql(&sql).await?.collect().await?)?
    );

    // chunk_text returns a list of structs; unnest gives one row per chunk.
    let chunks = format!(
        "SELECT c['idx'] AS idx, c['n_tokens'] AS n_tokens, c['text'] AS text \
         FROM (SELECT unnest(chunk_text('{text}', 12, 2, 'cl100k_base')) AS c)"
    );
    println!(
        "{}",
        pretty_format_batches(&ctx.sql(&chunks).await?.collect().await?)?
    );

    let vectors = "SELECT cosine_similarity([1.0, 0.0, 1.0], [1.0, 0.0, 0.0]) AS cosine, \
                   dot_product([1.0, 2.0], [3.0, 4.0]) AS dot, \
                   l2_distance([0.0, 0.0], [3.0, 4.0]) AS l2";
    println!(
        "{}",
        pretty_format_batches(&ctx.sql(vectors).await?.collect().await?)?
    );
    Ok(())
}
