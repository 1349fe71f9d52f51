//! The state machine: how one observation moves a backend's status ([`observe`]), and when a
//! backend's next check comes ([`check_delay`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Source;
use crate::pool::{BackendStatus, HealthCheckSpec, HealthRecord};

/// What one observation did to a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub from: BackendStatus,
    pub to: BackendStatus,
    /// The backend failed `evict_after` times in a row and must go.
    pub evict: bool,
}

impl Verdict {
    /// Whether the status moved (to be logged and persisted).
    pub fn changed(&self) -> bool {
        self.from != self.to
    }
}

/// Applies one result to a backend's health record under the pool's thresholds.
///
/// - A pass resets the failure count; a never-checked backend is healthy at its first pass, a
///   sick one after `rise` passes in a row.
/// - A failure resets the pass count; after `fall` failures in a row the backend is sick (a
///   never-checked one too), and after `evict_after` (if not 0) it is to be evicted.
/// - Passive detection may make a backend sick, but only active checks evict: a failed request
///   ([`Source::Request`]) counts only up to `fall`, and only a failed check evicts. Requests
///   fail for reasons a client can provoke; a check is lb's own, on its own schedule.
pub fn observe(
    health: &mut HealthRecord,
    spec: &HealthCheckSpec,
    result: Result<(), String>,
    source: Source,
) -> Verdict {
    let from = health.status;
    if source == Source::Check {
        health.last_check_ms = Some(now_ms());
    }
    match result {
        Ok(()) => {
            health.consecutive_failures = 0;
            health.consecutive_passes = health.consecutive_passes.saturating_add(1);
            health.last_error = None;
            if from == BackendStatus::Unknown || health.consecutive_passes >= spec.rise {
                health.status = BackendStatus::Healthy;
            }
        }
        Err(error) => {
            health.consecutive_passes = 0;
            let failures = health.consecutive_failures.saturating_add(1);
            health.consecutive_failures = match source {
                Source::Check => failures,
                Source::Request => failures.min(spec.fall.max(1)).max(health.consecutive_failures),
            };
            health.last_error = Some(error);
            if health.consecutive_failures >= spec.fall {
                health.status = BackendStatus::Sick;
            }
        }
    }
    let evict = source == Source::Check && spec.evict_after > 0 && health.consecutive_failures >= spec.evict_after;
    Verdict { from, to: health.status, evict }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// How long to wait before a backend's check number `round` (0 first).
///
/// - The first comes within the first interval, at most a second in: a restart resumes
///   checking at once, without every check landing in the same instant.
/// - The second comes at a random point of a whole interval, which spreads the checks of all
///   backends over the interval for good (otherwise, after a restart, all of them would keep
///   firing within the same second of every interval).
/// - The others come one interval apart.
pub fn check_delay(spec: &HealthCheckSpec, round: u64) -> Duration {
    let interval = spec.interval_ms.max(1);
    Duration::from_millis(match round {
        0 => fastrand::u64(..interval.min(1_000)),
        1 => fastrand::u64(1..=interval),
        _ => interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use BackendStatus::*;

    fn spec() -> HealthCheckSpec {
        HealthCheckSpec { fall: 3, rise: 2, evict_after: 5, ..HealthCheckSpec::default() }
    }

    /// Feeds results in order and returns the status after each.
    fn run(start: BackendStatus, results: &[bool]) -> Vec<BackendStatus> {
        let mut h = HealthRecord { status: start, ..HealthRecord::default() };
        results
            .iter()
            .map(|&ok| {
                let r = if ok { Ok(()) } else { Err("down".to_owned()) };
                observe(&mut h, &spec(), r, Source::Check).to
            })
            .collect()
    }

    #[test]
    fn fall_failures_make_a_healthy_backend_sick() {
        assert_eq!(
            run(Healthy, &[false, false, true, false, false, false]),
            [Healthy, Healthy, Healthy, Healthy, Healthy, Sick]
        );
    }

    #[test]
    fn rise_passes_bring_a_sick_backend_back() {
        assert_eq!(run(Sick, &[true, false, true, true]), [Sick, Sick, Sick, Healthy]);
    }

    #[test]
    fn unknown_becomes_healthy_at_once_and_sick_after_fall() {
        assert_eq!(run(Unknown, &[true]), [Healthy]);
        assert_eq!(run(Unknown, &[false, false, false]), [Unknown, Unknown, Sick]);
    }

    #[test]
    fn eviction_after_evict_after_failures_and_never_at_zero() {
        let mut h = HealthRecord { status: Healthy, ..HealthRecord::default() };
        let evictions: Vec<bool> =
            (0..6).map(|_| observe(&mut h, &spec(), Err("x".into()), Source::Check).evict).collect();
        assert_eq!(evictions, [false, false, false, false, true, true]);
        assert_eq!(h.last_error.as_deref(), Some("x"));
        let never = HealthCheckSpec { evict_after: 0, ..spec() };
        let mut h = HealthRecord::default();
        assert!((0..100).all(|_| !observe(&mut h, &never, Err("x".into()), Source::Check).evict));
    }

    #[test]
    fn failed_requests_make_a_backend_sick_but_never_evict_it() {
        let mut h = HealthRecord { status: Healthy, ..HealthRecord::default() };
        let verdicts: Vec<Verdict> =
            (0..100).map(|_| observe(&mut h, &spec(), Err("x".into()), Source::Request)).collect();
        assert!(verdicts.iter().all(|v| !v.evict), "a request evicted");
        assert_eq!(h.status, Sick, "fall failed requests make it sick");
        assert_eq!(h.consecutive_failures, spec().fall, "requests count up to fall only");
        assert_eq!(h.last_check_ms, None, "a failed request is not a check");
        // Failed checks take it on to eviction: evict_after failures in a row in all.
        let evictions: Vec<bool> =
            (0..2).map(|_| observe(&mut h, &spec(), Err("x".into()), Source::Check).evict).collect();
        assert_eq!(evictions, [false, true]);
        // A pass in between starts over.
        let mut h = HealthRecord { status: Healthy, ..HealthRecord::default() };
        for _ in 0..10 {
            observe(&mut h, &spec(), Err("x".into()), Source::Request);
        }
        observe(&mut h, &spec(), Ok(()), Source::Check);
        observe(&mut h, &spec(), Ok(()), Source::Check);
        assert_eq!(h.status, Healthy);
        assert!(!observe(&mut h, &spec(), Err("x".into()), Source::Check).evict);
    }

    #[test]
    fn checks_start_within_a_second_then_spread_over_the_interval() {
        let spec = HealthCheckSpec { interval_ms: 60_000, ..spec() };
        let first: Vec<Duration> = (0..100).map(|_| check_delay(&spec, 0)).collect();
        assert!(first.iter().all(|d| *d < Duration::from_secs(1)));
        assert!(first.iter().any(|d| *d != first[0]));
        let second: Vec<Duration> = (0..1000).map(|_| check_delay(&spec, 1)).collect();
        assert!(second.iter().all(|d| *d > Duration::ZERO && *d <= Duration::from_secs(60)));
        assert!(second.iter().any(|d| *d > Duration::from_secs(30)), "not spread over the interval");
        assert_eq!(check_delay(&spec, 7), Duration::from_secs(60));
    }
}
