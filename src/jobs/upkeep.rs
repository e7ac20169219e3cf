//! Upkeep a long-running writer (`ingest`, `serve`) starts every N
//! committed batches:
//! compaction, and bringing the search indexes up to date. Each kind runs
//! in the background, one run at a time, so the writer never waits for it
//! and its failures never stop the writer.

use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use url::Url;

use crate::indexes::config::IndexesConfig;
use crate::indexes::update::update_in_background;
use crate::sinks::lake::LakeConfig;
use crate::sinks::maintenance::compact_in_background;
use crate::storage::StorageOptions;

pub struct Periodic {
    every: u64,
    commits: u64,
    task: Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>,
    running: Option<JoinHandle<()>>,
}

impl Periodic {
    /// Runs `task` after every `every` commits; `every == 0` never runs it.
    pub fn new(
        every: u64,
        task: impl Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        Self {
            every,
            commits: 0,
            task: Box::new(task),
            running: None,
        }
    }

    /// Counts a commit; starts a run when due and none is running (a run
    /// that is due while one runs is skipped, not queued).
    pub fn committed(&mut self) {
        if self.every == 0 {
            return;
        }
        self.commits += 1;
        if !self.commits.is_multiple_of(self.every)
            || self.running.as_ref().is_some_and(|r| !r.is_finished())
        {
            return;
        }
        self.running = Some(tokio::spawn((self.task)()));
    }

    /// Waits for a running task, so a clean shutdown does not cut one.
    pub async fn finish(self) {
        if let Some(running) = self.running {
            let _ = running.await;
        }
    }
}

/// The upkeep of a long-running writer: compaction of its tables every
/// `[lake] compact_every_commits` batches, and the search indexes brought
/// up to date every `[indexes] update_every_batches`.
pub struct Upkeep {
    compactor: Periodic,
    indexer: Periodic,
}

impl Upkeep {
    pub fn new(
        root: &Url,
        storage: &StorageOptions,
        tables: Vec<String>,
        lake: &LakeConfig,
        indexes: &IndexesConfig,
    ) -> Self {
        let (r, s) = (root.clone(), storage.clone());
        let compactor = Periodic::new(lake.compact_every_commits, move || {
            Box::pin(compact_in_background(r.clone(), s.clone(), tables.clone()))
        });
        let (r, s, config) = (root.clone(), storage.clone(), indexes.clone());
        let indexer = Periodic::new(indexes.update_every_batches, move || {
            Box::pin(update_in_background(r.clone(), s.clone(), config.clone()))
        });
        Self { compactor, indexer }
    }

    /// Counts a committed batch, starting what is due.
    pub fn committed(&mut self) {
        self.compactor.committed();
        self.indexer.committed();
    }

    /// Waits for what is running, so a clean shutdown does not cut it.
    pub async fn finish(self) {
        self.compactor.finish().await;
        self.indexer.finish().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn runs_every_n_commits_one_at_a_time() {
        let runs = Arc::new(AtomicUsize::new(0));
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let counted = runs.clone();
        let mut p = Periodic::new(2, move || {
            let (runs, mut gate) = (counted.clone(), gate_rx.clone());
            Box::pin(async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
            })
        });
        p.committed();
        tokio::task::yield_now().await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        p.committed(); // due: starts, then blocks on the gate
        let started = Arc::clone(&runs);
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        p.committed();
        p.committed(); // due again, but one is running: skipped
        gate_tx.send(true).unwrap();
        p.finish().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        let mut off = Periodic::new(0, || Box::pin(async { panic!("never runs") }));
        off.committed();
        off.finish().await;
    }
}
