//! The `extracted` table: the micro-batch of extracted documents that SQL
//! stages read from.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use deltalake::arrow::error::ArrowError;

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

/// Documents from rows of the `extracted` table as the lake holds them
/// (strings may come back as views; missing nullable columns are null).
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<ExtractedDoc>, ArrowError> {
    let text = |name: &str| -> Result<Option<StringArray>, ArrowError> {
        batch
            .column_by_name(name)
            .map(|c| cast(c, &DataType::Utf8).map(|c| c.as_string::<i32>().clone()))
            .transpose()
    };
    let time = |name: &str| -> Result<Option<TimestampMicrosecondArray>, ArrowError> {
        batch
            .column_by_name(name)
            .map(|c| {
                cast(c, &timestamp_type())
                    .map(|c| c.as_primitive::<TimestampMicrosecondType>().clone())
            })
            .transpose()
    };
    let required = |c: Option<StringArray>, name: &str| {
        c.ok_or_else(|| ArrowError::SchemaError(format!("extracted rows lack column {name}")))
    };
    let (ids, tenants, uris, hashes, mimes, texts) = (
        required(text("doc_id")?, "doc_id")?,
        required(text("tenant")?, "tenant")?,
        required(text("source_uri")?, "source_uri")?,
        required(text("content_hash")?, "content_hash")?,
        required(text("mime")?, "mime")?,
        required(text("text")?, "text")?,
    );
    let (titles, metadata, parents) = (text("title")?, text("metadata")?, text("parent_doc_id")?);
    let (event_times, ingested) = (time("event_time")?, time("ingested_at")?);
    let opt = |c: &Option<StringArray>, i: usize| {
        c.as_ref()
            .filter(|c| c.is_valid(i))
            .map(|c| c.value(i).to_string())
    };
    let at = |c: &Option<TimestampMicrosecondArray>, i: usize| {
        c.as_ref()
            .filter(|c| c.is_valid(i))
            .and_then(|c| DateTime::<Utc>::from_timestamp_micros(c.value(i)))
    };
    Ok((0..batch.num_rows())
        .map(|i| ExtractedDoc {
            doc_id: ids.value(i).to_string(),
            tenant: tenants.value(i).to_string(),
            source_uri: uris.value(i).to_string(),
            content_hash: hashes.value(i).to_string(),
            mime: mimes.value(i).to_string(),
            title: opt(&titles, i),
            text: texts.value(i).to_string(),
            event_time: at(&event_times, i),
            ingested_at: at(&ingested, i).unwrap_or_else(Utc::now),
            metadata: opt(&metadata, i).unwrap_or_else(|| "{}".into()),
            parent_doc_id: opt(&parents, i),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_come_back_from_their_rows_and_the_contract_agrees() {
        let doc = ExtractedDoc {
            doc_id: "d".into(),
            tenant: "t".into(),
            source_uri: "file:///a.txt".into(),
            content_hash: "h".into(),
            mime: "text/plain".into(),
            title: None,
            text: "hello".into(),
            event_time: None,
            ingested_at: DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap(),
            metadata: "{}".into(),
            parent_doc_id: Some("p".into()),
        };
        let batch = to_batch(&[&doc]).unwrap();
        let back = from_batch(&batch).unwrap();
        assert_eq!(format!("{:?}", back[0]), format!("{doc:?}"));

        // The lake's `extracted` table holds exactly these columns.
        let contract = super::super::tables::schema("extracted").unwrap();
        for field in schema().fields() {
            let c = contract.field_with_name(field.name()).unwrap();
            assert_eq!(c.data_type(), field.data_type(), "{}", field.name());
            assert_eq!(c.is_nullable(), field.is_nullable(), "{}", field.name());
        }
        assert_eq!(contract.fields().len(), schema().fields().len());
    }
}
