//! lb: an L7 HTTP load balancer.
//!
//! Requests arrive on the data port, are routed to a pool by a Go `ServeMux`-style pattern, and
//! are either proxied to one of the pool's backends or redirected there. Pools and backends live
//! in a sled store and are changed through the admin API; the admin API's JSON types and Go's
//! duration grammar live in the `lb-api` crate, shared with lbctl.
//!
//! # Layout
//! Modules form layers, and every import points down (`tests/layers.rs` checks it). Bottom
//! first:
//! - [`timer`]: the request path's deadlines; [`retry`]: when a failed attempt may be tried on
//!   another backend, and the retry budget; [`forwarded`]: the headers that cross the proxy and
//!   the client's [`forwarded::Peer`].
//! - [`pool`]: the nouns. `pool::config` (what an admin says of a pool) and `pool::backend` (a
//!   backend and its health record) sit below [`selection`] (how a pool picks a backend); the
//!   live `Pool` and the partial changes (`pool::change`) sit above it.
//! - [`routing`]: patterns and the immutable [`routing::Routes`] snapshot that picks a pool.
//! - [`store`]: sled trees and the record codec; schema migrations live in `lb-migrations`.
//! - [`upstream`]: the one client to backends (lb's own HTTP/1.1 client for held bodies, hyper's
//!   for streaming ones) and its errors; [`body`]: the body of every response lb sends;
//!   [`response`]: the answers lb writes itself.
//! - [`health`]: checks, the status state machine, and failure reports from the data path.
//! - [`request`]: what a request must be before lb routes it (Host, framing, methods, loops).
//! - [`conn`]: a client connection's protocol detection and its deadlines in every phase.
//! - [`redirect`] and [`proxy`]: the two modes; [`data_plane`]: workers, the accept loop, the
//!   connection limit and per-request dispatch.
//! - [`control`]: the only writer, through one `apply(Change)`: store first, then a new
//!   routing snapshot.
//! - [`admin`]: the JSON admin API; [`daemon`]: flags, binding, serving and shutdown.
//!
//! Modules are `pub` only where tests, benchmarks or the binary need them; this map is for
//! lb's engineers (`cargo doc --document-private-items`), so it links private modules too.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod admin;
pub(crate) mod body;
pub(crate) mod conn;
pub(crate) mod control;
pub mod daemon;
pub(crate) mod data_plane;
pub(crate) mod forwarded;
pub(crate) mod health;
pub mod pool;
pub(crate) mod proxy;
pub(crate) mod redirect;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod retry;
pub mod routing;
pub mod selection;
pub(crate) mod store;
pub(crate) mod timer;
pub mod upstream;
