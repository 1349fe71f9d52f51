//! `lbctl stats`: lb's `/metrics` (Prometheus text 0.0.4) read back into one table per pool
//! and backend, once or redrawn every interval with `--watch`.
//!
//! The parser reads only what lb writes: samples `name{label="value",...} number`, comments
//! skipped, label values unescaped (`\"`, `\\`, `\n`). Anything else is an error, and a text
//! without `lb_build_info` is not lb's.

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use crate::{error::Error, table};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> &str {
        self.labels.iter().find(|(key, _)| key == name).map_or("", |(_, value)| value.as_str())
    }
}

/// Parses the text format; the error names the line.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(parse_line(line).map_err(|why| format!("line {}: {why}", number + 1))?);
    }
    Ok(samples)
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    let valid_name = |name: &str| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    };
    if !valid_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // A label name, `=`, a quoted value, then `,` or `}`.
            while chars.peek().is_some_and(|(_, c)| *c == ' ' || *c == ',') {
                chars.next();
            }
            match chars.peek() {
                Some((at, '}')) => {
                    rest = &after[at + 1..];
                    break;
                }
                None => return Err("unterminated labels".into()),
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if !valid_name(&key) {
                return Err(format!("invalid label name {key:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key} has no quoted value"));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('"') => value.push('"'),
                        Some('\\') => value.push('\\'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("invalid escape \\{} in label {key}", other.unwrap_or(' '))),
                    },
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated value of label {key}")),
                }
            }
            labels.push((key, value));
        }
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().map_err(|_| format!("invalid value {number:?}"))?,
    };
    // An optional timestamp, then nothing.
    if fields.next().is_some_and(|stamp| stamp.parse::<i64>().is_err()) || fields.next().is_some() {
        return Err("unexpected text after the value".into());
    }
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// Requests by code class, `1xx` to `5xx`.
type Classes = [u64; 5];

fn class_index(class: &str) -> Option<usize> {
    match class {
        "1xx" => Some(0),
        "2xx" => Some(1),
        "3xx" => Some(2),
        "4xx" => Some(3),
        "5xx" => Some(4),
        _ => None,
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct BackendStats {
    pub status: String,
    pub inflight: u64,
    pub weight: u64,
    pub requests: Classes,
    /// `(le, cumulative count)` of `lb_backend_response_duration_seconds`.
    pub buckets: Vec<(f64, f64)>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct PoolStats {
    pub modes: Vec<String>,
    pub requests: Classes,
    pub no_backend: u64,
    pub retries: u64,
    pub backends: BTreeMap<String, BackendStats>,
}

/// Every pool lb has, by pattern.
pub type Snapshot = BTreeMap<String, PoolStats>;

/// Counters as lb writes them: whole, non-negative numbers.
fn count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value as u64
    } else {
        0
    }
}

fn backend_entry<'a>(pool: &'a mut PoolStats, backend: &str) -> &'a mut BackendStats {
    pool.backends.entry(backend.to_owned()).or_default()
}

/// The pools and backends in `text`; an error if it is not lb's metrics.
pub fn snapshot(text: &str) -> Result<Snapshot, String> {
    let samples = parse(text)?;
    if !samples.iter().any(|sample| sample.name == "lb_build_info") {
        return Err("no lb_build_info series".into());
    }
    let mut pools = Snapshot::new();
    for sample in &samples {
        let pattern = sample.label("pool");
        // Requests lb answered before any pool count as pool="": not a pool.
        if pattern.is_empty() || !sample.name.starts_with("lb_") {
            continue;
        }
        let entry = pools.entry(pattern.to_owned()).or_default();
        let backend = sample.label("backend");
        match sample.name.as_str() {
            "lb_requests_total" => {
                let mode = sample.label("mode");
                if !entry.modes.iter().any(|known| known == mode) {
                    entry.modes.push(mode.to_owned());
                }
                if let Some(class) = class_index(sample.label("code_class")) {
                    entry.requests[class] += count(sample.value);
                }
            }
            "lb_no_backend_total" => entry.no_backend += count(sample.value),
            "lb_retries_total" => entry.retries += count(sample.value),
            _ if backend.is_empty() => {}
            "lb_backend_requests_total" => {
                if let Some(class) = class_index(sample.label("code_class")) {
                    backend_entry(entry, backend).requests[class] += count(sample.value);
                }
            }
            "lb_backend_status" if sample.value == 1.0 => {
                backend_entry(entry, backend).status = sample.label("status").into()
            }
            "lb_backend_inflight" => backend_entry(entry, backend).inflight = count(sample.value),
            "lb_backend_weight" => backend_entry(entry, backend).weight = count(sample.value),
            "lb_backend_response_duration_seconds_bucket" => {
                let le = match sample.label("le") {
                    "+Inf" => f64::INFINITY,
                    le => le.parse().map_err(|_| format!("invalid le {le:?}"))?,
                };
                backend_entry(entry, backend).buckets.push((le, sample.value));
            }
            _ => {}
        }
    }
    for pool in pools.values_mut() {
        for backend in pool.backends.values_mut() {
            backend.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
    Ok(pools)
}

/// The `q` quantile of cumulative `buckets` as Prometheus' `histogram_quantile` computes it:
/// linear inside the bucket the rank falls in, the highest finite bound if it falls in `+Inf`.
/// `None` without observations.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last().filter(|(le, _)| le.is_infinite())?.1;
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for (index, &(le, cumulative)) in buckets.iter().enumerate() {
        if cumulative >= rank {
            if le.is_infinite() {
                return Some(if index == 0 { 0.0 } else { buckets[index - 1].0 });
            }
            if index == 0 && le <= 0.0 {
                return Some(le);
            }
            let inside = cumulative - below;
            if inside <= 0.0 {
                return Some(le);
            }
            return Some(lower + (le - lower) * (rank - below) / inside);
        }
        lower = le;
        below = cumulative;
    }
    None
}

/// `0.42ms`, `12.5ms`, `1.20s`; `-` for none.
fn seconds(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(s) if s < 1.0 => format!("{:.2}ms", s * 1000.0),
        Some(s) => format!("{s:.2}s"),
    }
}

fn per_second(now: u64, before: Option<u64>, elapsed: Duration) -> String {
    match before {
        Some(before) if elapsed > Duration::ZERO => {
            format!("{:.1}", now.saturating_sub(before) as f64 / elapsed.as_secs_f64())
        }
        _ => "-".into(),
    }
}

/// The tables of `now` (only `pattern`'s pool when given). With `before` (the previous scrape
/// and the time since), a `Req/s` column and pool figure.
pub fn render(now: &Snapshot, pattern: Option<&str>, before: Option<(&Snapshot, Duration)>) -> String {
    let mut out = String::from("Totals since lb started\n");
    for (name, pool) in now.iter().filter(|(name, _)| pattern.is_none_or(|p| p == name.as_str())) {
        let total: u64 = pool.requests.iter().sum();
        let by_class: Vec<String> = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .iter()
            .zip(pool.requests)
            .filter(|(_, n)| *n > 0)
            .map(|(class, n)| format!("{class}={n}"))
            .collect();
        let modes = if pool.modes.is_empty() { "-".into() } else { pool.modes.join(",") };
        let previous = before.and_then(|(snapshot, elapsed)| snapshot.get(name).map(|p| (p, elapsed)));
        let mut line = format!(
            "\nPool {}  mode {}  requests {}{}  503 no backend {}  retries {}",
            table::escape(name),
            table::escape(&modes),
            total,
            if by_class.is_empty() { String::new() } else { format!(" ({})", by_class.join(" ")) },
            pool.no_backend,
            pool.retries,
        );
        if let Some((_, elapsed)) = before {
            let was = previous.map(|(p, _)| p.requests.iter().sum());
            line.push_str(&format!("  req/s {}", per_second(total, was, elapsed)));
        }
        out.push_str(&line);
        out.push('\n');
        let mut header: Vec<String> =
            ["Backend", "Status", "Inflight", "Weight", "Requests", "5xx", "p50", "p99"].map(String::from).into();
        if before.is_some() {
            header.push("Req/s".into());
        }
        let mut rows = vec![header];
        for (address, backend) in &pool.backends {
            let requests: u64 = backend.requests.iter().sum();
            let errors = backend.requests[4];
            let share =
                if requests == 0 { "-".into() } else { format!("{:.1}%", errors as f64 * 100.0 / requests as f64) };
            let status = if backend.status.is_empty() { "-".into() } else { backend.status.clone() };
            let mut row = vec![
                address.clone(),
                status,
                backend.inflight.to_string(),
                backend.weight.to_string(),
                requests.to_string(),
                share,
                seconds(quantile(0.5, &backend.buckets)),
                seconds(quantile(0.99, &backend.buckets)),
            ];
            if let Some((_, elapsed)) = before {
                let was = previous.and_then(|(p, _)| p.backends.get(address)).map(|b| b.requests.iter().sum());
                row.push(per_second(requests, was, elapsed));
            }
            rows.push(row);
        }
        out.push_str(&table::table(&rows));
    }
    out
}

fn not_lbs(why: String) -> Error {
    Error::Failed(format!("the answer is not lb's metrics ({why}): is --lb the admin API of an lb?"))
}

/// One scrape, as a snapshot; a pool filter that names no pool is an error.
fn scrape_snapshot(text: &str, pattern: Option<&str>) -> Result<Snapshot, Error> {
    let snapshot = snapshot(text).map_err(not_lbs)?;
    if let Some(pattern) = pattern {
        if !snapshot.contains_key(pattern) {
            return Err(Error::Failed(format!("lb has no pool {pattern:?}")));
        }
    }
    Ok(snapshot)
}

/// `lbctl stats`: one scrape, rendered.
pub async fn once(admin: &crate::admin::Admin, pattern: Option<&str>) -> Result<String, Error> {
    let snapshot = scrape_snapshot(&admin.metrics().await?, pattern)?;
    Ok(render(&snapshot, pattern, None))
}

/// `lbctl stats --watch`: a frame every `interval` (at most `count` of them) until Ctrl-C.
/// Only the previous scrape is kept. On a terminal each frame replaces the last; otherwise
/// frames follow each other, separated by a blank line.
pub async fn watch(
    admin: &crate::admin::Admin,
    pattern: Option<&str>,
    interval: Duration,
    count: Option<u64>,
) -> Result<String, Error> {
    let terminal = std::io::stdout().is_terminal();
    let mut previous: Option<(Snapshot, Instant)> = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut frames = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        // Ctrl-C ends the wait and the scrape alike, not only the wait.
        let text = tokio::select! {
            _ = &mut ctrl_c => return Ok(String::new()),
            text = async {
                ticks.tick().await;
                admin.metrics().await
            } => text?,
        };
        let now = Instant::now();
        let snapshot = scrape_snapshot(&text, pattern)?;
        // The first frame has nothing to compare with: its rates are `-`, its columns the same.
        let nothing = Snapshot::new();
        let before = match &previous {
            Some((snapshot, at)) => (snapshot, now.duration_since(*at)),
            None => (&nothing, Duration::ZERO),
        };
        let frame = render(&snapshot, pattern, Some(before));
        let mut out = std::io::stdout().lock();
        let head = if terminal {
            "\x1b[H\x1b[2J"
        } else if frames > 0 {
            "\n"
        } else {
            ""
        };
        out.write_all(head.as_bytes())
            .and_then(|()| out.write_all(frame.as_bytes()))
            .and_then(|()| out.flush())
            .map_err(|err| Error::Failed(format!("cannot write output: {err}")))?;
        previous = Some((snapshot, now));
        frames += 1;
        if count.is_some_and(|count| frames >= count) {
            return Ok(String::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_unescaped_and_hostile_ones_refused() {
        let samples = parse(
            "# HELP x y\n# TYPE lb_backend_weight gauge\n\
             lb_backend_weight{pool=\"/a\\\"b\\\\c\\nd,}=\",backend=\"1.2.3.4:5\"} 3\n",
        )
        .unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].label("pool"), "/a\"b\\c\nd,}=");
        assert_eq!(samples[0].label("backend"), "1.2.3.4:5");
        assert_eq!(samples[0].value, 3.0);
        for bad in [
            "lb_x{pool=\"/\" 1",
            "lb_x{pool=\"/} 1",
            "lb_x{pool=/} 1",
            "lb_x{pool=\"\\t\"} 1",
            "lb_x{} one",
            "lb_x",
            "<html>",
            "lb_x 1 2 3",
            "lb_x{pool=\"a\\",
            "lb_x{=\"a\"} 1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse("lb_x{le=\"+Inf\"} +Inf 1700000000000").unwrap()[0].value, f64::INFINITY);
    }

    #[test]
    fn quantiles_interpolate_like_histogram_quantile() {
        let buckets = [(0.001, 0.0), (0.002, 10.0), (0.004, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(quantile(0.5, &buckets), Some(0.002));
        assert!((quantile(0.75, &buckets).unwrap() - 0.003).abs() < 1e-12);
        assert!((quantile(0.25, &buckets).unwrap() - 0.0015).abs() < 1e-12);
        // Falling in +Inf gives the highest finite bound.
        assert_eq!(quantile(0.99, &[(0.1, 1.0), (f64::INFINITY, 10.0)]), Some(0.1));
        assert_eq!(quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(quantile(0.5, &[]), None);
        assert_eq!(quantile(0.5, &[(0.1, 3.0)]), None);
    }

    const METRICS: &str = "\
lb_build_info{version=\"0.1.0\"} 1
lb_requests_total{pool=\"\",mode=\"\",code_class=\"4xx\"} 7
lb_requests_total{pool=\"/\",mode=\"proxy\",code_class=\"2xx\"} 3
lb_requests_total{pool=\"/\",mode=\"proxy\",code_class=\"5xx\"} 1
lb_no_backend_total{pool=\"/\"} 0
lb_retries_total{pool=\"/\",reason=\"connect\"} 2
lb_backend_requests_total{pool=\"/\",backend=\"127.0.0.1:1\",code_class=\"2xx\"} 3
lb_backend_requests_total{pool=\"/\",backend=\"127.0.0.1:1\",code_class=\"5xx\"} 1
lb_backend_status{pool=\"/\",backend=\"127.0.0.1:1\",status=\"BS_HEALTHY\"} 1
lb_backend_status{pool=\"/\",backend=\"127.0.0.1:1\",status=\"BS_SICK\"} 0
lb_backend_inflight{pool=\"/\",backend=\"127.0.0.1:1\"} 0
lb_backend_weight{pool=\"/\",backend=\"127.0.0.1:1\"} 2
lb_backend_response_duration_seconds_bucket{pool=\"/\",backend=\"127.0.0.1:1\",le=\"0.001\"} 2
lb_backend_response_duration_seconds_bucket{pool=\"/\",backend=\"127.0.0.1:1\",le=\"0.002\"} 4
lb_backend_response_duration_seconds_bucket{pool=\"/\",backend=\"127.0.0.1:1\",le=\"+Inf\"} 4
lb_requests_total{pool=\"/r\\n\",mode=\"redirect\",code_class=\"3xx\"} 0
";

    #[test]
    fn tables_show_each_pool_and_backend() {
        let snapshot = snapshot(METRICS).unwrap();
        assert_eq!(
            render(&snapshot, None, None),
            "Totals since lb started\n\
             \nPool /  mode proxy  requests 4 (2xx=3 5xx=1)  503 no backend 0  retries 2\n\
             Backend      Status      Inflight  Weight  Requests  5xx    p50     p99\n\
             127.0.0.1:1  BS_HEALTHY  0         2       4         25.0%  1.00ms  1.98ms\n\
             \nPool /r\\n  mode redirect  requests 0  503 no backend 0  retries 0\n\
             Backend  Status  Inflight  Weight  Requests  5xx  p50  p99\n"
        );
        let only = render(&snapshot, Some("/r\n"), Some((&snapshot, Duration::from_secs(1))));
        assert_eq!(
            only,
            "Totals since lb started\n\
             \nPool /r\\n  mode redirect  requests 0  503 no backend 0  retries 0  req/s 0.0\n\
             Backend  Status  Inflight  Weight  Requests  5xx  p50  p99  Req/s\n"
        );
    }

    #[test]
    fn rates_come_from_the_difference_between_scrapes() {
        let before = snapshot(METRICS).unwrap();
        let now = snapshot(&METRICS.replace("code_class=\"2xx\"} 3", "code_class=\"2xx\"} 13")).unwrap();
        let frame = render(&now, Some("/"), Some((&before, Duration::from_secs(2))));
        assert!(frame.contains("requests 14 (2xx=13 5xx=1)  503 no backend 0  retries 2  req/s 5.0\n"), "{frame}");
        assert!(frame.lines().last().unwrap().ends_with("  5.0"), "{frame}");
    }

    #[test]
    fn text_that_is_not_lbs_metrics_is_refused() {
        assert!(snapshot("<html><body>hello</body></html>").is_err());
        assert!(snapshot("up 1\n").unwrap_err().contains("lb_build_info"));
        assert!(snapshot("").is_err());
    }
}
