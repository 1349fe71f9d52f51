//! Durations and byte sizes as people type them in flags (`2s`, `1m30s`, `64KiB`) and read them
//! in lbctl's sentences; the admin API itself speaks plain milliseconds and bytes. The duration
//! grammar is lb's own ([`lb_api::duration`]); what is lbctl's is the step to whole
//! milliseconds.

use std::time::Duration;

use lb_api::duration;

const NANOS_PER_MILLI: u32 = 1_000_000;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// Parses a duration in Go's grammar ([`duration::parse`]: `500ms`, `2s`, `1m30s`, `1.5h`,
/// bare `0`) into milliseconds. `None` for anything else, and also for durations finer than a
/// millisecond, which lb cannot represent.
pub fn parse_millis(text: &str) -> Option<u64> {
    let parsed = duration::parse(text).ok()?;
    if !parsed.subsec_nanos().is_multiple_of(NANOS_PER_MILLI) {
        return None;
    }
    u64::try_from(parsed.as_millis()).ok()
}

/// Milliseconds the way [`parse_millis`] reads them back, zero parts left out: `500ms`, `2s`,
/// `1.5s`, `1m30s`, `1h`, `0s`.
pub fn format_millis(millis: u64) -> String {
    duration::format(Duration::from_millis(millis))
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
        // Over Go's limit (about 292 years), though its milliseconds would fit.
        assert_eq!(parse_millis("3000000h"), None);
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
