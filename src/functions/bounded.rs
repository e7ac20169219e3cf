//! DataFusion's functions whose output can be far larger than their input
//! (`repeat('x', 1e9)`, `lpad`, `replace` with an empty pattern,
//! `array_repeat`, `range`), wrapped so that one batch's output is
//! estimated from the arguments and refused before it is allocated. The
//! memory pool does not see scalar outputs; this bounds them instead.

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, FieldRef};
use deltalake::datafusion::common::{exec_err, Result};
use deltalake::datafusion::execution::FunctionRegistry;
use deltalake::datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use deltalake::datafusion::prelude::SessionContext;

/// How a function's output grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: len(s) × n.
    Repeat,
    /// `lpad(s, n [, fill])`: n characters, up to 4 bytes each.
    Pad,
    /// `replace(s, from, to)`: every match of `from` (between every
    /// character when it is empty) becomes `to`.
    Replace,
    /// `regexp_replace(s, pattern, to [, flags])`: matches do not overlap,
    /// so there are at most len(s) + 1 of them, and the groups `to` copies
    /// (each reference at most once per match) add at most len(to) × len(s).
    Regex,
    /// `array_repeat(x, n)`, `array_resize(a, n, x)`: n elements.
    Elements,
    /// `range(start, stop [, step])` over integers: (stop − start) / step
    /// elements of 8 bytes.
    Range,
}

const WRAPPED: [(&str, Growth); 9] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("replace", Growth::Replace),
    ("array_repeat", Growth::Elements),
    ("array_resize", Growth::Elements),
    ("range", Growth::Range),
    ("generate_series", Growth::Range),
    ("regexp_replace", Growth::Regex),
];

/// Replaces the functions above on `ctx` with versions that refuse to
/// build more than `max_bytes` in one batch.
pub fn register(ctx: &SessionContext, max_bytes: u64) {
    for (name, growth) in WRAPPED {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
                inner,
                growth,
                max_bytes,
            }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    max_bytes: u64,
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.inner().return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let estimate = self.estimate(&args.args, args.number_rows)?;
        if estimate > self.max_bytes {
            return exec_err!(
                "{}(...) would build about {} MiB in one batch, over the {} MiB allowed per generated column (an eighth of [analytics] memory_limit_mb); generate less, or raise the limit in the pipeline file",
                self.name(),
                estimate >> 20,
                self.max_bytes >> 20
            );
        }
        self.inner.invoke_with_args(args)
    }
}

impl Bounded {
    /// An upper bound on the bytes the call builds for `rows` rows.
    fn estimate(&self, args: &[ColumnarValue], rows: usize) -> Result<u64> {
        let arg = |i: usize| args.get(i).map(|a| Arg::new(a, rows)).transpose();
        let (first, second, third) = (arg(0)?, arg(1)?, arg(2)?);
        let mut total: u64 = 0;
        for row in 0..rows {
            let bytes = match (self.growth, &first, &second) {
                (Growth::Repeat, Some(s), Some(n)) => s.len(row).saturating_mul(n.count(row)),
                (Growth::Pad, Some(_), Some(n)) => n.count(row).saturating_mul(4),
                (Growth::Replace, Some(s), Some(from)) => {
                    let to = third.as_ref().map_or(0, |t| t.len(row));
                    let matches = match from.len(row) {
                        0 => s.len(row) + 1,
                        n => s.len(row) / n,
                    };
                    s.len(row).saturating_add(matches.saturating_mul(to))
                }
                (Growth::Regex, Some(s), Some(_)) => {
                    let to = third.as_ref().map_or(0, |t| t.len(row));
                    (s.len(row) + 1).saturating_mul(2 * to + 1)
                }
                (Growth::Elements, Some(x), Some(n)) => {
                    // array_resize(a, n, x): the fill value is the third.
                    let element = third.as_ref().unwrap_or(x).len(row).max(8);
                    n.count(row).saturating_mul(element)
                }
                (Growth::Range, Some(start), stop) => {
                    let (start, stop, step) = match (stop, &third) {
                        (None, _) => (0, start.int(row), 1),
                        (Some(stop), step) => (
                            start.int(row),
                            stop.int(row),
                            step.as_ref().map_or(1, |s| s.int(row)),
                        ),
                    };
                    let span = stop.abs_diff(start);
                    (span / step.unsigned_abs().max(1)).saturating_mul(8)
                }
                _ => 0,
            };
            total = total.saturating_add(bytes);
        }
        Ok(total)
    }
}

/// One argument, read per row without broadcasting scalars.
struct Arg {
    array: ArrayRef,
    scalar: bool,
    /// The argument as integers, when it casts to them.
    ints: Option<ArrayRef>,
}

impl Arg {
    fn new(value: &ColumnarValue, rows: usize) -> Result<Self> {
        let (array, scalar) = match value {
            ColumnarValue::Array(a) => (a.clone(), false),
            ColumnarValue::Scalar(s) => (s.to_array()?, true),
        };
        debug_assert!(scalar || array.len() == rows);
        let ints = match array.data_type() {
            t if t.is_integer() || t.is_floating() => Some(cast(&array, &DataType::Int64)?),
            _ => None,
        };
        Ok(Self {
            array,
            scalar,
            ints,
        })
    }

    fn index(&self, row: usize) -> usize {
        if self.scalar {
            0
        } else {
            row
        }
    }

    /// Bytes of a string or binary value (NULL: 0); other types: their
    /// average size per row.
    fn len(&self, row: usize) -> u64 {
        let i = self.index(row);
        if self.array.is_null(i) {
            return 0;
        }
        let a = &self.array;
        let bytes = match a.data_type() {
            DataType::Utf8 => a.as_string::<i32>().value(i).len(),
            DataType::LargeUtf8 => a.as_string::<i64>().value(i).len(),
            DataType::Utf8View => a.as_string_view().value(i).len(),
            DataType::Binary => a.as_binary::<i32>().value(i).len(),
            DataType::LargeBinary => a.as_binary::<i64>().value(i).len(),
            DataType::BinaryView => a.as_binary_view().value(i).len(),
            _ => a.get_array_memory_size() / a.len().max(1),
        };
        bytes as u64
    }

    /// An integer value (NULL or not a number: 0).
    fn int(&self, row: usize) -> i64 {
        let i = self.index(row);
        match &self.ints {
            Some(ints) if !ints.is_null(i) => ints
                .as_primitive::<deltalake::arrow::datatypes::Int64Type>()
                .value(i),
            _ => 0,
        }
    }

    /// A count argument: negative counts build nothing.
    fn count(&self, row: usize) -> u64 {
        self.int(row).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(sql: &str) -> Result<usize, String> {
        let ctx = SessionContext::new();
        register(&ctx, 1 << 20);
        let batches = ctx
            .sql(sql)
            .await
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn every_wrapped_function_exists() {
        let ctx = SessionContext::new();
        for (name, _) in WRAPPED {
            assert!(ctx.udf(name).is_ok(), "{name} is not a DataFusion function");
        }
    }

    #[tokio::test]
    async fn small_outputs_run_and_huge_ones_are_refused_before_allocating() {
        for ok in [
            "SELECT repeat('ab', 1000)",
            "SELECT lpad('x', 1000, '-')",
            "SELECT replace(repeat('a', 1000), '', 'bb')",
            "SELECT array_repeat('abc', 1000)",
            "SELECT range(1000)",
            "SELECT generate_series(1, 1000, 2)",
            "SELECT regexp_replace(repeat('a b  c ', 1000), '\\s+', ' ', 'g')",
            "SELECT repeat(NULL, 1000000000)",
            "SELECT repeat('x', -5)",
        ] {
            assert_eq!(run(ok).await, Ok(1), "{ok}");
        }
        for huge in [
            "SELECT repeat('x', 1000000000)",
            "SELECT rpad('x', 1000000000)",
            "SELECT replace(repeat('a', 100000), '', repeat('b', 100))",
            "SELECT regexp_replace(repeat('a', 100000), '', repeat('b', 100), 'g')",
            "SELECT array_repeat(1, 1000000000)",
            "SELECT array_resize(make_array(1), 1000000000, 0)",
            "SELECT range(0, 1000000000000, 1)",
            "SELECT generate_series(-9223372036854775807, 9223372036854775807)",
            // 10 KiB per row is fine; a thousand rows in one batch are not.
            "SELECT repeat('aaaaaaaaaa', 1000 + n) FROM unnest(range(1000)) AS t(n)",
        ] {
            let err = run(huge).await.unwrap_err();
            assert!(err.contains("memory_limit_mb"), "{huge}: {err}");
        }
    }
}
