//! Go's duration grammar, the one spelling of durations in lb's flags and lbctl's: `500ms`,
//! `2s`, `1m30s`, `1.5h`, `300us`, bare `0`. Go's, because the tool lb replaces was written in
//! Go and its users' scripts spell durations that way.

use std::time::Duration;

/// Go's units in nanoseconds. `µs` is the micro sign (U+00B5), `μs` the Greek mu (U+03BC): Go
/// takes both.
const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The longest duration Go can hold, `i64::MAX` nanoseconds (about 292 years); [`parse`]
/// refuses longer ones as Go does.
pub const MAX: Duration = Duration::new(9_223_372_036, 854_775_807);

const MAX_NANOS: u64 = i64::MAX as u64;

/// Parses a duration as Go's `time.ParseDuration` does: a bare `0`, or one or more decimal
/// numbers, each with an optional fraction and a unit (`ns`, `us` or `µs`, `ms`, `s`, `m`,
/// `h`), as in `1m30s`, `1.5s`, `.5h`, `10ns`. Digits of a fraction finer than a nanosecond are
/// cut off the way Go cuts them, so a duration means the same to lb, lbctl and Go.
///
/// Two differences from Go, both refusals: no sign (`-5s`, `+5s`), since a `Duration` cannot
/// be negative and neither lb nor lbctl ever took one; and nothing over [`MAX`], where Go
/// refuses too, instead of wrapping.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (use e.g. 500ms, 10s, 1m)");
    let too_long = || format!("duration {text:?} is too long (at most {})", format(MAX));
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(invalid());
    }
    let mut rest = text;
    let mut nanos: u64 = 0;
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let (whole, has_whole, after) = leading_int(rest).ok_or_else(too_long)?;
        let (fraction, scale, has_fraction, after) = match after.strip_prefix('.') {
            Some(after) => leading_fraction(after),
            None => (0, 1.0, false, after),
        };
        if !has_whole && !has_fraction {
            return Err(invalid());
        }
        let unit_len = after.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let (_, unit) = UNITS.iter().find(|(name, _)| *name == unit).ok_or_else(invalid)?;
        let mut value = whole.checked_mul(*unit).ok_or_else(too_long)?;
        if fraction > 0 {
            // Go's own float64 step, so that cut-off digits round the same way. `fraction / scale`
            // is below 1, so the product is below one `unit` and fits.
            value = value.checked_add((fraction as f64 * (*unit as f64 / scale)) as u64).ok_or_else(too_long)?;
        }
        nanos = nanos.checked_add(value).filter(|&n| n <= MAX_NANOS).ok_or_else(too_long)?;
        rest = after;
    }
    Ok(Duration::from_nanos(nanos))
}

/// The leading digits of `s` as a number, whether there were any, and what follows them;
/// `None` if the number does not fit.
fn leading_int(s: &str) -> Option<(u64, bool, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut value: u64 = 0;
    for digit in s[..end].bytes() {
        value = value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
    }
    Some((value, end > 0, &s[end..]))
}

/// The leading digits of `s` as a fraction `value / scale`, whether there were any, and what
/// follows them. Like Go, digits past 63 bits of precision are skipped, not an error.
fn leading_fraction(s: &str) -> (u64, f64, bool, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (mut value, mut scale) = (0u64, 1.0f64);
    for digit in s[..end].bytes() {
        match value.checked_mul(10).map(|v| v + u64::from(digit - b'0')) {
            Some(next) if value <= MAX_NANOS / 10 && next <= 1 << 63 => {
                value = next;
                scale *= 10.0;
            }
            _ => break,
        }
    }
    (value, scale, end > 0, &s[end..])
}

/// `duration` the way people write it and [`parse`] reads it back, zero parts left out:
/// `0s`, `10ns`, `1.5µs`, `500ms`, `2s`, `1.5s`, `1m30s`, `1h`, `1h0.5s`.
pub fn format(duration: Duration) -> String {
    let (secs, nanos) = (duration.as_secs(), duration.subsec_nanos());
    if secs == 0 {
        return match nanos {
            0 => "0s".into(),
            n if n < 1_000 => format!("{n}ns"),
            n if n < 1_000_000 => decimal(u64::from(n / 1_000), n % 1_000, 3) + "µs",
            n => decimal(u64::from(n / 1_000_000), n % 1_000_000, 6) + "ms",
        };
    }
    let mut out = String::new();
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    if hours > 0 {
        out += &format!("{hours}h");
    }
    if minutes > 0 {
        out += &format!("{minutes}m");
    }
    if seconds > 0 || nanos > 0 {
        out += &decimal(seconds, nanos, 9);
        out.push('s');
    }
    out
}

/// `whole.fraction`, the fraction `digits` wide with its trailing zeros (and then the point)
/// left out.
fn decimal(whole: u64, fraction: u32, digits: usize) -> String {
    let fraction = format!("{fraction:0digits$}");
    match fraction.trim_end_matches('0') {
        "" => whole.to_string(),
        fraction => format!("{whole}.{fraction}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: u64 = 1;
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;

    /// Go's own `parseDurationTests` (time_test.go), less the signed ones.
    #[test]
    fn go_examples_parse_as_in_go() {
        for (text, nanos) in [
            ("0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600 * MS),
            ("5.s", 5 * S),
            (".5s", 500 * MS),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4 * MS),
            ("1.0040s", S + 4 * MS),
            ("100.00100s", 100 * S + MS),
            ("10ns", 10 * NS),
            ("11us", 11 * US),
            ("12µs", 12 * US),
            ("12μs", 12 * US),
            ("13ms", 13 * MS),
            ("14s", 14 * S),
            ("15m", 15 * M),
            ("16h", 16 * H),
            ("3h30m", 3 * H + 30 * M),
            ("10.5s4m", 4 * M + 10 * S + 500 * MS),
            ("1h2m3s4ms5us6ns", H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS),
            ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
            ("52763797000ns", 52763797000 * NS),
            // More than 9 digits after the point: Go's float64 rounds this one up to 20m.
            ("0.3333333333333333333h", 20 * M),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", MAX_NANOS),
            ("9223372036854775.807us", MAX_NANOS),
            ("9223372036s854ms775us807ns", MAX_NANOS),
            ("0.100000000000000000000h", 6 * M),
            ("0.830103483285477580700h", 49 * M + 48 * S + 372539827 * NS),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_nanos(nanos)), "{text:?}");
        }
    }

    /// Go's `parseDurationErrorTests` that a `&str` can hold, and its sign cases, refused here.
    #[test]
    fn go_errors_and_signs_are_refused() {
        for text in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{FFFD}",
            "\u{FFFD} hello \u{FFFD} world",
            "-5s",
            "+5s",
            "-0",
            "+0",
            "-2m3.4s",
            "1 s",
            "2S",
            "1ms500",
            " 2s",
            "2s ",
            "1e3ms",
            "1.5.5s",
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err, format!("invalid duration {text:?} (use e.g. 500ms, 10s, 1m)"));
        }
    }

    #[test]
    fn overflow_is_refused_not_wrapped() {
        for text in [
            "9223372036854775810ns",
            "9223372036854775808ns",
            "9223372036854776us",
            "3000000h",
            "9223372036854775.808us",
            "9223372036854ms775us808ns",
            // Its milliseconds overflow a u64: lb's old parser wrapped (or panicked) here.
            "18446744073709552s",
            "18446744073709551616ns",
            "99999999999999999999999999999999999999999h",
            "2562047h47m16.854775808s",
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("too long"), "{text:?}: {err}");
        }
        assert_eq!(parse("2562047h47m16.854775807s"), Ok(MAX));
    }

    #[test]
    fn durations_print_with_zero_parts_left_out() {
        for (nanos, text) in [
            (0, "0s"),
            (10 * NS, "10ns"),
            (300 * US, "300µs"),
            (1500 * NS, "1.5µs"),
            (500 * MS, "500ms"),
            (1500 * US, "1.5ms"),
            (S, "1s"),
            (1500 * MS, "1.5s"),
            (1050 * MS, "1.05s"),
            (M, "1m"),
            (90 * S, "1m30s"),
            (H, "1h"),
            (90 * M, "1h30m"),
            (H + 500 * MS, "1h0.5s"),
            (H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS, "1h2m3.004005006s"),
            (MAX_NANOS, "2562047h47m16.854775807s"),
        ] {
            let duration = Duration::from_nanos(nanos);
            assert_eq!(format(duration), text);
            assert_eq!(parse(text), Ok(duration), "{text:?}");
        }
    }
}
