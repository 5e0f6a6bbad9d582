//! The distributed mode under trouble: a worker killed mid-job, calls that skip the gateway.

use std::time::Duration;

use cutx_proto::pb;
use cutx_tests::{Client, Infra, Server, Transport};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

async fn rows(db: &sea_orm::DatabaseConnection, sql: String) -> Vec<sea_orm::QueryResult> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_worker_killed_in_the_middle_of_a_job_leaves_it_completed_once_and_charged_once() {
    let Some(infra) = Infra::from_env() else { return };
    // Jobs take 2 s; a claim lapses 3 s after its worker stops extending it.
    let env = [("CUTX_LOCAL_LATENCY_MS", "2000"), ("CUTX_QUEUE_VISIBILITY_SECS", "3")];
    let mut server = Server::spawn_distributed_with(&infra, &env).await;
    let mut client = Client::new(&server, Transport::Rest);
    client.sign_in("ada@example.com").await;
    let ad = pb::GenerateStaticAdRequest { prompt: "Merino wool beanies".into(), ..Default::default() };
    let created = client.static_ad(ad).await.unwrap();
    let db = server.database().await;
    let history = |db: sea_orm::DatabaseConnection, id: String| async move {
        rows(&db, format!("SELECT to_status, reason FROM job_transitions WHERE job_id = '{id}' ORDER BY id"))
            .await
            .into_iter()
            .map(|r| (r.try_get_by_index::<String>(0).unwrap(), r.try_get_by_index::<String>(1).unwrap()))
            .collect::<Vec<_>>()
    };
    let taker = cutx_tests::eventually("a worker to take the job", Duration::from_secs(20), || {
        let (db, id) = (db.clone(), created.job_id.clone());
        async move {
            history(db, id).await.into_iter().find_map(|(to, reason)| {
                (to == "processing").then(|| reason.trim_start_matches("taken by pipeline pid ").parse::<u32>().ok())?
            })
        }
    })
    .await;
    let victim =
        ["pipeline-1", "pipeline-2"].into_iter().find(|n| server.pid(n) == Some(taker)).expect("the taker is ours");
    server.kill(victim).await;

    let job = client.wait_for_job(&created.job_id).await;
    assert_eq!(job.status(), pb::JobStatus::Completed);
    assert_eq!(job.outputs.len(), 1);
    let moves = history(db.clone(), created.job_id.clone()).await;
    assert_eq!(moves.iter().filter(|(to, _)| to == "completed").count(), 1, "{moves:?}");
    assert!(moves.iter().any(|(_, reason)| reason.starts_with("retaken by")), "another worker took it over: {moves:?}");
    assert_eq!(client.balance().await.unwrap().balance, 22, "charged once, never refunded");
    let ledger = client.ledger().await.unwrap();
    assert_eq!(ledger.iter().filter(|e| e.r#type() == pb::LedgerEntryType::Deduction).count(), 1);
    assert_eq!(ledger.iter().filter(|e| e.r#type() == pb::LedgerEntryType::Refund).count(), 0);
    server.stop().await;
}

/// Calls every method of `service` straight at `addr` with an empty message and no mesh token.
async fn codes_without_a_mesh_token(addr: &str, service: &str) -> Vec<(String, tonic::Code)> {
    let pool = prost_reflect::DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
    let channel = tonic::transport::Endpoint::from_shared(addr.to_string()).unwrap().connect().await.unwrap();
    let mut codes = Vec::new();
    for method in pool.get_service_by_name(service).unwrap().methods() {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path = format!("/{service}/{}", method.name()).parse().unwrap();
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let code = match grpc.unary(tonic::Request::new(()), path, codec).await {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        codes.push((method.full_name().to_string(), code));
    }
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_internal_method_is_refused_by_the_gateway_and_by_its_service_without_a_mesh_token() {
    let Some(infra) = Infra::from_env() else { return };
    let server = Server::spawn_distributed(&infra).await;
    let internal = [
        ("jobs", "cutx.v1.JobInternalService"),
        ("billing", "cutx.v1.BillingInternalService"),
        ("pipeline-1", "cutx.v1.PipelineInternalService"),
        ("auth", "cutx.v1.AuthInternalService"),
    ];
    for (name, service) in internal {
        for (method, code) in codes_without_a_mesh_token(&server.base, service).await {
            assert_eq!(code, tonic::Code::Unimplemented, "the gateway let {method} through");
        }
        for (method, code) in codes_without_a_mesh_token(server.service(name), service).await {
            assert_eq!(code, tonic::Code::Unauthenticated, "{method} answered without a mesh token");
        }
    }
    // The public services, called around the gateway, trust no one either.
    let public = [
        ("auth", "cutx.v1.AuthService"),
        ("auth", "cutx.v1.DevMailboxService"),
        ("jobs", "cutx.v1.JobService"),
        ("jobs", "cutx.v1.ProjectService"),
        ("billing", "cutx.v1.BillingService"),
    ];
    for (name, service) in public {
        for (method, code) in codes_without_a_mesh_token(server.service(name), service).await {
            assert_eq!(code, tonic::Code::Unauthenticated, "{method} answered a call that skipped the gateway");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_pipeline_worker_finish_the_job_in_hand_before_it_exits() {
    let Some(infra) = Infra::from_env() else { return };
    let env = [("CUTX_LOCAL_LATENCY_MS", "1500")];
    let mut server = Server::spawn_distributed_with(&infra, &env).await;
    let mut client = Client::new(&server, Transport::Rest);
    client.sign_in("ada@example.com").await;
    let ad = pb::GenerateStaticAdRequest { prompt: "Linen napkins, set of six".into(), ..Default::default() };
    let created = client.static_ad(ad).await.unwrap();
    let db = server.database().await;
    let id = created.job_id.clone();
    let taker = cutx_tests::eventually("a worker to take the job", Duration::from_secs(20), || {
        let (db, id) = (db.clone(), id.clone());
        async move {
            let sql = format!("SELECT reason FROM job_transitions WHERE job_id = '{id}' AND to_status = 'processing'");
            rows(&db, sql).await.into_iter().find_map(|r| {
                r.try_get_by_index::<String>(0).ok()?.trim_start_matches("taken by pipeline pid ").parse::<u32>().ok()
            })
        }
    })
    .await;
    let name = ["pipeline-1", "pipeline-2"].into_iter().find(|n| server.pid(n) == Some(taker)).unwrap();
    let status = server.terminate(name).await;
    assert!(status.success(), "{name} exited with {status}");
    // It finished the job before exiting: completed by the worker that took it, not a successor.
    let job = client.get_job(&created.job_id).await.unwrap();
    assert_eq!(job.status(), pb::JobStatus::Completed);
    let notes =
        rows(&db, format!("SELECT reason FROM job_transitions WHERE job_id = '{id}' AND reason LIKE 'retaken%'")).await;
    assert!(notes.is_empty(), "another worker had to take it over");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cutx_dev_cleanly() {
    let mut server = Server::spawn().await;
    let mut client = Client::new(&server, Transport::Rest);
    client.sign_in("ada@example.com").await;
    let status = server.terminate_dev().await;
    assert!(status.success(), "cutx dev exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_lets_only_the_configured_browser_origins_call_with_credentials() {
    let Some(infra) = Infra::from_env() else { return };
    let server = Server::spawn_distributed_with(&infra, &[("CUTX_CORS_ORIGINS", "http://studio.test")]).await;
    let preflight = |origin: &'static str| {
        let url = format!("{}/api/credits/balance", server.base);
        async move {
            cutx_tests::http()
                .request(reqwest::Method::OPTIONS, url)
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .send()
                .await
                .unwrap()
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_string())
        }
    };
    assert_eq!(preflight("http://studio.test").await.as_deref(), Some("http://studio.test"));
    assert_eq!(preflight("http://evil.test").await, None);
    server.stop().await;
}
