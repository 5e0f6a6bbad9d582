//! A private nats-server for one distributed mesh: its own port and store, so tests run side by
//! side with the real stream names, and a test can stop and restart it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::server::free_port;

pub struct NatsServer {
    pub url: String,
    port: u16,
    monitor: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    pub async fn start(store: PathBuf) -> anyhow::Result<Self> {
        let (port, monitor) = (free_port(), free_port());
        let mut server = Self { url: format!("nats://127.0.0.1:{port}"), port, monitor, store, child: None };
        server.run().await?;
        Ok(server)
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let child = Command::new("nats-server")
            .args(["-js", "-sd"])
            .arg(&self.store)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-m", &self.monitor.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting nats-server (scripts/install-test-tools.sh installs it)")?;
        self.child = Some(child);
        let health = format!("http://127.0.0.1:{}/healthz?js-enabled-only=true", self.monitor);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if crate::get(&health).await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "nats-server did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the `CUTX_JOBS` stream's `pipeline` consumer has nothing waiting or in flight
    /// (from the monitoring endpoint).
    pub async fn consumer_idle(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/jsz?consumers=true", self.monitor);
        let Ok(response) = crate::get(&url).await else { return false };
        let Ok(jsz) = response.json::<serde_json::Value>().await else { return false };
        let consumers = jsz["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .filter(|s| s["name"] == "CUTX_JOBS")
            .flat_map(|s| s["consumer_detail"].as_array().cloned().unwrap_or_default())
            .collect::<Vec<_>>();
        !consumers.is_empty()
            && consumers
                .iter()
                .all(|c| c["num_pending"].as_u64() == Some(0) && c["num_ack_pending"].as_u64() == Some(0))
    }

    /// Stops the server (SIGKILL: as abrupt as a crash).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same port with the same store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.run().await
    }
}
