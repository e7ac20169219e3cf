//! What Postgres clients expect of a session: `pg_catalog` (its tables and
//! functions, from datafusion-pg-catalog) describing the session's own
//! tables, a `version()` in Postgres's form, which drivers such as
//! SQLAlchemy parse, and the functions SQLAlchemy's inspector calls that
//! datafusion-pg-catalog lacks.

use std::sync::Arc;

use anyhow::Result;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use deltalake::arrow::array::{ArrayRef, StringBuilder};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::cast::as_string_array;
use deltalake::datafusion::common::{exec_err, ScalarValue};
use deltalake::datafusion::functions::utils::make_scalar_function;
use deltalake::datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use deltalake::datafusion::prelude::SessionContext;

/// The version Postgres clients see: the protocol's, then docstream's.
pub const VERSION: &str = concat!(
    "PostgreSQL 16.6 (docstream ",
    env!("CARGO_PKG_VERSION"),
    ", Apache DataFusion)"
);

/// `pg_like_pattern(pattern, escape)`: a LIKE pattern escaped with
/// `escape`, written with backslashes, the one escape DataFusion's LIKE
/// knows.
pub const LIKE_PATTERN: &str = "pg_like_pattern";

/// Adds `pg_catalog` under `catalog`, its functions, and `version()`.
pub fn register(ctx: &SessionContext, catalog: &str) -> Result<()> {
    datafusion_pg_catalog::setup_pg_catalog(ctx, catalog, EmptyContextProvider)
        .map_err(|e| anyhow::anyhow!("cannot set up pg_catalog: {e}"))?;
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                VERSION.into(),
            ))))
        }),
    ));
    // The lake has no sequences, and one collation.
    ctx.register_udf(create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    ));
    ctx.register_udf(create_udf(
        "pg_collation_is_visible",
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))),
    ));
    ctx.register_udf(create_udf(
        LIKE_PATTERN,
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(make_scalar_function(like_patterns, vec![])),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject {
        signature: Signature::variadic_any(Volatility::Immutable),
    }));
    Ok(())
}

/// Each pattern of `args[0]` with `args[1]`'s escape turned into backslashes.
fn like_patterns(args: &[ArrayRef]) -> deltalake::datafusion::common::Result<ArrayRef> {
    let (patterns, escapes) = (as_string_array(&args[0])?, as_string_array(&args[1])?);
    let mut out = StringBuilder::new();
    for (pattern, escape) in patterns.iter().zip(escapes) {
        let (Some(pattern), Some(escape)) = (pattern, escape) else {
            out.append_null();
            continue;
        };
        let mut escape = escape.chars();
        let (Some(escape), None) = (escape.next(), escape.next()) else {
            return exec_err!("the LIKE escape must be one character");
        };
        let mut plain = String::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                c if c == escape => {
                    plain.push('\\');
                    plain.extend(chars.next());
                }
                '\\' => plain.push_str("\\\\"),
                c => plain.push(c),
            }
        }
        out.append_value(plain);
    }
    Ok(Arc::new(out.finish()))
}

/// `json_build_object(key, value, ...)`: one JSON object per row, as text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> deltalake::datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> deltalake::datafusion::common::Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return exec_err!("json_build_object takes keys and values in pairs");
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut objects = StringBuilder::new();
        for row in 0..args.number_rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                let value = ScalarValue::try_from_array(&pair[1], row)?;
                object.insert(key.to_string(), json(value));
            }
            objects.append_value(serde_json::Value::Object(object).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(objects.finish())))
    }
}

fn json(value: ScalarValue) -> serde_json::Value {
    use serde_json::Value;
    if value.is_null() {
        return Value::Null;
    }
    match value {
        ScalarValue::Boolean(Some(b)) => Value::Bool(b),
        ScalarValue::Float32(Some(f)) => {
            serde_json::Number::from_f64(f.into()).map_or(Value::Null, Value::Number)
        }
        ScalarValue::Float64(Some(f)) => {
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        v if v.data_type().is_integer() => v
            .to_string()
            .parse::<serde_json::Number>()
            .map_or(Value::Null, Value::Number),
        v => Value::String(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn one(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let column = batches[0].column(0);
        ScalarValue::try_from_array(column, 0).unwrap().to_string()
    }

    #[tokio::test]
    async fn like_patterns_and_json_objects_as_postgres_gives_them() {
        let ctx = SessionContext::new();
        register(&ctx, "datafusion").unwrap();
        for (name, matches) in [("pg_toast", true), ("pgxtoast", false), ("a\\b", false)] {
            let sql = format!("SELECT '{name}' LIKE pg_like_pattern('pg/_%', '/')");
            assert_eq!(one(&ctx, &sql).await, matches.to_string(), "{name}");
        }
        let sql = "SELECT 'a\\b' LIKE pg_like_pattern('a\\b', '/')";
        assert_eq!(one(&ctx, sql).await, "true");
        let sql = "SELECT json_build_object('always', true, 'start', 1, 'name', 'x', 'none', NULL)";
        let object: serde_json::Value = serde_json::from_str(&one(&ctx, sql).await).unwrap();
        assert_eq!(
            object,
            serde_json::json!({"always": true, "start": 1, "name": "x", "none": null})
        );
    }
}
