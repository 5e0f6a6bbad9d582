//! Sign-in links: one per address a minute, answered 429 / `RESOURCE_EXHAUSTED` with
//! `Retry-After` (and gRPC's `RetryInfo`) past that, alike for an address with an account and
//! one without, so that neither the answer nor the limit tells them apart; a link signs in once,
//! even when redeemed twice at once.

use cutx_proto::pb;
use cutx_tests::{Client, Server, Transport};
use tonic_types::StatusExt;

async fn rest_request(server: &Server, email: &str) -> (u16, Option<u64>, serde_json::Value) {
    let answer = cutx_tests::http()
        .post(format!("{}/api/auth/magic-link", server.base))
        .json(&serde_json::json!({ "email": email }))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let retry_after = answer.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry_after, answer.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_link_within_a_minute_is_refused_alike_for_known_and_unknown_addresses() {
    let server = Server::spawn().await;
    // One address has an account (its link already used), the other has none.
    let mut known = Client::new(&server, Transport::Rest);
    known.sign_in("known@example.com").await;
    let (status, _, first) = rest_request(&server, "unknown@example.com").await;
    assert_eq!(status, 200);
    assert!(first["message"].as_str().unwrap().starts_with("If that address can sign in"), "{first}");

    let mut refusals = Vec::new();
    for email in ["known@example.com", "unknown@example.com", "  Known@Example.com "] {
        let (status, retry_after, body) = rest_request(&server, email).await;
        assert_eq!(status, 429, "{email}: {body}");
        let retry_after = retry_after.unwrap_or_else(|| panic!("{email}: no Retry-After"));
        assert!((1..=60).contains(&retry_after), "{email}: Retry-After {retry_after}");
        assert_eq!(body["code"], "resource_exhausted");
        let reason = body["details"].as_array().unwrap().iter().find_map(|d| d["reason"].as_str());
        assert_eq!(reason, Some("MAGIC_LINK_RATE_LIMITED"), "{body}");
        refusals.push(body["message"].as_str().unwrap().replace(&retry_after.to_string(), "N"));
    }
    refusals.dedup();
    assert_eq!(refusals.len(), 1, "the refusals differ only in the wait: {refusals:?}");

    // gRPC carries the wait as RetryInfo; gRPC-web gets the same code.
    let mut grpc = pb::auth_service_client::AuthServiceClient::connect(server.base.clone()).await.unwrap();
    let refused =
        grpc.request_magic_link(pb::RequestMagicLinkRequest { email: "unknown@example.com".into() }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    let delay = refused.get_details_retry_info().and_then(|r| r.retry_delay).expect("RetryInfo");
    assert!(delay.as_secs() <= 60 && !delay.is_zero(), "{delay:?}");
    let web = Client::new(&server, Transport::GrpcWeb).request_magic_link("known@example.com").await.unwrap_err();
    assert_eq!(web.code, tonic::Code::ResourceExhausted);

    // Only one link was ever made for each address.
    let mailbox = known.mailbox().await.unwrap();
    for email in ["known@example.com", "unknown@example.com"] {
        assert_eq!(mailbox.iter().filter(|m| m.to == email).count(), 1, "{email}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_redeemed_twice_at_once_gives_one_session_and_then_none() {
    let server = Server::spawn().await;
    let client = Client::new(&server, Transport::Rest);
    client.request_magic_link("twice@example.com").await.unwrap();
    let token = client.link_token_for("twice@example.com").await;
    let other = Client::new(&server, Transport::Grpc);
    let (a, b) = tokio::join!(client.verify(&token), other.verify(&token));
    let sessions: Vec<_> = [a, b].into_iter().filter_map(Result::ok).collect();
    assert_eq!(sessions.len(), 1, "one of two redeems at once signs in");
    let again = client.verify(&token).await.unwrap_err();
    assert_eq!(again.code, tonic::Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_secure_exactly_when_the_public_url_is_https() {
    for (public_url, secure) in [(Some("https://cutx.example.com"), true), (None, false)] {
        let env: Vec<(&str, &str)> = public_url.map(|u| ("CUTX_PUBLIC_URL", u)).into_iter().collect();
        let server = Server::spawn_with(&env).await;
        let client = Client::new(&server, Transport::Rest);
        client.request_magic_link("cookie@example.com").await.unwrap();
        let token = client.link_token_for("cookie@example.com").await;
        let http = cutx_tests::http();
        let verified = http.get(format!("{}/api/auth/verify?token={token}", server.base)).send().await.unwrap();
        assert_eq!(verified.status(), 200);
        assert_eq!(verified.headers()["cache-control"], "no-store");
        let set = verified.headers()["set-cookie"].to_str().unwrap().to_string();
        let body: serde_json::Value = verified.json().await.unwrap();
        let logout = http
            .post(format!("{}/api/auth/logout", server.base))
            .bearer_auth(body["token"].as_str().unwrap())
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        let cleared = logout.headers()["set-cookie"].to_str().unwrap().to_string();
        for cookie in [&set, &cleared] {
            assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
            assert_eq!(cookie.contains("; Secure"), secure, "{public_url:?}: {cookie}");
        }
        server.stop().await;
    }
}
