//! Timestamps without a clock: conversions between Unix time and RFC 3339
//! (the `time` crate's calendar and its strict RFC 3339 parser and formatter).
//!
//! The core never reads the clock; the edge passes `now` in (see `lib.rs`).

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// RFC 3339 for a Unix time, when its year has four digits (0000 to 9999):
/// anything else is not a valid timestamp and is better left out.
pub fn to_rfc3339_checked(unix: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(unix).ok()?.format(&Rfc3339).ok()
}

/// `2024-03-15T23:32:22Z` for a Unix time in seconds (clamped to the years 0000 to 9999).
pub fn to_rfc3339(unix: i64) -> String {
    to_rfc3339_checked(unix.clamp(MIN_UNIX, MAX_UNIX)).unwrap_or_default()
}

/// `2024-03-15T23:32:22.140Z` for a Unix time in milliseconds (clamped as `to_rfc3339`).
pub fn to_rfc3339_millis(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000).clamp(MIN_UNIX, MAX_UNIX), ms.rem_euclid(1000));
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.replace_millisecond(millis as u16).ok())
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const MIN_UNIX: i64 = -62_167_219_200;
const MAX_UNIX: i64 = 253_402_300_799;

/// Parses RFC 3339 (`2024-12-30T10:00:00Z`, `…T10:00:00.123+02:00`), and the
/// same without an offset (`2024-12-30T10:00:00`, `2024-12-30 10:00:00.5`),
/// taken as UTC, as ISO 8601 local times are read by the providers' own SDKs, into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let local = format_description!("[year]-[month]-[day][first [T][t][ ]][hour]:[minute]:[second][optional [.[subsecond]]]");
    PrimitiveDateTime::parse(s, local).ok().map(|t| t.assume_utc().unix_timestamp())
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
        assert_eq!(to_rfc3339_millis(1_710_545_542_140), "2024-03-15T23:32:22.140Z");
        assert_eq!(to_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_time_without_an_offset_is_utc_with_either_separator_and_a_fraction() {
        for s in ["2024-12-30T10:00:00", "2024-12-30 10:00:00", "2024-12-30t10:00:00", "2024-12-30T10:00:00.608", "2024-12-30 10:00:00.5"] {
            assert_eq!(parse_rfc3339(s), Some(1_735_552_800), "{s}");
        }
        for s in ["2024-12-30T10:00", "2024-12-30", "2024-12-30T10:00:00.", "2024-13-30T10:00:00", "2024-12-30X10:00:00"] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }

    #[test]
    fn parses_offsets_fractions_and_spaces() {
        assert_eq!(parse_rfc3339("2024-12-30T10:00:00Z"), Some(1_735_552_800));
        assert_eq!(parse_rfc3339("2024-12-30T12:00:00.250+02:00"), Some(1_735_552_800));
        assert_eq!(parse_rfc3339("2024-12-30 10:00:00"), Some(1_735_552_800));
        assert_eq!(parse_rfc3339("2024-12-30t10:00:00z"), Some(1_735_552_800));
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
        let _ = to_rfc3339_millis(i64::MIN);
        // Found in review: a year outside 0000..9999 made an invalid CloudEvents `time`.
        assert_eq!(to_rfc3339_checked(-99_999_999_999), None);
        assert_eq!(to_rfc3339_checked(253_402_300_800), None, "10000-01-01");
        assert_eq!(to_rfc3339_checked(253_402_300_799).as_deref(), Some("9999-12-31T23:59:59Z"));
        assert_eq!(to_rfc3339_checked(-62_167_219_200).as_deref(), Some("0000-01-01T00:00:00Z"));
    }
}
