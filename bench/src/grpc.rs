//! gRPC clients of `JobService`: through the gateway with the user's session token, and
//! straight to jobs-svc with a mesh token minted as the gateway mints one (the gateway's name,
//! acting for the user).

use std::time::Duration;

use anyhow::{Context, bail};
use cutx_platform::ids::UserId;
use cutx_platform::mesh::{MeshKey, Peer};
use cutx_proto::pb::{self, job_service_client::JobServiceClient};
use tonic::transport::{Channel, Endpoint};

use crate::mesh::Mesh;
use crate::processes;

/// `n` clients of `url`, each on its own HTTP/2 connection.
pub(crate) async fn clients(url: &str, n: usize) -> anyhow::Result<Vec<JobServiceClient<Channel>>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let channel = Endpoint::from_shared(url.to_string())
            .with_context(|| format!("a gRPC endpoint for {url}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))?;
        clients.push(JobServiceClient::new(channel));
    }
    Ok(clients)
}

/// How a call says who it is from.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// A user's session, as clients call the gateway.
    Session(String),
    /// A mesh token naming the gateway and the user, as the gateway calls jobs-svc.
    Mesh(MeshKey, UserId),
}

impl Credentials {
    pub fn request<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        match self {
            Self::Session(token) => {
                let value = format!("Bearer {token}").parse().context("a session token is ASCII")?;
                request.metadata_mut().insert("authorization", value);
            }
            Self::Mesh(key, user) => key.attach(&mut request, Peer::Gateway, Some(*user)),
        }
        Ok(request)
    }
}

/// `GetJob` of `id`; an answer about another job is an error.
pub(crate) async fn get_job(
    client: &mut JobServiceClient<Channel>,
    credentials: &Credentials,
    id: &str,
) -> anyhow::Result<()> {
    let answer = client.get_job(credentials.request(pb::GetJobRequest { id: id.to_string() })?).await?;
    match answer.into_inner().job {
        Some(job) if job.id == id => Ok(()),
        other => bail!("GetJob {id} answered {other:?}"),
    }
}

/// Where jobs-svc takes calls. The distributed mesh names its address; `cutx dev` announces
/// only the gateway's port, but its services listen on loopback ports of their own, so jobs-svc
/// is the one among the process's listening ports (besides the gateway's) that answers `GetJob`
/// for the user's job.
pub(crate) async fn jobs_address(mesh: &Mesh, job_id: &str) -> anyhow::Result<String> {
    if let Some((_, url)) = mesh.server.services.iter().find(|(name, _)| name == "jobs") {
        return Ok(url.clone());
    }
    let (_, pid) = mesh.server.pids().into_iter().next().context("cutx dev has no process id")?;
    let credentials = Credentials::Mesh(mesh.key.clone(), mesh.user);
    let gateway = mesh.server.addr.port();
    let ports: Vec<u16> = processes::listening_ports(pid).into_iter().filter(|p| *p != gateway).collect();
    for port in &ports {
        let url = format!("http://127.0.0.1:{port}");
        let answered = tokio::time::timeout(Duration::from_secs(2), async {
            let mut client = clients(&url, 1).await?.pop().context("one client")?;
            get_job(&mut client, &credentials, job_id).await
        })
        .await;
        if let Ok(Ok(())) = answered {
            return Ok(url);
        }
    }
    bail!("none of cutx dev's loopback ports {ports:?} answered GetJob as jobs-svc")
}
