//! `[serve]` in pipeline files: where `docstream serve` keeps accepted
//! uploads, and the limits that keep it answering under load.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Folder of accepted uploads waiting to land. Default: `_spool` under
    /// a local lake; `./docstream-spool` for a lake in object storage.
    pub spool: Option<String>,
    /// Larger uploads are refused with 413.
    pub max_upload_mb: u64,
    /// A batch upload's whole body (`/v1/documents/batch`), at most.
    pub max_batch_mb: u64,
    /// Uploads waiting to land, at most; more get 429 with Retry-After.
    pub queue_depth: usize,
    /// A request that takes longer gets 503 (uploads are durable before
    /// their 202, so this never loses one).
    pub request_timeout_s: f64,
    /// A SQL query, search or answer that runs longer is stopped (504).
    pub query_timeout_s: f64,
    /// Rows a query returns in JSON, at most; the answer says it is cut.
    pub max_rows: usize,
    /// A result streamed through Flight SQL or Postgres, at most (MiB of
    /// Arrow data); a larger one is stopped with an error.
    pub max_result_mb: u64,
    /// Queries, searches and answers running at once; more get 429.
    pub max_concurrent_queries: usize,
    /// TLS for the Postgres door (`serve --pg-addr`): a PEM certificate
    /// chain and its private key. Without them, passwords are taken over
    /// loopback only.
    pub pg_tls_cert: Option<String>,
    pub pg_tls_key: Option<String>,
    /// Prefixes of objects an upload may name by URI (`{"uri": ...}`),
    /// read with the server's credentials. Empty: none.
    pub allowed_objects: Vec<String>,
    /// Per tenant, the only prefixes its uploads may name.
    pub tenant_objects: BTreeMap<String, Vec<String>>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            spool: None,
            max_upload_mb: 64,
            max_batch_mb: 256,
            queue_depth: 1000,
            request_timeout_s: 120.0,
            query_timeout_s: 30.0,
            max_rows: 10_000,
            max_result_mb: 8192,
            max_concurrent_queries: 4,
            pg_tls_cert: None,
            pg_tls_key: None,
            allowed_objects: Vec::new(),
            tenant_objects: BTreeMap::new(),
        }
    }
}

impl ServeConfig {
    pub fn max_upload_bytes(&self) -> usize {
        usize::try_from(self.max_upload_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    pub fn max_batch_bytes(&self) -> usize {
        usize::try_from(self.max_batch_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    pub fn query_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.query_timeout_s.max(0.001))
    }

    pub fn max_result_bytes(&self) -> usize {
        usize::try_from(self.max_result_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout_s.max(0.001))
    }
}
