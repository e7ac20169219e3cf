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

use super::current::has_column;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};

    use super::*;
    use crate::contract::extracted::{self, ExtractedDoc};
    use crate::contract::failure::{self, ErrorKind, Failure};
    use crate::lineage::current;
    use crate::lineage::ledger::{Ledger, Retry};
    use crate::storage::{parse_location, StorageOptions};

    fn doc(id: &str, hash: &str) -> ExtractedDoc {
        ExtractedDoc {
            doc_id: id.into(),
            tenant: "t".into(),
            source_uri: format!("file:///{id}.txt"),
            content_hash: hash.into(),
            mime: "text/plain".into(),
            title: None,
            text: "text".into(),
            event_time: None,
            ingested_at: chrono::Utc::now(),
            metadata: "{}".into(),
            parent_doc_id: None,
        }
    }

    /// Rows of a stage's table: (doc_id, content_hash, fingerprint) each.
    fn rows(rows: &[(&str, &str, Option<&str>)]) -> RecordBatch {
        let ids: StringArray = rows.iter().map(|r| Some(r.0)).collect();
        let hashes: StringArray = rows.iter().map(|r| Some(r.1)).collect();
        let fps: StringArray = rows.iter().map(|r| r.2).collect();
        RecordBatch::try_from_iter(vec![
            ("doc_id", Arc::new(ids) as ArrayRef),
            ("content_hash", Arc::new(hashes) as ArrayRef),
            (FINGERPRINT, Arc::new(fps) as ArrayRef),
        ])
        .unwrap()
    }

    async fn count(lake: &mut Lake, sql: &str) -> usize {
        let ctx = SessionContext::new();
        lake.register_table(&ctx, "lineage").await.unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        batches.iter().map(RecordBatch::num_rows).sum()
    }

    #[tokio::test]
    async fn rows_from_before_fingerprints_are_adopted_once_and_stay_current_until_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        let root = parse_location(dir.path().to_str().unwrap()).unwrap();
        let mut lake = Lake::open(&root, &StorageOptions::default()).await.unwrap();
        // A lake as an older docstream wrote it: no fingerprints, no lineage.
        let (d1, d2) = (doc("d1", "h1"), doc("d2", "h2"));
        let text = extracted::to_batch(&[&d1, &d2]).unwrap();
        let mut columns: Vec<(&str, ArrayRef)> = [
            "doc_id",
            "tenant",
            "source_uri",
            "content_hash",
            "mime",
            "n_chars",
            "ingested_at",
        ]
        .iter()
        .map(|c| (*c, text.column_by_name(c).unwrap().clone()))
        .collect();
        columns.push(("n_tokens", Arc::new(Int64Array::from(vec![1, 1]))));
        let documents = RecordBatch::try_from_iter(columns).unwrap();
        lake.append("documents", vec![documents]).await.unwrap();
        let old = [("d1", "h1", None), ("d1", "h1", None), ("d1", "h1", None)];
        lake.append("parts", vec![rows(&old)]).await.unwrap();
        // A table that exists, with nothing for these two documents.
        let other = [("d9", "h9", None)];
        lake.append("findings", vec![rows(&other)]).await.unwrap();
        let timeout = Failure {
            doc_id: "d2".into(),
            content_hash: "h2".into(),
            source_uri: "file:///d2.txt".into(),
            stage: "findings".into(),
            kind: ErrorKind::ModelTimeout,
            error: "timed out".into(),
            attempts: 3,
            stage_fingerprint: None,
        };
        let failed = failure::to_batch(&[timeout], chrono::Utc::now()).unwrap();
        lake.append("failures", vec![failed]).await.unwrap();

        let stages = [
            Stage::named("documents", "D"),
            Stage::named("parts", "C"),
            Stage::named("findings", "R"),
            Stage::named("summaries", "S"),
        ];
        assert_eq!(adopt(&mut lake, &stages).await.unwrap(), 2);
        assert_eq!(adopt(&mut lake, &stages).await.unwrap(), 0, "once");
        let adopted = "SELECT * FROM lineage WHERE status = 'adopted'";
        assert_eq!(
            count(&mut lake, adopted).await,
            5,
            "documents x2, parts x2, findings of d1"
        );
        let parts = "SELECT * FROM lineage WHERE stage = 'parts' AND doc_id = 'd1' AND rows = 3";
        assert_eq!(count(&mut lake, parts).await, 1);

        // summaries is new everywhere; d2's timed-out findings run again.
        let ledger = Ledger::new(&stages, Retry::Retryable);
        let keys = lake.landed_keys("lineage").await.unwrap().clone();
        assert_eq!(
            ledger.todo(&keys, "d1", "h1"),
            ["summaries".to_string()].into()
        );
        assert_eq!(
            ledger.todo(&keys, "d2", "h2"),
            ["findings".to_string(), "summaries".to_string()].into()
        );

        // The adopted parts are current until a new fingerprint's land.
        let ctx = SessionContext::new();
        let tables = ["parts", "lineage"].map(String::from);
        for t in &tables {
            lake.register_table(&ctx, t).await.unwrap();
        }
        assert!(current::register_views(&ctx, &tables)
            .await
            .unwrap()
            .is_empty());
        let new = [("d1", "h1", Some("P2")), ("d1", "h1", Some("P2"))];
        lake.append("parts", vec![rows(&new)]).await.unwrap();
        let entry = crate::lineage::record::Entry {
            doc_id: "d1".into(),
            content_hash: "h1".into(),
            tenant: "t".into(),
            stage: "parts".into(),
            output_table: "parts".into(),
            fingerprint: "P2".into(),
            status: crate::lineage::ledger::OK,
            error_kind: None,
            rows: 2,
        };
        let batch = crate::lineage::record::to_batch(&[entry], "run", chrono::Utc::now()).unwrap();
        lake.append("lineage", vec![batch]).await.unwrap();
        let ctx = SessionContext::new();
        for t in &tables {
            lake.register_table(&ctx, t).await.unwrap();
        }
        let moved = current::register_views(&ctx, &tables).await.unwrap();
        assert_eq!(moved, ["parts"]);
        let n = |sql: &str| {
            let ctx = ctx.clone();
            let sql = sql.to_string();
            async move {
                let b = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                b.iter().map(RecordBatch::num_rows).sum::<usize>()
            }
        };
        assert_eq!(n("SELECT * FROM parts").await, 2, "only the new rows");
        assert_eq!(n("SELECT * FROM history.parts").await, 5, "beside the old");
    }
}
