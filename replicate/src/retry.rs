//! How long to wait before trying a call again: what Replicate asked for in `Retry-After`
//! (capped, so one answer cannot park a worker for an hour), or else exponential backoff from
//! 200 ms with up to a quarter more of jitter, so throttled workers do not come back in step.

use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};

const FIRST_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The longest single wait, whether asked for or backed off.
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// The wait after attempt `failed` (1 for the first), given what Replicate asked for.
    pub fn wait(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(asked) => asked.min(self.max_wait),
            None => self.backoff(failed),
        }
    }

    fn backoff(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(20);
        let base = FIRST_BACKOFF.saturating_mul(1 << doublings).min(self.max_wait);
        let jitter = base.mul_f64(rand::rng().random_range(0.0..0.25));
        (base + jitter).min(self.max_wait)
    }
}

/// `Retry-After` in seconds (Replicate sends whole seconds; fractions are accepted). An HTTP
/// date, which Replicate does not send, is ignored and the backoff applies.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let seconds: f64 = value.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const POLICY: RetryPolicy = RetryPolicy { max_attempts: 6, max_wait: Duration::from_secs(60) };

    #[test]
    fn backoff_doubles_from_two_hundred_milliseconds_with_at_most_a_quarter_of_jitter() {
        for (failed, base_ms) in [(1, 200), (2, 400), (3, 800), (4, 1600), (5, 3200)] {
            let wait = POLICY.wait(failed, None);
            let base = Duration::from_millis(base_ms);
            assert!(wait >= base && wait < base.mul_f64(1.25), "attempt {failed}: {wait:?}");
        }
    }

    #[test]
    fn backoff_and_retry_after_are_capped() {
        let policy = RetryPolicy { max_attempts: 6, max_wait: Duration::from_secs(1) };
        assert_eq!(policy.wait(30, None), Duration::from_secs(1));
        assert_eq!(policy.wait(1, Some(Duration::from_secs(3600))), Duration::from_secs(1));
        assert_eq!(POLICY.wait(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let cases = [
            ("1", Some(Duration::from_secs(1))),
            (" 30 ", Some(Duration::from_secs(30))),
            ("0.5", Some(Duration::from_millis(500))),
            ("-1", None),
            ("soon", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
            assert_eq!(retry_after(&headers), expected, "{value:?}");
        }
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
