//! lb: an L7 HTTP load balancer.
//!
//! Requests arrive on the data port, are routed to a pool by a Go `ServeMux`-style pattern, and
//! are either proxied to one of the pool's backends or redirected there. Pools and backends live
//! in a sled store and are changed through the admin API.
//!
//! # Layout
//! - [`pool`]: the nouns: `Pool`, `Backend`, `Mode`, `Strategy`, statuses.
//! - [`routing`]: patterns and the immutable `RoutingTable` that picks a pool.
//! - [`selection`]: how a pool picks a backend (`p2c`, `round_robin`, `random`, `least_conn`,
//!   `consistent_hash`); [`retry`] decides when a failed attempt is tried on another.
//! - [`data_plane`]: the accept loop and per-request dispatch; [`request`] what a request must
//!   be before it is routed; [`proxy`] and [`redirect`] are
//!   the two modes, [`forwarded`] owns the headers that cross the proxy, [`body`] the response
//!   body type; [`upstream`] is lb's own HTTP/1.1 client to backends, [`timer`] the request
//!   path's deadlines.
//! - [`control`]: the only writer: store first, then a new routing snapshot.
//! - [`store`]: sled trees and the record codec; schema migrations live in `lb-migrations`.
//! - [`health`]: health checks.
//! - [`admin`]: the JSON admin API.
//! - [`daemon`]: flags, start-up, runtimes and shutdown.

pub mod admin;
pub mod body;
pub mod control;
pub mod daemon;
pub mod data_plane;
pub mod forwarded;
pub mod health;
pub mod pool;
pub mod proxy;
pub mod redirect;
pub mod request;
pub mod response;
pub mod retry;
pub mod routing;
pub mod selection;
pub mod store;
pub mod timer;
pub mod upstream;
