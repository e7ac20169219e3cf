//! What Postgres clients expect of a session: `pg_catalog` (its tables and
//! functions, from datafusion-pg-catalog) describing the session's own
//! tables, and a `version()` in Postgres's form, which drivers such as
//! SQLAlchemy parse.

use std::sync::Arc;

use anyhow::Result;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use deltalake::datafusion::prelude::SessionContext;

/// The version Postgres clients see: the protocol's, then docstream's.
pub const VERSION: &str = concat!(
    "PostgreSQL 16.6 (docstream ",
    env!("CARGO_PKG_VERSION"),
    ", Apache DataFusion)"
);

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
    Ok(())
}
