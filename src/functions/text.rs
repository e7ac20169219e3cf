//! DataFusion adapters for the engine-free UDFs in `docstream-udfs`.

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int64Array, ListArray, StringArray, StringBuilder,
    StructArray,
};
use deltalake::arrow::buffer::{NullBuffer, OffsetBuffer};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Fields};
use deltalake::datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use deltalake::datafusion::prelude::SessionContext;
use docstream_udfs::{chunk_text, count_tokens, ChunkParams, Encoding};

/// Registers `chunk_text`, `count_tokens` and `redact_pii` on `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(ChunkText::default()));
    ctx.register_udf(ScalarUDF::new_from_impl(CountTokens::default()));
    ctx.register_udf(ScalarUDF::new_from_impl(RedactPii::default()));
}

/// `redact_pii(text)` → text with emails, phones, card numbers and national
/// ids replaced by placeholders; run it before a model stage.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RedactPii {
    signature: Signature,
}

impl Default for RedactPii {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for RedactPii {
    fn name(&self) -> &str {
        "redact_pii"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce(self.name(), arg_types, &[ArgKind::Text], 0)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let text = to_array(&args.args[0], args.number_rows, &DataType::Utf8)?;
        let out: StringArray = text
            .as_string::<i32>()
            .iter()
            .map(|t| t.map(docstream_udfs::redact_pii))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `chunk_text(text, max_tokens, overlap [, encoding])` →
/// `list<struct<idx, text, n_tokens, char_start, char_end, page_start, page_end>>`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ChunkText {
    signature: Signature,
}

impl Default for ChunkText {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn chunk_struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("idx", DataType::Int32, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("n_tokens", DataType::Int32, false),
        Field::new("char_start", DataType::Int64, false),
        Field::new("char_end", DataType::Int64, false),
        Field::new("page_start", DataType::Int32, true),
        Field::new("page_end", DataType::Int32, true),
    ])
}

fn chunk_list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(chunk_struct_fields()),
        true,
    )))
}

impl ScalarUDFImpl for ChunkText {
    fn name(&self) -> &str {
        "chunk_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce(
            self.name(),
            arg_types,
            &[ArgKind::Text, ArgKind::Int, ArgKind::Int],
            1,
        )
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(chunk_list_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let texts = to_array(&args.args[0], n, &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let maxes = to_array(&args.args[1], n, &DataType::Int64)?;
        let maxes = maxes.as_primitive::<deltalake::arrow::datatypes::Int64Type>();
        let overlaps = to_array(&args.args[2], n, &DataType::Int64)?;
        let overlaps = overlaps.as_primitive::<deltalake::arrow::datatypes::Int64Type>();
        let encodings = encoding_column(args.args.get(3), n)?;

        let mut offsets = vec![0i32];
        let (mut idx, mut n_tokens, mut starts, mut ends) = (vec![], vec![], vec![], vec![]);
        let (mut first_pages, mut last_pages) = (vec![], vec![]);
        let page = |p: Option<usize>| p.map(|p| i32::try_from(p).unwrap_or(i32::MAX));
        let mut chunk_texts = StringBuilder::new();
        let mut valid = Vec::with_capacity(n);
        for (row, encoding) in encodings.into_iter().enumerate() {
            let is_null = texts.is_null(row) || maxes.is_null(row) || overlaps.is_null(row);
            if !is_null {
                let params = ChunkParams::new(maxes.value(row), overlaps.value(row), encoding);
                let params = match params {
                    Ok(p) => p,
                    Err(e) => return exec_err!("chunk_text: {e}"),
                };
                for c in chunk_text(texts.value(row), &params) {
                    idx.push(i32::try_from(c.idx).unwrap_or(i32::MAX));
                    n_tokens.push(i32::try_from(c.n_tokens).unwrap_or(i32::MAX));
                    starts.push(c.char_start as i64);
                    ends.push(c.char_end as i64);
                    first_pages.push(page(c.page_start));
                    last_pages.push(page(c.page_end));
                    chunk_texts.append_value(&c.text);
                }
            }
            valid.push(!is_null);
            let len = i32::try_from(idx.len());
            match len {
                Ok(len) => offsets.push(len),
                Err(_) => return exec_err!("chunk_text: too many chunks in one batch"),
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(idx)),
            Arc::new(chunk_texts.finish()),
            Arc::new(Int32Array::from(n_tokens)),
            Arc::new(Int64Array::from(starts)),
            Arc::new(Int64Array::from(ends)),
            Arc::new(Int32Array::from(first_pages)),
            Arc::new(Int32Array::from(last_pages)),
        ];
        let structs = StructArray::try_new(chunk_struct_fields(), columns, None)?;
        let DataType::List(item) = chunk_list_type() else {
            unreachable!("chunk_list_type is a list")
        };
        let list = ListArray::try_new(
            item,
            OffsetBuffer::new(offsets.into()),
            Arc::new(structs),
            Some(NullBuffer::from(valid)),
        )?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

/// `count_tokens(text [, encoding])` → Int64.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CountTokens {
    signature: Signature,
}

impl Default for CountTokens {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CountTokens {
    fn name(&self) -> &str {
        "count_tokens"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce(self.name(), arg_types, &[ArgKind::Text], 1)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let texts = to_array(&args.args[0], n, &DataType::Utf8)?;
        let encodings = encoding_column(args.args.get(1), n)?;
        let counts: Int64Array = texts
            .as_string::<i32>()
            .iter()
            .zip(encodings)
            .map(|(t, e)| t.map(|t| count_tokens(t, e) as i64))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(counts)))
    }
}

#[derive(Clone, Copy)]
pub(super) enum ArgKind {
    Text,
    Int,
}

/// Coerces the required arguments, plus `optional_text` trailing string
/// arguments (the encoding name).
pub(super) fn coerce(
    name: &str,
    arg_types: &[DataType],
    required: &[ArgKind],
    optional_text: usize,
) -> Result<Vec<DataType>> {
    if arg_types.len() < required.len() || arg_types.len() > required.len() + optional_text {
        return plan_err!(
            "{name} takes {} to {} arguments, got {}",
            required.len(),
            required.len() + optional_text,
            arg_types.len()
        );
    }
    arg_types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let kind = required.get(i).copied().unwrap_or(ArgKind::Text);
            match kind {
                ArgKind::Text if is_string(t) || t.is_null() => Ok(DataType::Utf8),
                ArgKind::Int if t.is_integer() || t.is_null() => Ok(DataType::Int64),
                ArgKind::Text => plan_err!("{name}: argument {} must be text, got {t}", i + 1),
                ArgKind::Int => plan_err!("{name}: argument {} must be an integer, got {t}", i + 1),
            }
        })
        .collect()
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

pub(super) fn to_array(value: &ColumnarValue, rows: usize, ty: &DataType) -> Result<ArrayRef> {
    let array = value.clone().into_array(rows)?;
    if array.data_type() == ty {
        Ok(array)
    } else {
        Ok(cast(&array, ty)?)
    }
}

/// The encoding argument per row; constant in practice, so parsed once.
fn encoding_column(arg: Option<&ColumnarValue>, rows: usize) -> Result<Vec<Encoding>> {
    let parse = |s: Option<&str>| -> Result<Encoding> {
        match s {
            None => Ok(Encoding::default()),
            Some(s) => s.parse().or_else(|e| exec_err!("{e}")),
        }
    };
    match arg {
        None => Ok(vec![Encoding::default(); rows]),
        Some(ColumnarValue::Scalar(s)) => {
            let value = match s {
                ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                    v.as_deref()
                }
                _ => return exec_err!("the encoding must be a string"),
            };
            Ok(vec![parse(value)?; rows])
        }
        Some(ColumnarValue::Array(a)) => {
            let strings: StringArray = cast(a, &DataType::Utf8)?.as_string::<i32>().clone();
            strings.iter().map(parse).collect()
        }
    }
}
