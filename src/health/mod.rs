//! Health: the active check ([`Probe`]), and the one state machine ([`observe`]) that turns check
//! results and failed proxied requests into a backend's status, with HAProxy-style `fall`/`rise`
//! thresholds and eviction after `evict_after` consecutive failures.
//!
//! Checks run on the control plane's runtime, never on the data path. Each backend has one small
//! task that sleeps until its next check, spread as [`check_delay`] says: soon after start, then
//! over the interval, and reads its pool's settings from the published routing snapshot.
//!
//! # Layout
//! - `probe.rs`: the HTTP check itself.
//! - `checks.rs`: the per-backend check tasks ([`Checks`]).
//! - `state.rs`: [`observe`] and the verdict it returns, and [`check_delay`].
//! - `report.rs`: [`Observation`]s on their way to the health loop, and the data plane's
//!   [`FailureReporter`].
//!
//! The loop that applies observations belongs to the control plane, the only writer; this
//! module never reaches up to it.

mod checks;
mod probe;
mod report;
mod state;

pub use checks::Checks;
pub use probe::Probe;
pub use report::{FailureReporter, Observation, Source, OBSERVATION_QUEUE};
pub use state::{check_delay, observe};
