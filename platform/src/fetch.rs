//! The one way a CutX service fetches a URL it does not control (a model provider's output file,
//! a product page) or calls a provider's API.
//!
//! What it promises:
//! - a URL that is, or resolves to, a non-public address ([`is_public`]) is never connected to,
//!   unless its origin (`host:port`) is in [`FetchPolicy::allowed_origins`]; a name is connected
//!   to only at the addresses that were checked, so a DNS answer that changes between the check
//!   and the connection (rebinding) changes nothing;
//! - only https goes out, plain http only to an allowed origin, and never with credentials in
//!   the URL;
//! - no redirect is followed without being checked like the first URL; [`GuardedClient::get`]
//!   follows at most [`FetchPolicy::max_redirects`], the rest of the client none;
//! - no body over [`FetchPolicy::max_body_bytes`] is read: the read stops as soon as it passes the
//!   cap, and nothing partial is returned;
//! - a request, body included, ends within [`FetchPolicy::timeout`];
//! - no error carries a response body or a URL's password.

use std::collections::HashSet;
use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Method, redirect};
use url::{Host, Url};

mod address;
mod error;
mod resolver;

pub use address::is_public;
pub use error::{FetchError, Refusal};

use resolver::GuardedResolver;

#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Origins (`host:port`) that may be reached over plain http and at any address.
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: u64,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_redirects: usize,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_body_bytes: 256 * 1024 * 1024,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            max_redirects: 5,
        }
    }
}

impl FetchPolicy {
    /// Also lets `url`'s origin through (an operator-configured API base).
    pub fn allow_origin_of(&mut self, url: &str) -> Result<(), FetchError> {
        let parsed = Url::parse(url).map_err(|_| bad_url(url))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::refused(&parsed, Refusal::Scheme(parsed.scheme().to_owned())));
        }
        let origin = origin_of(&parsed).ok_or_else(|| bad_url(url))?;
        self.allowed_origins.push(origin);
        Ok(())
    }
}

/// A response read whole.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Where the body came from, after redirects.
    pub url: Url,
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

/// The guarded HTTP client; cheap to clone.
#[derive(Debug, Clone)]
pub struct GuardedClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    policy: FetchPolicy,
    /// `allowed_origins`, normalised as [`origin_of`] writes them.
    allowed: HashSet<String>,
    /// For every origin not allowed: its resolver refuses non-public addresses.
    guarded: reqwest::Client,
    /// For allowed origins only: its resolver lets their names resolve to any address. Pools are
    /// per client, so a connection opened by this one never carries another origin's request.
    trusting: reqwest::Client,
}

impl GuardedClient {
    /// Fails with `Refused { reason: BadUrl }` for an `allowed_origins` entry that is not
    /// `host:port` with the port written out.
    pub fn new(policy: FetchPolicy) -> Result<Self, FetchError> {
        let mut allowed = HashSet::new();
        let mut trusted_names = HashSet::new();
        for origin in &policy.allowed_origins {
            let url = parse_origin(origin).ok_or_else(|| bad_url(origin))?;
            if let Some(Host::Domain(name)) = url.host() {
                trusted_names.insert(name.to_owned());
            }
            allowed.insert(origin_of(&url).ok_or_else(|| bad_url(origin))?);
        }
        let guarded = build_client(&policy, HashSet::new())?;
        let trusting = build_client(&policy, trusted_names)?;
        Ok(Self { inner: Arc::new(Inner { policy, allowed, guarded, trusting }) })
    }

    pub fn policy(&self) -> &FetchPolicy {
        &self.inner.policy
    }

    /// Checks `url` and starts a request to it (no redirects are ever followed by it).
    pub fn request(&self, method: Method, url: &str) -> Result<reqwest::RequestBuilder, FetchError> {
        let (url, client) = self.route(url)?;
        Ok(client.request(method, url))
    }

    /// Sends a request built by [`request`](Self::request), mapping reqwest errors to
    /// `Timeout`, `Refused` when our resolver refused the name, and `Transport` otherwise.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, FetchError> {
        // The builder may come from any reqwest client: check its URL again and send it with ours.
        let (_, request) = request.build_split();
        let request = request.map_err(FetchError::from_reqwest)?;
        let (_, client) = self.route(request.url().as_str())?;
        client.execute(request).await.map_err(FetchError::from_reqwest)
    }

    /// Reads a response body up to the cap.
    pub async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes, FetchError> {
        let cap = self.inner.policy.max_body_bytes;
        if response.content_length().is_some_and(|length| length > cap) {
            return Err(FetchError::TooLarge { cap });
        }
        // No capacity from Content-Length: a server could announce the cap and send nothing.
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(FetchError::from_reqwest)? {
            if body.len() as u64 + chunk.len() as u64 > cap {
                return Err(FetchError::TooLarge { cap });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// GETs a URL, following checked redirects; a non-2xx final answer is `FetchError::Status`.
    /// The whole of it, redirects included, ends within the policy's timeout.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        tokio::time::timeout(self.inner.policy.timeout, self.follow(url)).await.unwrap_or(Err(FetchError::Timeout))
    }

    async fn follow(&self, url: &str) -> Result<Fetched, FetchError> {
        let max_redirects = self.inner.policy.max_redirects;
        let mut current = url.to_owned();
        let mut redirects = 0;
        loop {
            let response = self.send(self.request(Method::GET, &current)?).await?;
            let status = response.status();
            if let Some(location) = redirect_location(&response) {
                if redirects == max_redirects {
                    return Err(FetchError::TooManyRedirects(max_redirects));
                }
                redirects += 1;
                current = location?.into();
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status { url: error::shown(response.url()), status: status.as_u16() });
            }
            let url = response.url().clone();
            let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = self.read_body(response).await?;
            return Ok(Fetched { url, content_type, bytes });
        }
    }

    fn route(&self, url: &str) -> Result<(Url, &reqwest::Client), FetchError> {
        let parsed = Url::parse(url).map_err(|_| bad_url(url))?;
        let refused = |reason| Err(FetchError::refused(&parsed, reason));
        let scheme = parsed.scheme();
        if scheme != "https" && scheme != "http" {
            return refused(Refusal::Scheme(scheme.to_owned()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return refused(Refusal::Credentials);
        }
        let allowed = origin_of(&parsed).is_some_and(|origin| self.inner.allowed.contains(&origin));
        if allowed {
            return Ok((parsed, &self.inner.trusting));
        }
        if scheme == "http" {
            return refused(Refusal::PlainHttp);
        }
        // reqwest connects to an IP literal without asking the resolver: judge it here.
        let literal = match parsed.host() {
            Some(Host::Ipv4(ip)) => Some(ip.into()),
            Some(Host::Ipv6(ip)) => Some(ip.into()),
            Some(Host::Domain(_)) => None,
            None => return refused(Refusal::BadUrl),
        };
        if let Some(ip) = literal.filter(|ip| !is_public(*ip)) {
            return refused(Refusal::Address(ip));
        }
        Ok((parsed, &self.inner.guarded))
    }
}

/// Where a redirect points, resolved against the URL that answered it; `None` if it is not one.
fn redirect_location(response: &reqwest::Response) -> Option<Result<Url, FetchError>> {
    let redirects = matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308);
    let location = response.headers().get(LOCATION).filter(|_| redirects)?;
    let shown = String::from_utf8_lossy(location.as_bytes());
    Some(location.to_str().ok().and_then(|l| response.url().join(l).ok()).ok_or_else(|| bad_url(&shown)))
}

fn build_client(policy: &FetchPolicy, trusted_names: HashSet<String>) -> Result<reqwest::Client, FetchError> {
    install_tls_provider();
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .no_proxy()
        .referer(false)
        .timeout(policy.timeout)
        .connect_timeout(policy.connect_timeout)
        .dns_resolver(Arc::new(GuardedResolver::new(Arc::new(trusted_names))))
        .build()
        .map_err(FetchError::Transport)
}

/// reqwest is built without a crypto provider (the default would build aws-lc-sys); rustls on
/// ring is the workspace's. Call before building any other reqwest client (tests do).
pub fn install_tls_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means a provider is installed already, which reqwest will use.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `host:port` with the port always written, IPv6 hosts in brackets.
fn origin_of(url: &Url) -> Option<String> {
    Some(format!("{}:{}", url.host_str()?, url.port_or_known_default()?))
}

/// An `allowed_origins` entry, `host:port` with an explicit port, as a URL.
fn parse_origin(origin: &str) -> Option<Url> {
    let (host, port) = origin.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    let url = Url::parse(&format!("http://{origin}/")).ok()?;
    let bare = url.path() == "/"
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    bare.then_some(url)
}

fn bad_url(url: &str) -> FetchError {
    FetchError::Refused { url: url.to_owned(), reason: Refusal::BadUrl }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::task::{Context, Poll};

    use http_body::Frame;

    use super::*;

    const KIB: u64 = 1024;

    /// An endless body that counts the bytes it was asked for.
    struct Endless {
        chunk: Bytes,
        pulled: Arc<AtomicU64>,
        left: Option<u64>,
    }

    impl http_body::Body for Endless {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if let Some(left) = self.left.as_mut() {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                *left -= 1;
            }
            self.pulled.fetch_add(self.chunk.len() as u64, Ordering::Relaxed);
            Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
        }
    }

    fn response(chunks: Option<u64>, pulled: &Arc<AtomicU64>) -> reqwest::Response {
        let body = Endless { chunk: Bytes::from(vec![7; KIB as usize]), pulled: pulled.clone(), left: chunks };
        http::Response::new(reqwest::Body::wrap(body)).into()
    }

    fn client_capped_at(max_body_bytes: u64) -> GuardedClient {
        GuardedClient::new(FetchPolicy { max_body_bytes, ..FetchPolicy::default() }).unwrap()
    }

    #[tokio::test]
    async fn an_endless_body_is_read_no_further_than_the_first_chunk_past_the_cap() {
        let pulled = Arc::new(AtomicU64::new(0));
        let error = client_capped_at(64 * KIB).read_body(response(None, &pulled)).await.unwrap_err();
        assert!(matches!(error, FetchError::TooLarge { cap } if cap == 64 * KIB), "{error:?}");
        assert_eq!(pulled.load(Ordering::Relaxed), 65 * KIB);
    }

    #[tokio::test]
    async fn a_body_of_exactly_the_cap_is_read_whole() {
        let pulled = Arc::new(AtomicU64::new(0));
        let bytes = client_capped_at(64 * KIB).read_body(response(Some(64), &pulled)).await.unwrap();
        assert_eq!(bytes.len() as u64, 64 * KIB);
    }

    #[test]
    fn an_api_base_lets_its_origin_through_with_its_port_written_out() {
        let mut policy = FetchPolicy::default();
        policy.allow_origin_of("http://127.0.0.1:8080/v1/predictions").unwrap();
        policy.allow_origin_of("https://API.example.com/v1").unwrap();
        policy.allow_origin_of("http://[::1]:9000").unwrap();
        assert_eq!(policy.allowed_origins, ["127.0.0.1:8080", "api.example.com:443", "[::1]:9000"]);
        let error = policy.allow_origin_of("ftp://example.com/").unwrap_err();
        assert!(matches!(error, FetchError::Refused { reason: Refusal::Scheme(_), .. }), "{error:?}");
    }

    #[test]
    fn an_allowed_origin_without_its_port_stops_the_client_from_being_built() {
        for origin in ["localhost", "localhost:", "localhost:http", "http://localhost:80", "a/b:80", "u@h:80"] {
            let policy = FetchPolicy { allowed_origins: vec![origin.into()], ..FetchPolicy::default() };
            let error = GuardedClient::new(policy).err().unwrap_or_else(|| panic!("{origin} was accepted"));
            assert!(matches!(error, FetchError::Refused { reason: Refusal::BadUrl, .. }), "{origin}: {error:?}");
        }
    }
}
