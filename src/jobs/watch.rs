//! Watch: poll a bucket prefix and publish one event per new or changed
//! object. What was published is kept in a state file, written only after
//! the broker acknowledged the events, so a restart never re-publishes an
//! unchanged object (a crash between the two re-publishes at most one
//! round, which ingest lands once: same document version).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::publish::{keyed, object_event, Publisher};
use crate::sources::bucket::{Bucket, SourceObject};

/// An object's version as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The etag, or the last-modified time where the store has none.
    pub version: String,
    pub size: u64,
}

impl Seen {
    fn of(object: &SourceObject) -> Self {
        Self {
            version: object
                .meta
                .e_tag
                .clone()
                .unwrap_or_else(|| object.meta.last_modified.to_rfc3339()),
            size: object.meta.size,
        }
    }
}

pub struct Watch {
    pub bucket: Bucket,
    pub publisher: Publisher,
    pub tenant: Option<String>,
    pub interval: Duration,
    pub state: PathBuf,
}

impl Watch {
    /// Polls until `shutdown`; returns the number of events published.
    /// With `once`, stops after one poll.
    pub async fn run(self, once: bool, shutdown: impl Future<Output = ()>) -> Result<usize> {
        let mut seen = self.load()?;
        let mut published = 0;
        tokio::pin!(shutdown);
        loop {
            let changed: Vec<SourceObject> = self
                .bucket
                .list()
                .await?
                .into_iter()
                .filter(|o| seen.get(&o.uri) != Some(&Seen::of(o)))
                .collect();
            if !changed.is_empty() {
                let events = changed
                    .iter()
                    .map(|o| keyed(object_event(o, self.tenant.as_deref())))
                    .collect::<Result<Vec<_>>>()?;
                published += self.publisher.send_all(events).await?;
                for o in &changed {
                    seen.insert(o.uri.clone(), Seen::of(o));
                }
                self.save(&seen)?;
                tracing::info!(events = changed.len(), "published changes");
            }
            if once {
                return Ok(published);
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(published),
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    fn load(&self) -> Result<BTreeMap<String, Seen>> {
        match std::fs::read(&self.state) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "watch state {} is corrupt; delete it to re-publish every object",
                    self.state.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.state.display())),
        }
    }

    /// Writes the state atomically: a crash leaves the old or the new file.
    fn save(&self, seen: &BTreeMap<String, Seen>) -> Result<()> {
        let dir = self.state.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let tmp = self.state.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(seen)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.state)
            .with_context(|| format!("cannot replace {}", self.state.display()))
    }
}
