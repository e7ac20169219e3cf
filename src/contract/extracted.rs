//! The `extracted` table: the micro-batch of extracted documents that SQL
//! stages read from.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::tables::timestamp_type;

/// One extracted document version, ready for the SQL stages.
#[derive(Debug, Clone)]
pub struct ExtractedDoc {
    pub doc_id: String,
    pub tenant: String,
    pub source_uri: String,
    pub content_hash: String,
    pub mime: String,
    pub title: Option<String>,
    pub text: String,
    pub event_time: Option<DateTime<Utc>>,
    pub ingested_at: DateTime<Utc>,
    /// A JSON object.
    pub metadata: String,
    /// The container (archive, mailbox, email) this document was found in.
    pub parent_doc_id: Option<String>,
}

impl ExtractedDoc {
    /// Memory the document holds, for closing batches on bytes.
    pub fn size(&self) -> usize {
        self.text.len() + self.metadata.len() + self.source_uri.len() + 128
    }
}

pub fn schema() -> SchemaRef {
    let ts = timestamp_type();
    Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("source_uri", DataType::Utf8, false),
        Field::new("content_hash", DataType::Utf8, false),
        Field::new("mime", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, false),
        Field::new("n_chars", DataType::Int64, false),
        Field::new("event_time", ts.clone(), true),
        Field::new("ingested_at", ts, false),
        Field::new("metadata", DataType::Utf8, true),
        Field::new("parent_doc_id", DataType::Utf8, true),
    ]))
}

pub fn to_batch(docs: &[&ExtractedDoc]) -> deltalake::arrow::error::Result<RecordBatch> {
    let strings = |f: fn(&ExtractedDoc) -> &str| -> ArrayRef {
        Arc::new(docs.iter().map(|d| Some(f(d))).collect::<StringArray>())
    };
    let times = |v: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
    };
    RecordBatch::try_new(
        schema(),
        vec![
            strings(|d| &d.doc_id),
            strings(|d| &d.tenant),
            strings(|d| &d.source_uri),
            strings(|d| &d.content_hash),
            strings(|d| &d.mime),
            Arc::new(
                docs.iter()
                    .map(|d| d.title.as_deref())
                    .collect::<StringArray>(),
            ),
            strings(|d| &d.text),
            Arc::new(
                docs.iter()
                    .map(|d| d.text.chars().count() as i64)
                    .collect::<Int64Array>(),
            ),
            times(
                docs.iter()
                    .map(|d| d.event_time.map(|t| t.timestamp_micros()))
                    .collect(),
            ),
            times(
                docs.iter()
                    .map(|d| Some(d.ingested_at.timestamp_micros()))
                    .collect(),
            ),
            strings(|d| &d.metadata),
            Arc::new(
                docs.iter()
                    .map(|d| d.parent_doc_id.as_deref())
                    .collect::<StringArray>(),
            ),
        ],
    )
}

/// The `doc_id` column's value at `row` of an `extracted` batch.
pub fn doc_id_at(batch: &RecordBatch, row: usize) -> String {
    batch
        .column_by_name("doc_id")
        .and_then(|c| c.as_string_opt::<i32>())
        .filter(|c| row < c.len() && c.is_valid(row))
        .map(|c| c.value(row).to_string())
        .unwrap_or_default()
}
