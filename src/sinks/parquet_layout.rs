//! How rows are laid out in the Parquet files docstream writes.
//!
//! Vector columns (lists of floats) skip dictionary encoding, compression
//! and statistics: random floats neither repeat nor compress, min/max of a
//! vector's items prune nothing, and every one of those steps costs time
//! on each scan. Other columns keep delta-rs's defaults (Snappy).

use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;

pub fn writer_properties(schema: &Schema) -> WriterProperties {
    let mut props = WriterProperties::builder().set_compression(Compression::SNAPPY);
    for field in schema.fields() {
        let item = match field.data_type() {
            DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
                item
            }
            _ => continue,
        };
        if !matches!(
            item.data_type(),
            DataType::Float16 | DataType::Float32 | DataType::Float64
        ) {
            continue;
        }
        // Writers name a list's leaf after the Arrow item field, or "element".
        for leaf in [item.name().as_str(), "element"] {
            let path = ColumnPath::new(vec![field.name().clone(), "list".into(), leaf.into()]);
            props = props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_compression(path.clone(), Compression::UNCOMPRESSED)
                .set_column_statistics_enabled(path, EnabledStatistics::None);
        }
    }
    props.build()
}
