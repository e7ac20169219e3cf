//! The analytics session: every table of the lake, the vector functions,
//! `embed_query`, and read-only SQL over them.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use docstream_models::chain::ModelChain;
use docstream_models::provider::ProviderConfig;
use url::Url;

use crate::functions::embed_query::{self, Resolved};
use crate::models::config::ModelsConfig;
use crate::models::hub::ModelHub;
use crate::sinks::lake::Lake;
use crate::storage::StorageOptions;

/// The latest version of every document, by ingest time.
const CURRENT_DOCUMENTS: &str = "SELECT * EXCLUDE (version_rank) FROM (
    SELECT *, row_number() OVER (PARTITION BY doc_id ORDER BY ingested_at DESC, content_hash) AS version_rank
    FROM documents) WHERE version_rank = 1";

pub struct Analytics {
    ctx: SessionContext,
    root: Url,
    tables: Vec<String>,
    embedder: Option<Arc<ModelChain>>,
    resolved: Resolved,
}

impl Analytics {
    /// Opens every table under `root`. With an `embedder`, `embed_query`
    /// is available and embeds with it.
    pub async fn open(
        root: &Url,
        storage: &StorageOptions,
        embedder: Option<Arc<ModelChain>>,
    ) -> Result<Self> {
        let mut lake = Lake::open(root, storage).await?;
        let ctx =
            crate::functions::session(std::thread::available_parallelism().map_or(1, |n| n.get()));
        let mut tables = lake.register_all(&ctx).await?;
        if tables.iter().any(|t| t == "documents") {
            let view = ctx.sql(CURRENT_DOCUMENTS).await?.into_view();
            ctx.register_table("current_documents", view)?;
            tables.push("current_documents".into());
        }
        let resolved = Resolved::default();
        if let Some(chain) = &embedder {
            let dims = chain.embedding_dims().map_err(|e| anyhow::anyhow!(e))?;
            embed_query::register(&ctx, dims, resolved.clone());
        }
        Ok(Self {
            ctx,
            root: lake.root().clone(),
            tables,
            embedder,
            resolved,
        })
    }

    pub fn has_table(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }

    /// The model `embed_query` embeds with: the `model` value of the
    /// embeddings it can be compared to.
    pub fn embedding_model(&self) -> Option<&str> {
        self.embedder.as_deref().map(ModelChain::primary_model)
    }

    /// Runs `sql` and collects its rows (at least one, maybe empty, batch,
    /// so outputs name the columns).
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let frame = self.frame(sql).await?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let mut batches = frame.collect().await?;
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        Ok(batches)
    }

    /// Runs `sql`, yielding its rows batch by batch.
    pub async fn stream(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        Ok(self.frame(sql).await?.execute_stream().await?)
    }

    /// Plans `sql`. Statements that would change anything (DDL, DML, SET)
    /// are refused.
    async fn frame(&self, sql: &str) -> Result<DataFrame> {
        let plan = match self.ctx.state().create_logical_plan(sql).await {
            Ok(plan) => plan,
            Err(e) => return Err(self.explain(e.to_string())),
        };
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        if let Err(e) = options.verify_plan(&plan) {
            bail!("docstream is read-only here: only SELECT, WITH, EXPLAIN and SHOW run. Tables change through `docstream backfill` and `ingest`.\n({e})");
        }
        if let Some(chain) = &self.embedder {
            embed_query::resolve(&plan, chain, &self.resolved).await?;
        }
        Ok(self.ctx.execute_logical_plan(plan).await?)
    }

    /// A planning error, with what to do about the usual causes.
    fn explain(&self, msg: String) -> anyhow::Error {
        if msg.contains("table") && msg.contains("not found") {
            let known = if self.tables.is_empty() {
                format!(
                    "the lake at {} has no tables yet; run `docstream backfill` first",
                    self.root
                )
            } else {
                format!("tables in {}: {}", self.root, self.tables.join(", "))
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

/// Whether `sql` may call `embed_query` (so the embedding model is loaded
/// only for queries that need it).
pub fn mentions_embed_query(sql: &str) -> bool {
    sql.to_ascii_lowercase().contains(embed_query::NAME)
}

/// `s` as a SQL string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
