//! Text from documents and events, made safe to print: control characters
//! (escape sequences that retitle or repaint a terminal) become U+FFFD.

use std::borrow::Cow;
use std::sync::Arc;

use anyhow::Result;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;

/// `text` with every control character but newline and tab replaced.
pub fn safe(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if text.chars().any(unsafe_char) {
        Cow::Owned(
            text.chars()
                .map(|c| if unsafe_char(c) { '\u{fffd}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// The batches with their string columns made [`safe`], for a terminal table.
pub fn safe_batches(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    batches
        .iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .map(safe_column)
                .collect::<Result<Vec<_>>>()?;
            Ok(RecordBatch::try_new(b.schema(), columns)?)
        })
        .collect()
}

fn safe_column(column: &ArrayRef) -> Result<ArrayRef> {
    let data_type = column.data_type();
    if !matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Ok(column.clone());
    }
    let strings = cast(column, &DataType::Utf8)?;
    let cleaned: StringArray = strings
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(safe))
        .collect();
    Ok(cast(&(Arc::new(cleaned) as ArrayRef), data_type)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_become_replacement_characters() {
        assert_eq!(safe("a\u{1b}[2Jb\n\tc"), "a\u{fffd}[2Jb\n\tc");
        assert!(matches!(safe("plain"), Cow::Borrowed(_)));
    }
}
