//! Adaptive concurrency (AIMD) and a circuit breaker, one of each per endpoint.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Bounds requests in flight (AIMD). When 429s are sustained (their moving
/// share of responses passes `THROTTLED`) the limit halves and `Retry-After`
/// pauses new sends, at most once per round trip; successes grow the limit by
/// about one per round trip. Isolated 429s (token windows, noisy gateways)
/// only delay their own retry: reacting to each one, as TCP does to loss,
/// collapses throughput under 20–30% random 429s.
const DECREASE: f64 = 0.5;
const THROTTLED: f64 = 0.6;
/// Weight of the newest response in the moving 429 share.
const SHARE_WEIGHT: f64 = 0.05;
/// How long a waiter sleeps before it looks at the limit again unwoken.
const RECHECK: Duration = Duration::from_secs(1);
pub struct Limiter {
    max: f64,
    state: Mutex<LimiterState>,
    freed: Notify,
}

struct LimiterState {
    limit: f64,
    /// Moving share of responses that were 429s.
    throttled: f64,
    in_flight: usize,
    paused_until: Option<Instant>,
    last_cut: Instant,
}

pub struct Permit {
    limiter: Arc<Limiter>,
    pub started: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut s) = self.limiter.state.lock() {
            s.in_flight -= 1;
        }
        self.limiter.freed.notify_one();
    }
}

impl Limiter {
    pub fn new(max_in_flight: usize) -> Arc<Self> {
        let max = max_in_flight.max(1) as f64;
        Arc::new(Self {
            max,
            state: Mutex::new(LimiterState {
                limit: max,
                throttled: 0.0,
                in_flight: 0,
                paused_until: None,
                last_cut: Instant::now(),
            }),
            freed: Notify::new(),
        })
    }

    /// A slot, once one is free. Waiters queue on `freed` and each freed
    /// slot wakes one of them: waking them all on every response (a batch
    /// of 10k texts queues 10k waiters) spent more CPU than the calls.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        self.acquire_rechecking(RECHECK).await
    }

    async fn acquire_rechecking(self: &Arc<Self>, recheck: Duration) -> Permit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Queued before the check, so a slot freed after it wakes us.
            freed.as_mut().enable();
            let wait = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                match s.paused_until {
                    Some(t) if t > now => Some(t - now),
                    _ => {
                        s.paused_until = None;
                        if (s.in_flight as f64) < s.limit.floor().max(1.0) {
                            s.in_flight += 1;
                            return Permit {
                                limiter: self.clone(),
                                started: now,
                            };
                        }
                        None
                    }
                }
            };
            match wait {
                Some(pause) => tokio::time::sleep(pause).await,
                // The timeout is a safety net only: every change that can
                // admit a waiter (a slot freed, the limit grown) wakes one.
                None => {
                    let _ = tokio::time::timeout(recheck, freed).await;
                }
            }
        }
    }

    pub fn on_success(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.limit = (s.limit + 1.0 / s.limit).min(self.max);
        s.throttled *= 1.0 - SHARE_WEIGHT;
        drop(s);
        self.freed.notify_one();
    }

    /// A response that was neither a success nor a 429 (5xx, timeout, ...).
    pub fn on_error(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.throttled *= 1.0 - SHARE_WEIGHT;
    }

    pub fn on_throttle(&self, permit: &Permit, retry_after: Option<Duration>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.throttled = s.throttled * (1.0 - SHARE_WEIGHT) + SHARE_WEIGHT;
        // Isolated 429s only delay their own retry (by Retry-After). Sustained
        // ones cut the limit and pause new sends, once per round trip: 429s
        // from requests already in flight at the last cut say nothing new.
        if s.throttled > THROTTLED && permit.started >= s.last_cut {
            let now = Instant::now();
            s.limit = (s.limit * DECREASE).max(1.0);
            s.last_cut = now;
            if let Some(after) = retry_after {
                s.paused_until = Some(s.paused_until.map_or(now + after, |p| p.max(now + after)));
            }
        }
    }

    pub fn limit(&self) -> f64 {
        self.state.lock().map_or(1.0, |s| s.limit)
    }
}

/// Opens after `threshold` consecutive endpoint failures; after `open_for`
/// one trial request is let through (half-open) and its result decides.
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    consecutive: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(BreakerState::default()),
        }
    }

    /// `Err(remaining)` while the circuit is open.
    pub fn check(&self) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.open_until {
            None => Ok(()),
            Some(t) => {
                let now = Instant::now();
                if now < t {
                    Err(t - now)
                } else if s.trial_in_flight {
                    Err(self.open_for)
                } else {
                    s.trial_in_flight = true;
                    Ok(())
                }
            }
        }
    }

    pub fn record(&self, endpoint_ok: bool) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.trial_in_flight = false;
        if endpoint_ok {
            s.consecutive = 0;
            s.open_until = None;
        } else {
            s.consecutive += 1;
            if s.consecutive >= self.threshold {
                s.open_until = Some(Instant::now() + self.open_for);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn aimd_cuts_on_sustained_429s_once_per_round_trip_and_grows_back() {
        let limiter = Limiter::new(16);
        // Isolated 429s among successes: no cut.
        for _ in 0..20 {
            let p = limiter.acquire().await;
            for _ in 0..3 {
                limiter.on_success();
            }
            limiter.on_throttle(&p, None);
        }
        assert_eq!(limiter.limit(), 16.0);
        // A burst of 429s from requests sent before any cut: one cut.
        let permits: Vec<Permit> =
            futures::future::join_all((0..16).map(|_| limiter.acquire())).await;
        for p in &permits {
            limiter.on_throttle(p, None);
        }
        assert_eq!(limiter.limit(), 16.0 * DECREASE);
        drop(permits);
        let p = limiter.acquire().await;
        limiter.on_throttle(&p, None);
        assert_eq!(limiter.limit(), 16.0 * DECREASE * DECREASE);
        for _ in 0..200 {
            limiter.on_success();
        }
        assert_eq!(limiter.limit(), 16.0);
    }

    #[tokio::test]
    async fn sustained_retry_after_pauses_new_requests() {
        let limiter = Limiter::new(2);
        let p = limiter.acquire().await;
        // Only 429s: their share passes the threshold and the pause applies.
        for _ in 0..30 {
            limiter.on_throttle(&p, Some(Duration::from_millis(200)));
        }
        drop(p);
        let before = Instant::now();
        let _q = limiter.acquire().await;
        assert!(before.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn bounds_in_flight() {
        let limiter = Limiter::new(2);
        let _a = limiter.acquire().await;
        let _b = limiter.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(150), limiter.acquire()).await;
        assert!(third.is_err(), "a third request got through a limit of 2");
    }

    /// With a recheck an hour away, only the wake-ups of freed slots can
    /// get 500 waiters through 3 slots; the timeout only keeps a lost
    /// wake-up from hanging the suite.
    #[tokio::test]
    async fn a_freed_slot_wakes_a_waiter_and_every_waiter_gets_one() {
        let limiter = Limiter::new(3);
        let hour = Duration::from_secs(3600);
        let waiters = (0..500).map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let permit = limiter.acquire_rechecking(hour).await;
                tokio::task::yield_now().await;
                limiter.on_success();
                drop(permit);
            })
        });
        let all = futures::future::join_all(waiters);
        let done = tokio::time::timeout(Duration::from_secs(60), all).await;
        for w in done.expect("a waiter was never woken") {
            w.unwrap();
        }
        assert_eq!(limiter.state.lock().unwrap().in_flight, 0);
    }

    #[test]
    fn breaker_opens_then_half_opens() {
        let b = Breaker::new(2, Duration::from_millis(50));
        b.record(false);
        assert!(b.check().is_ok());
        b.record(false);
        assert!(b.check().is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.check().is_ok(), "one trial after the open period");
        assert!(b.check().is_err(), "only one trial at a time");
        b.record(true);
        assert!(b.check().is_ok());
    }
}
