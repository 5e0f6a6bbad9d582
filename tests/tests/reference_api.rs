//! The REST API as a user of the reference product knows it: written only with REFERENCE.md's
//! spellings and shapes (plain JSON over HTTP, no proto names, no generated types), in both
//! modes.

use std::time::Duration;

use cutx_tests::{Mode, Server};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_client_works_against_cutx_dev() {
    a_reference_client_works(Mode::Dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_client_works_against_the_distributed_mesh() {
    a_reference_client_works(Mode::Distributed).await;
}

/// A REST caller with a bearer token, as a script written for the reference would be.
struct Caller {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Caller {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} answered {status} {text:?}: {e}")))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

async fn a_reference_client_works(mode: Mode) {
    let Some(server) = Server::start(mode).await else { return };
    let mut caller = Caller { base: server.base.clone(), http: cutx_tests::http(), token: None };

    // Sign in by magic link.
    let (status, _) = caller.post("/api/auth/magic-link", json!({ "email": "ada@example.com" })).await;
    assert_eq!(status, 200);
    let (_, mail) = caller.get("/api/dev/mailbox").await;
    let link = mail.as_array().unwrap().iter().rev().find(|m| m["to"] == "ada@example.com").unwrap()["link"]
        .as_str()
        .unwrap()
        .to_string();
    let link = url::Url::parse(&link).unwrap();
    let (status, verified) = caller.get(&format!("{}?{}", link.path(), link.query().unwrap())).await;
    assert_eq!(status, 200, "{verified}");
    caller.token = Some(verified["token"].as_str().unwrap().to_string());
    let (status, me) = caller.get("/api/auth/me").await;
    assert_eq!(status, 200);
    assert_eq!((me["email"].as_str(), me["role"].as_str()), (Some("ada@example.com"), Some("user")), "{me}");

    let (_, balance) = caller.get("/api/credits/balance").await;
    assert_eq!(balance, json!({ "balance": 25, "lifetime_purchased": 0, "lifetime_used": 0 }));

    // A static ad, queued, then completed with a 9:16 PNG.
    let ad = json!({
        "style": "minimal",
        "aspectRatio": "9:16",
        "prompt": "Hand-poured soy candles on a linen table",
        "idempotencyKey": "ad-1",
    });
    let (status, created) = caller.post("/api/generate/static-ad", ad.clone()).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["status"], "queued", "{created}");
    assert_eq!((created["creditsUsed"].as_i64(), created["creditsRemaining"].as_i64()), (Some(3), Some(22)));
    let job_id = created["jobId"].as_str().unwrap().to_string();
    let job = cutx_tests::eventually("the static ad completes", Duration::from_secs(60), || {
        let caller = &caller;
        let path = format!("/api/jobs/{job_id}");
        async move {
            let (_, job) = caller.get(&path).await;
            (job["status"] == "completed").then_some(job)
        }
    })
    .await;
    assert_eq!((job["id"].as_str(), job["kind"].as_str()), (Some(job_id.as_str()), Some("static_ad")), "{job}");
    assert_eq!(job["creditsUsed"], 3);
    let output = &job["outputs"][0];
    assert_eq!(output["contentType"], "image/png");
    let png = cutx_tests::get(output["url"].as_str().unwrap()).await.unwrap().bytes().await.unwrap();
    let info = png::Decoder::new(std::io::Cursor::new(png.to_vec())).read_info().unwrap();
    let (width, height) = (info.info().width, info.info().height);
    assert_eq!(width * 16, height * 9, "{width}x{height} is not 9:16");
    assert_eq!((output["width"].as_u64(), output["height"].as_u64()), (Some(width.into()), Some(height.into())));

    // Ad copy runs inline and answers completed, with variants.
    let copy =
        json!({ "platform": "meta", "format": "short", "tone": "playful", "customInstructions": "free returns" });
    let (status, copied) = caller.post("/api/generate/copy", copy).await;
    assert_eq!(status, 200, "{copied}");
    assert_eq!(copied["status"], "completed");
    assert_eq!((copied["creditsUsed"].as_i64(), copied["creditsRemaining"].as_i64()), (Some(1), Some(21)));
    let variants = copied["variants"].as_array().unwrap();
    assert!(!variants.is_empty(), "{copied}");
    for variant in variants {
        for field in ["hook", "body", "cta"] {
            assert!(variant[field].as_str().is_some_and(|s| !s.is_empty()), "{field} of {variant}");
        }
        assert!(variant["hashtags"].as_array().is_some_and(|h| !h.is_empty()), "{variant}");
    }
    let (_, balance) = caller.get("/api/credits/balance").await;
    assert_eq!(balance["balance"], 21, "{balance}");
    assert_eq!(balance["lifetime_used"], 4, "{balance}");

    // The same idempotency key again: the same job, no second charge.
    let (status, again) = caller.post("/api/generate/static-ad", ad).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["jobId"], job_id.as_str());
    let (_, balance) = caller.get("/api/credits/balance").await;
    assert_eq!(balance["balance"], 21);
    let (_, jobs) = caller.get("/api/jobs?limit=50&status=completed").await;
    let jobs = jobs["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "one static ad and one copy job: {jobs:?}");
    assert!(jobs.iter().all(|j| j["status"] == "completed"));
    let (_, page) = caller.get("/api/jobs?limit=1&offset=1").await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["jobs"][0]["id"], jobs[1]["id"], "offset 1 skips the newest job");

    // Spend the rest, then 402 in the reference's error shape.
    for n in 0..7 {
        let (status, spent) = caller
            .post("/api/generate/static-ad", json!({ "style": "bold", "prompt": format!("Spend number {n}") }))
            .await;
        assert_eq!(status, 200, "{spent}");
    }
    let (status, refused) = caller.post("/api/generate/static-ad", json!({ "prompt": "One too many" })).await;
    assert_eq!(status, 402, "{refused}");
    assert_eq!(refused["error"], "Insufficient Credits");
    assert_eq!(refused["code"], "failed_precondition");
    assert!(refused["message"].as_str().is_some_and(|m| !m.is_empty()));
    let (_, balance) = caller.get("/api/credits/balance").await;
    assert_eq!(balance["balance"], 0);

    // An 8 MiB body: the client reads the 413 answer.
    let huge = format!(r#"{{"prompt": "{}"}}"#, "x".repeat(8 * 1024 * 1024));
    let response = caller
        .http
        .post(format!("{}/api/generate/static-ad", caller.base))
        .bearer_auth(caller.token.as_deref().unwrap())
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("the 413 is read, not a reset connection");
    assert_eq!(response.status().as_u16(), 413);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "Payload Too Large", "{answer}");
    assert_eq!(answer["details"][0]["fieldViolations"][0]["field"], "body");
}
