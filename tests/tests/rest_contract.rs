//! What only the REST face has: JSON decoding errors, the body limit, the cookie, signed media
//! URLs, the OpenAPI document, CORS for gRPC-web.

use cutx_platform::media::UrlSigner;
use cutx_tests::client::rest_error;
use cutx_tests::{Client, Server, Transport};
use serde_json::json;

async fn signed_in() -> (Server, Client) {
    let server = Server::spawn().await;
    let mut client = Client::new(&server, Transport::Rest);
    client.sign_in("ada@example.com").await;
    (server, client)
}

async fn post_raw(client: &Client, path: &str, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
    let response = cutx_tests::http()
        .post(format!("{}{path}", client.base()))
        .bearer_auth(client.token().unwrap())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn malformed_json_wrong_types_unknown_enums_and_oversized_bodies_are_refused_naming_the_field() {
    let (_server, client) = signed_in().await;
    let oversized = json!({ "prompt": "x".repeat(70 * 1024) }).to_string();
    let cases: Vec<(String, &str, u16)> = vec![
        ("{\"prompt\": ".into(), "body", 400),
        ("[1, 2]".into(), "body", 400),
        (json!({ "prompt": 5 }).to_string(), "prompt", 400),
        (json!({ "prompt": "A fine prompt", "aspectRatio": 16 }).to_string(), "aspectRatio", 400),
        (json!({ "prompt": "A fine prompt", "style": "STATIC_AD_STYLE_SHINY" }).to_string(), "style", 400),
        (json!({ "prompt": "A fine prompt", "style": "shiny" }).to_string(), "style", 400),
        (json!({ "prompt": "A fine prompt", "colour": "red" }).to_string(), "colour", 400),
        (json!({ "prompt": "", "aspectRatio": "7:3" }).to_string(), "aspect_ratio", 400),
        (r#"{"prompt": "A fine prompt", "prompt": "Another prompt"}"#.into(), "prompt", 400),
        (oversized, "body", 413),
    ];
    for (body, field, http) in cases {
        let (status, answer) = post_raw(&client, "/api/generate/static-ad", body.clone()).await;
        let err = rest_error(status, &answer);
        assert_eq!(status, http, "{body:.80}: {answer}");
        assert_eq!(err.code, tonic::Code::InvalidArgument);
        assert!(err.fields.iter().any(|f| f == field), "{field} not named for {body:.80}: {answer}");
    }
    assert_eq!(client.balance().await.unwrap().balance, 25, "nothing was charged");
    assert!(client.all_jobs().await.is_empty(), "no job was made");
}

#[tokio::test]
async fn the_session_cookie_signs_in_as_well_as_the_bearer_token() {
    let server = Server::spawn().await;
    let client = Client::new(&server, Transport::Rest);
    client.request_magic_link("ada@example.com").await.unwrap();
    let token = client.link_token_for("ada@example.com").await;
    let response = cutx_tests::get(format!("{}/api/auth/verify?token={token}", server.base)).await.unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("cutx_token=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let balance: serde_json::Value = cutx_tests::http()
        .get(format!("{}/api/credits/balance", server.base))
        .header("cookie", pair.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(balance["balance"], 25);
    let logout = cutx_tests::http()
        .post(format!("{}/api/auth/logout", server.base))
        .header("cookie", pair)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(logout.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn a_signed_url_with_a_changed_path_or_expiry_or_past_its_time_is_refused() {
    let (server, client) = signed_in().await;
    let created = client
        .static_ad(cutx_proto::pb::GenerateStaticAdRequest {
            prompt: "Hand-poured soy candles".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let job = client.wait_for_job(&created.job_id).await;
    let good = url::Url::parse(&job.outputs[0].url).unwrap();
    assert_eq!(cutx_tests::get(good.as_str()).await.unwrap().status(), 200);

    let query: std::collections::HashMap<_, _> = good.query_pairs().into_owned().collect();
    let key = good.path().trim_start_matches("/media/").to_string();
    let base = &server.base;
    let changed_path = format!("{base}/media/{}?{}", key.replace("0.png", "1.png"), good.query().unwrap());
    let other_job = format!("{base}/media/jobs/{}/0.png?{}", uuid::Uuid::now_v7(), good.query().unwrap());
    let longer = format!(
        "{base}/media/{key}?expires={}&signature={}",
        query["expires"].parse::<i64>().unwrap() + 3600,
        query["signature"]
    );
    let unsigned = format!("{base}/media/{key}");
    // A correctly signed URL whose time has passed, made with the server's own media key.
    let signer = UrlSigner::new(&server.media_secret());
    let past = chrono::Utc::now().timestamp() - 5;
    let expired = format!("{base}{}", signer.path_and_query(&key, past));
    for url in [changed_path, other_job, longer, unsigned, expired] {
        let status = cutx_tests::get(&url).await.unwrap().status().as_u16();
        assert!(status == 403 || status == 404, "{url} answered {status}");
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_annotated_route_and_no_internal_service() {
    let server = Server::spawn().await;
    let doc: serde_json::Value =
        cutx_tests::get(format!("{}/api/openapi.json", server.base)).await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let pool = prost_reflect::DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
    let http = pool.get_extension_by_name("google.api.http").unwrap();
    let mut rules = 0;
    for name in cutx_proto::PUBLIC_SERVICES.iter().chain(cutx_proto::DEV_SERVICES) {
        for method in pool.get_service_by_name(name).unwrap().methods() {
            let options = method.options();
            if !options.has_extension(&http) {
                continue;
            }
            let rule = options.get_extension(&http);
            let rule = rule.as_message().unwrap();
            let (verb, path) = ["get", "post", "put", "patch", "delete"]
                .iter()
                .find_map(|verb| {
                    let value = rule.get_field_by_name(verb)?;
                    let path = value.as_str()?.to_string();
                    (!path.is_empty()).then(|| (verb.to_string(), path))
                })
                .unwrap();
            assert!(
                paths.get(&path).and_then(|p| p.get(&verb)).is_some(),
                "{verb} {path} of {} missing",
                method.full_name()
            );
            rules += 1;
        }
    }
    assert!(rules >= 15, "only {rules} rules found");
    let text = doc.to_string();
    assert!(!text.contains("InternalService") && !text.contains("StartJob"), "internal methods leaked");
}

#[tokio::test]
async fn a_browser_preflight_for_grpc_web_is_allowed() {
    let server = Server::spawn().await;
    let response = cutx_tests::http()
        .request(reqwest::Method::OPTIONS, format!("{}/cutx.v1.JobService/GetJob", server.base))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web,authorization")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(response.headers()["access-control-allow-origin"], "http://localhost:5173");
    let allowed = response.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("x-grpc-web") && allowed.contains("authorization"), "{allowed}");
}

#[tokio::test]
async fn the_dev_mailbox_is_a_json_list_of_sent_links() {
    let server = Server::spawn().await;
    let client = Client::new(&server, Transport::Rest);
    client.request_magic_link("ada@example.com").await.unwrap();
    let mail: serde_json::Value =
        cutx_tests::get(format!("{}/api/dev/mailbox", server.base)).await.unwrap().json().await.unwrap();
    let first = &mail.as_array().expect("a JSON list")[0];
    assert_eq!(first["to"], "ada@example.com");
    assert!(first["link"].as_str().unwrap().starts_with(&format!("{}/api/auth/verify?token=", server.base)));
    assert!(first["subject"].is_string() && first["sentAt"].is_string());
}
