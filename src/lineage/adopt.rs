//! Adoption of rows written before fingerprints existed: each such
//! document version gets `lineage` rows saying its stages ran under the
//! fingerprints current now, so upgrading docstream recomputes nothing.
//!
//! A stage whose table does not exist yet is new, and is not adopted: it
//! runs for every version. A stage whose table exists is taken to have
//! run (a version may have no rows in it: no risks found); its earlier
//! `failures` rows become failed lineage rows, so retryable ones are
//! retried.

use anyhow::Result;
use chrono::Utc;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::datafusion::prelude::SessionContext;

use super::ledger::{ADOPTED, FAILED};
use super::record::{self, Entry};
use crate::contract::tables::FINGERPRINT;
use crate::sinks::lake::{utf8, Lake};
use crate::stages::config::Stage;

/// The `lineage.run_id` of adopted rows.
pub const ADOPTION_RUN: &str = "adopted";

/// Adopts every version of `documents` that has rows without a
/// fingerprint and no lineage yet. Returns the versions adopted.
pub async fn adopt(lake: &mut Lake, stages: &[Stage]) -> Result<usize> {
    let ctx = SessionContext::new();
    if lake.register_table(&ctx, "documents").await?.is_none() {
        return Ok(0);
    }
    let has_lineage = lake.register_table(&ctx, "lineage").await?.is_some();
    let legacy_rows = match has_column(&ctx, "documents", FINGERPRINT).await? {
        true => format!("{FINGERPRINT} IS NULL"),
        false => "true".into(),
    };
    let unadopted = match has_lineage {
        true => "AND NOT EXISTS (SELECT 1 FROM lineage l WHERE l.doc_id = d.doc_id AND l.content_hash = d.content_hash)",
        false => "",
    };
    let legacy = format!(
        "SELECT DISTINCT doc_id, content_hash, tenant FROM documents d WHERE {legacy_rows} {unadopted}"
    );
    ctx.register_table("legacy", ctx.sql(&legacy).await?.into_view())?;
    let count = ctx.table("legacy").await?.count().await?;
    if count == 0 {
        return Ok(0);
    }
    let has_failures = lake.register_table(&ctx, "failures").await?.is_some();
    let mut entries = Vec::new();
    for stage in stages {
        let table = &stage.table;
        let known = ctx.table_exist(table.as_str())?;
        if !known && lake.register_table(&ctx, table).await?.is_none() {
            continue;
        }
        let registered = format!("\"{}\"", table.replace('"', "\"\""));
        let untagged = match has_column(&ctx, table, FINGERPRINT).await? {
            true => format!("WHERE {FINGERPRINT} IS NULL"),
            false => String::new(),
        };
        let rows = match has_column(&ctx, table, "content_hash").await? {
            true => format!("SELECT doc_id, content_hash, count(*) AS n FROM {registered} {untagged} GROUP BY doc_id, content_hash"),
            false => "SELECT '' AS doc_id, '' AS content_hash, 0 AS n WHERE false".into(),
        };
        let failed = match has_failures {
            true => format!(
                "SELECT doc_id, content_hash, max(error_kind) AS error_kind FROM failures WHERE stage = '{}' GROUP BY doc_id, content_hash",
                stage.name.replace('\'', "''")
            ),
            false => "SELECT '' AS doc_id, '' AS content_hash, '' AS error_kind WHERE false".into(),
        };
        let sql = format!(
            "SELECT l.doc_id, l.content_hash, l.tenant, f.error_kind, coalesce(r.n, 0) AS n
             FROM legacy l
             LEFT JOIN ({failed}) f ON f.doc_id = l.doc_id AND f.content_hash = l.content_hash
             LEFT JOIN ({rows}) r ON r.doc_id = l.doc_id AND r.content_hash = l.content_hash"
        );
        for batch in ctx.sql(&sql).await?.collect().await? {
            entries.extend(adopted(&batch, stage)?);
        }
    }
    if entries.is_empty() {
        return Ok(0);
    }
    tracing::info!(
        versions = count,
        "adopting rows written before stage fingerprints as the current stages' output"
    );
    let batch = record::to_batch(&entries, ADOPTION_RUN, Utc::now())?;
    lake.append("lineage", vec![batch]).await?;
    Ok(count)
}

async fn has_column(ctx: &SessionContext, table: &str, column: &str) -> Result<bool> {
    Ok(ctx
        .table(table)
        .await?
        .schema()
        .has_column_with_unqualified_name(column))
}

/// Lineage entries from rows of (doc_id, content_hash, tenant, error_kind, n).
fn adopted(batch: &RecordBatch, stage: &Stage) -> Result<Vec<Entry>> {
    let strings = (0..4)
        .map(|i| utf8(batch.column(i)))
        .collect::<Result<Vec<_>>>()?;
    let n = deltalake::arrow::compute::cast(
        batch.column(4),
        &deltalake::arrow::datatypes::DataType::Int64,
    )?;
    let n = n.as_primitive::<deltalake::arrow::datatypes::Int64Type>();
    let s = |c: usize, i: usize| strings[c].as_string::<i32>().value(i).to_string();
    Ok((0..batch.num_rows())
        .map(|i| {
            let kind = strings[3].is_valid(i).then(|| s(3, i));
            Entry {
                doc_id: s(0, i),
                content_hash: s(1, i),
                tenant: s(2, i),
                stage: stage.name.clone(),
                output_table: stage.table.clone(),
                fingerprint: stage.fingerprint.clone(),
                status: if kind.is_some() { FAILED } else { ADOPTED },
                error_kind: kind,
                rows: if n.is_valid(i) { n.value(i) } else { 0 },
            }
        })
        .collect())
}
