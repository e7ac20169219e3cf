//! Runs the pipeline's SQL stages on one micro-batch with DataFusion.
//!
//! Each stage sees `extracted` plus every earlier stage's output, by stage
//! name (so `embeddings` can read `chunks`). Stages that name providers get
//! the model UDFs bound to those providers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use deltalake::arrow::array::{AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::prelude::SessionContext;
use docstream_models::chain::{ModelChain, Unsent};
use docstream_models::error::ModelFailure;
use docstream_models::provider::ProviderConfig;

use super::config::Stage;
use crate::contract::extracted::{self, ExtractedDoc};
use crate::contract::failure::{ErrorKind, Failure};
use crate::contract::tables::{self, FINGERPRINT};
use crate::models::config::ModelsConfig;
use crate::models::hub::{CallWatch, ModelHub};
use crate::models::usage;

/// Rows one stage produced for its table, each with the stage's
/// fingerprint in `stage_fingerprint`.
pub struct StageOutput {
    /// `None` for the `usage` rows of the batch's model requests.
    pub stage: Option<String>,
    pub table: String,
    pub batches: Vec<RecordBatch>,
}

/// Which stages a run computes, when not all of them: the others are
/// already in the lake, and the rows of stages a computed stage reads but
/// that do not run (or are not in this runner) come from there.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub run: BTreeSet<String>,
    /// Lake rows of stages that do not run, by stage name.
    pub given: HashMap<String, Vec<RecordBatch>>,
}

impl Selection {
    fn runs(selection: Option<&Self>, stage: &str) -> bool {
        selection.is_none_or(|s| s.run.contains(stage))
    }
}

/// A table a stage's SQL can read: an earlier stage's rows in this run.
struct Available {
    stage: String,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

/// Who hears of a batch's way through the stages, and through the model
/// requests of the stages that call models.
pub trait StageWatch: CallWatch {
    /// `stage` produced `rows` (for one tenant's part of the batch, when it
    /// holds several).
    fn computed(&self, stage: &str, rows: usize);
}

/// A stage that failed on one document.
struct StageFailure {
    stage: String,
    fingerprint: String,
    row: usize,
    kind: ErrorKind,
    attempts: u32,
    error: String,
}

pub struct StageRunner {
    stages: Vec<Stage>,
    partitions: usize,
    chains: HashMap<String, Arc<ModelChain>>,
    hub: Option<Arc<ModelHub>>,
    run_id: String,
    /// Each stage's output schema, learned by `check`, so a stage with no
    /// rows still registers a table for the stages after it.
    schemas: Mutex<HashMap<String, SchemaRef>>,
}

impl StageRunner {
    /// `hub` holds the providers that stages name; `None` when none do.
    pub fn new(stages: Vec<Stage>, hub: Option<Arc<ModelHub>>, run_id: &str) -> Result<Self> {
        let partitions = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut chains = HashMap::new();
        for stage in stages.iter().filter(|s| !s.providers.is_empty()) {
            let hub = hub
                .as_ref()
                .context("stages name providers, but no model hub was opened")?;
            chains.insert(
                stage.name.clone(),
                Arc::new(hub.chain(&stage.name, &stage.providers)?),
            );
        }
        Ok(Self {
            stages,
            partitions,
            chains,
            hub,
            run_id: run_id.to_string(),
            schemas: Mutex::new(HashMap::new()),
        })
    }

    /// A runner with a hub for the providers `stages` name, if any.
    pub fn open(
        stages: Vec<Stage>,
        providers: &BTreeMap<String, ProviderConfig>,
        models: &ModelsConfig,
        run_id: &str,
    ) -> Result<Self> {
        let used: Vec<String> = stages.iter().flat_map(|s| s.providers.clone()).collect();
        let hub = match used.is_empty() {
            true => None,
            false => Some(ModelHub::open(providers, models, &used)?),
        };
        Self::new(stages, hub, run_id)
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// This runner for a dry run: its model functions answer from the
    /// response cache and count what they would send (`unsent`).
    pub fn dry_run(&self) -> Self {
        let schemas = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        Self {
            stages: self.stages.clone(),
            partitions: self.partitions,
            chains: self
                .chains
                .iter()
                .map(|(stage, chain)| (stage.clone(), Arc::new(chain.dry_run())))
                .collect(),
            hub: self.hub.clone(),
            run_id: self.run_id.clone(),
            schemas: Mutex::new(schemas.clone()),
        }
    }

    /// Whether its model stages answer from a cache of earlier runs.
    pub fn caches_responses(&self) -> bool {
        self.hub.as_ref().is_some_and(|h| h.caches_responses())
    }

    /// What a dry run's stages would have sent, per stage that calls models.
    pub fn unsent(&self) -> BTreeMap<String, Unsent> {
        self.chains
            .iter()
            .filter_map(|(stage, chain)| Some((stage.clone(), chain.unsent()?)))
            .collect()
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Tables a run of this runner writes: `extracted` (the stages' input),
    /// every stage's, `usage` with models, and `lineage`.
    pub fn tables(&self) -> Vec<&str> {
        let mut tables = vec!["extracted"];
        for s in &self.stages {
            if !tables.contains(&s.table.as_str()) {
                tables.push(&s.table);
            }
        }
        if !self.chains.is_empty() {
            tables.push("usage");
        }
        tables.push("lineage");
        tables
    }

    /// Plans every stage once on an empty batch, so a broken SQL file fails
    /// the run at start instead of turning every document into a failure.
    pub async fn check(&self) -> Result<()> {
        let empty = RecordBatch::new_empty(extracted::schema());
        let ctx = self.context(&empty)?;
        let own: HashSet<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
        for input in self.stages.iter().flat_map(|s| &s.reads) {
            if let (false, Some(schema)) = (
                own.contains(input.name.as_str()),
                tables::schema(&input.table),
            ) {
                register(&ctx, &input.name, schema, Vec::new())?;
            }
        }
        for stage in &self.stages {
            let (schema, out) = self
                .run_stage(&ctx, stage)
                .await
                .with_context(|| format!("stage '{}' does not run; fix its SQL", stage.name))?;
            register(&ctx, &stage.name, schema.clone(), out)?;
            self.schemas
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(stage.name.clone(), schema);
        }
        Ok(())
    }

    /// Runs every stage on `docs`; a stage's failure on a document comes back
    /// as a `failures` row. Documents run in one group per tenant, so each
    /// model request, and its `usage` row, belongs to one tenant.
    /// With a `selection`, only its stages run.
    pub async fn run_docs(
        &self,
        docs: &[&ExtractedDoc],
        selection: Option<&Selection>,
        watch: Option<Arc<dyn StageWatch>>,
    ) -> Result<(Vec<StageOutput>, Vec<Failure>)> {
        if let (Some(hub), Some(w)) = (&self.hub, &watch) {
            hub.watch(Some(w.clone()));
        }
        let ran = self.run_groups(docs, selection, watch.as_deref()).await;
        if let (Some(hub), Some(_)) = (&self.hub, &watch) {
            hub.watch(None);
        }
        ran
    }

    async fn run_groups(
        &self,
        docs: &[&ExtractedDoc],
        selection: Option<&Selection>,
        watch: Option<&dyn StageWatch>,
    ) -> Result<(Vec<StageOutput>, Vec<Failure>)> {
        let mut tenants: Vec<&str> = Vec::new();
        for d in docs {
            if !tenants.contains(&d.tenant.as_str()) {
                tenants.push(&d.tenant);
            }
        }
        let mut outputs: Vec<StageOutput> = Vec::new();
        let mut failures = Vec::new();
        for tenant in tenants {
            let group: Vec<&ExtractedDoc> = docs
                .iter()
                .copied()
                .filter(|d| d.tenant == tenant)
                .collect();
            let batch = extracted::to_batch(&group)?;
            let (out, failed) = self.run(&batch, tenant, selection, watch).await;
            for o in out {
                match outputs
                    .iter_mut()
                    .find(|x| x.table == o.table && x.stage == o.stage)
                {
                    Some(x) => x.batches.extend(o.batches),
                    None => outputs.push(o),
                }
            }
            failures.extend(failed.into_iter().map(|f| {
                let doc = group[f.row];
                Failure {
                    doc_id: doc.doc_id.clone(),
                    content_hash: doc.content_hash.clone(),
                    source_uri: doc.source_uri.clone(),
                    stage: f.stage,
                    kind: f.kind,
                    error: f.error,
                    attempts: f.attempts as i32,
                    stage_fingerprint: Some(f.fingerprint),
                }
            }));
        }
        Ok((outputs, failures))
    }

    /// Runs every stage on `batch`. A stage that fails on the whole batch is
    /// re-run on halves until the failing documents are isolated, so one bad
    /// document becomes one failure and the rest of the batch still lands.
    async fn run(
        &self,
        batch: &RecordBatch,
        tenant: &str,
        selection: Option<&Selection>,
        watch: Option<&dyn StageWatch>,
    ) -> (Vec<StageOutput>, Vec<StageFailure>) {
        let mut outputs: Vec<StageOutput> = Vec::new();
        let mut available: Vec<Available> = Vec::new();
        let mut failures = Vec::new();
        let whole = self.context(batch).ok();
        // The lake rows of this batch's documents only: a run goes tenant
        // by tenant, and each tenant's model calls are its own.
        let ids: HashSet<String> = (0..batch.num_rows())
            .map(|i| extracted::doc_id_at(batch, i))
            .collect();
        for (name, given) in selection.iter().flat_map(|s| &s.given) {
            let schema = given.first().map_or_else(
                || Arc::new(deltalake::arrow::datatypes::Schema::empty()),
                |b| b.schema(),
            );
            let batches: Vec<RecordBatch> = given
                .iter()
                .filter_map(|b| of_documents(b, &ids).ok())
                .collect();
            if let Some(ctx) = &whole {
                let _ = register(ctx, name, schema.clone(), batches.clone());
            }
            available.push(Available {
                stage: name.clone(),
                schema,
                batches,
            });
        }
        for stage in &self.stages {
            if !Selection::runs(selection, &stage.name) {
                continue;
            }
            let attempt = match &whole {
                Some(ctx) => self.run_stage(ctx, stage).await.ok().map(|(_, b)| b),
                None => None,
            };
            let batches = match attempt {
                Some(b) => b,
                None => {
                    let mut batches = Vec::new();
                    self.isolate(
                        stage,
                        batch,
                        &available,
                        0..batch.num_rows(),
                        &mut batches,
                        &mut failures,
                    )
                    .await;
                    batches
                }
            };
            if let Some(ctx) = &whole {
                // A later stage that reads this one fails (and goes row by
                // row) if registration fails, so the error is not lost.
                let _ = register(ctx, &stage.name, self.schema(stage), batches.clone());
            }
            if let Some(w) = watch {
                w.computed(&stage.name, batches.iter().map(|b| b.num_rows()).sum());
            }
            let marked = batches
                .iter()
                .map(|b| with_fingerprint(b, &stage.fingerprint))
                .collect::<Result<Vec<_>, _>>();
            match marked {
                Ok(marked) => outputs.push(StageOutput {
                    stage: Some(stage.name.clone()),
                    table: stage.table.clone(),
                    batches: marked,
                }),
                Err(e) => {
                    let e = StageError::Engine(e.into());
                    failures.extend((0..batch.num_rows()).map(|row| stage_failure(stage, row, &e)));
                }
            }
            available.push(Available {
                stage: stage.name.clone(),
                schema: self.schema(stage),
                batches,
            });
        }
        if let Some(usage) = self.usage_output(tenant) {
            outputs.push(usage);
        }
        (outputs, failures)
    }

    /// Runs `stage` on `rows` of `batch`; on failure, on each half, down to
    /// single documents. Model answers are cached, so re-runs cost little and
    /// k bad documents among n take about k·log n runs, not n.
    fn isolate<'a>(
        &'a self,
        stage: &'a Stage,
        batch: &'a RecordBatch,
        earlier: &'a [Available],
        rows: std::ops::Range<usize>,
        out: &'a mut Vec<RecordBatch>,
        failures: &'a mut Vec<StageFailure>,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            if rows.is_empty() {
                return;
            }
            let result = match self.rows_context(batch, rows.clone(), earlier) {
                Ok(ctx) => self.run_stage(&ctx, stage).await,
                Err(e) => Err(StageError::Engine(e)),
            };
            match result {
                Ok((_, b)) => out.extend(b),
                Err(e) if rows.len() == 1 => failures.push(stage_failure(stage, rows.start, &e)),
                Err(_) => {
                    let mid = rows.start + rows.len() / 2;
                    self.isolate(stage, batch, earlier, rows.start..mid, out, failures)
                        .await;
                    self.isolate(stage, batch, earlier, mid..rows.end, out, failures)
                        .await;
                }
            }
        })
    }

    async fn run_stage(
        &self,
        ctx: &SessionContext,
        stage: &Stage,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), StageError> {
        if let Some(chain) = self.chains.get(&stage.name) {
            crate::functions::model::register(ctx, chain);
        }
        let frame = ctx.sql(&stage.sql).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        Ok((schema, frame.collect().await?))
    }

    fn schema(&self, stage: &Stage) -> SchemaRef {
        let schemas = self.schemas.lock().unwrap_or_else(|p| p.into_inner());
        schemas
            .get(&stage.name)
            .cloned()
            .unwrap_or_else(|| Arc::new(deltalake::arrow::datatypes::Schema::empty()))
    }

    /// A session with some documents: their `extracted` rows and their rows
    /// of every earlier stage's output.
    fn rows_context(
        &self,
        batch: &RecordBatch,
        rows: std::ops::Range<usize>,
        earlier: &[Available],
    ) -> Result<SessionContext> {
        let some = batch.slice(rows.start, rows.len());
        let ctx = self.context(&some)?;
        let ids: HashSet<String> = (0..some.num_rows())
            .map(|i| extracted::doc_id_at(&some, i))
            .collect();
        for table in earlier {
            let kept = table
                .batches
                .iter()
                .map(|b| of_documents(b, &ids))
                .collect::<Result<Vec<_>>>()?;
            register(&ctx, &table.stage, table.schema.clone(), kept)?;
        }
        Ok(ctx)
    }

    /// A session with `batch` registered as the `extracted` table.
    fn context(&self, batch: &RecordBatch) -> Result<SessionContext> {
        let ctx = crate::functions::session(self.partitions, None)?;
        let table = MemTable::try_new(batch.schema(), split(batch, self.partitions))?;
        ctx.register_table("extracted", Arc::new(table))?;
        Ok(ctx)
    }

    /// This batch's model request batches, as rows for `usage`.
    fn usage_output(&self, tenant: &str) -> Option<StageOutput> {
        // A server's hub also serves queries and answers: only the stages'
        // requests are rows of this batch.
        let mut records = self.hub.as_ref()?.drain_usage();
        records.retain(|r| self.chains.contains_key(&r.stage));
        if records.is_empty() {
            return None;
        }
        match usage::to_batch(&self.run_id, tenant, &records) {
            Ok(b) => Some(StageOutput {
                stage: None,
                table: "usage".into(),
                batches: vec![b],
            }),
            Err(e) => {
                tracing::warn!("usage rows dropped: {e:#}");
                None
            }
        }
    }
}

/// Registers (or replaces) `name` as an in-memory table.
fn register(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    let schema = batches.first().map_or(schema, |b| b.schema());
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    Ok(())
}

/// The rows of `batch` whose `doc_id` is in `ids` (all of them when the
/// output has no `doc_id` column).
fn of_documents(batch: &RecordBatch, ids: &HashSet<String>) -> Result<RecordBatch> {
    let Some(column) = batch.column_by_name("doc_id") else {
        return Ok(batch.clone());
    };
    let column =
        deltalake::arrow::compute::cast(column, &deltalake::arrow::datatypes::DataType::Utf8)?;
    let mask: BooleanArray = column
        .as_string::<i32>()
        .iter()
        .map(|v| Some(v.is_some_and(|v| ids.contains(v))))
        .collect();
    Ok(filter_record_batch(batch, &mask)?)
}

/// Why a stage's SQL failed on some rows.
#[derive(Debug, thiserror::Error)]
enum StageError {
    /// A model UDF gave up on a row: its kind and attempts land as they are.
    #[error(transparent)]
    Model(ModelFailure),
    #[error("{0:#}")]
    Engine(anyhow::Error),
}

impl From<DataFusionError> for StageError {
    /// Model UDFs fail with `DataFusionError::External(ModelFailure)`; this
    /// is the one place that looks inside DataFusion's error for it.
    fn from(e: DataFusionError) -> Self {
        if let DataFusionError::External(inner) = e.find_root() {
            if let Some(f) = inner.downcast_ref::<ModelFailure>() {
                return StageError::Model(f.clone());
            }
        }
        StageError::Engine(e.into())
    }
}

/// A failure row's kind and attempts: the model's when a model call failed.
fn stage_failure(stage: &Stage, row: usize, e: &StageError) -> StageFailure {
    let (name, fingerprint) = (stage.name.clone(), stage.fingerprint.clone());
    match e {
        StageError::Model(f) => StageFailure {
            stage: name,
            fingerprint,
            row,
            kind: ErrorKind::from(&f.error),
            attempts: f.attempts,
            error: f.to_string(),
        },
        StageError::Engine(e) => StageFailure {
            stage: name,
            fingerprint,
            row,
            kind: ErrorKind::Stage,
            attempts: 1,
            error: format!("{e:#}"),
        },
    }
}

/// `batch` with `stage_fingerprint` set to `fingerprint` on every row
/// (replacing a column of that name a `SELECT *` carried over).
fn with_fingerprint(
    batch: &RecordBatch,
    fingerprint: &str,
) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
    use deltalake::arrow::array::StringArray;
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if field.name() != FINGERPRINT {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    fields.push(Field::new(FINGERPRINT, DataType::Utf8, true));
    columns.push(Arc::new(StringArray::from(vec![
        fingerprint;
        batch.num_rows()
    ])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Splits a batch into one slice per partition so stages use every core.
fn split(batch: &RecordBatch, partitions: usize) -> Vec<Vec<RecordBatch>> {
    let rows = batch.num_rows();
    if rows == 0 {
        return vec![vec![batch.clone()]];
    }
    let per = rows.div_ceil(partitions.max(1));
    (0..rows)
        .step_by(per)
        .map(|start| vec![batch.slice(start, per.min(rows - start))])
        .collect()
}
