//! Rows the lake holds for some document versions: the `extracted` text a
//! recompute starts from, and the output of stages a recomputed stage
//! reads but that do not run themselves.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use deltalake::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::datafusion::prelude::{col, lit, SessionContext};

use crate::contract::identity::DocKey;
use crate::contract::tables::FINGERPRINT;
use crate::sinks::lake::{utf8, Lake};

/// Doc ids per read: an IN list this long still plans in milliseconds.
const IDS_PER_READ: usize = 4096;

/// The rows of `table` for `versions`, led by an empty batch with the
/// table's schema (nothing when the table does not exist). With a
/// `fingerprint`, only rows that fingerprint wrote, or, for a version
/// with none, the rows written before fingerprints existed.
pub async fn read_versions(
    lake: &mut Lake,
    table: &str,
    versions: &HashSet<DocKey>,
    fingerprint: Option<&str>,
) -> Result<Vec<RecordBatch>> {
    let ctx = SessionContext::new();
    if versions.is_empty() || lake.register_table(&ctx, table).await?.is_none() {
        return Ok(Vec::new());
    }
    let schema = ctx.table(table).await?.schema().clone();
    let has_fingerprint = schema.has_column_with_unqualified_name(FINGERPRINT);
    let mut ids: Vec<&str> = versions.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = vec![RecordBatch::new_empty(Arc::new(schema.as_arrow().clone()))];
    for part in ids.chunks(IDS_PER_READ) {
        // The range lets the scan skip files by their doc_id statistics
        // (an IN list this long does not): a batch's documents landed
        // together, so their rows sit in few files.
        let (first, last) = (part[0], part[part.len() - 1]);
        let mut frame = ctx
            .table(table)
            .await?
            .filter(col("doc_id").between(lit(first), lit(last)))?
            .filter(col("doc_id").in_list(part.iter().map(|id| lit(*id)).collect(), false))?;
        if let (Some(fp), true) = (fingerprint, has_fingerprint) {
            frame = frame.filter(col(FINGERPRINT).eq(lit(fp)).or(col(FINGERPRINT).is_null()))?;
        }
        out.extend(frame.collect().await?);
    }
    keep_versions(out, versions, fingerprint.filter(|_| has_fingerprint))
}

/// Keeps rows of `versions`; with a fingerprint, a version's rows of that
/// fingerprint, else its rows without one.
fn keep_versions(
    batches: Vec<RecordBatch>,
    versions: &HashSet<DocKey>,
    fingerprint: Option<&str>,
) -> Result<Vec<RecordBatch>> {
    let key_at = |b: &RecordBatch| -> Result<_> {
        let ids = utf8(b.column_by_name("doc_id").expect("filtered on doc_id"))?;
        let hashes = b.column_by_name("content_hash").map(utf8).transpose()?;
        let fps = b.column_by_name(FINGERPRINT).map(utf8).transpose()?;
        Ok((ids, hashes, fps))
    };
    // Versions that have rows of the fingerprint itself.
    let mut current: HashSet<DocKey> = HashSet::new();
    if let Some(fp) = fingerprint {
        for b in &batches {
            let (ids, hashes, fps) = key_at(b)?;
            let (Some(hashes), Some(fps)) = (hashes, fps) else {
                continue;
            };
            for i in 0..b.num_rows() {
                if fps.is_valid(i) && fps.as_string::<i32>().value(i) == fp {
                    current.insert((
                        ids.as_string::<i32>().value(i).to_string(),
                        hashes.as_string::<i32>().value(i).to_string(),
                    ));
                }
            }
        }
    }
    let mut kept = Vec::new();
    for (i, b) in batches.into_iter().enumerate() {
        let (ids, hashes, fps) = key_at(&b)?;
        let mask: BooleanArray = (0..b.num_rows())
            .map(|i| {
                let hash = hashes
                    .as_ref()
                    .map(|h| h.as_string::<i32>().value(i).to_string())
                    .unwrap_or_default();
                let key = (ids.as_string::<i32>().value(i).to_string(), hash);
                let own = fps.as_ref().is_some_and(|f| f.is_valid(i));
                Some(
                    versions.contains(&key)
                        && (fingerprint.is_none() || own || !current.contains(&key)),
                )
            })
            .collect();
        let b = filter_record_batch(&b, &mask)?;
        if i == 0 || b.num_rows() > 0 {
            kept.push(b);
        }
    }
    Ok(kept)
}
