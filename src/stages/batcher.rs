//! Micro-batches that close on rows, bytes or age, whichever comes first.

use std::time::{Duration, Instant};

use serde::Deserialize;

/// `[batch]` in pipeline files: when a micro-batch closes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age_secs: f64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_rows: 2000,
            max_bytes: 64 << 20,
            max_age_secs: 30.0,
        }
    }
}

pub struct Batcher<T> {
    config: BatchConfig,
    items: Vec<T>,
    bytes: usize,
    opened: Option<Instant>,
}

impl<T> Batcher<T> {
    pub fn new(config: BatchConfig) -> Self {
        Self {
            config,
            items: Vec::new(),
            bytes: 0,
            opened: None,
        }
    }

    /// Adds an item that holds `bytes` of memory.
    pub fn push(&mut self, item: T, bytes: usize) {
        self.opened.get_or_insert_with(Instant::now);
        self.bytes += bytes;
        self.items.push(item);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the batch should close now.
    pub fn is_full(&self) -> bool {
        self.items.len() >= self.config.max_rows.max(1)
            || self.bytes >= self.config.max_bytes
            || self.age_left() == Some(Duration::ZERO)
    }

    /// Time until the open batch closes on age; `None` when empty.
    pub fn age_left(&self) -> Option<Duration> {
        let max_age = Duration::from_secs_f64(self.config.max_age_secs.max(0.0));
        self.opened.map(|t| max_age.saturating_sub(t.elapsed()))
    }

    /// Keeps only the items `keep` accepts (e.g. after a partition is revoked).
    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        self.items.retain(keep);
        if self.items.is_empty() {
            self.take();
        }
    }

    pub fn take(&mut self) -> Vec<T> {
        self.bytes = 0;
        self.opened = None;
        std::mem::take(&mut self.items)
    }
}
