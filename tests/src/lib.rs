//! The end-to-end harness: start CutX as a user would (the `cutx dev` binary on port 0, or the
//! same mesh in-process when a test plugs in its own provider), and talk to it over REST, gRPC
//! and gRPC-web with one client API, so every scenario runs over all three.

pub mod client;
pub mod fake_replicate;
pub mod fake_stripe;
pub mod grpc_web;
pub mod nats;
pub mod server;
pub mod smtp;

pub use client::{ApiError, Client, Transport};
pub use server::{Infra, Mode, Server};

use std::time::Duration;

/// A plain HTTP client for tests (reqwest needs the workspace's TLS provider installed first).
pub fn http() -> reqwest::Client {
    cutx_platform::fetch::install_tls_provider();
    reqwest::Client::new()
}

/// A GET with [`http`].
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http().get(url).send().await
}

/// Polls `check` until it returns `Some`, failing after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
