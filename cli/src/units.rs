//! Durations and byte sizes as people type them in flags (`2s`, `1m30s`, `64KiB`) and read them
//! in lbctl's sentences; the admin API itself speaks plain milliseconds and bytes.

/// Go's duration units, in nanoseconds, so Go scripts' `0.5s` or `2000us` keep working.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

const NANOS_PER_MILLI: u128 = 1_000_000;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// Parses a duration the way Go's `time.ParseDuration` does (`500ms`, `2s`, `1m30s`, `1.5h`,
/// bare `0`) into milliseconds. `None` for anything else, and also for negative durations and
/// for ones finer than a millisecond, which lb cannot represent.
pub fn parse_millis(text: &str) -> Option<u64> {
    match text {
        "0" => return Some(0),
        "" => return None,
        _ => {}
    }
    let mut rest = text;
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
                after.split_at(len)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let (_, unit_nanos) = UNITS.iter().find(|(name, _)| *name == unit)?;
        nanos = nanos.checked_add(component_nanos(whole, fraction, *unit_nanos)?)?;
        rest = after;
    }
    if !nanos.is_multiple_of(NANOS_PER_MILLI) {
        return None;
    }
    u64::try_from(nanos / NANOS_PER_MILLI).ok()
}

/// `whole.fraction` units in nanoseconds, `None` on overflow or if not a whole nanosecond.
fn component_nanos(whole: &str, fraction: &str, unit_nanos: u128) -> Option<u128> {
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut nanos = whole.checked_mul(unit_nanos)?;
    if !fraction.is_empty() {
        let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        let scaled = fraction.parse::<u128>().ok()?.checked_mul(unit_nanos)?;
        if scaled % scale != 0 {
            return None;
        }
        nanos = nanos.checked_add(scaled / scale)?;
    }
    Some(nanos)
}

/// Milliseconds the way [`parse_millis`] reads them back, zero parts left out: `500ms`, `2s`,
/// `1.5s`, `1m30s`, `1h`, `0s`.
pub fn format_millis(millis: u64) -> String {
    if millis < 1000 {
        return if millis == 0 { "0s".into() } else { format!("{millis}ms") };
    }
    let hours = millis / 3_600_000;
    let minutes = millis / 60_000 % 60;
    let seconds = millis / 1000 % 60;
    let rest = millis % 1000;
    let mut out = String::new();
    if hours > 0 {
        out += &format!("{hours}h");
    }
    if minutes > 0 {
        out += &format!("{minutes}m");
    }
    if rest > 0 {
        let fraction = format!("{rest:03}");
        out += &format!("{seconds}.{}s", fraction.trim_end_matches('0'));
    } else if seconds > 0 {
        out += &format!("{seconds}s");
    }
    out
}

/// Parses a byte count: plain bytes (`65536`) or whole `KiB`/`MiB` (`64KiB`, `1MiB`).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let (digits, multiplier) = if let Some(digits) = text.strip_suffix("KiB") {
        (digits, KIB)
    } else if let Some(digits) = text.strip_suffix("MiB") {
        (digits, MIB)
    } else {
        (text, 1)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// A byte count in the largest unit that divides it: `1MiB`, `64KiB`, `1000 bytes`.
pub fn format_bytes(bytes: u64) -> String {
    if bytes > 0 && bytes.is_multiple_of(MIB) {
        format!("{}MiB", bytes / MIB)
    } else if bytes > 0 && bytes.is_multiple_of(KIB) {
        format!("{}KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_become_milliseconds() {
        for (text, millis) in [
            ("500ms", 500),
            ("2s", 2_000),
            ("1m", 60_000),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("1h2m3s4ms", 3_723_004),
            ("30s1m", 90_000),
            ("1.5s", 1_500),
            (".5s", 500),
            ("1.s", 1_000),
            ("0.25m", 15_000),
            ("3000us", 3),
            ("1000000ns", 1),
            ("2000µs", 2),
            ("0s", 0),
            ("0", 0),
            ("0ms", 0),
            ("90000ms", 90_000),
        ] {
            assert_eq!(parse_millis(text), Some(millis), "{text:?}");
        }
    }

    #[test]
    fn garbage_negative_unitless_and_sub_millisecond_durations_are_refused() {
        for text in [
            "", "2x", "-1s", "+1s", "2", "s", "1.5.5s", ".s", "1 s", "2S", "1ms500", "0.5ms", "1ns", "1500us", "2s ",
            " 2s", "1e3ms",
        ] {
            assert_eq!(parse_millis(text), None, "{text:?}");
        }
    }

    #[test]
    fn huge_durations_are_refused_not_wrapped() {
        assert_eq!(parse_millis("99999999999999999999999999999999999999999h"), None);
        assert_eq!(parse_millis("9999999999999999999h"), None);
        assert_eq!(parse_millis(&format!("0.{}s", "1".repeat(60))), None);
    }

    #[test]
    fn milliseconds_print_go_style_and_parse_back() {
        for (millis, text) in [
            (0, "0s"),
            (500, "500ms"),
            (1_000, "1s"),
            (1_500, "1.5s"),
            (1_050, "1.05s"),
            (60_000, "1m"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
            (5_400_000, "1h30m"),
            (3_600_500, "1h0.5s"),
        ] {
            assert_eq!(format_millis(millis), text);
            assert_eq!(parse_millis(text), Some(millis), "{text:?}");
        }
    }

    #[test]
    fn sizes_are_bytes_or_kib_or_mib() {
        assert_eq!(parse_bytes("65536"), Some(65_536));
        assert_eq!(parse_bytes("0"), Some(0));
        assert_eq!(parse_bytes("64KiB"), Some(65_536));
        assert_eq!(parse_bytes("1MiB"), Some(1_048_576));
        for text in ["", "KiB", "64kib", "64KB", "64K", "1.5MiB", "-1", "+1", "64 KiB", "1GiB", "99999999999999MiB"] {
            assert_eq!(parse_bytes(text), None, "{text:?}");
        }
    }

    #[test]
    fn sizes_print_in_the_largest_whole_unit() {
        assert_eq!(format_bytes(65_536), "64KiB");
        assert_eq!(format_bytes(1_048_576), "1MiB");
        assert_eq!(format_bytes(1_536), "1536 bytes");
        assert_eq!(format_bytes(1_000), "1000 bytes");
        assert_eq!(format_bytes(0), "0 bytes");
    }
}
