//! What lb and lbctl must agree on, in one place so that they cannot drift apart.
//!
//! Layout:
//! - [`names`]: a pool's [`Mode`], [`Strategy`] and [`HashKey`], with their one spelling.
//! - [`request`]: what lbctl sends and lb reads, strictly: [`PoolSettings`], [`NewPool`],
//!   [`NewBackend`], [`BackendChange`] and the query parameters.
//! - [`response`]: what lb sends, [`PoolJson`], [`BackendJson`], [`HealthJson`] and
//!   [`ErrorJson`], and in [`lenient`] their twins, which lbctl reads.
//! - [`state`]: the whole state, [`StateJson`], as export writes it and import reads it.
//! - [`duration`]: Go's duration grammar (`500ms`, `1m30s`), for lb's flags and lbctl's.
//!
//! Small on purpose: no runtime, no HTTP client or server, so that depending on it costs
//! lbctl nothing.

pub mod duration;
pub mod names;
pub mod request;
pub mod response;
pub mod state;

pub use names::{HashKey, Mode, Strategy};
pub use request::{
    BackendChange, BackendQuery, HealthCheckChange, NewBackend, NewPool, Object, PatternQuery, PoolSettings,
    TimeoutsChange,
};
pub use response::{lenient, BackendJson, ErrorJson, HealthCheckSpec, HealthJson, PoolJson, Timeouts};
pub use state::{PoolState, StateJson, STATE_VERSION};
