//! The analytics session: every table of the lake, the vector functions,
//! `embed_query`, and read-only SQL over them.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::logical_expr::{JoinType, LogicalPlan};
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::prelude::{col, lit, SessionContext};
use docstream_models::chain::ModelChain;
use docstream_models::provider::ProviderConfig;
use futures::TryStreamExt;
use url::Url;

use crate::analytics::config::AnalyticsConfig;
use crate::analytics::scoped_table::ScopedTable;
use crate::analytics::search::Searching;
use crate::analytics::search_sql;
use crate::contract::tables;
use crate::functions::embed_query::{self, Resolved};
use crate::indexes::fresh::LakeView;
use crate::indexes::vector::Effort;
use crate::lineage::current::{self, HISTORY};
use crate::models::config::ModelsConfig;
use crate::models::hub::ModelHub;
use crate::sinks::lake::Lake;
use crate::storage::StorageOptions;

/// Longer SQL is refused before parsing; real queries are a few KiB.
const MAX_SQL_BYTES: usize = 1 << 20;

/// Deeper expressions are refused before planning, whose passes recurse
/// (and slow down) once per level: real queries nest a few dozen deep.
const MAX_EXPR_DEPTH: usize = 1000;

const CURRENT_DOCUMENTS: &str = "current_documents";

/// The tenant's doc ids, under a name no table has, for the semi-join.
const SCOPE_KEY: &str = "__docstream_scope_doc_id";

/// The one answer every door gives to statements that would change
/// anything.
pub const READ_ONLY: &str = "docstream is read-only here: only SELECT, WITH, EXPLAIN and SHOW run. Tables change through `docstream backfill`, `ingest` and uploads";

const MEMORY_HINT: &str = "The query needs more memory than [analytics] memory_limit_mb allows: aggregate or filter more, add LIMIT, or raise the limit in the pipeline file";

/// What a statement returns, and the types of its parameters `$1`,
/// `$2`, ... (`None` where the SQL does not imply one).
pub struct Described {
    pub schema: SchemaRef,
    pub parameters: Vec<Option<DataType>>,
}

pub struct Analytics {
    ctx: SessionContext,
    /// The lake and the versions of the tables in `ctx`.
    lake: LakeView,
    tables: Vec<String>,
    embedder: Option<Arc<ModelChain>>,
    resolved: Resolved,
    effort: Effort,
    memory_limit: Option<usize>,
}

impl Analytics {
    /// Opens every table under `root`, with `config`'s memory limit. With
    /// an `embedder`, `embed_query` is available and embeds with it.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn open(
        root: &Url,
        storage: &StorageOptions,
        embedder: Option<Arc<ModelChain>>,
        config: &AnalyticsConfig,
    ) -> Result<Self> {
        let mut lake = Lake::open(root, storage).await?;
        let memory_limit =
            (config.memory_limit_mb > 0).then_some(config.memory_limit_mb.saturating_mul(1 << 20));
        let ctx = session(memory_limit)?;
        let mut tables = lake.register_all(&ctx).await?;
        let versions = tables
            .iter()
            .filter_map(|t| lake.version(t).map(|v| (t.clone(), v)))
            .collect();
        let superseded = current::register_views(&ctx, &tables).await?;
        tables.extend(superseded.iter().map(|t| format!("{HISTORY}.{t}")));
        let view = LakeView {
            root: lake.root().clone(),
            storage: storage.clone(),
            versions,
            superseded: superseded.into_iter().collect(),
        };
        let effort = Effort {
            exact_below: config.vector_exact_below,
            beam: config.vector_search_beam.max(1),
        };
        let mut opened = Self {
            ctx,
            lake: view,
            tables: Vec::new(),
            embedder,
            resolved: Resolved::default(),
            effort,
            memory_limit,
        };
        opened.finish(tables, None).await?;
        Ok(opened)
    }

    /// This session as `tenant` sees it. Each table holds only the
    /// tenant's rows: by its `tenant` column, else by its `doc_id` among
    /// the tenant's documents; a table with neither is left out, and the
    /// search functions search the tenant's documents only. The scope is
    /// in the plans the tables are made of, so no SQL a caller writes
    /// (joins, subqueries, `information_schema`) reaches other rows.
    pub async fn scoped(&self, tenant: &str) -> Result<Self> {
        let ctx = session(self.memory_limit)?;
        let mut tables = Vec::new();
        if self
            .tables
            .iter()
            .any(|t| t.starts_with(&format!("{HISTORY}.")))
        {
            current::ensure_history(&ctx)?;
        }
        let own = col("tenant").eq(lit(tenant));
        let documents = match self.has_table("documents") {
            true => Some(self.ctx.table("documents").await?.filter(own.clone())?),
            false => None,
        };
        for name in self.tables.iter().filter(|t| *t != CURRENT_DOCUMENTS) {
            let frame = self.ctx.table(name.as_str()).await?;
            let has = |c: &str| frame.schema().has_column_with_unqualified_name(c);
            let scoped = if has("tenant") {
                frame.filter(own.clone())?
            } else if let (true, Some(docs)) = (has("doc_id"), &documents) {
                let ids = docs.clone().select(vec![col("doc_id").alias(SCOPE_KEY)])?;
                frame.join(ids, JoinType::LeftSemi, &["doc_id"], &[SCOPE_KEY], None)?
            } else {
                continue;
            };
            ctx.register_table(name.as_str(), Arc::new(ScopedTable(scoped.into_view())))?;
            tables.push(name.clone());
        }
        let mut scoped = Self {
            ctx,
            lake: self.lake.clone(),
            tables: Vec::new(),
            embedder: self.embedder.clone(),
            resolved: Resolved::default(),
            effort: self.effort,
            memory_limit: self.memory_limit,
        };
        scoped.finish(tables, Some(tenant.to_string())).await?;
        Ok(scoped)
    }

    /// Adds what every session has beside its tables: `current_documents`,
    /// `embed_query` and the search functions (searching `tenant` only,
    /// when given).
    async fn finish(&mut self, mut tables: Vec<String>, tenant: Option<String>) -> Result<()> {
        if tables.iter().any(|t| t == "documents") {
            let view = self
                .ctx
                .sql(&tables::current_documents_sql())
                .await?
                .into_view();
            self.ctx.register_table(CURRENT_DOCUMENTS, view)?;
            tables.push(CURRENT_DOCUMENTS.into());
        }
        if let Some(chain) = &self.embedder {
            let dims = chain.embedding_dims().map_err(|e| anyhow::anyhow!(e))?;
            embed_query::register(&self.ctx, dims, self.resolved.clone());
        }
        search_sql::register(
            &self.ctx,
            self.lake.clone(),
            self.embedder.clone(),
            self.effort,
            tenant,
        );
        // Postgres tools list tables and columns through pg_catalog; it
        // describes this session's own tables only.
        crate::functions::postgres::register(&self.ctx, &self.namespace().0)?;
        self.tables = tables;
        Ok(())
    }

    /// What searches of this session run on.
    pub fn searching(&self) -> Searching<'_> {
        Searching {
            ctx: &self.ctx,
            lake: &self.lake,
            embedder: self.embedder.as_deref(),
            effort: self.effort,
        }
    }

    /// The lake and the table versions this session reads.
    pub fn lake(&self) -> &LakeView {
        &self.lake
    }

    pub fn has_table(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }

    /// Whether `table` has `column`: tables written by older releases lack
    /// the newer contract columns.
    pub async fn has_column(&self, table: &str, column: &str) -> bool {
        match self.ctx.table(table).await {
            Ok(frame) => frame.schema().has_column_with_unqualified_name(column),
            Err(_) => false,
        }
    }

    /// The model `embed_query` embeds with: the `model` value of the
    /// embeddings it can be compared to.
    pub fn embedding_model(&self) -> Option<&str> {
        self.embedder.as_deref().map(ModelChain::primary_model)
    }

    /// Runs `sql` and collects its rows (at least one, maybe empty, batch,
    /// so outputs name the columns).
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let stream = self.stream(sql).await?;
        let schema = stream.schema();
        let mut batches: Vec<RecordBatch> = stream.try_collect().await?;
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        Ok(batches)
    }

    /// Runs `sql`, yielding its rows batch by batch. Running out of
    /// `[analytics] memory_limit_mb` fails with a hint.
    pub async fn stream(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        self.stream_with(sql, Vec::new()).await
    }

    /// Runs `sql` with `parameters` bound to `$1`, `$2`, ... in order.
    pub async fn stream_with(
        &self,
        sql: &str,
        parameters: Vec<ScalarValue>,
    ) -> Result<SendableRecordBatchStream> {
        let plan = bind(self.plan(sql).await?, parameters)?;
        if let Some(chain) = &self.embedder {
            embed_query::resolve(&plan, chain, &self.resolved).await?;
        }
        let stream = self
            .ctx
            .execute_logical_plan(plan)
            .await?
            .execute_stream()
            .await?;
        let schema = stream.schema();
        let hinted = stream.map_err(|e| match e.find_root() {
            DataFusionError::ResourcesExhausted(msg) => {
                DataFusionError::ResourcesExhausted(format!("{msg}\n{MEMORY_HINT}"))
            }
            _ => e,
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, hinted)))
    }

    /// The columns `sql` returns and the parameters it takes, without
    /// running it.
    pub async fn describe(&self, sql: &str) -> Result<Described> {
        let plan = self.plan(sql).await?;
        let parameters = parameter_types(&plan)?;
        Ok(Described {
            schema: Arc::new(plan.schema().as_arrow().clone()),
            parameters,
        })
    }

    /// The tables and views of this session, with their columns.
    pub async fn table_schemas(&self) -> Result<Vec<(String, SchemaRef)>> {
        let mut out = Vec::with_capacity(self.tables.len());
        for name in &self.tables {
            let frame = self.ctx.table(name.as_str()).await?;
            out.push((name.clone(), Arc::new(frame.schema().as_arrow().clone())));
        }
        Ok(out)
    }

    /// The catalog and schema the tables are in (`datafusion.public`).
    pub fn namespace(&self) -> (String, String) {
        let state = self.ctx.state();
        let names = &state.config_options().catalog;
        (names.default_catalog.clone(), names.default_schema.clone())
    }

    /// Plans `sql`. Statements that would change anything (DDL, DML, SET)
    /// are refused.
    async fn plan(&self, sql: &str) -> Result<LogicalPlan> {
        if sql.len() > MAX_SQL_BYTES {
            bail!(
                "the query is {} KiB; docstream plans queries up to {} KiB. Put long value lists in a table or a file instead",
                sql.len() >> 10,
                MAX_SQL_BYTES >> 10
            );
        }
        check_depth(sql)?;
        let plan = match self.ctx.state().create_logical_plan(sql).await {
            Ok(plan) => plan,
            Err(e) => return Err(self.explain(e.to_string())),
        };
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        if let Err(e) = options.verify_plan(&plan) {
            bail!("{READ_ONLY}\n({e})");
        }
        Ok(plan)
    }

    /// A planning error, with what to do about the usual causes.
    fn explain(&self, msg: String) -> anyhow::Error {
        if msg.contains("table") && msg.contains("not found") {
            let known = if self.tables.is_empty() {
                format!(
                    "the lake at {} has no tables yet; run `docstream backfill` first",
                    self.lake.root
                )
            } else {
                format!("tables in {}: {}", self.lake.root, self.tables.join(", "))
            };
            return anyhow::anyhow!("{msg}\n{known}");
        }
        if msg.contains(embed_query::NAME) && self.embedder.is_none() {
            return anyhow::anyhow!(
                "{msg}\nembed_query needs an embedding provider: the pipeline's embeddings stage, or [analytics] embed_providers"
            );
        }
        anyhow::anyhow!(msg)
    }
}

/// A session with docstream's functions, one partition per core.
fn session(memory_limit: Option<usize>) -> Result<SessionContext> {
    crate::functions::session(
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_limit,
    )
}

/// The models analytics commands call, opened together (one hub, so they
/// share the response cache).
pub struct Models {
    /// Embeds queries; `None` when the pipeline has no embedding provider.
    pub embedder: Option<Arc<ModelChain>>,
    /// Answers `ask`; opened only when asked for.
    pub answerer: Option<Arc<ModelChain>>,
}

impl Models {
    /// Opens the chains for `embed` (query embedding) and `answer` (`ask`)
    /// provider lists, on one hub; neither when both are `None`.
    pub fn open(
        providers: &BTreeMap<String, ProviderConfig>,
        models: &ModelsConfig,
        embed_providers: Option<Vec<String>>,
        answer_providers: Option<Vec<String>>,
    ) -> Result<Self> {
        let all: Vec<String> = embed_providers
            .iter()
            .chain(answer_providers.iter())
            .flatten()
            .cloned()
            .collect();
        if all.is_empty() {
            return Ok(Self {
                embedder: None,
                answerer: None,
            });
        }
        let hub = ModelHub::open(providers, models, &all)
            .context("cannot open the pipeline's model providers")?;
        Self::on(&hub, embed_providers, answer_providers)
    }

    /// The chains for `embed` and `answer` on `hub`, which opened their
    /// providers (with the stages' own, in a server).
    pub fn on(
        hub: &Arc<ModelHub>,
        embed_providers: Option<Vec<String>>,
        answer_providers: Option<Vec<String>>,
    ) -> Result<Self> {
        let chain = |providers: Option<Vec<String>>, purpose: &str| -> Result<_> {
            providers
                .map(|list| hub.chain(purpose, &list).map(Arc::new))
                .transpose()
        };
        Ok(Self {
            embedder: chain(embed_providers, "query")?,
            answerer: chain(answer_providers, "ask")?,
        })
    }
}

/// Whether `sql` may embed a query: `embed_query`, or a search function
/// that embeds its text (so the embedding model is loaded only for
/// queries that need it).
pub fn mentions_embed_query(sql: &str) -> bool {
    let sql = sql.to_ascii_lowercase();
    [
        embed_query::NAME,
        search_sql::VECTOR_SEARCH,
        search_sql::HYBRID_SEARCH,
    ]
    .iter()
    .any(|f| sql.contains(f))
}

/// The most parameters a statement takes, as in Postgres (whose protocol
/// counts them in 16 bits).
const MAX_PARAMETERS: usize = 65535;

/// The types of `plan`'s parameters `$1`, `$2`, ... in order, up to the
/// highest it names. One it skips has no type: a client's statement can
/// lose parameters to the rewrites of the Postgres door, and its client
/// still sends a value for each.
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let types = plan.get_parameter_types()?;
    let mut numbered = BTreeMap::new();
    for (name, t) in types {
        match name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            Some(n @ 1..=MAX_PARAMETERS) => numbered.insert(n, t),
            _ => bail!(
                "parameters are numbered $1, $2, ... up to ${MAX_PARAMETERS}; this statement has {name}"
            ),
        };
    }
    let highest = numbered.keys().next_back().copied().unwrap_or(0);
    Ok((1..=highest)
        .map(|n| numbered.remove(&n).flatten())
        .collect())
}

/// `plan` with `values` in place of its parameters, each cast to the type
/// the SQL implies.
fn bind(plan: LogicalPlan, values: Vec<ScalarValue>) -> Result<LogicalPlan> {
    let types = parameter_types(&plan)?;
    if types.len() != values.len() {
        bail!(
            "the statement takes {} parameter(s) ($1, $2, ...) and {} were given",
            types.len(),
            values.len()
        );
    }
    if values.is_empty() {
        return Ok(plan);
    }
    let values = values
        .into_iter()
        .zip(types)
        .enumerate()
        .map(|(i, (v, t))| match t {
            Some(t) if t != v.data_type() && !v.is_null() => v.cast_to(&t).with_context(|| {
                format!(
                    "parameter ${} is {}; the query needs {t}",
                    i + 1,
                    v.data_type()
                )
            }),
            _ => Ok(v),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(plan.with_param_values(values)?)
}

/// `s` as a SQL string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Refuses SQL whose expressions nest deeper than [`MAX_EXPR_DEPTH`]. SQL
/// that does not parse passes: planning reports its error.
fn check_depth(sql: &str) -> Result<()> {
    use std::ops::ControlFlow;

    use deltalake::datafusion::sql::sqlparser::ast::{Expr, Visit, Visitor};
    use deltalake::datafusion::sql::sqlparser::dialect::GenericDialect;
    use deltalake::datafusion::sql::sqlparser::parser::Parser;

    struct Depth(usize);
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.0 += 1;
            if self.0 > MAX_EXPR_DEPTH {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.0 -= 1;
            ControlFlow::Continue(())
        }
    }
    let Ok(statements) = Parser::parse_sql(&GenericDialect {}, sql) else {
        return Ok(());
    };
    if statements.iter().any(|s| s.visit(&mut Depth(0)).is_break()) {
        bail!("the query nests expressions more than {MAX_EXPR_DEPTH} deep; split it, or put generated values in a table");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use deltalake::datafusion::prelude::SessionContext;

    use super::*;

    async fn types(sql: &str) -> Result<Vec<Option<DataType>>> {
        let plan = SessionContext::new()
            .state()
            .create_logical_plan(sql)
            .await?;
        parameter_types(&plan)
    }

    #[tokio::test]
    async fn parameters_may_skip_numbers_up_to_postgres_limit() {
        let found = types("SELECT 1 WHERE 2 = $1 AND 'a' = $3").await.unwrap();
        assert_eq!(
            found,
            vec![Some(DataType::Int64), None, Some(DataType::Utf8)]
        );
        let e = types("SELECT 1 WHERE 2 = $70000").await.unwrap_err();
        assert!(e.to_string().contains("up to $65535"), "{e}");
    }
}
