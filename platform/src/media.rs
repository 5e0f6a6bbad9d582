//! Where job outputs live, and the expiring URLs their owners fetch them from.
//!
//! Keys are relative paths of safe characters (`jobs/<job id>/0.png`); a key with `..`, a leading
//! `/` or anything outside `[A-Za-z0-9._/-]` is refused before it reaches a backend.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

mod local;
mod s3;
mod signer;

pub use local::LocalMediaStore;
pub use s3::{S3Config, S3MediaStore};
pub use signer::{SignedUrlError, UrlSigner};

/// What failed underneath a [`MediaError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("invalid media key {0:?}")]
    InvalidKey(String),
    /// The folder or S3 failed.
    #[error("media storage: {doing}")]
    Storage {
        doing: String,
        #[source]
        cause: Cause,
    },
    /// The store cannot work as configured, or answered what it must not.
    #[error("media storage: {0}")]
    Broken(String),
}

impl MediaError {
    pub(crate) fn during(doing: impl Into<String>, cause: impl Into<Cause>) -> Self {
        Self::Storage { doing: doing.into(), cause: cause.into() }
    }
}

/// A stored object's URL and when it stops working (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    pub url: String,
    pub expires_at_millis: i64,
}

#[async_trait]
pub trait MediaStore: Send + Sync + 'static {
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), MediaError>;

    /// A stored object's bytes (a job that starts from an earlier job's output reads it).
    async fn get(&self, key: &str) -> Result<Bytes, MediaError>;

    /// A URL anyone holding it can GET until it expires; give it only to the object's owner.
    async fn signed_url(&self, key: &str, ttl: Duration) -> Result<SignedUrl, MediaError>;
}

/// Checks a key is a safe relative path.
pub fn check_key(key: &str) -> Result<(), MediaError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && !key.starts_with('/')
        && key.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if ok { Ok(()) } else { Err(MediaError::InvalidKey(key.to_string())) }
}

/// The content type of a key, from its extension.
pub fn content_type_of(key: &str) -> &'static str {
    match key.rsplit('.').next().unwrap_or_default() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_relative_keys_are_accepted() {
        let table = [
            ("jobs/0192/0.png", true),
            ("a.b-c_d/e", true),
            ("", false),
            ("/etc/passwd", false),
            ("jobs/../secret", false),
            ("jobs/./x", false),
            ("jobs//x", false),
            ("jobs/x?y", false),
            ("jobs/x%2e%2e", false),
            ("jobs\\x", false),
            ("jobs/é.png", false),
        ];
        for (key, ok) in table {
            assert_eq!(check_key(key).is_ok(), ok, "{key:?}");
        }
    }
}
