//! Configuration of the distributed processes: command-line flags, each with a `CUTX_*`
//! environment variable and a default where one makes sense, validated before anything is
//! served (an invalid value stops the process with a message naming the variable).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use cutx_platform::secret::Secret;

fn secret(value: &str, var: &str) -> anyhow::Result<Secret> {
    if value.len() < 16 {
        bail!("{var} must be at least 16 characters");
    }
    Ok(Secret::new(value.to_string()))
}

/// `http://host:port` of another service.
pub fn service_url(value: &str, var: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(value).with_context(|| format!("{var}: {value:?} is not a URL like http://host:port"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || url.port_or_known_default().is_none() {
        bail!("{var}: {value:?} is not a URL like http://host:port");
    }
    Ok(value.trim_end_matches('/').to_string())
}

#[derive(Args, Clone, Debug)]
pub struct MeshArgs {
    /// Signs the tokens services call each other with; the same in every process.
    #[arg(long, env = "CUTX_MESH_SECRET", hide_env_values = true)]
    pub mesh_secret: String,
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
    pub session_secret: String,
}

impl SessionArgs {
    pub fn key(&self) -> anyhow::Result<cutx_platform::session::SessionKey> {
        Ok(cutx_platform::session::SessionKey::new(&secret(&self.session_secret, "CUTX_SESSION_SECRET")?))
    }
}

#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// `postgres://user:pass@host:port/db` (or `sqlite://file?mode=rwc`).
    #[arg(long, env = "CUTX_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Connections in this process's pool.
    #[arg(long, env = "CUTX_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
}

impl DatabaseArgs {
    pub async fn connect(&self) -> anyhow::Result<sea_orm::DatabaseConnection> {
        if !(self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
            || self.database_url.starts_with("sqlite:"))
        {
            bail!("CUTX_DATABASE_URL must start with postgres:// or sqlite:");
        }
        if self.db_max_connections == 0 {
            bail!("CUTX_DB_MAX_CONNECTIONS must be at least 1");
        }
        cutx_platform::db::connect(&self.database_url, self.db_max_connections)
            .await
            .context("connecting to CUTX_DATABASE_URL")
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueBackend {
    /// The durable SQL-table queue in the database (what `cutx dev` uses).
    Sql,
}

#[derive(Args, Clone, Debug)]
pub struct QueueArgs {
    #[arg(long, env = "CUTX_QUEUE", value_enum, default_value = "sql")]
    pub queue: QueueBackend,
    /// How long a taken message waits for its worker before it is delivered again.
    #[arg(long, env = "CUTX_QUEUE_VISIBILITY_SECS", default_value_t = 60)]
    pub queue_visibility_secs: u64,
}

impl QueueArgs {
    pub fn visibility(&self) -> anyhow::Result<Duration> {
        if self.queue_visibility_secs == 0 {
            bail!("CUTX_QUEUE_VISIBILITY_SECS must be at least 1");
        }
        Ok(Duration::from_secs(self.queue_visibility_secs))
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaBackend {
    /// Files in a folder every process shares, served by the gateway at signed URLs.
    Local,
}

#[derive(Args, Clone, Debug)]
pub struct MediaArgs {
    #[arg(long, env = "CUTX_MEDIA", value_enum, default_value = "local")]
    pub media: MediaBackend,
    /// The folder of the local media store.
    #[arg(long, env = "CUTX_MEDIA_DIR")]
    pub media_dir: Option<std::path::PathBuf>,
    /// Signs local media URLs; the gateway and jobs-svc share it.
    #[arg(long, env = "CUTX_MEDIA_SECRET", hide_env_values = true)]
    pub media_secret: Option<String>,
    /// Where users reach the gateway (local media URLs start with it).
    #[arg(long, env = "CUTX_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// `--listen` for one process.
pub fn listen_addr(value: &str) -> anyhow::Result<SocketAddr> {
    value.parse().with_context(|| format!("CUTX_LISTEN: {value:?} is not an address like 127.0.0.1:8080"))
}
