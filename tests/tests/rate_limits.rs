//! Rate limits at the gateway: a burst past a user's limit is answered 429 with `Retry-After`
//! (`RESOURCE_EXHAUSTED` with `RetryInfo` over gRPC) and not forwarded, another user is not held
//! back, and a client that waits as long as it was told is served again; the same per client
//! address, for calls with no session too.

use std::time::Duration;

use cutx_tests::{Client, Server, Transport};
use tonic_types::StatusExt;

async fn balance_status(server: &Server, token: &str) -> (u16, Option<u64>) {
    let answer =
        cutx_tests::http().get(format!("{}/api/credits/balance", server.base)).bearer_auth(token).send().await.unwrap();
    let retry_after = answer.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    (answer.status().as_u16(), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_a_users_limit_gets_429_with_retry_after_and_waiting_that_long_is_served() {
    let server = Server::spawn_with(&[("CUTX_RATE_LIMIT_USER", "3/s")]).await;
    let (mut ada, mut bob) = (Client::new(&server, Transport::Rest), Client::new(&server, Transport::Rest));
    ada.sign_in("ada@example.com").await;
    bob.sign_in("bob@example.com").await;
    let (ada_token, bob_token) = (ada.token().unwrap().to_string(), bob.token().unwrap().to_string());

    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(balance_status(&server, &ada_token).await);
    }
    let refused: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!(statuses[..3].iter().all(|(s, _)| *s == 200), "a burst of 3 is served: {statuses:?}");
    assert!(!refused.is_empty(), "past the burst, calls are refused: {statuses:?}");
    let wait = refused[0].1.expect("429 carries Retry-After");
    assert_eq!(wait, 1, "{statuses:?}");
    assert_eq!(balance_status(&server, &bob_token).await.0, 200, "another user has a limit of their own");

    // Over gRPC too, with RetryInfo.
    let mut raw =
        cutx_proto::pb::billing_service_client::BillingServiceClient::connect(server.base.clone()).await.unwrap();
    let mut refused_grpc = None;
    for _ in 0..6 {
        let mut request = tonic::Request::new(cutx_proto::pb::GetBalanceRequest {});
        request.metadata_mut().insert("authorization", format!("Bearer {ada_token}").parse().unwrap());
        if let Err(status) = raw.get_balance(request).await {
            refused_grpc = Some(status);
            break;
        }
    }
    let status = refused_grpc.expect("a gRPC burst is refused too");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.get_details_error_info().map(|i| i.reason).as_deref(), Some("RATE_LIMITED"));
    let delay = status.get_details_retry_info().and_then(|r| r.retry_delay).expect("RetryInfo");
    assert!(delay <= Duration::from_secs(1) && !delay.is_zero(), "{delay:?}");

    // Waiting as long as told is enough.
    let (_, retry) = loop {
        let answer = balance_status(&server, &ada_token).await;
        if answer.0 == 429 {
            break answer;
        }
    };
    tokio::time::sleep(Duration::from_secs(retry.unwrap())).await;
    assert_eq!(balance_status(&server, &ada_token).await.0, 200, "served after waiting Retry-After");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_with_no_session_are_limited_per_client_address() {
    let server = Server::spawn_with(&[("CUTX_RATE_LIMIT_ADDRESS", "4/s"), ("CUTX_RATE_LIMIT_LOOPBACK", "true")]).await;
    let http = cutx_tests::http();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let answer = http
            .post(format!("{}/api/auth/magic-link", server.base))
            .json(&serde_json::json!({"email": "not-an-address"}))
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
    }
    assert!(statuses[..4].iter().all(|s| *s == 400), "a burst of 4 reaches the service: {statuses:?}");
    assert!(statuses.contains(&429), "past it, the address is refused: {statuses:?}");
    // Webhooks are not API calls: Stripe is never told to slow down by this limit.
    let webhook = http.post(format!("{}/webhooks/stripe", server.base)).body("{}").send().await.unwrap();
    assert_ne!(webhook.status(), 429);
    server.stop().await;
}
