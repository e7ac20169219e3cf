//! Why a model call failed, and the row-level failure that lands in `failures`.

use std::time::Duration;

/// One failed attempt at a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("HTTP {status}: {body}")]
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the endpoint: {0}")]
    Connect(String),
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("circuit open after repeated failures; the endpoint is skipped for {0:?}")]
    CircuitOpen(Duration),
    #[error("output does not match the schema: {0}")]
    InvalidOutput(String),
    #[error("local model: {0}")]
    Local(String),
}

impl CallError {
    /// Worth another attempt at the same endpoint.
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            CallError::Timeout(_) | CallError::Connect(_) | CallError::Malformed(_) => true,
            CallError::CircuitOpen(_) | CallError::InvalidOutput(_) | CallError::Local(_) => false,
        }
    }

    pub fn is_throttle(&self) -> bool {
        matches!(self, CallError::Status { status: 429, .. })
    }

    /// A 4xx other than 408/429: the input itself is refused.
    pub fn is_rejection(&self) -> bool {
        matches!(self, CallError::Status { status, .. } if (400..500).contains(status) && *status != 408 && *status != 429)
    }

    /// The endpoint is down: the next provider in the chain should be tried.
    pub fn endpoint_down(&self) -> bool {
        self.retryable() || matches!(self, CallError::CircuitOpen(_))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A row the model stage gave up on; it becomes a `failures` row.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider}: {error} (after {attempts} attempt(s))")]
pub struct ModelFailure {
    pub provider: String,
    pub error: CallError,
    pub attempts: u32,
}
