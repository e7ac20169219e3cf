//! Synthetic rows of the contract tables, for lakes of any size.

use std::sync::Arc;

use anyhow::Result;
use deltalake::arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use docstream::contract::tables as contract;
use docstream::sinks::lake::Lake;

/// Appends `docs` documents with `per_doc` chunks each to `lake`, in
/// commits of 100k documents.
pub async fn documents_and_chunks(
    lake: &mut Lake,
    docs: usize,
    per_doc: usize,
    day0: i64,
) -> Result<()> {
    let step = 100_000;
    for start in (0..docs).step_by(step) {
        let end = (start + step).min(docs);
        lake.append(
            "documents",
            vec![documents_batch(start, end - start, day0)?],
        )
        .await?;
        lake.append("chunks", vec![chunks_batch(start..end, per_doc)?])
            .await?;
    }
    Ok(())
}

/// `n` documents from number `start` on, in 7 tenants (`t0`..`t6`),
/// dated over the 30 days from `day0` (µs).
pub fn documents_batch(start: usize, n: usize, day0: i64) -> Result<RecordBatch> {
    let schema = contract::schema("documents").expect("contract table");
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            let idx = start..start + n;
            match f.name().as_str() {
                "doc_id" => Arc::new(StringArray::from_iter_values(
                    idx.map(|i| format!("d{i:08}")),
                )),
                "tenant" => Arc::new(StringArray::from_iter_values(
                    idx.map(|i| format!("t{}", i % 7)),
                )),
                "source_uri" => Arc::new(StringArray::from_iter_values(
                    idx.map(|i| format!("s3://archive/{i}.txt")),
                )),
                "content_hash" => Arc::new(StringArray::from(vec!["h"; n])),
                "mime" => Arc::new(StringArray::from(vec!["text/plain"; n])),
                "n_chars" => Arc::new(Int64Array::from(vec![4000; n])),
                "n_tokens" => Arc::new(Int64Array::from_iter_values(
                    idx.map(|i| 800 + (i % 50) as i64),
                )),
                "ingested_at" | "event_time" => Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        idx.map(|i| day0 + (i % 30) as i64 * 86_400_000_000),
                    )
                    .with_timezone("UTC"),
                ),
                _ => deltalake::arrow::array::new_null_array(f.data_type(), n),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// `per_doc` chunks of each document in `docs`, with short texts.
pub fn chunks_batch(docs: std::ops::Range<usize>, per_doc: usize) -> Result<RecordBatch> {
    let schema = contract::schema("chunks").expect("contract table");
    let n = docs.len() * per_doc;
    let pairs = || docs.clone().flat_map(|d| (0..per_doc).map(move |c| (d, c)));
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "doc_id" => Arc::new(StringArray::from(
                    pairs().map(|(d, _)| format!("d{d:08}")).collect::<Vec<_>>(),
                )),
                "content_hash" => Arc::new(StringArray::from(vec!["h"; n])),
                "chunk_idx" => Arc::new(Int32Array::from(
                    pairs().map(|(_, c)| c as i32).collect::<Vec<_>>(),
                )),
                "text" => Arc::new(StringArray::from(
                    pairs()
                        .map(|(d, c)| format!("chunk {c} of document {d}: the vendor shipped late"))
                        .collect::<Vec<_>>(),
                )),
                "n_tokens" => Arc::new(Int32Array::from(vec![80; n])),
                "char_start" | "char_end" => Arc::new(Int64Array::from(vec![0; n])),
                _ => deltalake::arrow::array::new_null_array(f.data_type(), n),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}
