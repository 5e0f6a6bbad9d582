//! Configuration of the distributed processes: command-line flags, each with a `CUTX_*`
//! environment variable and a default where one makes sense, validated before anything is
//! served (an invalid value stops the process with a message naming the variable).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use cutx_platform::secret::Secret;

fn secret(value: &Secret, var: &str) -> anyhow::Result<Secret> {
    if value.expose().len() < 16 {
        bail!("{var} must be at least 16 characters");
    }
    Ok(value.clone())
}

/// A count or duration that must be at least `min`: a smaller value is refused with the
/// variable's name, never raised in silence.
pub fn at_least<T: PartialOrd + std::fmt::Display>(value: T, min: T, var: &str) -> anyhow::Result<T> {
    if value < min {
        bail!("{var} must be at least {min} (it is {value})");
    }
    Ok(value)
}

/// `http://host:port` of another service.
pub fn service_url(value: &str, var: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(value).with_context(|| format!("{var}: {value:?} is not a URL like http://host:port"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || url.port_or_known_default().is_none() {
        bail!("{var}: {value:?} is not a URL like http://host:port");
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// Which browsers and host names the gateway answers (`cutx_gateway::browser_guard`).
#[derive(Args, Clone, Debug, Default)]
pub struct BrowserArgs {
    /// Browser origins allowed to call with credentials, comma-separated
    /// (`https://studio.example.com`). Distributed: only these (unset: same-origin only).
    /// `cutx dev`: loopback origins (any localhost port) and these.
    #[arg(long, env = "CUTX_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,
    /// Host names the gateway answers for, comma-separated (`dev.box.lan`); any other `Host` is
    /// refused with 421. `cutx dev` always allows the loopback names, its listening address and
    /// its public URL's host. Distributed: unset answers any host.
    #[arg(long, env = "CUTX_ALLOWED_HOSTS", default_value = "")]
    pub allowed_hosts: String,
}

impl BrowserArgs {
    /// The configured origins, each checked to be one (`scheme://host[:port]`, nothing more).
    pub fn origins(&self) -> anyhow::Result<Vec<http::HeaderValue>> {
        self.cors_origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|o| {
                let url = url::Url::parse(o).with_context(|| format!("CUTX_CORS_ORIGINS: {o:?} is not an origin"))?;
                if o == "null" || url.origin().ascii_serialization() != o.trim_end_matches('/') {
                    bail!("CUTX_CORS_ORIGINS: {o:?} is not an origin like https://studio.example.com");
                }
                Ok(http::HeaderValue::from_str(o.trim_end_matches('/'))?)
            })
            .collect()
    }

    /// The configured host names, each checked to be a host name or an IP address.
    pub fn hosts(&self) -> anyhow::Result<Vec<String>> {
        self.allowed_hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| match url::Host::parse(h) {
                Ok(_) => Ok(h.to_ascii_lowercase()),
                Err(_) => bail!("CUTX_ALLOWED_HOSTS: {h:?} is not a host name like dev.box.lan"),
            })
            .collect()
    }
}

/// Calls per user and per client address at the gateway (`cutx_gateway::rate_limit`).
#[derive(Args, Clone, Debug, Default)]
pub struct RateLimitArgs {
    /// Calls one signed-in user may make, like `600/min` (in bursts of as many); unset: no limit.
    #[arg(long, env = "CUTX_RATE_LIMIT_USER")]
    pub rate_limit_user: Option<String>,
    /// Calls one client address may make, like `1200/min`; unset: no limit.
    #[arg(long, env = "CUTX_RATE_LIMIT_ADDRESS")]
    pub rate_limit_address: Option<String>,
    /// Count loopback addresses against CUTX_RATE_LIMIT_ADDRESS too.
    #[arg(long, env = "CUTX_RATE_LIMIT_LOOPBACK")]
    pub rate_limit_loopback: bool,
}

impl RateLimitArgs {
    pub fn limits(&self) -> anyhow::Result<cutx_gateway::RateLimits> {
        let rate = |value: &Option<String>, var: &str| {
            value
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| cutx_gateway::Rate::parse(v).map_err(|e| anyhow::anyhow!("{var}: {v:?} is not {e}")))
                .transpose()
        };
        Ok(cutx_gateway::RateLimits {
            per_user: rate(&self.rate_limit_user, "CUTX_RATE_LIMIT_USER")?,
            per_address: rate(&self.rate_limit_address, "CUTX_RATE_LIMIT_ADDRESS")?,
            limit_loopback: self.rate_limit_loopback,
        })
    }
}

#[derive(Args, Clone, Debug)]
pub struct MeshArgs {
    /// Signs the tokens services call each other with; the same in every process.
    #[arg(long, env = "CUTX_MESH_SECRET", hide_env_values = true)]
    pub mesh_secret: Secret,
}

impl MeshArgs {
    pub fn key(&self) -> anyhow::Result<cutx_platform::mesh::MeshKey> {
        Ok(cutx_platform::mesh::MeshKey::new(&secret(&self.mesh_secret, "CUTX_MESH_SECRET")?))
    }
}

#[derive(Args, Clone, Debug)]
pub struct SessionArgs {
    /// Signs users' session tokens (JWT, HS256); the gateway and auth-svc share it.
    #[arg(long, env = "CUTX_SESSION_SECRET", hide_env_values = true)]
    pub session_secret: Secret,
    /// Earlier session secrets, comma-separated, still accepted for tokens they signed (a
    /// rotation: the new secret signs, the old ones verify until their tokens expire, 7 days).
    #[arg(long, env = "CUTX_SESSION_SECRET_PREVIOUS", hide_env_values = true)]
    pub session_secret_previous: Option<Secret>,
}

impl SessionArgs {
    pub fn key(&self) -> anyhow::Result<cutx_platform::session::SessionKey> {
        let current = secret(&self.session_secret, "CUTX_SESSION_SECRET")?;
        let previous = match &self.session_secret_previous {
            Some(list) => list
                .expose()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| secret(&Secret::new(s.to_string()), "CUTX_SESSION_SECRET_PREVIOUS"))
                .collect::<anyhow::Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok(cutx_platform::session::SessionKey::new(&current).with_previous(&previous))
    }
}

#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// `postgres://user:pass@host:port/db` (or `sqlite://file?mode=rwc`).
    /// A secret: the URL may carry the database password.
    #[arg(long, env = "CUTX_DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    /// Connections in this process's pool.
    #[arg(long, env = "CUTX_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
}

impl DatabaseArgs {
    pub async fn connect(&self) -> anyhow::Result<cutx_platform::db::Db> {
        let url = self.database_url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:")) {
            bail!("CUTX_DATABASE_URL must start with postgres:// or sqlite:");
        }
        if self.db_max_connections == 0 {
            bail!("CUTX_DB_MAX_CONNECTIONS must be at least 1");
        }
        cutx_platform::db::connect(url, self.db_max_connections).await.context("connecting to CUTX_DATABASE_URL")
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueBackend {
    /// The durable SQL-table queue in the database (what `cutx dev` uses).
    Sql,
    /// NATS JetStream: stream `CUTX_JOBS`, dead letters in `CUTX_JOBS_DLQ`.
    Nats,
}

#[derive(Args, Clone, Debug)]
pub struct QueueArgs {
    #[arg(long, env = "CUTX_QUEUE", value_enum, default_value = "nats")]
    pub queue: QueueBackend,
    /// A secret: the URL may carry a user and password.
    #[arg(long, env = "CUTX_NATS_URL", default_value = "nats://127.0.0.1:4222", hide_env_values = true)]
    pub nats_url: Secret,
    #[arg(long, env = "CUTX_NATS_STREAM", default_value = "CUTX_JOBS")]
    pub nats_stream: String,
    #[arg(long, env = "CUTX_NATS_DLQ_STREAM", default_value = "CUTX_JOBS_DLQ")]
    pub nats_dlq_stream: String,
    /// The durable pull consumer every pipeline process shares.
    #[arg(long, env = "CUTX_NATS_CONSUMER", default_value = "pipeline")]
    pub nats_consumer: String,
    /// How long a taken message waits for its worker before it is delivered again.
    #[arg(long, env = "CUTX_QUEUE_VISIBILITY_SECS", default_value_t = 60)]
    pub queue_visibility_secs: u64,
}

impl QueueArgs {
    pub fn visibility(&self) -> anyhow::Result<Duration> {
        // A pipeline leases a job for half of it, and a lease is at most an hour.
        if !(2..=7200).contains(&self.queue_visibility_secs) {
            bail!("CUTX_QUEUE_VISIBILITY_SECS must be 2 to 7200 (it is {})", self.queue_visibility_secs);
        }
        Ok(Duration::from_secs(self.queue_visibility_secs))
    }

    pub fn nats(&self) -> anyhow::Result<cutx_platform::queue::NatsQueueConfig> {
        let url = self.nats_url.expose();
        if !url.starts_with("nats://") && !url.starts_with("tls://") {
            bail!("CUTX_NATS_URL must look like nats://host:port");
        }
        Ok(cutx_platform::queue::NatsQueueConfig {
            url: self.nats_url.clone(),
            stream: self.nats_stream.clone(),
            dlq_stream: self.nats_dlq_stream.clone(),
            consumer: self.nats_consumer.clone(),
            ack_wait: self.visibility()?,
            ..Default::default()
        })
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaBackend {
    /// Files in a folder every process shares, served by the gateway at signed URLs.
    Local,
    /// An S3 bucket (AWS or S3-compatible), served by presigned URLs.
    S3,
}

#[derive(Args, Clone, Debug)]
pub struct MediaArgs {
    #[arg(long, env = "CUTX_MEDIA", value_enum, default_value = "s3")]
    pub media: MediaBackend,
    /// An S3-compatible server (`http://127.0.0.1:8333`); unset for AWS.
    #[arg(long, env = "CUTX_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The address presigned URLs carry, when users reach S3 elsewhere than the services do.
    #[arg(long, env = "CUTX_S3_PUBLIC_ENDPOINT")]
    pub s3_public_endpoint: Option<String>,
    #[arg(long, env = "CUTX_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    #[arg(long, env = "CUTX_S3_BUCKET", default_value = "cutx-media")]
    pub s3_bucket: String,
    #[arg(long, env = "CUTX_S3_ACCESS_KEY", hide_env_values = true)]
    pub s3_access_key: Option<Secret>,
    #[arg(long, env = "CUTX_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<Secret>,
    /// Path-style addressing (the bucket in the path), which S3-compatible servers need.
    #[arg(long, env = "CUTX_S3_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_path_style: bool,
    /// The folder of the local media store.
    #[arg(long, env = "CUTX_MEDIA_DIR")]
    pub media_dir: Option<std::path::PathBuf>,
    /// Signs local media URLs; the gateway and jobs-svc share it.
    #[arg(long, env = "CUTX_MEDIA_SECRET", hide_env_values = true)]
    pub media_secret: Option<Secret>,
    /// Where users reach the gateway (local media URLs start with it).
    #[arg(long, env = "CUTX_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl MediaArgs {
    pub fn s3(&self) -> anyhow::Result<cutx_platform::media::S3Config> {
        let endpoint = self.s3_endpoint.as_deref().map(|e| service_url(e, "CUTX_S3_ENDPOINT")).transpose()?;
        let public_endpoint =
            self.s3_public_endpoint.as_deref().map(|e| service_url(e, "CUTX_S3_PUBLIC_ENDPOINT")).transpose()?;
        Ok(cutx_platform::media::S3Config {
            endpoint,
            public_endpoint,
            region: self.s3_region.clone(),
            bucket: self.s3_bucket.clone(),
            access_key: self.s3_access_key.clone().context("CUTX_S3_ACCESS_KEY is required for s3 media")?,
            secret_key: self.s3_secret_key.clone().context("CUTX_S3_SECRET_KEY is required for s3 media")?,
            path_style: self.s3_path_style,
            part_size: cutx_platform::media::S3Config::DEFAULT_PART_SIZE,
        })
    }
}

/// `--listen` for one process.
pub fn listen_addr(value: &str) -> anyhow::Result<SocketAddr> {
    value.parse().with_context(|| format!("CUTX_LISTEN: {value:?} is not an address like 127.0.0.1:8080"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_origins_must_be_bare_origins_and_never_null() {
        let parse = |list: &str| BrowserArgs { cors_origins: list.into(), ..Default::default() }.origins();
        let ok = parse(" https://studio.example.com, http://localhost:5173/ ").unwrap();
        assert_eq!(ok, ["https://studio.example.com", "http://localhost:5173"]);
        assert!(parse("").unwrap().is_empty());
        for bad in ["null", "studio.example.com", "https://studio.example.com/app", "https://a.example?x=1"] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("CUTX_CORS_ORIGINS"), "{bad}: {error}");
        }
    }

    #[test]
    fn configured_host_names_must_be_host_names() {
        let parse = |list: &str| BrowserArgs { allowed_hosts: list.into(), ..Default::default() }.hosts();
        assert_eq!(parse("Dev.Box.Lan, 192.168.1.20").unwrap(), ["dev.box.lan", "192.168.1.20"]);
        for bad in ["dev box", "http://dev.box.lan", "a/b"] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("CUTX_ALLOWED_HOSTS"), "{bad}: {error}");
        }
    }
}
