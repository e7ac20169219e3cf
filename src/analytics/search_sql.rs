//! Search as table functions, so hits can be joined and filtered in plain
//! SQL. Each runs the same code as `docstream search`: the indexes plus
//! their tails, or the exact scans on a lake with no index.
//!
//! - `text_search('words', k)`: BM25;
//! - `vector_search(embed_query('words') | [0.1, ...], k)`: cosine;
//! - `hybrid_search('words', k)`: both, fused by reciprocal rank, with the
//!   parts of the score.
//!
//! Each takes optional `tenant`, `since` and `until` arguments after `k`
//! (NULL skips one).

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::array::{
    ArrayRef, AsArray, Float32Array, Float64Array, Int32Array, RecordBatch, StringArray,
    UInt64Array,
};
use deltalake::arrow::datatypes::{DataType, Field, Float32Type, Float64Type, Schema, SchemaRef};
use deltalake::datafusion::catalog::{Session, TableFunctionImpl};
use deltalake::datafusion::common::{plan_err, DataFusionError, Result, ScalarValue};
use deltalake::datafusion::datasource::{MemTable, TableProvider, TableType};
use deltalake::datafusion::execution::SessionState;
use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::prelude::SessionContext;
use docstream_models::chain::ModelChain;

use super::search::{keyword_hits, nearest, query_vector, retrieve, Depth, Retrievers, Searching};
use crate::functions::embed_query;
use crate::indexes::fresh::{LakeView, Scope};
use crate::indexes::vector::Effort;

pub const TEXT_SEARCH: &str = "text_search";
pub const VECTOR_SEARCH: &str = "vector_search";
pub const HYBRID_SEARCH: &str = "hybrid_search";

/// Candidates each retriever gives `hybrid_search` before fusion, at least.
const HYBRID_CANDIDATES: usize = 100;

/// What the search functions search: the lake, its query embedder, and
/// how hard vector search looks.
#[derive(Clone)]
struct Searched {
    lake: LakeView,
    embedder: Option<Arc<ModelChain>>,
    effort: Effort,
    /// The only tenant a scoped session searches.
    tenant: Option<String>,
}

impl std::fmt::Debug for Searched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Searched")
            .field("lake", &self.lake.root.as_str())
            .field(
                "embedder",
                &self.embedder.as_deref().map(ModelChain::primary_model),
            )
            .finish()
    }
}

/// Registers the search functions for `lake` on `ctx`; with `tenant`,
/// they find that tenant's chunks only, whatever tenant a query names.
pub fn register(
    ctx: &SessionContext,
    lake: LakeView,
    embedder: Option<Arc<ModelChain>>,
    effort: Effort,
    tenant: Option<String>,
) {
    let searched = Searched {
        lake,
        embedder,
        effort,
        tenant,
    };
    for kind in [Kind::Text, Kind::Vector, Kind::Hybrid] {
        ctx.register_udtf(
            kind.name(),
            Arc::new(SearchFunction {
                kind,
                searched: searched.clone(),
            }),
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Vector,
    Hybrid,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Text => TEXT_SEARCH,
            Kind::Vector => VECTOR_SEARCH,
            Kind::Hybrid => HYBRID_SEARCH,
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Kind::Text => "text_search('words', k [, tenant [, since [, until]]])",
            Kind::Vector => "vector_search(embed_query('words') or [0.1, ...], k [, tenant [, since [, until]]])",
            Kind::Hybrid => "hybrid_search('words', k [, tenant [, since [, until]]])",
        }
    }

    fn schema(self) -> SchemaRef {
        let mut fields = vec![
            Field::new("doc_id", DataType::Utf8, false),
            Field::new("chunk_idx", DataType::Int32, false),
        ];
        match self {
            Kind::Text | Kind::Vector => fields.push(Field::new("score", DataType::Float32, false)),
            Kind::Hybrid => fields.extend([
                Field::new("score", DataType::Float64, false),
                Field::new("vector_rank", DataType::UInt64, true),
                Field::new("cosine", DataType::Float32, true),
                Field::new("keyword_rank", DataType::UInt64, true),
                Field::new("bm25", DataType::Float64, true),
            ]),
        }
        Arc::new(Schema::new(fields))
    }
}

/// What a search function looks for.
#[derive(Debug, Clone)]
enum Query {
    Text(String),
    Vector(Vec<f32>),
}

#[derive(Debug)]
struct SearchFunction {
    kind: Kind,
    searched: Searched,
}

fn text(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    }
}

fn is_null(e: &Expr) -> bool {
    matches!(e, Expr::Literal(v, _) if v.is_null())
}

/// A number literal, as f32.
fn number(e: &Expr) -> Option<f32> {
    let Expr::Literal(v, _) = e else { return None };
    let v = v.cast_to(&DataType::Float64).ok()?;
    match v {
        ScalarValue::Float64(Some(x)) => Some(x as f32),
        _ => None,
    }
}

/// A vector literal: `[0.1, 0.2]` (make_array of numbers), or a list value.
fn vector(e: &Expr) -> Option<Vec<f32>> {
    match e {
        Expr::ScalarFunction(f) if f.name() == "make_array" => f.args.iter().map(number).collect(),
        Expr::Literal(v, _) => {
            let array: ArrayRef = match v {
                ScalarValue::List(a) => a.value(0),
                ScalarValue::LargeList(a) => a.value(0),
                ScalarValue::FixedSizeList(a) => a.value(0),
                _ => return None,
            };
            match array.data_type() {
                DataType::Float32 => array.as_primitive::<Float32Type>().iter().collect(),
                DataType::Float64 => array
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|x| x.map(|x| x as f32))
                    .collect(),
                _ => None,
            }
        }
        _ => None,
    }
}

impl TableFunctionImpl for SearchFunction {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let (name, usage) = (self.kind.name(), self.kind.usage());
        let query = match (self.kind, args.first()) {
            (Kind::Text | Kind::Hybrid, Some(e)) => text(e).map(Query::Text),
            (Kind::Vector, Some(e)) => embed_query::query_text(e)
                .map(|t| Query::Text(t.to_string()))
                .or_else(|| vector(e).map(Query::Vector)),
            (_, None) => None,
        };
        let (Some(query), Some(k)) = (query, args.get(1).and_then(count)) else {
            return plan_err!(
                "{name} takes what to look for and a row count from 1 to 10000: {usage}"
            );
        };
        if args.len() > 5 {
            return plan_err!("{name} takes at most five arguments: {usage}");
        }
        let mut scope = Scope::default();
        for (i, e) in args.iter().enumerate().skip(2) {
            if is_null(e) {
                continue;
            }
            let what = ["tenant", "since", "until"][i - 2];
            let Some(value) = text(e) else {
                return plan_err!("{name}'s {what} is a text literal or NULL: {usage}");
            };
            if i == 2 {
                scope.tenant = Some(value);
                continue;
            }
            let time = match crate::indexes::fresh::parse_time(&value) {
                Ok(t) => t,
                Err(e) => return plan_err!("{name}'s {what}: {e}"),
            };
            if i == 3 {
                scope.since = Some(time);
            } else {
                scope.until = Some(time);
            }
        }
        if let Some(only) = &self.searched.tenant {
            if scope.tenant.as_ref().is_some_and(|t| t != only) {
                let schema = self.kind.schema();
                return Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?));
            }
            scope.tenant = Some(only.clone());
        }
        Ok(Arc::new(SearchTable {
            kind: self.kind,
            searched: self.searched.clone(),
            query,
            k,
            scope,
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
struct SearchTable {
    kind: Kind,
    searched: Searched,
    query: Query,
    k: usize,
    scope: Scope,
}

impl SearchTable {
    async fn rows(&self, ctx: &SessionContext) -> anyhow::Result<RecordBatch> {
        let s = Searching {
            ctx,
            lake: &self.searched.lake,
            embedder: self.searched.embedder.as_deref(),
            effort: self.searched.effort,
        };
        let (k, schema) = (self.k, self.kind.schema());
        let ids = |ids: Vec<&str>, idx: Vec<i32>| -> Vec<ArrayRef> {
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(Int32Array::from(idx)),
            ]
        };
        let columns = match (self.kind, &self.query) {
            (Kind::Text, Query::Text(q)) => {
                let hits = keyword_hits(&s, q, k, false, &self.scope).await?;
                let mut c = ids(
                    hits.iter().map(|h| h.0 .0.as_str()).collect(),
                    hits.iter().map(|h| h.0 .1).collect(),
                );
                c.push(Arc::new(Float32Array::from_iter_values(
                    hits.iter().map(|h| h.1 as f32),
                )));
                c
            }
            (Kind::Vector, q) => {
                let vector = match q {
                    Query::Vector(v) => v.clone(),
                    Query::Text(t) => query_vector(&s, t).await?.ok_or_else(|| {
                        anyhow::anyhow!("embed_query needs an embedding provider: the pipeline's embeddings stage, or [analytics] embed_providers")
                    })?,
                };
                let hits = nearest(&s, &vector, k, false, &self.scope).await?;
                let mut c = ids(
                    hits.iter().map(|h| h.doc_id.as_str()).collect(),
                    hits.iter().map(|h| h.chunk_idx).collect(),
                );
                c.push(Arc::new(Float32Array::from_iter_values(
                    hits.iter().map(|h| h.score),
                )));
                c
            }
            (_, Query::Text(q)) => {
                let depth = Depth {
                    k,
                    candidates: k.max(HYBRID_CANDIDATES),
                    exact: false,
                    retrievers: Retrievers::Hybrid,
                };
                let hits = retrieve(&s, q, depth, &self.scope).await?;
                let rank = |r: Option<usize>| r.map(|r| r as u64);
                let mut c = ids(
                    hits.iter().map(|h| h.doc_id.as_str()).collect(),
                    hits.iter().map(|h| h.chunk_idx).collect(),
                );
                c.extend([
                    Arc::new(Float64Array::from_iter_values(hits.iter().map(|h| h.score)))
                        as ArrayRef,
                    Arc::new(UInt64Array::from_iter(
                        hits.iter().map(|h| rank(h.vector_rank)),
                    )),
                    Arc::new(Float32Array::from_iter(hits.iter().map(|h| h.cosine))),
                    Arc::new(UInt64Array::from_iter(
                        hits.iter().map(|h| rank(h.keyword_rank)),
                    )),
                    Arc::new(Float64Array::from_iter(hits.iter().map(|h| h.bm25))),
                ]);
                c
            }
            (_, Query::Vector(_)) => anyhow::bail!("{} takes words", self.kind.name()),
        };
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

#[async_trait]
impl TableProvider for SearchTable {
    fn schema(&self) -> SchemaRef {
        self.kind.schema()
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
            return plan_err!("{} runs only in docstream's SQL session", self.kind.name());
        };
        // The same tables, in a context the search can run SQL in.
        let ctx = SessionContext::new_with_state(session.clone());
        let batch = self
            .rows(&ctx)
            .await
            .map_err(|e| DataFusionError::Execution(format!("{e:#}")))?;
        MemTable::try_new(self.kind.schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
