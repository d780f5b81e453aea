//! Timestamps without a clock: conversions between Unix seconds and RFC 3339.
//!
//! The core never reads the clock; the edge passes `now` in (see `lib.rs`).

use serde_json::Value;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// RFC 3339 for a Unix time, when its year has four digits (0000 to 9999):
/// anything else is not a valid timestamp and is better left out.
pub fn to_rfc3339_checked(unix: i64) -> Option<String> {
    // 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
    (-62_167_219_200..=253_402_300_799).contains(&unix).then(|| to_rfc3339(unix))
}

/// `2024-03-15T23:32:22Z` for a Unix time in seconds.
pub fn to_rfc3339(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// Parses RFC 3339 (`2024-12-30T10:00:00Z`, `…T10:00:00.123+02:00`), and the
/// common `2024-12-30 10:00:00` (taken as UTC), into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 19 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let offset = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b.get(i + 3) == Some(&b':') => {
            let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// A provider's timestamp as Unix seconds: a number or numeric string of
/// seconds (or milliseconds, when it is too large to be seconds), or RFC 3339.
pub fn from_json(v: &Value) -> Option<i64> {
    let n = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(n) => n,
            Err(_) => return parse_rfc3339(s),
        },
        _ => return None,
    };
    // 10^11 seconds is the year 5138: anything larger is milliseconds.
    Some(if n.unsigned_abs() >= 100_000_000_000 { n / 1000 } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        for t in [0, 1_710_545_542, 951_782_400, 4_102_444_800, -86_400] {
            assert_eq!(parse_rfc3339(&to_rfc3339(t)), Some(t), "{t}");
        }
        assert_eq!(to_rfc3339(1_710_545_542), "2024-03-15T23:32:22Z");
        assert_eq!(to_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn parses_offsets_fractions_and_spaces() {
        assert_eq!(parse_rfc3339("2024-12-30T10:00:00Z"), Some(1_735_552_800));
        assert_eq!(parse_rfc3339("2024-12-30T12:00:00.250+02:00"), Some(1_735_552_800));
        assert_eq!(parse_rfc3339("2024-12-30 10:00:00"), Some(1_735_552_800));
        for bad in ["", "2024-13-01T00:00:00Z", "2024-12-30T10:00:00+0200", "2024-12-30T10:00:00Zx", "yesterday", "2024-12-30T1a:00:00Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_timestamps_in_every_shape() {
        use serde_json::json;
        assert_eq!(from_json(&json!(1_710_545_542)), Some(1_710_545_542));
        assert_eq!(from_json(&json!(1_710_545_542_123_i64)), Some(1_710_545_542));
        assert_eq!(from_json(&json!("1710545542")), Some(1_710_545_542));
        assert_eq!(from_json(&json!("2024-03-15T23:32:22Z")), Some(1_710_545_542));
        assert_eq!(from_json(&json!(1_710_545_542.9)), Some(1_710_545_542));
        assert_eq!(from_json(&json!(null)), None);
        assert_eq!(from_json(&json!("soon")), None);
    }

    #[test]
    fn extreme_timestamps_do_not_panic() {
        // Found by the property tests: `i64::MIN.abs()` overflowed.
        use serde_json::json;
        assert_eq!(from_json(&json!(i64::MIN)), Some(i64::MIN / 1000));
        assert_eq!(from_json(&json!(i64::MAX)), Some(i64::MAX / 1000));
        assert_eq!(from_json(&json!("-9223372036854775808")), Some(i64::MIN / 1000));
        let _ = to_rfc3339(i64::MAX / 1000);
        let _ = to_rfc3339(i64::MIN / 1000);
        // Found in review: a year outside 0000..9999 made an invalid CloudEvents `time`.
        assert_eq!(to_rfc3339_checked(-99_999_999_999), None);
        assert_eq!(to_rfc3339_checked(253_402_300_800), None, "10000-01-01");
        assert_eq!(to_rfc3339_checked(253_402_300_799).as_deref(), Some("9999-12-31T23:59:59Z"));
        assert_eq!(to_rfc3339_checked(-62_167_219_200).as_deref(), Some("0000-01-01T00:00:00Z"));
    }
}
