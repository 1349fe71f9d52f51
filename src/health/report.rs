//! Observations on their way to the health loop: what check tasks and the data plane send, and
//! the handle the data plane sends failed requests through.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::pool::Backend;

/// How many observations may wait for the health loop; past that, failed requests are not
/// counted (checks wait instead), so a flood of failures cannot use up memory.
pub const OBSERVATION_QUEUE: usize = 4096;

/// One health result for one backend of one pool.
pub struct Observation {
    /// The pool's canonical pattern, its key in the control plane.
    pub pattern: Arc<str>,
    pub backend: Arc<Backend>,
    pub result: Result<(), String>,
    pub source: Source,
}

/// Where the data plane reports requests that failed before any response.
#[derive(Clone)]
pub struct FailureReporter(pub(crate) mpsc::Sender<Observation>);

impl FailureReporter {
    /// Counts a failed request against `backend`; never waits (dropped if the queue is full).
    pub fn report(&self, pattern: &str, backend: &Arc<Backend>, error: String) {
        let _ = self.0.try_send(Observation {
            pattern: pattern.into(),
            backend: backend.clone(),
            result: Err(error),
            source: Source::Request,
        });
    }
}

/// Where an observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An active health check.
    Check,
    /// A proxied request that failed before any response.
    Request,
}
