//! Rows for the `lineage` table: one per document version and stage run.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};

use super::ledger::{FAILED, OK};
use crate::contract::extracted::ExtractedDoc;
use crate::contract::failure::Failure;
use crate::contract::identity::DocKey;
use crate::contract::tables;
use crate::sinks::lake::utf8;
use crate::stages::config::Stage;
use crate::stages::runner::StageOutput;

/// One stage's run on one document version.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub doc_id: String,
    pub content_hash: String,
    pub tenant: String,
    pub stage: String,
    pub output_table: String,
    pub fingerprint: String,
    /// `ledger::OK`, `FAILED` or `ADOPTED`.
    pub status: &'static str,
    pub error_kind: Option<String>,
    pub rows: i64,
}

/// The entries as a batch for the `lineage` table.
pub fn to_batch(entries: &[Entry], run_id: &str, at: DateTime<Utc>) -> Result<RecordBatch> {
    let strings = |f: fn(&Entry) -> &str| -> ArrayRef {
        Arc::new(entries.iter().map(|e| Some(f(e))).collect::<StringArray>())
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("doc_id", strings(|e| &e.doc_id)),
        ("content_hash", strings(|e| &e.content_hash)),
        ("tenant", strings(|e| &e.tenant)),
        ("stage", strings(|e| &e.stage)),
        ("output_table", strings(|e| &e.output_table)),
        (tables::FINGERPRINT, strings(|e| &e.fingerprint)),
        ("status", strings(|e| e.status)),
        (
            "error_kind",
            Arc::new(
                entries
                    .iter()
                    .map(|e| e.error_kind.as_deref())
                    .collect::<StringArray>(),
            ),
        ),
        (
            "rows",
            Arc::new(entries.iter().map(|e| e.rows).collect::<Int64Array>()),
        ),
        (
            "run_id",
            Arc::new(StringArray::from(vec![run_id; entries.len()])),
        ),
        (
            "computed_at",
            Arc::new(
                TimestampMicrosecondArray::from(vec![at.timestamp_micros(); entries.len()])
                    .with_timezone("UTC"),
            ),
        ),
    ];
    Ok(tables::contract_batch("lineage", columns)?)
}

/// The lineage of one run of `stages` on `docs`: per document and stage,
/// failed when the stage failed on it, or when a stage it reads did (with
/// that kind, so retrying one retries both), else ok with its rows.
pub fn entries(
    docs: &[&ExtractedDoc],
    stages: &[&Stage],
    outputs: &[StageOutput],
    failures: &[Failure],
) -> Result<Vec<Entry>> {
    let mut rows: HashMap<&str, HashMap<DocKey, i64>> = HashMap::new();
    for o in outputs {
        if let Some(stage) = &o.stage {
            let counts = rows_by_version(&o.batches)?;
            let into = rows.entry(stage.as_str()).or_default();
            for (k, n) in counts {
                *into.entry(k).or_default() += n;
            }
        }
    }
    let failed: HashMap<(&str, &str, &str), &str> = failures
        .iter()
        .map(|f| {
            (
                (f.doc_id.as_str(), f.content_hash.as_str(), f.stage.as_str()),
                f.kind.as_str(),
            )
        })
        .collect();
    let mut out = Vec::with_capacity(docs.len() * stages.len());
    for doc in docs {
        let mut kinds: HashMap<&str, &str> = HashMap::new();
        for stage in stages {
            let own = failed
                .get(&(
                    doc.doc_id.as_str(),
                    doc.content_hash.as_str(),
                    stage.name.as_str(),
                ))
                .copied();
            let upstream = stage
                .reads
                .iter()
                .find_map(|r| kinds.get(r.name.as_str()).copied());
            let kind = own.or(upstream);
            if let Some(k) = kind {
                kinds.insert(&stage.name, k);
            }
            let key = (doc.doc_id.clone(), doc.content_hash.clone());
            let written = rows
                .get(stage.name.as_str())
                .and_then(|r| {
                    r.get(&key)
                        .or_else(|| r.get(&(key.0.clone(), String::new())))
                })
                .copied()
                .unwrap_or(0);
            out.push(Entry {
                doc_id: key.0,
                content_hash: key.1,
                tenant: doc.tenant.clone(),
                stage: stage.name.clone(),
                output_table: stage.table.clone(),
                fingerprint: stage.fingerprint.clone(),
                status: if kind.is_some() { FAILED } else { OK },
                error_kind: kind.map(str::to_string),
                rows: if kind.is_some() { 0 } else { written },
            });
        }
    }
    Ok(out)
}

/// Rows per document version in a stage's output. A stage whose rows have
/// no `content_hash` counts by `doc_id` (with an empty hash).
pub fn rows_by_version(batches: &[RecordBatch]) -> Result<HashMap<DocKey, i64>> {
    let mut counts: HashMap<DocKey, i64> = HashMap::new();
    for b in batches {
        let Some(ids) = b.column_by_name("doc_id") else {
            continue;
        };
        let ids = utf8(ids)?;
        let hashes = b.column_by_name("content_hash").map(utf8).transpose()?;
        let ids = ids.as_string::<i32>();
        for i in 0..b.num_rows() {
            if ids.is_null(i) {
                continue;
            }
            let hash = match &hashes {
                Some(h) if h.is_valid(i) => h.as_string::<i32>().value(i).to_string(),
                _ => String::new(),
            };
            *counts.entry((ids.value(i).to_string(), hash)).or_default() += 1;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fit_the_contract_and_rows_count_per_version() {
        let entry = Entry {
            doc_id: "d".into(),
            content_hash: "h".into(),
            tenant: "t".into(),
            stage: "chunks".into(),
            output_table: "chunks".into(),
            fingerprint: "f".into(),
            status: OK,
            error_kind: None,
            rows: 3,
        };
        let batch = to_batch(&[entry.clone(), entry], "run", Utc::now()).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert!(batch.column_by_name("error_kind").unwrap().is_null(0));

        let out = RecordBatch::try_from_iter(vec![
            (
                "doc_id",
                Arc::new(StringArray::from(vec!["a", "a", "b"])) as ArrayRef,
            ),
            (
                "content_hash",
                Arc::new(StringArray::from(vec!["1", "1", "2"])) as ArrayRef,
            ),
        ])
        .unwrap();
        let counts = rows_by_version(&[out]).unwrap();
        assert_eq!(counts[&("a".to_string(), "1".to_string())], 2);
        assert_eq!(counts[&("b".to_string(), "2".to_string())], 1);
    }
}
