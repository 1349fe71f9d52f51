//! Process metrics, read from `/proc` at scrape time (the names Prometheus's own clients use):
//! nothing is counted between scrapes.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
/// `process_max_fds`; a value `/proc` does not give is left out.
#[derive(Debug)]
pub struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(seconds) = cpu_seconds() {
            let counter = ConstCounter::new(seconds);
            let e = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(e)?;
        }
        let dropped = ConstCounter::new(super::ACCESS_LOG_DROPPED.load(std::sync::atomic::Ordering::Relaxed));
        let e = encoder.encode_descriptor(
            "lb_access_log_dropped",
            "Access log lines dropped because the writer could not keep up",
            None,
            dropped.metric_type(),
        )?;
        dropped.encode(e)?;
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", resident_bytes()),
            ("process_open_fds", "Open file descriptors", open_fds()),
            ("process_max_fds", "Most file descriptors the process may open (soft limit)", max_fds()),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            let e = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(e)?;
        }
        Ok(())
    }
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, in parentheses, may hold spaces: fields are counted after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3 of stat(5); utime and stime are 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages * page as i64)
}

fn open_fds() -> Option<i64> {
    // Less the descriptor read_dir itself holds open.
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as i64 - 1)
}

fn max_fds() -> Option<i64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only into `limit`.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then(|| i64::try_from(limit.rlim_cur).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn proc_gives_every_value() {
        assert!(super::cpu_seconds().is_some());
        assert!(super::resident_bytes().unwrap() > 0);
        assert!(super::open_fds().unwrap() > 0);
    }
}
