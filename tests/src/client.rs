//! One client API over three transports. REST requests and answers are the proto3 JSON of the
//! same messages (converted through the descriptor set, as a client generated from
//! `/api/openapi.json` would send them); gRPC and gRPC-web send the messages themselves.

use std::sync::OnceLock;

use cutx_proto::pb;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use tonic::Code;
use tonic_types::StatusExt;

use crate::Server;
use crate::grpc_web;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Rest,
    Grpc,
    GrpcWeb,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Rest, Transport::Grpc, Transport::GrpcWeb];
}

/// A failed call, whatever the transport: the gRPC code always, the HTTP status over REST, the
/// fields named by `BadRequest` details and the `ErrorInfo` reason when present.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub http: Option<u16>,
    pub message: String,
    pub fields: Vec<String>,
    pub reason: Option<String>,
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        let fields = s
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
            .unwrap_or_default();
        let reason = s.get_details_error_info().map(|i| i.reason);
        Self { code: s.code(), http: None, message: s.message().to_string(), fields, reason }
    }
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).expect("descriptor set"))
}

/// The proto3 JSON of a message.
pub fn to_json<M: Message>(message: &M, type_name: &str) -> serde_json::Value {
    let desc = pool().get_message_by_name(type_name).unwrap_or_else(|| panic!("no message {type_name}"));
    let dynamic = DynamicMessage::decode(desc, message.encode_to_vec().as_slice()).unwrap();
    serde_json::to_value(&dynamic).unwrap()
}

/// How REST spells enum values, as the gateway reads it from the same descriptors.
fn dialect() -> &'static cutx_gateway::dialect::Dialect {
    static DIALECT: OnceLock<cutx_gateway::dialect::Dialect> = OnceLock::new();
    DIALECT.get_or_init(|| cutx_gateway::dialect::Dialect::from_pool(pool()).expect("the REST dialect"))
}

/// A message from its REST JSON: the REST dialect's enum names are read back to proto names.
pub fn from_rest_json<M: Message + Default>(mut json: serde_json::Value, type_name: &str) -> M {
    let desc = pool().get_message_by_name(type_name).unwrap_or_else(|| panic!("no message {type_name}"));
    if let Err(bad) = dialect().incoming(&desc, &mut json) {
        panic!("the answer is not {type_name} in the REST dialect: {bad:?}");
    }
    from_json(json, type_name)
}

/// The `response_body` of a method's `google.api.http` rule: the field its REST answer is.
fn response_body(grpc_path: &str) -> Option<String> {
    let (service, method) = grpc_path.trim_start_matches('/').split_once('/')?;
    let method = pool().get_service_by_name(service)?.methods().find(|m| m.name() == method)?;
    let rule = cutx_gateway::routes::raw_rules(pool(), &method).into_iter().next()?;
    (!rule.response_body.is_empty()).then_some(rule.response_body)
}

/// A message from its proto3 JSON.
pub fn from_json<M: Message + Default>(json: serde_json::Value, type_name: &str) -> M {
    let desc = pool().get_message_by_name(type_name).unwrap_or_else(|| panic!("no message {type_name}"));
    let dynamic = DynamicMessage::deserialize(desc, json).expect("answer is the message's JSON");
    M::decode(dynamic.encode_to_vec().as_slice()).unwrap()
}

/// One RPC and its REST route.
struct Route<'a> {
    grpc: &'a str,
    method: reqwest::Method,
    path: String,
    /// Send the request as the JSON body (`body: "*"`); otherwise its fields are in the path.
    body: bool,
    request_type: &'a str,
    response_type: &'a str,
}

pub struct Client {
    pub transport: Transport,
    base: String,
    http: reqwest::Client,
    channel: tonic::transport::Channel,
    token: Option<String>,
}

impl Client {
    pub fn new(server: &Server, transport: Transport) -> Self {
        Self::at(&server.base, transport)
    }

    /// A client of the gateway at `base` (`http://addr`), one of several.
    pub fn at(base: &str, transport: Transport) -> Self {
        let channel =
            tonic::transport::Endpoint::from_shared(base.to_string()).unwrap().tcp_nodelay(true).connect_lazy();
        Self { transport, base: base.to_string(), http: crate::http(), channel, token: None }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    async fn call<Req, Res>(&self, route: Route<'_>, request: Req) -> Result<Res, ApiError>
    where
        Req: Message + Default + Send + Sync + 'static,
        Res: Message + Default + Send + Sync + 'static,
    {
        let auth = self.token.as_ref().map(|t| ("authorization".to_string(), format!("Bearer {t}")));
        match self.transport {
            Transport::Grpc => {
                let mut req = tonic::Request::new(request);
                if let Some((k, v)) = &auth {
                    req.metadata_mut()
                        .insert(tonic::metadata::MetadataKey::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
                }
                let mut grpc = tonic::client::Grpc::new(self.channel.clone());
                grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                let path = route.grpc.parse().unwrap();
                let codec = tonic_prost::ProstCodec::<Req, Res>::default();
                Ok(grpc.unary(req, path, codec).await?.into_inner())
            }
            Transport::GrpcWeb => {
                let metadata: Vec<_> = auth.into_iter().collect();
                Ok(grpc_web::unary(&self.http, &self.base, route.grpc, &request, &metadata).await?)
            }
            Transport::Rest => {
                let mut call = self.http.request(route.method, format!("{}{}", self.base, route.path));
                if let Some((k, v)) = &auth {
                    call = call.header(k.as_str(), v.as_str());
                }
                if route.body {
                    call = call.json(&to_json(&request, route.request_type));
                }
                let response =
                    call.send().await.map_err(|e| ApiError::from(tonic::Status::unavailable(e.to_string())))?;
                let (status, json) = rest_answer(response).await;
                if !(200..300).contains(&status) {
                    return Err(rest_error(status, &json));
                }
                // `response_body` rules answer with one field of the message.
                let json = match response_body(route.grpc) {
                    Some(field) => serde_json::json!({ field: json }),
                    None => json,
                };
                Ok(from_rest_json(json, route.response_type))
            }
        }
    }

    pub async fn request_magic_link(&self, email: &str) -> Result<pb::RequestMagicLinkResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.AuthService/RequestMagicLink",
            method: reqwest::Method::POST,
            path: "/api/auth/magic-link".into(),
            body: true,
            request_type: "cutx.v1.RequestMagicLinkRequest",
            response_type: "cutx.v1.RequestMagicLinkResponse",
        };
        self.call(route, pb::RequestMagicLinkRequest { email: email.into() }).await
    }

    pub async fn mailbox(&self) -> Result<Vec<pb::DevMail>, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.DevMailboxService/ListDevMail",
            method: reqwest::Method::GET,
            path: "/api/dev/mailbox".into(),
            body: false,
            request_type: "cutx.v1.ListDevMailRequest",
            response_type: "cutx.v1.ListDevMailResponse",
        };
        let r: pb::ListDevMailResponse = self.call(route, pb::ListDevMailRequest {}).await?;
        Ok(r.messages)
    }

    pub async fn verify(&self, token: &str) -> Result<pb::VerifyMagicLinkResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.AuthService/VerifyMagicLink",
            method: reqwest::Method::GET,
            path: format!("/api/auth/verify?token={token}"),
            body: false,
            request_type: "cutx.v1.VerifyMagicLinkRequest",
            response_type: "cutx.v1.VerifyMagicLinkResponse",
        };
        self.call(route, pb::VerifyMagicLinkRequest { token: token.into() }).await
    }

    /// The token of the newest sign-in link mailed to `email`.
    pub async fn link_token_for(&self, email: &str) -> String {
        let mail = self.mailbox().await.expect("dev mailbox");
        let link =
            mail.iter().rev().find(|m| m.to == email).unwrap_or_else(|| panic!("no mail to {email}")).link.clone();
        let url = url::Url::parse(&link).unwrap();
        url.query_pairs().find(|(k, _)| k == "token").map(|(_, v)| v.into_owned()).expect("token in link")
    }

    /// Signs in by magic link over this client's transport; returns the user.
    pub async fn sign_in(&mut self, email: &str) -> pb::User {
        self.request_magic_link(email).await.expect("magic link");
        let token = self.link_token_for(email).await;
        let verified = self.verify(&token).await.expect("verify");
        self.token = Some(verified.token);
        verified.user.expect("user")
    }

    pub async fn logout(&self) -> Result<pb::LogoutResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.AuthService/Logout",
            method: reqwest::Method::POST,
            path: "/api/auth/logout".into(),
            body: true,
            request_type: "cutx.v1.LogoutRequest",
            response_type: "cutx.v1.LogoutResponse",
        };
        self.call(route, pb::LogoutRequest {}).await
    }

    pub async fn me(&self) -> Result<pb::User, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.AuthService/GetMe",
            method: reqwest::Method::GET,
            path: "/api/auth/me".into(),
            body: false,
            request_type: "cutx.v1.GetMeRequest",
            response_type: "cutx.v1.GetMeResponse",
        };
        let r: pb::GetMeResponse = self.call(route, pb::GetMeRequest {}).await?;
        Ok(r.user.unwrap_or_default())
    }

    pub async fn balance(&self) -> Result<pb::GetBalanceResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.BillingService/GetBalance",
            method: reqwest::Method::GET,
            path: "/api/credits/balance".into(),
            body: false,
            request_type: "cutx.v1.GetBalanceRequest",
            response_type: "cutx.v1.GetBalanceResponse",
        };
        self.call(route, pb::GetBalanceRequest {}).await
    }

    pub async fn ledger(&self) -> Result<Vec<pb::LedgerEntry>, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.BillingService/ListLedger",
            method: reqwest::Method::GET,
            path: "/api/credits/ledger?pageSize=100".into(),
            body: false,
            request_type: "cutx.v1.ListLedgerRequest",
            response_type: "cutx.v1.ListLedgerResponse",
        };
        let r: pb::ListLedgerResponse =
            self.call(route, pb::ListLedgerRequest { page_size: 100, ..Default::default() }).await?;
        Ok(r.entries)
    }

    pub async fn catalog(&self) -> Result<pb::GetCatalogResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.BillingService/GetCatalog",
            method: reqwest::Method::GET,
            path: "/api/checkout/catalog".into(),
            body: false,
            request_type: "cutx.v1.GetCatalogRequest",
            response_type: "cutx.v1.GetCatalogResponse",
        };
        self.call(route, pb::GetCatalogRequest {}).await
    }

    pub async fn checkout_session(
        &self,
        request: pb::CreateCheckoutSessionRequest,
    ) -> Result<pb::CreateCheckoutSessionResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.BillingService/CreateCheckoutSession",
            method: reqwest::Method::POST,
            path: "/api/checkout/session".into(),
            body: true,
            request_type: "cutx.v1.CreateCheckoutSessionRequest",
            response_type: "cutx.v1.CreateCheckoutSessionResponse",
        };
        self.call(route, request).await
    }

    pub async fn subscription(&self) -> Result<pb::GetSubscriptionResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.BillingService/GetSubscription",
            method: reqwest::Method::GET,
            path: "/api/billing/subscription".into(),
            body: false,
            request_type: "cutx.v1.GetSubscriptionRequest",
            response_type: "cutx.v1.GetSubscriptionResponse",
        };
        self.call(route, pb::GetSubscriptionRequest {}).await
    }

    pub async fn static_ad(
        &self,
        request: pb::GenerateStaticAdRequest,
    ) -> Result<pb::GenerateStaticAdResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.JobService/GenerateStaticAd",
            method: reqwest::Method::POST,
            path: "/api/generate/static-ad".into(),
            body: true,
            request_type: "cutx.v1.GenerateStaticAdRequest",
            response_type: "cutx.v1.GenerateStaticAdResponse",
        };
        self.call(route, request).await
    }

    pub async fn voiceover(
        &self,
        request: pb::GenerateVoiceoverRequest,
    ) -> Result<pb::GenerateVoiceoverResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.JobService/GenerateVoiceover",
            method: reqwest::Method::POST,
            path: "/api/generate/tts".into(),
            body: true,
            request_type: "cutx.v1.GenerateVoiceoverRequest",
            response_type: "cutx.v1.GenerateVoiceoverResponse",
        };
        self.call(route, request).await
    }

    pub async fn image_to_video(
        &self,
        request: pb::GenerateImageToVideoRequest,
    ) -> Result<pb::GenerateImageToVideoResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.JobService/GenerateImageToVideo",
            method: reqwest::Method::POST,
            path: "/api/generate/i2v".into(),
            body: true,
            request_type: "cutx.v1.GenerateImageToVideoRequest",
            response_type: "cutx.v1.GenerateImageToVideoResponse",
        };
        self.call(route, request).await
    }

    pub async fn reframe(&self, request: pb::GenerateReframeRequest) -> Result<pb::GenerateReframeResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.JobService/GenerateReframe",
            method: reqwest::Method::POST,
            path: "/api/generate/reframe".into(),
            body: true,
            request_type: "cutx.v1.GenerateReframeRequest",
            response_type: "cutx.v1.GenerateReframeResponse",
        };
        self.call(route, request).await
    }

    pub async fn ugc_video(&self, request: pb::GenerateVideoRequest) -> Result<pb::GenerateVideoResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.JobService/GenerateVideo",
            method: reqwest::Method::POST,
            path: "/api/generate/video".into(),
            body: true,
            request_type: "cutx.v1.GenerateVideoRequest",
            response_type: "cutx.v1.GenerateVideoResponse",
        };
        self.call(route, request).await
    }

    pub async fn create_project(&self, name: &str) -> Result<pb::Project, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.ProjectService/CreateProject",
            method: reqwest::Method::POST,
            path: "/api/products".into(),
            body: true,
            request_type: "cutx.v1.CreateProjectRequest",
            response_type: "cutx.v1.CreateProjectResponse",
        };
        let created: pb::CreateProjectResponse =
            self.call(route, pb::CreateProjectRequest { name: name.into(), description: String::new() }).await?;
        Ok(created.project.expect("a created project"))
    }

    pub async fn cancel_job(&self, id: &str) -> Result<pb::CancelJobResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.JobService/CancelJob",
            method: reqwest::Method::POST,
            path: format!("/api/jobs/{id}/cancel"),
            body: true,
            request_type: "cutx.v1.CancelJobRequest",
            response_type: "cutx.v1.CancelJobResponse",
        };
        self.call(route, pb::CancelJobRequest { id: id.to_string() }).await
    }

    pub async fn copy(&self, request: pb::GenerateCopyRequest) -> Result<pb::GenerateCopyResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.JobService/GenerateCopy",
            method: reqwest::Method::POST,
            path: "/api/generate/copy".into(),
            body: true,
            request_type: "cutx.v1.GenerateCopyRequest",
            response_type: "cutx.v1.GenerateCopyResponse",
        };
        self.call(route, request).await
    }

    pub async fn get_job(&self, id: &str) -> Result<pb::Job, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.JobService/GetJob",
            method: reqwest::Method::GET,
            path: format!("/api/jobs/{id}"),
            body: false,
            request_type: "cutx.v1.GetJobRequest",
            response_type: "cutx.v1.GetJobResponse",
        };
        let r: pb::GetJobResponse = self.call(route, pb::GetJobRequest { id: id.into() }).await?;
        Ok(r.job.unwrap_or_default())
    }

    pub async fn list_jobs(&self, page_size: i32, page_token: &str) -> Result<pb::ListJobsResponse, ApiError> {
        let route = Route {
            grpc: "/cutx.v1.JobService/ListJobs",
            method: reqwest::Method::GET,
            path: format!("/api/jobs?pageSize={page_size}&pageToken={page_token}"),
            body: false,
            request_type: "cutx.v1.ListJobsRequest",
            response_type: "cutx.v1.ListJobsResponse",
        };
        self.call(route, pb::ListJobsRequest { page_size, page_token: page_token.into(), ..Default::default() }).await
    }

    /// Every job of the caller, following pages.
    pub async fn all_jobs(&self) -> Vec<pb::Job> {
        let mut jobs = Vec::new();
        let mut token = String::new();
        loop {
            let page = self.list_jobs(100, &token).await.expect("list jobs");
            jobs.extend(page.jobs);
            if page.next_page_token.is_empty() {
                return jobs;
            }
            token = page.next_page_token;
        }
    }

    /// Polls a job until it has ended.
    pub async fn wait_for_job(&self, id: &str) -> pb::Job {
        self.wait_for_job_within(id, std::time::Duration::from_secs(30)).await
    }

    /// [`Client::wait_for_job`] with its own deadline, for jobs behind a slow provider.
    pub async fn wait_for_job_within(&self, id: &str, deadline: std::time::Duration) -> pb::Job {
        crate::eventually(&format!("job {id} to end"), deadline, || async {
            let job = self.get_job(id).await.expect("get job");
            let ended = matches!(
                job.status(),
                pb::JobStatus::Completed | pb::JobStatus::Failed | pb::JobStatus::Canceled | pb::JobStatus::Expired
            );
            ended.then_some(job)
        })
        .await
    }
}

async fn rest_answer(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("HTTP {status} answered non-JSON: {text:?}"));
    (status, json)
}

/// A REST error body `{code, message, details}` as an [`ApiError`].
pub fn rest_error(http: u16, json: &serde_json::Value) -> ApiError {
    let name = json["code"].as_str().unwrap_or_default();
    let code = (0..=16)
        .map(Code::from_i32)
        .find(|c| cutx_gateway::status_http::code_name(*c) == name)
        .unwrap_or(Code::Unknown);
    let details = json["details"].as_array().cloned().unwrap_or_default();
    let fields = details
        .iter()
        .filter(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .flat_map(|d| d["fieldViolations"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v["field"].as_str().map(str::to_string))
        .collect();
    let reason = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
        .and_then(|d| d["reason"].as_str().map(str::to_string));
    ApiError {
        code,
        http: Some(http),
        message: json["message"].as_str().unwrap_or_default().to_string(),
        fields,
        reason,
    }
}
