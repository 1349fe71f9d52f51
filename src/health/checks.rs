//! The check tasks, one per backend: each sleeps until its next check ([`check_delay`]), checks
//! with its pool's spec as the published routing snapshot holds it, and sends the result up to
//! the health loop.
//!
//! Reading the snapshot takes no lock, so an admin change busy flushing the store never holds a
//! check back, and a change of the check settings applies from each backend's next check.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::{check_delay, Observation, Probe, Source};
use crate::pool::{Backend, HealthCheckSpec};
use crate::routing::{Pattern, Routes};

/// What every check task shares: the probe (one connection pool), the published snapshot, and
/// the way up to the health loop.
pub struct Checks {
    probe: Probe,
    routes: Arc<ArcSwap<Routes>>,
    observations: mpsc::Sender<Observation>,
}

impl Checks {
    /// Check tasks that read `routes` and send to `observations`.
    pub fn new(routes: Arc<ArcSwap<Routes>>, observations: mpsc::Sender<Observation>) -> Checks {
        Checks { probe: Probe::default(), routes, observations }
    }

    /// Checks `addr` once with `spec`, outside any task (a backend about to be added).
    pub async fn check(&self, addr: SocketAddr, spec: &HealthCheckSpec) -> Result<(), String> {
        self.probe.check(addr, spec).await
    }

    /// Starts the task that checks `backend` of pool `pattern`, until it is aborted, the pool
    /// leaves the snapshot or the health loop stops. `first_round` as in [`check_delay`]: 0
    /// checks within a second (after a restart), 1 at a random point of the interval (a backend
    /// just checked).
    pub fn spawn(&self, pattern: &Pattern, backend: &Arc<Backend>, first_round: u64) -> AbortHandle {
        let mut settings = Settings::new(self.routes.clone(), pattern.clone());
        let key: Arc<str> = pattern.to_string().into();
        let backend = backend.clone();
        let probe = self.probe.clone();
        let observations = self.observations.clone();
        let task = async move {
            for round in first_round.. {
                let Some(spec) = settings.current() else {
                    return;
                };
                tokio::time::sleep(check_delay(spec, round)).await;
                // Again: the settings may have changed while the task slept.
                let Some(spec) = settings.current() else {
                    return;
                };
                let result = probe.check(backend.addr(), spec).await;
                let observation =
                    Observation { pattern: key.clone(), backend: backend.clone(), result, source: Source::Check };
                if observations.send(observation).await.is_err() {
                    return;
                }
            }
        };
        tokio::spawn(task).abort_handle()
    }
}

/// A check task's view of its pool's spec, looked up again only when a new snapshot was
/// published (a lookup is linear in the number of pools; snapshots change rarely).
struct Settings {
    routes: Arc<ArcSwap<Routes>>,
    pattern: Pattern,
    /// The snapshot `spec` was read from. Weak, so that no old snapshot's pools are kept alive;
    /// and while it is held that address cannot be reused, so a new snapshot never passes for it.
    seen: Weak<Routes>,
    spec: HealthCheckSpec,
}

impl Settings {
    fn new(routes: Arc<ArcSwap<Routes>>, pattern: Pattern) -> Settings {
        Settings { routes, pattern, seen: Weak::new(), spec: HealthCheckSpec::default() }
    }

    /// The pool's spec in the current snapshot; `None` once the pool is gone from it.
    fn current(&mut self) -> Option<&HealthCheckSpec> {
        let routes = self.routes.load();
        let routes: &Arc<Routes> = &routes;
        if !std::ptr::eq(self.seen.as_ptr(), Arc::as_ptr(routes)) {
            self.spec = routes.get(&self.pattern)?.config.health_check.clone();
            self.seen = Arc::downgrade(routes);
        }
        Some(&self.spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Pool, PoolConfig};
    use crate::retry::RetryBudget;

    fn routes(pools: &[(&str, u64)]) -> Routes {
        Routes::new(pools.iter().map(|&(pattern, interval_ms)| {
            let mut config = PoolConfig::new(pattern.into());
            config.health_check.interval_ms = interval_ms;
            let pool = Pool::new(config, Vec::new(), Arc::new(RetryBudget::default()));
            (Pattern::parse(pattern).unwrap(), Arc::new(pool))
        }))
    }

    #[test]
    fn settings_follow_the_published_snapshot() {
        let published = Arc::new(ArcSwap::from_pointee(routes(&[("/", 1000), ("/a/", 2000)])));
        let mut settings = Settings::new(published.clone(), Pattern::parse("/a/").unwrap());
        assert_eq!(settings.current().map(|s| s.interval_ms), Some(2000));
        published.store(Arc::new(routes(&[("/", 1000), ("/a/", 3000)])));
        assert_eq!(settings.current().map(|s| s.interval_ms), Some(3000), "a new snapshot is read");
        published.store(Arc::new(routes(&[("/", 1000)])));
        assert_eq!(settings.current(), None, "the pool is gone");
    }
}
