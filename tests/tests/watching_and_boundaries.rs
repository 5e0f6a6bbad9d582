//! Streaming a job's progress, and the edges of the mesh: internal services are unreachable
//! from outside, and identity never comes from a header a client can set.

use cutx_proto::pb;
use cutx_proto::pb::job_service_client::JobServiceClient;
use cutx_tests::{Client, Server, Transport};

fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_job_streams_the_states_until_the_job_ends_over_grpc_and_rest() {
    let server = Server::spawn().await;
    let mut client = Client::new(&server, Transport::Grpc);
    client.sign_in("ada@example.com").await;
    let token = client.token().unwrap().to_string();
    let ad = pb::GenerateStaticAdRequest { prompt: "Olive wood serving boards".into(), ..Default::default() };
    let created = client.static_ad(ad).await.unwrap();

    let mut grpc = JobServiceClient::connect(server.base.clone()).await.unwrap();
    let mut stream =
        grpc.watch_job(bearer(pb::WatchJobRequest { id: created.job_id.clone() }, &token)).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(update) = stream.message().await.unwrap() {
        seen.push(update.job.unwrap().status());
    }
    assert_eq!(seen.last(), Some(&pb::JobStatus::Completed), "{seen:?}");

    let body = cutx_tests::http()
        .get(format!("{}/api/jobs/{}/watch", server.base, created.job_id))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.last().unwrap()["result"]["job"]["status"], "completed", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_services_cannot_be_called_through_the_gateway() {
    let server = Server::spawn().await;
    let mut client = Client::new(&server, Transport::Grpc);
    let user = client.sign_in("ada@example.com").await;
    let token = client.token().unwrap().to_string();
    let channel = tonic::transport::Endpoint::from_shared(server.base.clone()).unwrap().connect().await.unwrap();
    let mut billing = pb::billing_internal_service_client::BillingInternalServiceClient::new(channel.clone());
    let grant = pb::GrantRequest {
        user_id: user.id.clone(),
        amount: 1000,
        r#type: pb::LedgerEntryType::Bonus as i32,
        idempotency_key: "free-money".into(),
        reference: String::new(),
    };
    let refused = billing.grant(bearer(grant, &token)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
    let mut jobs = pb::job_internal_service_client::JobInternalServiceClient::new(channel);
    let refused = jobs.fail_job(bearer(pb::FailJobRequest::default(), &token)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
    let rest = cutx_tests::http()
        .post(format!("{}/cutx.v1.BillingInternalService/Grant", server.base))
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(rest.status().is_client_error(), "{}", rest.status());
    assert_eq!(client.balance().await.unwrap().balance, 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_mesh_token_header_does_not_make_a_caller() {
    let server = Server::spawn().await;
    let forged_key =
        cutx_platform::mesh::MeshKey::new(&cutx_platform::secret::Secret::new("guess-the-mesh-key".into()));
    let forged = forged_key.mint(&cutx_platform::mesh::MeshIdentity {
        service: cutx_platform::mesh::Peer::Gateway,
        user: Some(cutx_platform::ids::UserId::new()),
    });
    let answer = cutx_tests::http()
        .get(format!("{}/api/credits/balance", server.base))
        .header(cutx_platform::mesh::MESH_HEADER, forged)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
}
