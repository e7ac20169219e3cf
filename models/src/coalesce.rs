//! Coalesces concurrent one-row calls into batched requests.
//!
//! Arroyo calls an async UDF with one row at a time, many at once. Each call
//! parks its text here; the call that fills a batch (by count or tokens), or
//! the first one to wake after `linger`, sends the batch for everybody. There
//! is no background task, so nothing outlives the runtime that drives the
//! calls, and a flushing call that is dropped only sends its batch's callers
//! round again.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

use super::estimate_tokens;

pub struct Coalescer<R> {
    max_items: usize,
    max_tokens: usize,
    linger: Duration,
    pending: Mutex<Batch<R>>,
}

struct Batch<R> {
    generation: u64,
    items: Vec<(String, oneshot::Sender<R>)>,
    tokens: usize,
}

impl<R> Batch<R> {
    /// Takes the items out and starts the next generation.
    fn take(&mut self) -> Vec<(String, oneshot::Sender<R>)> {
        self.generation += 1;
        self.tokens = 0;
        std::mem::take(&mut self.items)
    }
}

impl<R: Send> Coalescer<R> {
    pub fn new(max_items: usize, max_tokens: usize, linger: Duration) -> Self {
        Self {
            max_items: max_items.max(1),
            max_tokens: max_tokens.max(1),
            linger,
            pending: Mutex::new(Batch {
                generation: 0,
                items: Vec::new(),
                tokens: 0,
            }),
        }
    }

    /// `text`'s result, computed by `run` over a batch of texts that returns
    /// one result per text, in order.
    pub async fn call<F, Fut>(&self, text: String, run: F) -> R
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: Future<Output = Vec<R>>,
    {
        let tokens = estimate_tokens(&text);
        loop {
            let (tx, mut rx) = oneshot::channel();
            let (generation, full) = {
                let mut batch = self.lock();
                // A text that would overflow the batch's token budget starts the next one.
                let full = if !batch.items.is_empty() && batch.tokens + tokens > self.max_tokens {
                    Some(batch.take())
                } else {
                    None
                };
                batch.items.push((text.clone(), tx));
                batch.tokens += tokens;
                let now_full =
                    batch.items.len() >= self.max_items || batch.tokens >= self.max_tokens;
                match (full, now_full) {
                    (Some(older), _) => (batch.generation, Some(older)),
                    (None, true) => (batch.generation, Some(batch.take())),
                    (None, false) => (batch.generation, None),
                }
            };
            if let Some(items) = full {
                deliver(items, &run).await;
            }
            loop {
                tokio::select! {
                    result = &mut rx => match result {
                        Ok(r) => return r,
                        // The call flushing our batch was dropped: park again.
                        Err(_) => break,
                    },
                    _ = tokio::time::sleep(self.linger) => {
                        let items = {
                            let mut batch = self.lock();
                            (batch.generation == generation).then(|| batch.take())
                        };
                        if let Some(items) = items {
                            deliver(items, &run).await;
                        }
                    }
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Batch<R>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn deliver<R, F, Fut>(items: Vec<(String, oneshot::Sender<R>)>, run: &F)
where
    F: Fn(Vec<String>) -> Fut,
    Fut: Future<Output = Vec<R>>,
{
    let (texts, senders): (Vec<String>, Vec<_>) = items.into_iter().unzip();
    let results = run(texts).await;
    // `run` answers every text; a caller that went away just drops its result.
    for (tx, r) in senders.into_iter().zip(results) {
        let _ = tx.send(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    type Batches = Arc<Mutex<Vec<Vec<String>>>>;

    /// A batch function that upper-cases its texts and records each batch.
    fn recording() -> (
        Batches,
        impl Fn(Vec<String>) -> futures::future::Ready<Vec<String>> + Clone,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let run = move |texts: Vec<String>| {
            log.lock().unwrap().push(texts.clone());
            futures::future::ready(texts.iter().map(|t| t.to_uppercase()).collect())
        };
        (seen, run)
    }

    #[tokio::test]
    async fn concurrent_calls_share_requests_by_count() {
        let c = Coalescer::new(4, 1_000_000, Duration::from_millis(20));
        let (seen, run) = recording();
        let texts: Vec<String> = (0..10).map(|i| format!("text {i}")).collect();
        let results =
            futures::future::join_all(texts.iter().map(|t| c.call(t.clone(), run.clone()))).await;
        let want: Vec<String> = texts.iter().map(|t| t.to_uppercase()).collect();
        assert_eq!(results, want, "each caller gets its own result");
        let sizes: Vec<usize> = seen.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            [4, 4, 2],
            "two full batches, then the rest after the linger"
        );
    }

    #[tokio::test]
    async fn a_token_budget_closes_batches_early() {
        // Each text is a few tokens; a budget of 8 fits two of them.
        let c = Coalescer::new(100, 8, Duration::from_millis(20));
        let (seen, run) = recording();
        let texts: Vec<String> = (0..5).map(|i| format!("alpha beta {i}")).collect();
        let tokens = estimate_tokens(&texts[0]);
        assert!((3..=4).contains(&tokens), "{tokens}");
        let results =
            futures::future::join_all(texts.iter().map(|t| c.call(t.clone(), run.clone()))).await;
        assert_eq!(results.len(), 5);
        for batch in seen.lock().unwrap().iter() {
            let total: usize = batch.iter().map(|t| estimate_tokens(t)).sum();
            assert!(total <= 8, "{batch:?} holds {total} tokens");
        }
        let sent: usize = seen.lock().unwrap().iter().map(Vec::len).sum();
        assert_eq!(sent, 5, "every text sent exactly once");
    }

    #[tokio::test]
    async fn a_dropped_flusher_sends_its_callers_round_again() {
        let c = Arc::new(Coalescer::new(2, 1_000_000, Duration::from_millis(10)));
        let (seen, run) = recording();
        let waiting = {
            let c = c.clone();
            tokio::spawn(async move { c.call("b".into(), run).await })
        };
        tokio::task::yield_now().await;
        // "a" fills the batch, so it flushes ["b", "a"] with a request that
        // never finishes, and is then cancelled.
        let stuck = {
            let c = c.clone();
            tokio::spawn(async move {
                c.call("a".into(), |_texts: Vec<String>| {
                    std::future::pending::<Vec<String>>()
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        stuck.abort();
        assert_eq!(waiting.await.unwrap(), "B");
        assert_eq!(*seen.lock().unwrap(), [["b"]], "sent again, alone");
    }
}
