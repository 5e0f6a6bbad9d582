//! One CutX for one scenario: started on loopback in either mode with a fresh database and a
//! signed-in user who can pay for anything, measured around each load, stopped after.

use std::future::Future;

use anyhow::Context;
use cutx_platform::ids::UserId;
use cutx_platform::mesh::MeshKey;
use cutx_platform::secret::Secret;
use cutx_tests::{Client, Infra, Mode, Server, Transport};

use crate::Scenario;
use crate::drive::Outcome;
use crate::processes::{self, Reading, Watched};
use crate::report::{ProcessUse, Report};
use crate::rest::Rest;

/// A running CutX and the user the load acts as.
pub(crate) struct Mesh {
    pub mode: Mode,
    pub server: Server,
    pub rest: Rest,
    /// The user's session token (`authorization: Bearer`).
    pub token: String,
    pub user: UserId,
    /// The mesh key CutX was given (`CUTX_MESH_SECRET`), to call a service straight as the
    /// gateway does.
    pub key: MeshKey,
    watched: Vec<Watched>,
}

/// What every scenario's CutX is started with; `CUTX_MESH_SECRET` is added per start.
pub(crate) const ENV: [(&str, &str); 2] = [("CUTX_FREE_CREDITS", "1000000000"), ("CUTX_LOG", "error")];

impl Mesh {
    pub async fn start(mode: Mode, provider: crate::Provider) -> anyhow::Result<Self> {
        Self::start_with(mode, provider, &[]).await
    }

    /// Started with `extra` settings besides [`ENV`] (a Replicate to hand jobs to, ...).
    pub async fn start_with(mode: Mode, provider: crate::Provider, extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        // The bench picks the mesh key so it can mint tokens for jobs-svc; the harness applies a
        // caller's variables after its own, so this one is the key every process uses.
        let secret = Secret::random();
        let mut env = ENV.to_vec();
        env.push(("CUTX_MESH_SECRET", secret.expose()));
        if provider == crate::Provider::Instant {
            env.push(("CUTX_INSTANT_PROVIDER", "true"));
        }
        env.extend_from_slice(extra);
        let server = match mode {
            Mode::Dev => Server::spawn_with(&env).await,
            Mode::Distributed => {
                let infra = Infra::from_env()
                    .context("the distributed mode needs scripts/infra.sh's servers (source DIR/env)")?;
                Server::spawn_distributed_with(&infra, &env).await
            }
        };
        let mut client = Client::new(&server, Transport::Rest);
        let user = client.sign_in("bench@example.com").await;
        let user: UserId = user.id.parse().with_context(|| format!("the signed-in user's id {:?}", user.id))?;
        let token = client.token().context("signed in, yet no session token")?.to_string();
        let rest = Rest::new(&server.base, &token)?;
        let watched = processes::of(&server);
        Ok(Self { mode, server, rest, token, user, key: MeshKey::new(&secret), watched })
    }

    /// Runs `load` as one row of the table: what it did, the credits it took from the user, and
    /// what it cost each process.
    pub async fn measure(
        &self,
        scenario: Scenario,
        variant: &str,
        pace: String,
        load: impl Future<Output = anyhow::Result<Outcome>>,
    ) -> anyhow::Result<Report> {
        let balance = self.rest.balance().await.context("the balance before the load")?;
        let before = processes::read(&self.watched);
        let outcome = load.await?;
        let after = processes::read(&self.watched);
        let charged = balance - self.rest.balance().await.context("the balance after the load")?;
        Ok(Report {
            mode: self.mode,
            scenario,
            variant: variant.to_string(),
            pace,
            done: outcome.done,
            errors: outcome.errors,
            elapsed: outcome.elapsed,
            latency: outcome.latency,
            charged,
            processes: used(&before, &after),
            notes: outcome.notes,
        })
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// What each process used between two readings: CPU time, memory at the first, peak at the
/// second.
pub(crate) fn used(before: &[Reading], after: &[Reading]) -> Vec<ProcessUse> {
    after
        .iter()
        .map(|now| {
            let was = before.iter().find(|b| b.name == now.name);
            ProcessUse {
                name: now.name.clone(),
                cpu: now.cpu.saturating_sub(was.map(|b| b.cpu).unwrap_or_default()),
                rss_before_kib: was.and_then(|b| b.rss_kib),
                peak_rss_kib: now.peak_rss_kib,
            }
        })
        .collect()
}
