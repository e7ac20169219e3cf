//! Micro-batches that close on rows, bytes or age, whichever comes first.

use std::time::{Duration, Instant};

use super::extracted::ExtractedDoc;
use super::pipeline::BatchConfig;

pub struct Batcher {
    config: BatchConfig,
    docs: Vec<ExtractedDoc>,
    bytes: usize,
    opened: Option<Instant>,
}

impl Batcher {
    pub fn new(config: BatchConfig) -> Self {
        Self {
            config,
            docs: Vec::new(),
            bytes: 0,
            opened: None,
        }
    }

    pub fn push(&mut self, doc: ExtractedDoc) {
        self.opened.get_or_insert_with(Instant::now);
        self.bytes += doc.size();
        self.docs.push(doc);
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Whether the batch should close now.
    pub fn is_full(&self) -> bool {
        self.docs.len() >= self.config.max_rows.max(1)
            || self.bytes >= self.config.max_bytes
            || self.age_left() == Some(Duration::ZERO)
    }

    /// Time until the open batch closes on age; `None` when empty.
    pub fn age_left(&self) -> Option<Duration> {
        let max_age = Duration::from_secs_f64(self.config.max_age_secs.max(0.0));
        self.opened.map(|t| max_age.saturating_sub(t.elapsed()))
    }

    pub fn take(&mut self) -> Vec<ExtractedDoc> {
        self.bytes = 0;
        self.opened = None;
        std::mem::take(&mut self.docs)
    }
}
