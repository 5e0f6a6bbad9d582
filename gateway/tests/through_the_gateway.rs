//! The gateway in front of a tiny BillingService, both on port 0, called as clients would:
//! REST with reqwest, gRPC with the generated client, gRPC-web as raw HTTP/1.1 frames.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use cutx_gateway::{Gateway, GatewayConfig};
use cutx_platform::credits::Credits;
use cutx_platform::ids::UserId;
use cutx_platform::mesh::{MESH_HEADER, MeshIdentity, MeshKey};
use cutx_platform::secret::Secret;
use cutx_platform::session::SessionKey;
use cutx_proto::pb;
use cutx_proto::pb::billing_service_client::BillingServiceClient;
use cutx_proto::pb::billing_service_server::{BillingService, BillingServiceServer};
use cutx_proto::pb::job_service_server::{JobService, JobServiceServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

/// A page size that makes the fake answer "insufficient credits", to see the 402.
const BROKE_PAGE_SIZE: i32 = 13;

#[derive(Clone)]
struct FakeBilling {
    mesh: MeshKey,
    seen: Arc<Mutex<Vec<MeshIdentity>>>,
    /// The `x-request-id` of each GetBalance call.
    request_ids: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl BillingService for FakeBilling {
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let identity = self.mesh.identify(request.metadata())?;
        self.seen.lock().unwrap().push(identity);
        let id = request.metadata().get("x-request-id").map(|v| v.to_str().unwrap().to_string());
        self.request_ids.lock().unwrap().push(id.unwrap_or_default());
        self.mesh.caller(&request)?;
        let mut response =
            Response::new(pb::GetBalanceResponse { balance: 42, lifetime_purchased: 0, lifetime_used: 0 });
        response.metadata_mut().insert("set-cookie", "seen=1; Path=/".parse().unwrap());
        response.metadata_mut().insert("x-internal-detail", "secret".parse().unwrap());
        Ok(response)
    }

    async fn list_ledger(
        &self,
        request: Request<pb::ListLedgerRequest>,
    ) -> Result<Response<pb::ListLedgerResponse>, Status> {
        self.mesh.caller(&request)?;
        if request.get_ref().page_size == BROKE_PAGE_SIZE {
            return Err(cutx_platform::error::insufficient_credits(Credits::from_u32(3), Credits::from_u32(1)));
        }
        Ok(Response::new(pb::ListLedgerResponse {
            entries: vec![],
            next_page_token: format!("size-{}", request.get_ref().page_size),
        }))
    }
    // The gateway's tests need only the two calls above; the rest are billing-svc's own.
    async fn get_catalog(&self, _: Request<pb::GetCatalogRequest>) -> Result<Response<pb::GetCatalogResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn create_checkout_session(
        &self,
        _: Request<pb::CreateCheckoutSessionRequest>,
    ) -> Result<Response<pb::CreateCheckoutSessionResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn create_portal_session(
        &self,
        _: Request<pb::CreatePortalSessionRequest>,
    ) -> Result<Response<pb::CreatePortalSessionResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn get_subscription(
        &self,
        _: Request<pb::GetSubscriptionRequest>,
    ) -> Result<Response<pb::GetSubscriptionResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

/// Serves GetJob and WatchJob (two states, then NOT_FOUND, to see the NDJSON error line).
struct FakeJobs;

fn job(id: &str, status: pb::JobStatus) -> pb::Job {
    pb::Job {
        id: id.into(),
        status: status as i32,
        created_at: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
        ..Default::default()
    }
}

/// The job id the fake watch refuses.
const MISSING_JOB: &str = "00000000-0000-4000-8000-00000000dead";

#[tonic::async_trait]
impl JobService for FakeJobs {
    async fn generate_copy(
        &self,
        _: Request<pb::GenerateCopyRequest>,
    ) -> Result<Response<pb::GenerateCopyResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
    async fn generate_static_ad(
        &self,
        _: Request<pb::GenerateStaticAdRequest>,
    ) -> Result<Response<pb::GenerateStaticAdResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
    async fn generate_voiceover(
        &self,
        _: Request<pb::GenerateVoiceoverRequest>,
    ) -> Result<Response<pb::GenerateVoiceoverResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
    async fn generate_video(
        &self,
        _: Request<pb::GenerateVideoRequest>,
    ) -> Result<Response<pb::GenerateVideoResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
    async fn generate_image_to_video(
        &self,
        _: Request<pb::GenerateImageToVideoRequest>,
    ) -> Result<Response<pb::GenerateImageToVideoResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
    async fn generate_reframe(
        &self,
        _: Request<pb::GenerateReframeRequest>,
    ) -> Result<Response<pb::GenerateReframeResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::GetJobResponse>, Status> {
        Ok(Response::new(pb::GetJobResponse { job: Some(job(&request.into_inner().id, pb::JobStatus::Queued)) }))
    }
    async fn list_jobs(&self, _: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
    async fn cancel_job(&self, _: Request<pb::CancelJobRequest>) -> Result<Response<pb::CancelJobResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    type WatchJobStream = tokio_stream::Iter<std::vec::IntoIter<Result<pb::WatchJobResponse, Status>>>;

    async fn watch_job(&self, request: Request<pb::WatchJobRequest>) -> Result<Response<Self::WatchJobStream>, Status> {
        let id = request.into_inner().id;
        if id == MISSING_JOB {
            return Err(Status::not_found("no such job"));
        }
        let items = vec![
            Ok(pb::WatchJobResponse { job: Some(job(&id, pb::JobStatus::Queued)) }),
            Ok(pb::WatchJobResponse { job: Some(job(&id, pb::JobStatus::Processing)) }),
            Err(Status::not_found("the job went away")),
        ];
        Ok(Response::new(tokio_stream::iter(items)))
    }
}

struct TestMesh {
    base: String,
    channel: Channel,
    sessions: SessionKey,
    seen: Arc<Mutex<Vec<MeshIdentity>>>,
    request_ids: Arc<Mutex<Vec<String>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn spawn_mesh() -> TestMesh {
    spawn_mesh_with(cutx_gateway::EdgeLimits::default(), false).await
}

/// The mesh with these edge limits; with `dead_backend` every service's backend is a port
/// nobody listens on.
async fn spawn_mesh_with(edge: cutx_gateway::EdgeLimits, dead_backend: bool) -> TestMesh {
    let mesh = MeshKey::new(&Secret::new("mesh-secret".into()));
    let sessions = SessionKey::new(&Secret::new("session-secret".into()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let request_ids = Arc::new(Mutex::new(Vec::new()));

    let backend_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend_listener.local_addr().unwrap();
    let billing = FakeBilling { mesh: mesh.clone(), seen: seen.clone(), request_ids: request_ids.clone() };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(BillingServiceServer::new(billing))
            .add_service(JobServiceServer::new(FakeJobs))
            .serve_with_incoming(TcpListenerStream::new(backend_listener)),
    );
    let backend_addr = if dead_backend {
        let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
        unused.local_addr().unwrap()
    } else {
        backend_addr
    };
    let backend = Endpoint::from_shared(format!("http://{backend_addr}")).unwrap().connect_lazy();

    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        backends: HashMap::from([
            ("cutx.v1.BillingService".to_string(), backend.clone()),
            ("cutx.v1.JobService".to_string(), backend),
        ]),
        exposed_services: cutx_proto::PUBLIC_SERVICES.iter().map(|s| s.to_string()).collect(),
        sessions: sessions.clone(),
        mesh,
        extra_routes: axum::Router::new().route("/media/ping", axum::routing::get(|| async { "pong" })),
        max_body_bytes: GatewayConfig::DEFAULT_MAX_BODY,
        cors: cutx_gateway::CorsOrigins::LoopbackAnd(vec![http::HeaderValue::from_static("https://studio.example")]),
        allowed_hosts: cutx_gateway::AllowedHosts::Any,
        rate_limits: cutx_gateway::RateLimits::default(),
        revocations_from: None,
        edge,
    };
    let gateway = Gateway::build(config).await.unwrap();
    let addr = gateway.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gateway.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    TestMesh { base: format!("http://{addr}"), channel, sessions, seen, request_ids, _stop: stop }
}

fn bearer(sessions: &SessionKey, user: UserId) -> String {
    format!("Bearer {}", sessions.issue(user, chrono::Utc::now()).0)
}

#[tokio::test]
async fn a_signed_in_rest_call_reaches_the_backend_as_the_user_and_keeps_default_fields() {
    let mesh = spawn_mesh().await;
    let user = UserId::new();
    let client = http();
    let response = client
        .get(format!("{}/api/credits/balance", mesh.base))
        .header("authorization", bearer(&mesh.sessions, user))
        .header(MESH_HEADER, "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookies: Vec<_> =
        response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(cookies, ["seen=1; Path=/"]);
    assert!(response.headers().get("x-internal-detail").is_none());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "balance": 42, "lifetime_purchased": 0, "lifetime_used": 0 }));
    let seen = mesh.seen.lock().unwrap().clone();
    assert_eq!(seen, [MeshIdentity { service: cutx_platform::mesh::Peer::Gateway, user: Some(user) }]);
}

#[tokio::test]
async fn rest_errors_map_to_http_with_the_status_body() {
    let mesh = spawn_mesh().await;
    let client = http();
    let auth = bearer(&mesh.sessions, UserId::new());
    let static_ad = || client.post(format!("{}/api/generate/static-ad", mesh.base));
    let json = |request: reqwest::RequestBuilder| request.header("content-type", "application/json");
    let cases: Vec<(reqwest::RequestBuilder, u16, &str, &str)> = vec![
        (client.get(format!("{}/api/credits/balance", mesh.base)), 401, "unauthenticated", "Unauthorized"),
        (
            client.get(format!("{}/api/credits/balance", mesh.base)).header("authorization", "Bearer junk"),
            401,
            "unauthenticated",
            "Unauthorized",
        ),
        (
            client
                .get(format!("{}/api/credits/ledger?pageSize={BROKE_PAGE_SIZE}", mesh.base))
                .header("authorization", &auth),
            402,
            "failed_precondition",
            "Insufficient Credits",
        ),
        (
            client.get(format!("{}/api/credits/ledger?pageSize=lots", mesh.base)).header("authorization", &auth),
            400,
            "invalid_argument",
            "Bad Request",
        ),
        (client.post(format!("{}/api/credits/balance", mesh.base)), 405, "unimplemented", "Method Not Allowed"),
        (client.get(format!("{}/api/nope", mesh.base)), 404, "not_found", "Not Found"),
        // The fake JobService would answer UNIMPLEMENTED: bad input never reaches it.
        (json(static_ad()).body("{\"prompt\": 5}"), 400, "invalid_argument", "Bad Request"),
        (json(static_ad()).body("{nope"), 400, "invalid_argument", "Bad Request"),
        (json(static_ad()), 400, "invalid_argument", "Bad Request"),
        (
            static_ad().header("content-type", "text/plain").body("{}"),
            415,
            "invalid_argument",
            "Unsupported Media Type",
        ),
        (static_ad().body("{}"), 415, "invalid_argument", "Unsupported Media Type"),
        (json(static_ad()).body(vec![b' '; 100 * 1024]), 413, "invalid_argument", "Payload Too Large"),
    ];
    for (request, http, code, error) in cases {
        let response = request.send().await.unwrap();
        let url = response.url().clone();
        assert_eq!(response.status().as_u16(), http, "{url}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{url}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{url}: {body}");
        assert_eq!(body["error"], error, "{url}: {body}");
        assert!(body["message"].is_string() && body["details"].is_array(), "{url}: {body}");
    }
}

#[tokio::test]
async fn bad_rest_input_names_the_field_over_http() {
    let mesh = spawn_mesh().await;
    let client = http();
    let cases = [
        ("{\"prompt\": 5}".to_string(), "prompt", 400),
        ("{\"style\": \"nope\"}".to_string(), "style", 400),
        ("{\"style\": \"minimal\", \"style\": \"bold\"}".to_string(), "style", 400),
        ("{\"prompt\": ".to_string(), "body", 400),
        (format!("{{\"prompt\": \"{}\"}}", "x".repeat(70 * 1024)), "body", 413),
    ];
    for (body, field, http) in cases {
        let response = client
            .post(format!("{}/api/generate/static-ad", mesh.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), http);
        let json: serde_json::Value = response.json().await.unwrap();
        let detail = &json["details"][0];
        assert_eq!(detail["@type"], "type.googleapis.com/google.rpc.BadRequest");
        assert_eq!(detail["fieldViolations"][0]["field"], field, "{json}");
    }
}

#[tokio::test]
async fn grpc_calls_pass_through_with_the_callers_identity() {
    let mesh = spawn_mesh().await;
    let user = UserId::new();
    let mut client = pb::billing_service_client::BillingServiceClient::new(mesh.channel.clone());

    let mut request = Request::new(pb::GetBalanceRequest {});
    request.metadata_mut().insert("authorization", bearer(&mesh.sessions, user).parse().unwrap());
    assert_eq!(client.get_balance(request).await.unwrap().into_inner().balance, 42);

    // A forged mesh token without a session is dropped: the call is anonymous.
    let forged = MeshKey::new(&Secret::new("mesh-secret".into()))
        .mint(&MeshIdentity { service: cutx_platform::mesh::Peer::Gateway, user: Some(user) });
    let mut request = Request::new(pb::GetBalanceRequest {});
    request.metadata_mut().insert(MESH_HEADER, forged.parse().unwrap());
    assert_eq!(client.get_balance(request).await.unwrap_err().code(), Code::Unauthenticated);

    let seen = mesh.seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|i| i.user).collect::<Vec<_>>(), [Some(user), None]);
}

#[tokio::test]
async fn hundreds_of_forwarded_calls_keep_the_backend_connection_healthy() {
    // h2 servers close a connection that carries too many empty non-final DATA frames; a
    // forwarder that passes the end of each request on as one breaks after about a hundred.
    let mesh = spawn_mesh().await;
    let user = UserId::new();
    let mut client = pb::billing_service_client::BillingServiceClient::new(mesh.channel.clone());
    for i in 0..400 {
        let mut request = Request::new(pb::GetBalanceRequest {});
        request.metadata_mut().insert("authorization", bearer(&mesh.sessions, user).parse().unwrap());
        let answer = client.get_balance(request).await.unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        assert_eq!(answer.into_inner().balance, 42);
    }
}

#[tokio::test]
async fn internal_and_unknown_services_are_unimplemented() {
    let mesh = spawn_mesh().await;
    let mut internal = pb::billing_internal_service_client::BillingInternalServiceClient::new(mesh.channel.clone());
    let grant = pb::GrantRequest { user_id: UserId::new().to_string(), amount: 1_000, ..Default::default() };
    assert_eq!(internal.grant(grant).await.unwrap_err().code(), Code::Unimplemented);
    // Exposed but not served by anyone in this test.
    let mut projects = pb::project_service_client::ProjectServiceClient::new(mesh.channel.clone());
    let get = pb::GetProjectRequest { id: "p".into() };
    assert_eq!(projects.get_project(get).await.unwrap_err().code(), Code::Unimplemented);
}

#[tokio::test]
async fn grpc_web_text_over_http1_reaches_the_backend() {
    use base64::Engine;
    let mesh = spawn_mesh().await;
    let client = {
        cutx_platform::fetch::install_tls_provider();
        reqwest::Client::builder()
    }
    .http1_only()
    .build()
    .unwrap();
    let frame = base64::engine::general_purpose::STANDARD.encode([0u8, 0, 0, 0, 0]);
    let response = client
        .post(format!("{}/cutx.v1.BillingService/GetBalance", mesh.base))
        .header("content-type", "application/grpc-web-text")
        .header("accept", "application/grpc-web-text")
        .header("authorization", bearer(&mesh.sessions, UserId::new()))
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let body = decode_concatenated_base64(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let message: pb::GetBalanceResponse = prost::Message::decode(&body[5..5 + len]).unwrap();
    assert_eq!(message.balance, 42);
}

/// grpc-web-text answers may be several base64 chunks, each with its own padding.
fn decode_concatenated_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.find('=').map(|i| i + rest[i..].chars().take_while(|c| *c == '=').count()).unwrap_or(rest.len());
        out.extend(base64::engine::general_purpose::STANDARD.decode(&rest[..end])?);
        rest = &rest[end..];
    }
    Ok(out)
}

#[tokio::test]
async fn grpc_web_over_http1_reaches_the_backend() {
    let mesh = spawn_mesh().await;
    let client = {
        cutx_platform::fetch::install_tls_provider();
        reqwest::Client::builder()
    }
    .http1_only()
    .build()
    .unwrap();
    // One uncompressed frame holding the empty GetBalanceRequest.
    let frame = vec![0u8, 0, 0, 0, 0];
    let response = client
        .post(format!("{}/cutx.v1.BillingService/GetBalance", mesh.base))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("authorization", bearer(&mesh.sessions, UserId::new()))
        .header("origin", "https://studio.example")
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "https://studio.example");
    let body = response.bytes().await.unwrap();
    // A data frame (flag 0) with balance 42, then a trailers frame (flag 0x80) saying OK.
    assert_eq!(body[0], 0);
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let message: pb::GetBalanceResponse = prost::Message::decode(&body[5..5 + len]).unwrap();
    assert_eq!(message.balance, 42);
    assert_eq!(body[5 + len], 0x80);
    let trailers = String::from_utf8_lossy(&body[5 + len + 5..]).to_ascii_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
}

#[tokio::test]
async fn reflection_lists_only_what_is_exposed_and_health_serves() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let mesh = spawn_mesh().await;
    let mut reflection = ServerReflectionClient::new(mesh.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    let mut want: Vec<String> = cutx_proto::PUBLIC_SERVICES.iter().map(|s| s.to_string()).collect();
    want.extend(
        ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]
            .map(String::from),
    );
    want.sort();
    assert_eq!(names, want);

    let mut health = tonic_health::pb::health_client::HealthClient::new(mesh.channel.clone());
    for service in ["", "cutx.v1.BillingService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn openapi_and_extra_routes_are_served_and_anything_else_is_404() {
    let mesh = spawn_mesh().await;
    let client = http();
    let doc: serde_json::Value =
        client.get(format!("{}/api/openapi.json", mesh.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/api/credits/balance"]["get"].is_object());
    let pong = client.get(format!("{}/media/ping", mesh.base)).send().await.unwrap();
    assert_eq!(pong.text().await.unwrap(), "pong");
    let missing = client.get(format!("{}/favicon.ico", mesh.base)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_cors_preflight_mirrors_the_origin_with_credentials() {
    let mesh = spawn_mesh().await;
    let response = http()
        .request(reqwest::Method::OPTIONS, format!("{}/api/credits/balance", mesh.base))
        .header("origin", "https://studio.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://studio.example");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(headers["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
}

#[tokio::test]
async fn path_parameters_fill_the_request_and_timestamps_render_as_rfc3339() {
    let mesh = spawn_mesh().await;
    // A path segment arrives percent-decoded.
    let url = format!("{}/api/jobs/0190a1b2%2D0000-7000-8000-000000000001", mesh.base);
    let response = http().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["id"], "0190a1b2-0000-7000-8000-000000000001", "the job itself, by its response_body rule: {body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["createdAt"], "2023-11-14T22:13:20Z");
    assert_eq!(body["creditsUsed"], 0, "default-valued fields are kept");
}

#[tokio::test]
async fn a_server_stream_over_rest_is_ndjson_ending_with_an_error_line() {
    let mesh = spawn_mesh().await;
    let response =
        http().get(format!("{}/api/jobs/0190a1b2-0000-7000-8000-000000000001/watch", mesh.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["result"]["job"]["status"], "queued");
    assert_eq!(lines[1]["result"]["job"]["status"], "processing");
    assert_eq!(lines[2]["error"]["code"], "not_found");
    assert_eq!(lines[2]["error"]["message"], "the job went away");

    // A stream refused before its first message is an ordinary HTTP error.
    let refused = http().get(format!("{}/api/jobs/{MISSING_JOB}/watch", mesh.base)).send().await.unwrap();
    assert_eq!(refused.status(), 404);
}

/// reqwest needs the workspace's TLS provider installed before a client is built.
fn http() -> reqwest::Client {
    cutx_platform::fetch::install_tls_provider();
    reqwest::Client::new()
}

// The edge against hostile clients.

/// Reads from `stream` until the server closes it (or `within` passes: then `false`).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn addr_of(mesh: &TestMesh) -> String {
    mesh.base.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn a_client_that_sends_its_headers_a_byte_at_a_time_is_cut_off_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let edge =
        cutx_gateway::EdgeLimits { header_read_timeout: std::time::Duration::from_millis(500), ..Default::default() };
    let mesh = spawn_mesh_with(edge, false).await;
    // Over HTTP/1.1, a head that never ends; and a connection that never says which protocol.
    let mut trickling = tokio::net::TcpStream::connect(addr_of(&mesh)).await.unwrap();
    let mut silent = tokio::net::TcpStream::connect(addr_of(&mesh)).await.unwrap();
    let started = std::time::Instant::now();
    let head = b"GET /api/openapi.json HTTP/1.1\r\nhost: x\r\nx-slow: ";
    let mut cut = false;
    for byte in head.iter().chain(std::iter::repeat(&b'a')).take(200) {
        if trickling.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        if closed_within(&mut trickling, std::time::Duration::from_millis(100)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "a trickling head is still open after {:?}", started.elapsed());
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(closed_within(&mut silent, std::time::Duration::from_secs(5)).await, "a silent connection stays open");
    // A client that sends its request at once is served as before.
    let answer = http().get(format!("{}/api/openapi.json", mesh.base)).send().await.unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn a_client_address_holds_at_most_its_cap_of_connections() {
    // The test's client is on loopback, which is capped only when asked.
    let edge = cutx_gateway::EdgeLimits { max_connections_per_client: 3, cap_loopback: true, ..Default::default() };
    let mesh = spawn_mesh_with(edge, false).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(addr_of(&mesh)).await.unwrap());
    }
    // The three are open (not closed in a moment); a fourth is closed as soon as it is accepted.
    assert!(!closed_within(&mut held[0], std::time::Duration::from_millis(300)).await);
    let mut fourth = tokio::net::TcpStream::connect(addr_of(&mesh)).await.unwrap();
    assert!(closed_within(&mut fourth, std::time::Duration::from_secs(5)).await, "the fourth connection was kept");
    // One closes, and the address may connect again.
    held.pop();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        if let Ok(answer) = client.get(format!("{}/api/openapi.json", mesh.base)).send().await {
            assert_eq!(answer.status(), 200);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a slot was never given back");
        tokio::task::yield_now().await;
    }
}

/// Words that describe the transport rather than the call, which no answer may carry.
const TRANSPORT_WORDS: [&str; 5] =
    ["h2 protocol error", "grpc-status header missing", "transport error", "tcp connect", "connection refused"];

fn assert_no_transport_text(text: &str) {
    let lower = text.to_ascii_lowercase();
    for words in TRANSPORT_WORDS {
        assert!(!lower.contains(words), "{words:?} in {text}");
    }
}

#[tokio::test]
async fn request_headers_of_17_to_100_kb_answer_431_over_rest_and_resource_exhausted_over_grpc_and_grpc_web() {
    let mesh = spawn_mesh().await;
    let user = UserId::new();
    for size in [17 * 1024, 40 * 1024, 100 * 1000] {
        let big = "a".repeat(size);
        let rest = http()
            .get(format!("{}/api/credits/balance", mesh.base))
            .header("authorization", bearer(&mesh.sessions, user))
            .header("x-big", &big)
            .header("origin", "https://studio.example")
            .send()
            .await
            .unwrap();
        assert_eq!(rest.status(), 431, "REST, {size} bytes");
        assert_eq!(rest.headers()["access-control-allow-origin"], "https://studio.example", "a browser can read it");
        let body: serde_json::Value = rest.json().await.unwrap();
        assert_eq!(body["code"], "resource_exhausted", "{body}");
        assert_no_transport_text(&body.to_string());

        let web = reqwest::Client::builder()
            .http1_only()
            .build()
            .unwrap()
            .post(format!("{}/cutx.v1.BillingService/GetBalance", mesh.base))
            .header("content-type", "application/grpc-web+proto")
            .header("x-big", &big)
            .body(vec![0u8, 0, 0, 0, 0])
            .send()
            .await
            .unwrap();
        assert_eq!(web.status(), 200, "gRPC-web answers its status in grpc-status, {size} bytes");
        assert_eq!(web.headers()["grpc-status"], "8", "gRPC-web, {size} bytes");

        let mut grpc = pb::billing_service_client::BillingServiceClient::new(mesh.channel.clone());
        let mut call = Request::new(pb::GetBalanceRequest {});
        call.metadata_mut().insert("x-big", big.parse().unwrap());
        let status = grpc.get_balance(call).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "gRPC, {size} bytes: {status:?}");
        assert_no_transport_text(status.message());
    }
    assert!(mesh.seen.lock().unwrap().is_empty(), "nothing was forwarded");
    // The shared backend connection is unharmed.
    let mut grpc = pb::billing_service_client::BillingServiceClient::new(mesh.channel.clone());
    let mut call = Request::new(pb::GetBalanceRequest {});
    call.metadata_mut().insert("authorization", bearer(&mesh.sessions, user).parse().unwrap());
    assert_eq!(grpc.get_balance(call).await.unwrap().into_inner().balance, 42);
}

#[tokio::test]
async fn a_backend_that_cannot_be_reached_answers_unavailable_without_transport_text() {
    let mesh = spawn_mesh_with(cutx_gateway::EdgeLimits::default(), true).await;
    let user = UserId::new();
    let rest = http()
        .get(format!("{}/api/credits/balance", mesh.base))
        .header("authorization", bearer(&mesh.sessions, user))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 503);
    let body = rest.text().await.unwrap();
    assert!(body.contains("unavailable"), "{body}");
    assert_no_transport_text(&body);

    let mut grpc = pb::billing_service_client::BillingServiceClient::new(mesh.channel.clone());
    let mut call = Request::new(pb::GetBalanceRequest {});
    call.metadata_mut().insert("authorization", bearer(&mesh.sessions, user).parse().unwrap());
    let status = grpc.get_balance(call).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_no_transport_text(status.message());
}

#[tokio::test]
async fn grpc_web_text_that_is_not_base64_is_invalid_argument() {
    let mesh = spawn_mesh().await;
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    for body in ["!!!not base64!!!", "AAAA AAAA", "AAAAA"] {
        let answer = client
            .post(format!("{}/cutx.v1.BillingService/GetBalance", mesh.base))
            .header("content-type", "application/grpc-web-text")
            .header("authorization", bearer(&mesh.sessions, UserId::new()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.headers()["grpc-status"], "3", "{body:?}: {:?}", answer.headers());
    }
    assert!(mesh.seen.lock().unwrap().is_empty(), "nothing was forwarded");
}

/// The body of a gRPC call: each message framed as gRPC frames it.
fn frames(messages: &[&[u8]]) -> Vec<u8> {
    messages.iter().flat_map(|m| [vec![0u8], (m.len() as u32).to_be_bytes().to_vec(), m.to_vec()].concat()).collect()
}

#[tokio::test]
async fn a_unary_call_carrying_two_messages_is_refused_over_grpc_and_grpc_web() {
    let mesh = spawn_mesh().await;
    let two = frames(&[b"", b""]);
    let grpc = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let web = reqwest::Client::builder().http1_only().build().unwrap();
    for (client, content_type) in [(&grpc, "application/grpc"), (&web, "application/grpc-web+proto")] {
        let answer = client
            .post(format!("{}/cutx.v1.BillingService/GetBalance", mesh.base))
            .header("content-type", content_type)
            .header("te", "trailers")
            .header("authorization", bearer(&mesh.sessions, UserId::new()))
            .body(two.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.headers()["grpc-status"], "12", "{content_type}: {:?}", answer.headers());
    }
    assert!(mesh.seen.lock().unwrap().is_empty(), "nothing was forwarded");
}

#[tokio::test]
async fn a_grpc_request_breaking_a_declared_rule_is_refused_by_field_before_the_backend() {
    let mesh = spawn_mesh().await;
    let mut jobs = pb::job_service_client::JobServiceClient::new(mesh.channel.clone());
    let status = jobs.get_job(pb::GetJobRequest { id: "not-an-id".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_details_bad_request(&status).expect("a BadRequest");
    assert_eq!(details.field_violations[0].field, "id");
    // Over REST the same rule answers 400 naming the same field.
    let rest = http().get(format!("{}/api/jobs/not-an-id", mesh.base)).send().await.unwrap();
    assert_eq!(rest.status(), 400);
    let body: serde_json::Value = rest.json().await.unwrap();
    assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "id", "{body}");
}

#[tokio::test]
async fn reflection_neither_lists_nor_describes_an_internal_service_or_its_messages() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let mesh = spawn_mesh().await;
    let mut reflection = ServerReflectionClient::new(mesh.channel.clone());
    let ask = |symbol: &str| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.to_string())),
    };
    let symbols =
        ["cutx.v1.JobInternalService", "cutx.v1.BillingInternalService", "cutx.v1.StartJobRequest", "cutx.v1.Job"];
    for symbol in symbols {
        // tonic-reflection ends the stream with NOT_FOUND for a symbol it cannot describe.
        let described = match reflection.server_reflection_info(tokio_stream::iter([ask(symbol)])).await {
            Err(status) => {
                assert_eq!(status.code(), Code::NotFound, "{symbol}");
                false
            }
            Ok(answers) => match answers.into_inner().message().await {
                Ok(Some(answer)) => matches!(answer.message_response, Some(MessageResponse::FileDescriptorResponse(_))),
                Ok(None) => false,
                Err(status) => {
                    assert_eq!(status.code(), Code::NotFound, "{symbol}");
                    false
                }
            },
        };
        assert_eq!(described, symbol == "cutx.v1.Job", "{symbol}");
    }
}

#[tokio::test]
async fn every_answer_says_nosniff_and_json_for_a_signed_in_user_is_never_stored() {
    let mesh = spawn_mesh().await;
    let user = bearer(&mesh.sessions, UserId::new());
    let web = reqwest::Client::builder().http1_only().build().unwrap();
    let answers = vec![
        ("balance", http().get(format!("{}/api/credits/balance", mesh.base)).header("authorization", &user)),
        ("no route", http().get(format!("{}/api/nowhere", mesh.base))),
        ("openapi", http().get(format!("{}/api/openapi.json", mesh.base))),
        ("media", http().get(format!("{}/media/ping", mesh.base))),
        (
            "preflight",
            http()
                .request(http::Method::OPTIONS, format!("{}/api/credits/balance", mesh.base))
                .header("origin", "https://studio.example")
                .header("access-control-request-method", "GET"),
        ),
        (
            "grpc-web",
            web.post(format!("{}/cutx.v1.BillingService/GetBalance", mesh.base))
                .header("content-type", "application/grpc-web+proto")
                .header("authorization", &user)
                .body(frames(&[b""])),
        ),
    ];
    for (what, request) in answers {
        let answer = request.send().await.unwrap();
        assert_eq!(answer.headers()["x-content-type-options"], "nosniff", "{what}");
        if what == "balance" || what == "no route" {
            assert_eq!(answer.headers()["cache-control"], "no-store", "{what}");
        }
    }
}

#[tokio::test]
async fn a_json_body_naming_a_field_twice_is_refused() {
    let mesh = spawn_mesh().await;
    let answer = http()
        .post(format!("{}/api/generate/static-ad", mesh.base))
        .header("content-type", "application/json")
        .header("authorization", bearer(&mesh.sessions, UserId::new()))
        .body(r#"{"prompt": "a fine prompt", "prompt": "another prompt"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("prompt"), "{body}");
}

#[tokio::test]
async fn a_form_post_with_no_body_is_refused_as_not_json() {
    let mesh = spawn_mesh().await;
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let answer = http()
            .post(format!("{}/api/jobs/0190a1b2-0000-7000-8000-000000000001/cancel", mesh.base))
            .header("content-type", content_type)
            .header("authorization", bearer(&mesh.sessions, UserId::new()))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 415, "{content_type}");
    }
}

#[tokio::test]
async fn every_answer_names_a_fresh_request_id_which_the_backend_receives_and_a_clients_own_is_dropped() {
    let mesh = spawn_mesh().await;
    let user = bearer(&mesh.sessions, UserId::new());
    let web = reqwest::Client::builder().http1_only().build().unwrap();
    let rest = || {
        http()
            .get(format!("{}/api/credits/balance", mesh.base))
            .header("authorization", &user)
            .header("x-request-id", "chosen-by-client")
    };
    let grpc_web = || {
        web.post(format!("{}/cutx.v1.BillingService/GetBalance", mesh.base))
            .header("content-type", "application/grpc-web+proto")
            .header("authorization", &user)
            .header("x-request-id", "chosen-by-client")
            .body(frames(&[b""]))
    };
    let mut answered = Vec::new();
    for request in [rest(), rest(), grpc_web()] {
        let answer = request.send().await.unwrap();
        let id = answer.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id:?}");
        answered.push(id);
    }
    let mut grpc = BillingServiceClient::new(mesh.channel.clone());
    let mut call = Request::new(pb::GetBalanceRequest {});
    call.metadata_mut().insert("authorization", user.parse().unwrap());
    call.metadata_mut().insert("x-request-id", "chosen-by-client".parse().unwrap());
    let answer = grpc.get_balance(call).await.unwrap();
    answered.push(answer.metadata().get("x-request-id").unwrap().to_str().unwrap().to_string());

    let received = mesh.request_ids.lock().unwrap().clone();
    assert_eq!(received, answered, "the backend got the id each answer names");
    let distinct: HashSet<_> = answered.iter().collect();
    assert_eq!(distinct.len(), answered.len(), "each request has its own id: {answered:?}");
}
