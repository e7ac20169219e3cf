//! Query results as JSON rows.

use anyhow::Result;
use deltalake::arrow::array::RecordBatch;
use serde_json::{Map, Value};

use super::api_error::{ApiError, ApiResult};
use crate::analytics::query::Analytics;

pub type Row = Map<String, Value>;

/// `batches` as JSON objects, one per row, nulls left out.
pub fn json_rows(batches: &[RecordBatch]) -> Result<Vec<Row>> {
    let mut writer = deltalake::arrow::json::ArrayWriter::new(Vec::new());
    for b in batches {
        writer.write(b)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// A string field of a row, or "".
pub fn text<'a>(row: &'a Row, key: &str) -> &'a str {
    row.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The rows of `sql`, which the server wrote, in `session`.
pub async fn rows(session: &Analytics, sql: &str) -> ApiResult<Vec<Row>> {
    let found = session.sql(sql).await.and_then(|b| json_rows(&b));
    found.map_err(|e| ApiError::internal(&e))
}
