//! The table contract: Arrow schemas built from the JSON schemas in
//! `schemas/tables/`, which are the public, documented source of truth.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::error::ArrowError;
use serde_json::Value;

const TABLES: &[(&str, &str)] = &[
    (
        "documents",
        include_str!("../../schemas/tables/documents.schema.json"),
    ),
    (
        "chunks",
        include_str!("../../schemas/tables/chunks.schema.json"),
    ),
    (
        "failures",
        include_str!("../../schemas/tables/failures.schema.json"),
    ),
    (
        "embeddings",
        include_str!("../../schemas/tables/embeddings.schema.json"),
    ),
    (
        "summaries",
        include_str!("../../schemas/tables/summaries.schema.json"),
    ),
    (
        "doc_types",
        include_str!("../../schemas/tables/doc_types.schema.json"),
    ),
    (
        "risks",
        include_str!("../../schemas/tables/risks.schema.json"),
    ),
    (
        "action_items",
        include_str!("../../schemas/tables/action_items.schema.json"),
    ),
    (
        "extracted",
        include_str!("../../schemas/tables/extracted.schema.json"),
    ),
    (
        "lineage",
        include_str!("../../schemas/tables/lineage.schema.json"),
    ),
    (
        "usage",
        include_str!("../../schemas/tables/usage.schema.json"),
    ),
];

/// The contract schema of `table`, or `None` for a user-defined stage table.
pub fn schema(table: &str) -> Option<SchemaRef> {
    let (_, json) = TABLES.iter().find(|(name, _)| *name == table)?;
    // The files are compiled in and covered by tests, so a parse error is a bug.
    Some(parse(json).unwrap_or_else(|e| panic!("schemas/tables/{table}.schema.json: {e:#}")))
}

/// The column every stage's rows carry: the fingerprint of the stage that
/// wrote them.
pub const FINGERPRINT: &str = "stage_fingerprint";

/// The columns that identify one landing of a document version in
/// `table`: each version lands once per stage fingerprint, so a changed
/// stage's new rows land beside the old ones. `failures` holds one row per
/// version, stage and fingerprint that failed; `lineage` one per version,
/// stage, fingerprint and outcome; `extracted` one per version. Tables
/// without these columns are plain logs. A missing or null column counts
/// as the empty string.
pub fn version_key(table: &str) -> &'static [&'static str] {
    match table {
        "failures" => &["doc_id", "content_hash", "stage", FINGERPRINT],
        "lineage" => &[
            "doc_id",
            "content_hash",
            "stage",
            FINGERPRINT,
            "status",
            "error_kind",
        ],
        "extracted" => &["doc_id", "content_hash"],
        _ => &["doc_id", "content_hash", FINGERPRINT],
    }
}

/// Where `table` goes in a micro-batch's commits: the stage input
/// `extracted` first, so every later commit can be recomputed from it;
/// `documents` after the other outputs, so a reader that sees a document
/// sees its chunks; `lineage` last, as the record that everything landed.
pub fn commit_rank(table: &str) -> u8 {
    match table {
        "extracted" => 0,
        "documents" => 2,
        "lineage" => 3,
        _ => 1,
    }
}

/// `documents` with `version_rank`: 1 for each document's current version,
/// the one ingested last (ties by content hash), 2 and up for older ones.
pub const DOCUMENT_VERSIONS: &str = "SELECT *, row_number() OVER (PARTITION BY doc_id ORDER BY ingested_at DESC, content_hash) AS version_rank FROM documents";

/// The view `current_documents`: each document's current version.
pub fn current_documents_sql() -> String {
    format!("SELECT * EXCLUDE (version_rank) FROM ({DOCUMENT_VERSIONS}) WHERE version_rank = 1")
}

/// A batch of `table` from its columns by name, in the contract's order.
/// Callers build every contract column; a missing one is a bug.
pub fn contract_batch(
    table: &str,
    columns: Vec<(&str, ArrayRef)>,
) -> Result<RecordBatch, ArrowError> {
    let schema = schema(table).unwrap_or_else(|| panic!("{table} is not a contract table"));
    let ordered = schema
        .fields()
        .iter()
        .map(|field| {
            columns
                .iter()
                .find(|(name, _)| name == field.name())
                .map(|(_, col)| col.clone())
                .unwrap_or_else(|| panic!("no column {} built for {table}", field.name()))
        })
        .collect();
    RecordBatch::try_new(schema, ordered)
}

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn parse(json: &str) -> Result<SchemaRef> {
    let doc: Value = serde_json::from_str(json)?;
    let required: Vec<&str> = doc["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let props = doc["properties"]
        .as_object()
        .ok_or_else(|| anyhow!("no properties"))?;
    let fields = props
        .iter()
        .map(|(name, spec)| {
            let ty = arrow_type(spec).with_context(|| format!("column {name}"))?;
            Ok(Field::new(name, ty, !required.contains(&name.as_str())))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

fn arrow_type(spec: &Value) -> Result<DataType> {
    let ty = match &spec["type"] {
        Value::String(s) => s.as_str(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .ok_or_else(|| anyhow!("no non-null type"))?,
        _ => bail!("missing type"),
    };
    let format = spec["format"].as_str();
    Ok(match (ty, format) {
        ("string", Some("date-time")) => timestamp_type(),
        ("string", Some("date")) => DataType::Date32,
        ("string", _) => DataType::Utf8,
        ("integer", Some("int32")) => DataType::Int32,
        ("integer", _) => DataType::Int64,
        ("number", Some("float")) => DataType::Float32,
        ("number", _) => DataType::Float64,
        ("boolean", _) => DataType::Boolean,
        ("array", _) => {
            let item = arrow_type(&spec["items"]).context("items")?;
            DataType::List(Arc::new(Field::new_list_field(item, true)))
        }
        (other, _) => bail!("unsupported type {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_schema_parses() {
        for (name, _) in TABLES {
            let s = schema(name).unwrap();
            // Per-document tables carry the version key the sink dedupes on.
            if *name != "usage" {
                assert!(s.field_with_name("doc_id").is_ok(), "{name}");
                assert!(s.field_with_name("content_hash").is_ok(), "{name}");
            }
        }
        let emb = schema("embeddings").unwrap();
        assert_eq!(
            emb.field_with_name("embedding").unwrap().data_type(),
            &DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)))
        );
        let docs = schema("documents").unwrap();
        assert_eq!(
            docs.field_with_name("ingested_at").unwrap().data_type(),
            &timestamp_type()
        );
        assert!(docs.field_with_name("title").unwrap().is_nullable());
        assert!(!docs.field_with_name("doc_id").unwrap().is_nullable());
        assert!(schema("my_custom_stage").is_none());
    }
}
