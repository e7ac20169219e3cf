//! `text_search('query', k [, 'tenant'])`: keyword search as a table
//! function, so hits can be joined and filtered in plain SQL. It runs the
//! same code as `docstream search`: the text index plus its tail, or the
//! exact path on a lake with no index.

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::array::{Float32Array, Int32Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::catalog::{Session, TableFunctionImpl};
use deltalake::datafusion::common::{plan_err, DataFusionError, Result, ScalarValue};
use deltalake::datafusion::datasource::{MemTable, TableProvider, TableType};
use deltalake::datafusion::execution::SessionState;
use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::prelude::SessionContext;

use crate::indexes::fresh::LakeView;
use crate::indexes::keyword;
use crate::indexes::text::Scope;

pub const TEXT_SEARCH: &str = "text_search";

/// Registers `text_search` for the lake `lake` on `ctx`.
pub fn register(ctx: &SessionContext, lake: LakeView) {
    ctx.register_udtf(TEXT_SEARCH, Arc::new(TextSearchFunction { lake }));
}

#[derive(Debug)]
struct TextSearchFunction {
    lake: LakeView,
}

impl TableFunctionImpl for TextSearchFunction {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let usage = "text_search('words', k [, 'tenant'])";
        let text = |e: &Expr| match e {
            Expr::Literal(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)),
                _,
            ) => Some(s.clone()),
            _ => None,
        };
        let (Some(query), Some(k)) = (args.first().and_then(text), args.get(1).and_then(count))
        else {
            return plan_err!("{TEXT_SEARCH} takes a text literal and a row count: {usage}");
        };
        let tenant = match args.get(2) {
            None => None,
            Some(e) => match text(e) {
                Some(t) => Some(t),
                None => {
                    return plan_err!("{TEXT_SEARCH}'s third argument is a tenant literal: {usage}")
                }
            },
        };
        if args.len() > 3 {
            return plan_err!("{TEXT_SEARCH} takes at most three arguments: {usage}");
        }
        Ok(Arc::new(TextSearchTable {
            lake: self.lake.clone(),
            query,
            k,
            scope: Scope {
                tenant,
                ..Default::default()
            },
        }))
    }
}

/// A positive integer literal, at most 10,000.
fn count(e: &Expr) -> Option<usize> {
    let Expr::Literal(v, _) = e else { return None };
    let n = match v {
        ScalarValue::Int64(Some(n)) => *n,
        ScalarValue::Int32(Some(n)) => i64::from(*n),
        ScalarValue::UInt64(Some(n)) => i64::try_from(*n).ok()?,
        _ => return None,
    };
    usize::try_from(n).ok().filter(|n| (1..=10_000).contains(n))
}

#[derive(Debug)]
struct TextSearchTable {
    lake: LakeView,
    query: String,
    k: usize,
    scope: Scope,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("chunk_idx", DataType::Int32, false),
        Field::new("score", DataType::Float32, false),
    ]))
}

#[async_trait]
impl TableProvider for TextSearchTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(session) = state.as_any().downcast_ref::<SessionState>() else {
            return plan_err!("{TEXT_SEARCH} runs only in docstream's SQL session");
        };
        // The same tables, in a context the search can run SQL in.
        let ctx = SessionContext::new_with_state(session.clone());
        let external = |e: anyhow::Error| DataFusionError::External(e.into());
        let hits = match keyword::search(&ctx, &self.lake, &self.query, self.k, &self.scope)
            .await
            .map_err(external)?
        {
            Some(hits) => hits,
            None => keyword::exact(&ctx, &self.query, self.k, &self.scope)
                .await
                .map_err(external)?,
        };
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    hits.iter().map(|h| h.doc_id.as_str()),
                )),
                Arc::new(Int32Array::from_iter_values(
                    hits.iter().map(|h| h.chunk_idx),
                )),
                Arc::new(Float32Array::from_iter_values(hits.iter().map(|h| h.score))),
            ],
        )?;
        MemTable::try_new(schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
