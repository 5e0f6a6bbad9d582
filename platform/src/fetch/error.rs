//! What a guarded fetch can fail with, and which failures are worth retrying.

use std::fmt;
use std::net::IpAddr;

use url::Url;

use super::address::refused_range;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url} is not allowed: {reason}")]
    Refused { url: String, reason: Refusal },
    #[error("the response is over {cap} bytes")]
    TooLarge { cap: u64 },
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("timed out")]
    Timeout,
    #[error("transport error")]
    Transport(#[source] reqwest::Error),
}

impl FetchError {
    /// Never worth retrying: `Refused`, `TooLarge`, `TooManyRedirects`, 4xx other than 408/429.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Refused { .. } | Self::TooLarge { .. } | Self::TooManyRedirects(_) => true,
            Self::Status { status, .. } => (400..500).contains(status) && *status != 408 && *status != 429,
            Self::Timeout | Self::Transport(_) => false,
        }
    }

    pub(super) fn refused(url: &Url, reason: Refusal) -> Self {
        Self::Refused { url: shown(url), reason }
    }

    /// Our resolver's refusal travels through reqwest as the source of a connect error.
    pub(super) fn from_reqwest(error: reqwest::Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(cause) = source {
            if let Some(refused) = cause.downcast_ref::<NameRefused>() {
                let url = error.url().map_or_else(|| refused.name.clone(), shown);
                return Self::Refused { url, reason: refused.reason.clone() };
            }
            source = cause.source();
        }
        if error.is_timeout() {
            return Self::Timeout;
        }
        Self::Transport(error)
    }
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    BadUrl,
    Scheme(String),
    /// Plain http to an origin that is not in `allowed_origins`.
    PlainHttp,
    Credentials,
    Address(IpAddr),
    /// The name resolved to no address at all.
    Unresolvable,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadUrl => f.write_str("not an absolute url"),
            Self::Scheme(scheme) => write!(f, "scheme {scheme} is not https"),
            Self::PlainHttp => f.write_str("plain http to an origin not allowed"),
            Self::Credentials => f.write_str("credentials in the url"),
            Self::Address(ip) => write!(f, "{} address {ip}", refused_range(*ip).unwrap_or("refused")),
            Self::Unresolvable => f.write_str("the name resolves to no address"),
        }
    }
}

/// Our resolver's answer for a name all of whose addresses were refused.
#[derive(Debug, thiserror::Error)]
#[error("{name} is not allowed: {reason}")]
pub(super) struct NameRefused {
    pub(super) name: String,
    pub(super) reason: Refusal,
}

/// A URL as errors show it: without its user name and password.
pub(super) fn shown(url: &Url) -> String {
    let mut url = url.clone();
    // Fails only for URLs that cannot hold credentials, which then have none to hide.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_lowercase_words() {
        let loopback = Refusal::Address("127.0.0.1".parse().unwrap());
        assert_eq!(loopback.to_string(), "loopback address 127.0.0.1");
        let metadata = Refusal::Address("169.254.169.254".parse().unwrap());
        assert_eq!(metadata.to_string(), "link-local address 169.254.169.254");
        assert_eq!(Refusal::Scheme("ftp".into()).to_string(), "scheme ftp is not https");
    }

    #[test]
    fn an_error_never_shows_the_password_of_its_url() {
        let url = Url::parse("https://user:secret@example.com/x").unwrap();
        let error = FetchError::refused(&url, Refusal::Credentials);
        assert_eq!(error.to_string(), "https://example.com/x is not allowed: credentials in the url");
    }

    #[test]
    fn only_client_errors_other_than_408_and_429_are_permanent_statuses() {
        let permanent = |status| FetchError::Status { url: "https://example.com/".into(), status }.is_permanent();
        assert!(permanent(400) && permanent(403) && permanent(404) && permanent(410) && permanent(499));
        assert!(!permanent(408) && !permanent(429) && !permanent(500) && !permanent(503) && !permanent(302));
    }
}
