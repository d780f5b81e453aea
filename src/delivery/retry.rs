//! When to try a delivery again: what an answer means, the retry schedule
//! (with jitter and `Retry-After`), and how long a schedule can take.

use crate::limits::MAX_QUEUE_DELAY_SECONDS;

/// The default retry schedule (`RETRY_SCHEDULE_SECONDS`): about 27 hours over
/// 8 retries (compare Svix's 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
pub const DEFAULT_RETRY_SCHEDULE: &str = "5,30,300,1800,7200,18000,36000,36000";

/// A comma-separated retry schedule (`RETRY_SCHEDULE_SECONDS`'s form).
pub fn parse_schedule(raw: &str) -> Result<Vec<u32>, String> {
    let list = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().map_err(|_| format!("{s:?} is not a number of seconds")))
        .collect::<Result<Vec<u64>, _>>()?;
    check_schedule(list)
}

/// A schedule's delays, each within the Queues maximum delay.
pub fn check_schedule(list: Vec<u64>) -> Result<Vec<u32>, String> {
    list.into_iter()
        .map(|d| {
            u32::try_from(d).ok().filter(|d| *d <= MAX_QUEUE_DELAY_SECONDS).ok_or_else(|| {
                format!("{d} is longer than the Queues maximum delay of {MAX_QUEUE_DELAY_SECONDS} s; split it into several entries")
            })
        })
        .collect()
}

/// What one attempt's result means (README, Delivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 408, 429, 5xx, timeout, connection error.
    Retry,
    /// 410 and other 4xx (and anything else unexpected, like a 3xx we do not follow).
    Permanent,
}

/// `status` is `None` when no answer came (timeout or connection error).
pub fn classify(status: Option<u16>) -> Outcome {
    match status {
        None => Outcome::Retry,
        Some(200..=299) => Outcome::Delivered,
        Some(408 | 429 | 500..=599) => Outcome::Retry,
        Some(_) => Outcome::Permanent,
    }
}

/// How far a retry delay is spread either way, so that a recovering origin
/// is not hit by every retry at once.
pub const JITTER_FRACTION: f64 = 0.2;

/// The longest the schedule can take from the first attempt to the last:
/// every delay at its most jittered, each within the Queues maximum.
pub fn schedule_span_seconds(schedule: &[u32]) -> u64 {
    schedule.iter().map(|d| ((f64::from(*d) * (1.0 + JITTER_FRACTION)).ceil() as u64).min(u64::from(MAX_QUEUE_DELAY_SECONDS))).sum()
}

/// The delay before retry number `attempt` (1-based: the first retry follows
/// attempt 1), or `None` when the schedule is exhausted.
///
/// `jitter` is a sample in `[0, 1)`: the delay is spread by ±`JITTER_FRACTION`. `Retry-After` is a
/// lower bound. The result never exceeds the Queues maximum delay.
pub fn next_delay(schedule: &[u32], attempt: u32, retry_after: Option<u32>, jitter: f64) -> Option<u32> {
    let base = *schedule.get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
    let spread = f64::from(base) * JITTER_FRACTION * (2.0 * jitter.clamp(0.0, 1.0) - 1.0);
    let jittered = (f64::from(base) + spread).round().max(0.0) as u32;
    Some(jittered.max(retry_after.unwrap_or(0)).min(MAX_QUEUE_DELAY_SECONDS))
}

/// `Retry-After` as delay-seconds or an HTTP date, in seconds from `now`.
pub fn parse_retry_after(value: &str, now: i64) -> Option<u32> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.min(u64::from(MAX_QUEUE_DELAY_SECONDS)) as u32);
    }
    let at = parse_http_date(v)?;
    Some(at.saturating_sub(now).clamp(0, i64::from(MAX_QUEUE_DELAY_SECONDS)) as u32)
}

/// IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7).
fn parse_http_date(v: &str) -> Option<i64> {
    let format = time::macros::format_description!("[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT");
    time::PrimitiveDateTime::parse(v, format).ok().map(|t| t.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_answer() {
        assert_eq!(classify(Some(200)), Outcome::Delivered);
        assert_eq!(classify(Some(204)), Outcome::Delivered);
        for s in [None, Some(408), Some(429), Some(500), Some(503), Some(599)] {
            assert_eq!(classify(s), Outcome::Retry, "{s:?}");
        }
        // Redirects are never followed: a 3xx is permanent (found in review).
        for s in [400, 401, 404, 410, 422, 300, 301, 302, 303, 304, 307, 308] {
            assert_eq!(classify(Some(s)), Outcome::Permanent, "{s}");
        }
    }

    #[test]
    fn schedule_jitter_retry_after_and_exhaustion() {
        let s = [10, 100, 90_000];
        assert_eq!(next_delay(&s, 0, None, 0.5), None);
        assert_eq!(next_delay(&s, 1, None, 0.5), Some(10));
        assert_eq!(next_delay(&s, 2, None, 0.0), Some(80));
        assert_eq!(next_delay(&s, 2, None, 0.999_999), Some(120));
        assert_eq!(next_delay(&s, 2, Some(600), 0.5), Some(600));
        assert_eq!(next_delay(&s, 3, None, 0.5), Some(MAX_QUEUE_DELAY_SECONDS));
        assert_eq!(next_delay(&s, 4, None, 0.5), None);
    }

    #[test]
    fn retry_after_in_both_forms() {
        let now = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(120));
        assert_eq!(parse_retry_after("999999", now), Some(MAX_QUEUE_DELAY_SECONDS));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now), Some(120));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(0));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:51:37 PST", now), None);
    }
}
