//! The REST calls the scenarios make, as a signed-in user through the gateway.

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A signed-in user's REST client. Cheap to clone (one connection pool).
#[derive(Clone)]
pub(crate) struct Rest {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Rest {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        cutx_platform::fetch::install_tls_provider();
        // An open loop may hold many calls in flight; keep their connections for the next ones.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(Self { http, base: base.to_string(), token: token.to_string() })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let answer = request.bearer_auth(&self.token).send().await?;
        let status = answer.status();
        let body: Value = answer.json().await?;
        if !status.is_success() {
            bail!("HTTP {status}: {body}");
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base))).await.with_context(|| format!("GET {path}"))
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
            .with_context(|| format!("POST {path}"))
    }

    pub async fn balance(&self) -> anyhow::Result<i64> {
        self.get("/api/credits/balance").await?["balance"].as_i64().context("the balance answer has no balance")
    }

    /// A `copy` job (synchronous: the answer is the completed job); its id.
    pub async fn copy(&self, n: u64) -> anyhow::Result<String> {
        let body = json!({ "platform": "meta", "format": "short", "tone": "playful", "customInstructions": format!("bench {n}") });
        job_id(self.post("/api/generate/copy", body).await?)
    }

    /// A queued `static_ad` job; its id.
    pub async fn static_ad(&self, n: u64) -> anyhow::Result<String> {
        let body = json!({ "prompt": format!("Bench ad number {n}"), "style": "minimal" });
        job_id(self.post("/api/generate/static-ad", body).await?)
    }
}

fn job_id(created: Value) -> anyhow::Result<String> {
    created["jobId"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("a create answer without a job id: {created}"))
}
