//! The query limits every door shares: queries running at once, a time
//! limit from admission to the last row, and a cap on a result's bytes.
//! A query stopped by a limit is dropped, which cancels its plan.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Why a query was refused or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0} queries are running, the server's limit")]
    Busy(usize),
    #[error("the query ran past the server's limit of {0} s and was stopped")]
    TimedOut(f64),
    #[error("the result passed the server's limit of {0} MiB and was stopped")]
    TooLarge(usize),
}

impl Refusal {
    pub fn hint(&self) -> &'static str {
        match self {
            Refusal::Busy(_) => "retry shortly, or raise [serve] max_concurrent_queries",
            Refusal::TimedOut(_) => {
                "filter or aggregate more, add LIMIT, or raise [serve] query_timeout_s"
            }
            Refusal::TooLarge(_) => "select fewer columns or rows, or raise [serve] max_result_mb",
        }
    }

    /// What happened and what to do, in one line.
    pub fn explained(&self) -> String {
        format!("{self}; {}", self.hint())
    }

    /// The refusal inside a query's error, if a limit stopped it.
    pub fn of(e: &DataFusionError) -> Option<&Refusal> {
        match e {
            DataFusionError::External(inner) => inner.downcast_ref(),
            _ => None,
        }
    }
}

pub struct Gate {
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    timeout: Duration,
    max_result_bytes: usize,
}

/// An admitted query: its slot, held until the pass is dropped, and its
/// deadline.
pub struct Pass {
    _slot: OwnedSemaphorePermit,
    deadline: Instant,
}

impl Gate {
    pub fn new(max_concurrent: usize, timeout: Duration, max_result_bytes: usize) -> Self {
        let max_concurrent = max_concurrent.max(1);
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            timeout,
            max_result_bytes,
        }
    }

    /// Queries running now.
    pub fn running(&self) -> usize {
        self.max_concurrent
            .saturating_sub(self.slots.available_permits())
    }

    /// A pass if a slot is free; a busy server refuses rather than queues.
    pub fn admit(&self) -> Result<Pass, Refusal> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy(self.max_concurrent))?;
        Ok(Pass {
            _slot: slot,
            deadline: Instant::now() + self.timeout,
        })
    }

    /// Runs `work` until the pass's deadline.
    pub async fn within<T>(
        &self,
        pass: &Pass,
        work: impl Future<Output = T>,
    ) -> Result<T, Refusal> {
        tokio::time::timeout_at(pass.deadline, work)
            .await
            .map_err(|_| self.timed_out())
    }

    fn timed_out(&self) -> Refusal {
        Refusal::TimedOut(self.timeout.as_secs_f64())
    }

    /// `rows` under the pass's deadline and the result cap; the slot is
    /// freed when the stream ends or is dropped.
    pub fn bound(&self, pass: Pass, rows: SendableRecordBatchStream) -> SendableRecordBatchStream {
        let schema = rows.schema();
        let max_bytes = self.max_result_bytes;
        let timed_out = self.timed_out();
        let stop = |r: Refusal| DataFusionError::External(Box::new(r));
        let state = Some((rows, pass, 0usize, timed_out));
        let bounded = futures::stream::unfold(state, move |state| async move {
            let (mut rows, pass, sent, timed_out) = state?;
            match tokio::time::timeout_at(pass.deadline, rows.next()).await {
                Err(_) => Some((Err(stop(timed_out)), None)),
                Ok(None) => None,
                Ok(Some(Err(e))) => Some((Err(e), None)),
                Ok(Some(Ok(batch))) => {
                    let sent = sent.saturating_add(batch.get_array_memory_size());
                    if sent > max_bytes {
                        return Some((Err(stop(Refusal::TooLarge(max_bytes >> 20))), None));
                    }
                    Some((Ok(batch), Some((rows, pass, sent, timed_out))))
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, bounded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use futures::TryStreamExt;

    fn rows(batches: usize, pause: Duration) -> SendableRecordBatchStream {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..1024))],
        )
        .unwrap();
        let stream = futures::stream::iter(0..batches).then(move |_| {
            let batch = batch.clone();
            async move {
                tokio::time::sleep(pause).await;
                Ok(batch)
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, stream))
    }

    #[tokio::test]
    async fn a_busy_gate_refuses_and_frees_its_slot_with_the_stream() {
        let gate = Gate::new(1, Duration::from_secs(10), usize::MAX);
        let pass = gate.admit().unwrap();
        assert!(matches!(gate.admit(), Err(Refusal::Busy(1))));
        let stream = gate.bound(pass, rows(2, Duration::ZERO));
        assert_eq!(gate.running(), 1);
        let batches: Vec<_> = stream.try_collect().await.unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(gate.running(), 0);
        assert!(gate.admit().is_ok());
    }

    #[tokio::test]
    async fn a_slow_result_stops_at_the_deadline() {
        let gate = Gate::new(2, Duration::from_millis(200), usize::MAX);
        let pass = gate.admit().unwrap();
        let mut stream = gate.bound(pass, rows(100, Duration::from_millis(50)));
        let mut got = 0;
        let err = loop {
            match stream.next().await.unwrap() {
                Ok(_) => got += 1,
                Err(e) => break e,
            }
        };
        assert!(got < 100, "{got}");
        assert!(
            matches!(Refusal::of(&err), Some(Refusal::TimedOut(_))),
            "{err}"
        );
        assert!(stream.next().await.is_none());
        drop(stream);
        assert_eq!(gate.running(), 0);
    }

    #[tokio::test]
    async fn a_large_result_stops_at_the_cap() {
        let gate = Gate::new(1, Duration::from_secs(10), 3 * 8192);
        let pass = gate.admit().unwrap();
        let stream = gate.bound(pass, rows(100, Duration::ZERO));
        let got: Vec<_> = stream.collect().await;
        assert!(got.len() < 100);
        let err = got.last().unwrap().as_ref().unwrap_err();
        assert!(
            matches!(Refusal::of(err), Some(Refusal::TooLarge(_))),
            "{err}"
        );
    }
}
