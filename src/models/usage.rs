//! `usage` rows: one per model request batch, with tokens and estimated cost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};

use docstream_models::chain::Usage;
use docstream_models::endpoint::Endpoint;

use crate::contract::failure::ErrorKind;
use crate::contract::tables as contract;

#[derive(Debug, Clone)]
pub struct UsageRecord {
    pub stage: String,
    pub provider: String,
    pub model: String,
    /// HTTP requests (or local runs) made, retries included.
    pub requests: u32,
    /// Inputs in the batch (texts embedded, or 1 for a chat call).
    pub inputs: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// `provider` when the endpoint reported usage, else `estimated`.
    pub token_source: &'static str,
    pub latency: Duration,
    pub est_cost_usd: f64,
    /// `ok` or the failures error kind.
    pub status: String,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct UsageLog(Mutex<Vec<UsageRecord>>);

impl UsageLog {
    /// Records one request batch. Token counts fall back to estimates.
    pub fn record(&self, stage: &str, endpoint: &Endpoint, usage: Usage) {
        let (input_tokens, output_tokens, token_source) = match usage.reported {
            Some((Some(i), o)) => (i, o.unwrap_or(usage.estimate.1), "provider"),
            _ => (usage.estimate.0, usage.estimate.1, "estimated"),
        };
        let status = match &usage.error {
            None => "ok".to_string(),
            Some(e) => ErrorKind::from(e).as_str().to_string(),
        };
        let record = UsageRecord {
            stage: stage.to_string(),
            provider: endpoint.name.clone(),
            model: endpoint.config.model.clone(),
            requests: usage.attempts,
            inputs: usage.inputs,
            input_tokens,
            output_tokens,
            token_source,
            latency: usage.latency,
            est_cost_usd: endpoint.config.cost_usd(input_tokens, output_tokens),
            status,
            recorded_at: Utc::now(),
        };
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    pub fn drain(&self) -> Vec<UsageRecord> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

pub fn to_batch(run_id: &str, tenant: &str, records: &[UsageRecord]) -> Result<RecordBatch> {
    let schema = contract::schema("usage").ok_or_else(|| anyhow::anyhow!("no usage schema"))?;
    let strings = |f: &dyn Fn(&UsageRecord) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(records.iter().map(f)))
    };
    let ints = |f: &dyn Fn(&UsageRecord) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(records.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| {
            Ok(match field.name().as_str() {
                "run_id" => Arc::new(StringArray::from_iter_values(
                    records.iter().map(|_| run_id),
                )),
                "tenant" => Arc::new(StringArray::from_iter_values(
                    records.iter().map(|_| tenant),
                )),
                "stage" => strings(&|r| &r.stage),
                "provider" => strings(&|r| &r.provider),
                "model" => strings(&|r| &r.model),
                "requests" => ints(&|r| r.requests as i64),
                "inputs" => ints(&|r| r.inputs as i64),
                "input_tokens" => ints(&|r| r.input_tokens as i64),
                "output_tokens" => ints(&|r| r.output_tokens as i64),
                "token_source" => strings(&|r| r.token_source),
                "latency_ms" => ints(&|r| r.latency.as_millis() as i64),
                "est_cost_usd" => Arc::new(Float64Array::from_iter_values(
                    records.iter().map(|r| r.est_cost_usd),
                )),
                "status" => strings(&|r| &r.status),
                "recorded_at" => Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        records.iter().map(|r| r.recorded_at.timestamp_micros()),
                    )
                    .with_timezone("UTC"),
                ),
                other => anyhow::bail!("usage column {other} has no source"),
            })
        })
        .collect::<Result<_>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}
