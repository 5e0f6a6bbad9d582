//! `GetJob` of one completed job three ways on the same CutX, one after the other: REST and
//! gRPC through the gateway, and gRPC straight to jobs-svc. The gateway rows carry their
//! throughput as a fraction of the direct one.

use std::sync::Arc;

use crate::drive::{Pace, drive};
use crate::grpc::{self, Credentials};
use crate::mesh::Mesh;
use crate::report::Report;
use crate::{Options, Scenario};

pub(crate) async fn get_job(mesh: &Mesh, options: &Options, pace: Pace) -> anyhow::Result<Vec<Report>> {
    let id = mesh.rest.copy(0).await?;
    let rest = mesh.rest.clone();
    let path = Arc::new(format!("/api/jobs/{id}"));
    let over_rest = drive(pace, options.duration, move |_| {
        let (rest, path) = (rest.clone(), path.clone());
        async move { rest.get(&path).await.map(drop) }
    });
    let mut reports =
        vec![mesh.measure(Scenario::GetJob, "rest", pace.label(), async { Ok(over_rest.await?.counted()) }).await?];

    let gateway = grpc::clients(&mesh.server.base, options.concurrency).await?;
    let session = Credentials::Session(mesh.token.clone());
    reports.push(grpc_row(mesh, options, pace, "grpc gateway", gateway, session, &id).await?);

    match grpc::jobs_address(mesh, &id).await {
        Ok(url) => {
            let direct = grpc::clients(&url, options.concurrency).await?;
            let credentials = Credentials::Mesh(mesh.key.clone(), mesh.user);
            let mut row = grpc_row(mesh, options, pace, "grpc direct", direct, credentials, &id).await?;
            if mesh.mode == cutx_tests::Mode::Dev {
                row.notes.push(format!("jobs-svc at {url}: an unannounced loopback port of cutx dev"));
            }
            let direct_rate = row.per_second();
            for gateway_row in &mut reports {
                if direct_rate > 0.0 {
                    gateway_row.notes.push(format!("{:.2}x direct", gateway_row.per_second() / direct_rate));
                }
            }
            reports.push(row);
        }
        Err(e) => {
            eprintln!("bench: GetJob straight to jobs-svc skipped: {e:#}");
            for gateway_row in &mut reports {
                gateway_row.notes.push(format!("no direct row: {e:#}"));
            }
        }
    }
    Ok(reports)
}

async fn grpc_row(
    mesh: &Mesh,
    options: &Options,
    pace: Pace,
    variant: &str,
    clients: Vec<cutx_proto::pb::job_service_client::JobServiceClient<tonic::transport::Channel>>,
    credentials: Credentials,
    id: &str,
) -> anyhow::Result<Report> {
    let (clients, credentials, id) = (Arc::new(clients), Arc::new(credentials), Arc::new(id.to_string()));
    let load = drive(pace, options.duration, move |n| {
        // Call n goes out on connection n mod count: a closed-loop caller keeps its own.
        let mut client = clients[usize::try_from(n).unwrap_or(0) % clients.len()].clone();
        let (credentials, id) = (credentials.clone(), id.clone());
        async move { grpc::get_job(&mut client, &credentials, &id).await }
    });
    mesh.measure(Scenario::GetJob, variant, pace.label(), async { Ok(load.await?.counted()) }).await
}
