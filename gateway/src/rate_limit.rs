//! Rate limits at the edge, per signed-in user and per client address (governor's GCRA, keyed).
//!
//! Each API call (REST under `/api/`, gRPC and gRPC-web) is counted against its user when it
//! carries a valid session, and against its client address always; loopback addresses only when
//! configured (a reverse proxy on the same host brings every user from one). A call over either
//! limit is answered 429 / `RESOURCE_EXHAUSTED` with how long to wait (`Retry-After`, and
//! `RetryInfo` in gRPC's details), and is not forwarded. Webhooks and media downloads are not
//! counted: their callers are Stripe, Replicate and `<img>` tags, limited elsewhere.
//!
//! The limits are each gateway's own, in memory; several gateways do not share one yet.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use cutx_platform::ids::UserId;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::identity::IdentityMinter;

/// The address a request came from, put on it by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// How many calls a user or an address may make: `count` per `per`, in bursts of up to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// `120/min`, `10/s` or `5000/h`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (count, unit) = text.trim().split_once('/').ok_or("a rate like 120/min")?;
        let count = count.trim().parse::<NonZeroU32>().map_err(|_| "a rate's count is a whole number above 0")?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err("a rate's unit is s, min or h".into()),
        };
        Ok(Self { count, per })
    }

    fn quota(self) -> Quota {
        let period = self.per / self.count.get();
        Quota::with_period(period.max(Duration::from_nanos(1))).expect("a period above zero").allow_burst(self.count)
    }
}

/// The limits a gateway enforces; none by default.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    pub per_user: Option<Rate>,
    pub per_address: Option<Rate>,
    /// Count loopback addresses too (off: a proxy on the same host, or `cutx dev`'s own machine).
    pub limit_loopback: bool,
}

#[derive(Clone)]
pub struct Limiter {
    users: Option<Arc<DefaultKeyedRateLimiter<UserId>>>,
    addresses: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    limit_loopback: bool,
    identity: IdentityMinter,
    checks: Arc<AtomicU64>,
}

impl Limiter {
    pub fn new(limits: &RateLimits, identity: IdentityMinter) -> Self {
        Self {
            users: limits.per_user.map(|r| Arc::new(RateLimiter::keyed(r.quota()))),
            addresses: limits.per_address.map(|r| Arc::new(RateLimiter::keyed(r.quota()))),
            limit_loopback: limits.limit_loopback,
            identity,
            checks: Arc::default(),
        }
    }

    fn is_off(&self) -> bool {
        self.users.is_none() && self.addresses.is_none()
    }

    /// How long the call must wait, if it is over a limit.
    fn over(&self, request: &Request) -> Option<Duration> {
        let clock = DefaultClock::default();
        // Forget keys that are back to a full burst, now and then, so memory stays bounded.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.users.iter().for_each(|l| l.retain_recent());
            self.addresses.iter().for_each(|l| l.retain_recent());
        }
        if let (Some(limiter), Some(ClientAddr(addr))) = (&self.addresses, request.extensions().get::<ClientAddr>())
            && (self.limit_loopback || !addr.ip().is_loopback())
            && let Err(not_until) = limiter.check_key(&addr.ip())
        {
            return Some(not_until.wait_time_from(clock.now()));
        }
        if let Some(limiter) = &self.users
            && let Some(user) = self.identity.user(request.headers())
            && let Err(not_until) = limiter.check_key(&user)
        {
            return Some(not_until.wait_time_from(clock.now()));
        }
        None
    }
}

fn counted(request: &Request) -> bool {
    crate::grpc::is_grpc(request) || request.uri().path().starts_with("/api/")
}

/// Middleware: answers a call over a limit with 429 / `RESOURCE_EXHAUSTED`.
pub async fn limit(
    State((limiter, pool)): State<(Limiter, prost_reflect::DescriptorPool)>,
    request: Request,
    next: Next,
) -> Response {
    if limiter.is_off() || !counted(&request) {
        return next.run(request).await;
    }
    let Some(wait) = limiter.over(&request) else { return next.run(request).await };
    let status = cutx_platform::error::rate_limited(
        format!("too many requests; try again in {} s", wait.as_secs().max(1)),
        wait,
        "RATE_LIMITED",
    );
    if crate::grpc::is_grpc_headers(request.headers()) {
        return crate::grpc::refusal(status, request.headers());
    }
    crate::status_http::error_response(&pool, &status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_with_their_unit() {
        let rate = |count, secs| Rate { count: NonZeroU32::new(count).unwrap(), per: Duration::from_secs(secs) };
        assert_eq!(Rate::parse("120/min"), Ok(rate(120, 60)));
        assert_eq!(Rate::parse(" 10 / s "), Ok(rate(10, 1)));
        assert_eq!(Rate::parse("5000/h"), Ok(rate(5000, 3600)));
        for bad in ["", "120", "0/min", "-1/s", "ten/s", "10/day", "10/"] {
            assert!(Rate::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_burst_of_the_rate_passes_and_the_next_call_waits_its_share() {
        let limiter = RateLimiter::keyed(Rate::parse("4/s").unwrap().quota());
        for _ in 0..4 {
            assert!(limiter.check_key(&1u8).is_ok());
        }
        let wait = limiter.check_key(&1u8).unwrap_err().wait_time_from(DefaultClock::default().now());
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(250), "{wait:?}");
        assert!(limiter.check_key(&2u8).is_ok(), "another key has its own burst");
    }
}
