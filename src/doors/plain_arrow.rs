//! Results as the doors send them in Arrow: string and binary views as
//! their plain types. DataFusion reads Parquet strings as views, whose
//! batches keep whole page buffers alive, and Arrow IPC sends every buffer
//! a batch holds: 3.6 times the bytes of the rows in the doors bench.
//! Plain types carry only the rows' bytes, and every client reads them.

use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::TryStreamExt;

fn plain_type(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    }
}

/// `schema` with views as their plain types.
pub fn plain_schema(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match plain_type(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// `batch` in `schema`, its [`plain_schema`].
pub fn plain_batch(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| match c.data_type() == f.data_type() {
            true => Ok(c.clone()),
            false => cast(c, f.data_type()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// `rows` with views as their plain types.
pub fn plain_stream(rows: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let schema = Arc::new(plain_schema(&rows.schema()));
    if schema == rows.schema() {
        return rows;
    }
    let plain = schema.clone();
    let batches = rows.and_then(move |batch| {
        std::future::ready(plain_batch(batch, &plain).map_err(DataFusionError::from))
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{Array, Int32Array, StringViewArray};

    use super::*;

    #[test]
    fn views_become_plain_and_carry_only_their_rows() {
        let long: Vec<String> = (0..1000)
            .map(|i| format!("a string longer than twelve {i}"))
            .collect();
        let views = StringViewArray::from_iter_values(&long).slice(0, 2);
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, false),
            Field::new("n", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(views), Arc::new(Int32Array::from(vec![1, 2]))],
        )
        .unwrap();
        let plain = Arc::new(plain_schema(&schema));
        assert_eq!(plain.field(0).data_type(), &DataType::Utf8);
        let sent = plain_batch(batch.clone(), &plain).unwrap();
        assert_eq!(sent.schema(), plain);
        assert!(sent.get_array_memory_size() * 10 < batch.get_array_memory_size());
        let strings = sent
            .column(0)
            .as_any()
            .downcast_ref::<deltalake::arrow::array::StringArray>()
            .unwrap();
        assert_eq!(strings.value(1), long[1]);
        assert_eq!(sent.column(1).len(), 2);
    }
}
