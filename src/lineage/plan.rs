//! `plan`: per stage, how many current document versions are up to date,
//! new, stale (their rows came from another fingerprint), failed in a way
//! a run retries, or failed for good; what a run would compute, and the
//! input tokens and cost that would take. One aggregate query over
//! `documents` and `lineage`, so it stays fast on large lakes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Result;
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::datafusion::prelude::SessionContext;
use docstream_models::chain::Unsent;
use docstream_models::provider::ProviderConfig;

use super::current::has_column;
use super::ledger::{Retry, ADOPTED, FAILED, OK};
use super::scope::Scope;
use crate::contract::failure::ErrorKind;
use crate::contract::tables::FINGERPRINT;
use crate::sinks::lake::{utf8, Lake};
use crate::stages::config::Stage;

/// One stage's line of the plan.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StagePlan {
    pub stage: String,
    pub fingerprint: String,
    pub up_to_date: i64,
    /// Versions the stage never ran on.
    pub new: i64,
    /// Versions whose rows an earlier fingerprint of the stage wrote.
    pub stale: i64,
    pub retryable: i64,
    pub terminal: i64,
    /// What a run with the given retry rule computes.
    pub to_compute: i64,
    /// Model input tokens of the versions to compute (model stages only):
    /// their documents' tokens, or with a dry run, the requests' tokens,
    /// prompts included, less those the response cache answers.
    pub input_tokens: Option<i64>,
    /// With a dry run: the model requests (texts, for embeddings) a run
    /// sends, and the ones the response cache answers instead.
    pub model_calls: Option<i64>,
    pub cached_calls: Option<i64>,
    /// `input_tokens` at the first provider's input price.
    pub cost_usd: Option<f64>,
}

/// The plan for `stages` over the current versions in `scope`.
pub async fn plan(
    lake: &mut Lake,
    stages: &[Stage],
    providers: &BTreeMap<String, ProviderConfig>,
    retry: Retry,
    scope: &Scope,
) -> Result<Vec<StagePlan>> {
    let mut plans: Vec<StagePlan> = stages
        .iter()
        .map(|s| StagePlan {
            stage: s.name.clone(),
            fingerprint: s.fingerprint.clone(),
            ..StagePlan::default()
        })
        .collect();
    let ctx = SessionContext::new();
    let Some(current) = scope.current_versions(lake, &ctx).await? else {
        return Ok(plans);
    };
    let mut adoptable = Vec::new();
    for s in stages {
        adoptable.push(lake.table(&s.table).await?.is_some());
    }
    let has_lineage = lake.register_table(&ctx, "lineage").await?.is_some();
    let sql = states_sql(
        stages,
        &adoptable,
        &current,
        has_lineage,
        legacy(&ctx).await?,
    );
    let mut counts: HashMap<(String, String), (i64, i64)> = HashMap::new();
    for b in ctx.sql(&sql).await?.collect().await? {
        let (names, states) = (utf8(b.column(0))?, utf8(b.column(1))?);
        let n = cast(b.column(2), &DataType::Int64)?;
        let tokens = cast(b.column(3), &DataType::Int64)?;
        let (n, tokens) = (
            n.as_primitive::<Int64Type>(),
            tokens.as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            let key = (
                names.as_string::<i32>().value(i).to_string(),
                states.as_string::<i32>().value(i).to_string(),
            );
            let t = if tokens.is_valid(i) {
                tokens.value(i)
            } else {
                0
            };
            counts.insert(key, (n.value(i), t));
        }
    }
    for (p, stage) in plans.iter_mut().zip(stages) {
        let get = |state: &str| {
            counts
                .get(&(p.stage.clone(), state.to_string()))
                .copied()
                .unwrap_or((0, 0))
        };
        let (up, new, stale, retryable, terminal) = (
            get("up_to_date"),
            get("new"),
            get("stale"),
            get("retryable"),
            get("terminal"),
        );
        let mut todo = vec![new, stale];
        if retry != Retry::None {
            todo.push(retryable);
        }
        if retry == Retry::All {
            todo.push(terminal);
        }
        p.up_to_date = up.0;
        p.new = new.0;
        p.stale = stale.0;
        p.retryable = retryable.0;
        p.terminal = terminal.0;
        p.to_compute = todo.iter().map(|c| c.0).sum();
        if let Some(provider) = stage.providers.first().and_then(|n| providers.get(n)) {
            let tokens: i64 = todo.iter().map(|c| c.1).sum();
            p.input_tokens = Some(tokens);
            p.cost_usd = Some(provider.cost_usd(tokens.max(0) as u64, 0));
        }
    }
    Ok(plans)
}

/// Replaces the model stages' estimates with what a dry run counted over
/// `share` of the versions to compute, scaled to all of them.
pub fn apply_dry_run(
    plans: &mut [StagePlan],
    stages: &[Stage],
    providers: &BTreeMap<String, ProviderConfig>,
    unsent: &BTreeMap<String, Unsent>,
    share: f64,
) {
    let scale = |n: u64| (n as f64 / share.max(f64::MIN_POSITIVE)).round() as i64;
    for (p, stage) in plans.iter_mut().zip(stages) {
        let Some(u) = unsent.get(&stage.name) else {
            continue;
        };
        let tokens = scale(u.input_tokens);
        p.model_calls = Some(scale(u.calls));
        p.cached_calls = Some(scale(u.cached));
        p.input_tokens = Some(tokens);
        if let Some(provider) = stage.providers.first().and_then(|n| providers.get(n)) {
            p.cost_usd = Some(provider.cost_usd(tokens.max(0) as u64, 0));
        }
    }
}

/// SQL for versions written before fingerprints that no run adopted yet,
/// when `documents` has any.
async fn legacy(ctx: &SessionContext) -> Result<Option<String>> {
    if !ctx.table_exist("documents")? {
        return Ok(None);
    }
    let condition = match has_column(ctx, "documents", FINGERPRINT).await? {
        true => format!("{FINGERPRINT} IS NULL"),
        false => "true".into(),
    };
    Ok(Some(format!(
        "SELECT DISTINCT doc_id, content_hash FROM documents WHERE {condition}"
    )))
}

/// (stage, state, versions, tokens) for each stage and state.
fn states_sql(
    stages: &[Stage],
    adoptable: &[bool],
    current: &str,
    has_lineage: bool,
    legacy: Option<String>,
) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let values: Vec<String> = stages
        .iter()
        .zip(adoptable)
        .map(|(s, a)| format!("({}, {}, {a})", quote(&s.name), quote(&s.fingerprint)))
        .collect();
    let retryable: Vec<String> = ErrorKind::RETRYABLE
        .iter()
        .map(|k| quote(k.as_str()))
        .collect();
    let retryable = retryable.join(", ");
    let lineage = match has_lineage {
        true => format!(
            "SELECT l.doc_id, l.content_hash, l.stage,
                bool_or(l.{FINGERPRINT} = st.fp AND l.status IN ('{OK}', '{ADOPTED}')) AS ok_,
                bool_or(l.{FINGERPRINT} = st.fp AND l.status = '{FAILED}' AND l.error_kind NOT IN ({retryable})) AS terminal_,
                bool_or(l.{FINGERPRINT} = st.fp AND l.status = '{FAILED}' AND l.error_kind IN ({retryable})) AS retryable_
             FROM lineage l JOIN st ON l.stage = st.stage GROUP BY l.doc_id, l.content_hash, l.stage"
        ),
        false => "SELECT '' AS doc_id, '' AS content_hash, '' AS stage, false AS ok_, false AS terminal_, false AS retryable_ WHERE false".into(),
    };
    let seen = match has_lineage {
        true => "SELECT DISTINCT doc_id, content_hash FROM lineage",
        false => "SELECT '' AS doc_id, '' AS content_hash WHERE false",
    };
    let legacy =
        legacy.unwrap_or_else(|| "SELECT '' AS doc_id, '' AS content_hash WHERE false".into());
    format!(
        "WITH st AS (SELECT column1 AS stage, column2 AS fp, column3 AS adoptable FROM (VALUES {values})),
              cur AS ({current}),
              lin AS ({lineage}),
              seen AS ({seen}),
              legacy AS ({legacy})
         SELECT st.stage,
                CASE WHEN lin.ok_ THEN 'up_to_date'
                     WHEN lin.terminal_ THEN 'terminal'
                     WHEN lin.retryable_ THEN 'retryable'
                     WHEN lin.stage IS NOT NULL THEN 'stale'
                     WHEN seen.doc_id IS NULL AND legacy.doc_id IS NOT NULL AND st.adoptable THEN 'up_to_date'
                     ELSE 'new' END AS state,
                count(*) AS versions,
                sum(cur.n_tokens) AS tokens
         FROM cur CROSS JOIN st
         LEFT JOIN lin ON lin.doc_id = cur.doc_id AND lin.content_hash = cur.content_hash AND lin.stage = st.stage
         LEFT JOIN seen ON seen.doc_id = cur.doc_id AND seen.content_hash = cur.content_hash
         LEFT JOIN legacy ON legacy.doc_id = cur.doc_id AND legacy.content_hash = cur.content_hash
         GROUP BY st.stage, state",
        values = values.join(", "),
    )
}

/// The plan as rows, for the command line's table and JSON output.
pub fn to_batch(plans: &[StagePlan]) -> Result<RecordBatch> {
    let ints = |f: fn(&StagePlan) -> i64| -> ArrayRef {
        Arc::new(plans.iter().map(f).collect::<Int64Array>())
    };
    Ok(RecordBatch::try_from_iter(vec![
        (
            "stage",
            Arc::new(
                plans
                    .iter()
                    .map(|p| Some(p.stage.as_str()))
                    .collect::<StringArray>(),
            ) as ArrayRef,
        ),
        ("up_to_date", ints(|p| p.up_to_date)),
        ("new", ints(|p| p.new)),
        ("stale", ints(|p| p.stale)),
        ("retryable", ints(|p| p.retryable)),
        ("terminal", ints(|p| p.terminal)),
        ("to_compute", ints(|p| p.to_compute)),
        (
            "est_input_tokens",
            Arc::new(plans.iter().map(|p| p.input_tokens).collect::<Int64Array>()),
        ),
        (
            "est_model_calls",
            Arc::new(plans.iter().map(|p| p.model_calls).collect::<Int64Array>()),
        ),
        (
            "cached_calls",
            Arc::new(plans.iter().map(|p| p.cached_calls).collect::<Int64Array>()),
        ),
        (
            "est_cost_usd",
            Arc::new(plans.iter().map(|p| p.cost_usd).collect::<Float64Array>()),
        ),
        (
            "fingerprint",
            Arc::new(
                plans
                    .iter()
                    .map(|p| Some(p.fingerprint.as_str()))
                    .collect::<StringArray>(),
            ),
        ),
    ])?)
}
