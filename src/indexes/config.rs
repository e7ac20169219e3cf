//! `[indexes]` in pipeline files.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexesConfig {
    /// Memory an index build may hold before it writes a segment, in MiB.
    /// It bounds a build's memory whatever the lake's size.
    pub memory_mb: usize,
    /// `ingest` and `serve` bring the indexes up to date in the background
    /// after this many committed batches; 0 leaves that to `docstream index`. Searches
    /// are exact either way; a fresher index only makes them faster.
    pub update_every_batches: u64,
}

impl Default for IndexesConfig {
    fn default() -> Self {
        Self {
            memory_mb: 256,
            update_every_batches: 20,
        }
    }
}
