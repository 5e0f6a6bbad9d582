//! Starting CutX for a test.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cutx::dev::{DevMesh, DevOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

enum Running {
    Process(Child),
    InProcess(Option<DevMesh>),
}

/// A running CutX with its own data folder, stopped when dropped.
pub struct Server {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub data_dir: PathBuf,
    running: Running,
    _dir: tempfile::TempDir,
}

/// The `cutx` binary next to this test's executable (`target/debug/deps/..`), or `CUTX_BIN`.
fn binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("CUTX_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    let debug = exe.parent().and_then(|deps| deps.parent()).context("locating the target folder")?;
    let bin = debug.join("cutx");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first (scripts/test.sh does)",
        bin.display()
    );
    Ok(bin)
}

impl Server {
    /// `cutx dev --listen 127.0.0.1:0` in a fresh data folder, as a user runs it.
    pub async fn spawn() -> Self {
        Self::try_spawn().await.expect("starting cutx dev")
    }

    async fn try_spawn() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data_dir = dir.path().join("data");
        let mut child = Command::new(binary()?)
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("CUTX_LOG", std::env::var("CUTX_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("cutx dev did not say where it listens within 60 s")??
            .context("cutx dev exited before listening")?;
        let addr: std::net::SocketAddr = first
            .strip_prefix("cutx dev listening on http://")
            .with_context(|| format!("unexpected first line {first:?}"))?
            .parse()?;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { base: format!("http://{addr}"), addr, data_dir, running: Running::Process(child), _dir: dir })
    }

    /// The same mesh in this process, with options a test changes (a provider of its own).
    pub async fn in_process(configure: impl FnOnce(&mut DevOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let mut options = DevOptions::new("127.0.0.1:0".parse().unwrap(), data_dir.clone());
        options.retry_base = Duration::from_millis(20);
        configure(&mut options);
        let mesh = DevMesh::start(options).await.expect("starting the mesh");
        let addr = mesh.addr();
        Self { base: format!("http://{addr}"), addr, data_dir, running: Running::InProcess(Some(mesh)), _dir: dir }
    }

    /// The in-process mesh's queue (dead letters); `None` for a spawned binary.
    pub fn queue(&self) -> Option<Arc<cutx_platform::queue::SqlQueue>> {
        match &self.running {
            Running::InProcess(Some(mesh)) => Some(mesh.queue()),
            _ => None,
        }
    }

    /// The media secret `cutx dev` made for itself, to forge URLs in tests.
    pub fn media_secret(&self) -> cutx_platform::secret::Secret {
        let raw = std::fs::read(self.data_dir.join("secrets.json")).expect("secrets.json");
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        cutx_platform::secret::Secret::new(v["media"].as_str().unwrap().to_string())
    }

    pub async fn stop(mut self) {
        match &mut self.running {
            Running::Process(child) => {
                let _ = child.kill().await;
            }
            Running::InProcess(mesh) => {
                if let Some(mesh) = mesh.take() {
                    mesh.stop().await.unwrap();
                }
            }
        }
    }
}
