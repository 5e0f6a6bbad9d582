//! The walking skeleton, over REST, gRPC and gRPC-web alike, in both modes: `cutx dev` started
//! as a user starts it, and the distributed mode (every service its own process, two pipeline
//! workers, PostgreSQL).

use cutx_proto::pb;
use cutx_tests::{Client, Mode, Server, Transport};
use tonic::Code;

macro_rules! over_every_transport {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn over_rest() {
                super::$scenario(Mode::Dev, Transport::Rest).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn over_grpc() {
                super::$scenario(Mode::Dev, Transport::Grpc).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn over_grpc_web() {
                super::$scenario(Mode::Dev, Transport::GrpcWeb).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed_over_rest() {
                super::$scenario(Mode::Distributed, Transport::Rest).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed_over_grpc() {
                super::$scenario(Mode::Distributed, Transport::Grpc).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed_over_grpc_web() {
                super::$scenario(Mode::Distributed, Transport::GrpcWeb).await
            }
        }
    )*};
}

over_every_transport!(
    a_new_user_signs_in_by_magic_link_and_has_25_credits,
    a_static_ad_completes_with_a_png_of_the_asked_aspect_ratio,
    a_copy_job_completes_inline_with_variants,
    the_balance_goes_down_by_exactly_the_prices,
    the_same_idempotency_key_twice_gives_one_job_and_one_charge,
    too_few_credits_is_refused_and_makes_no_job,
    another_users_job_is_not_found,
    bad_input_names_the_field_and_charges_nothing,
    calls_without_a_session_are_unauthenticated,
    a_magic_link_signs_in_only_once,
    logging_out_ends_the_session_for_every_later_call,
);

/// A fresh CutX in `mode` and a client signed in to it; `None` when the mode is unavailable.
async fn signed_in(mode: Mode, transport: Transport, email: &str) -> Option<(Server, Client)> {
    let server = Server::start(mode).await?;
    let mut client = Client::new(&server, transport);
    client.sign_in(email).await;
    Some((server, client))
}

fn ad(prompt: &str, aspect_ratio: &str) -> pb::GenerateStaticAdRequest {
    pb::GenerateStaticAdRequest {
        prompt: prompt.into(),
        aspect_ratio: aspect_ratio.into(),
        style: pb::StaticAdStyle::Bold as i32,
        ..Default::default()
    }
}

fn copy_request() -> pb::GenerateCopyRequest {
    pb::GenerateCopyRequest {
        platform: pb::AdPlatform::Tiktok as i32,
        format: pb::CopyFormat::Short as i32,
        tone: pb::CopyTone::Playful as i32,
        custom_instructions: "mention the free returns".into(),
        ..Default::default()
    }
}

fn http_of(transport: Transport, http: u16) -> Option<u16> {
    (transport == Transport::Rest).then_some(http)
}

async fn a_new_user_signs_in_by_magic_link_and_has_25_credits(mode: Mode, transport: Transport) {
    let Some((_server, client)) = signed_in(mode, transport, "ada@example.com").await else { return };
    let me = client.me().await.unwrap();
    assert_eq!(me.email, "ada@example.com");
    let balance = client.balance().await.unwrap();
    assert_eq!((balance.balance, balance.lifetime_purchased, balance.lifetime_used), (25, 0, 0));
    let ledger = client.ledger().await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].r#type(), pb::LedgerEntryType::FreeTier);
}

async fn a_static_ad_completes_with_a_png_of_the_asked_aspect_ratio(mode: Mode, transport: Transport) {
    let Some((_server, client)) = signed_in(mode, transport, "ada@example.com").await else { return };
    for (ratio, (w, h)) in [("9:16", (9, 16)), ("16:9", (16, 9))] {
        let created = client.static_ad(ad("Handmade ceramic mugs in ocean blue", ratio)).await.unwrap();
        assert_eq!(created.status(), pb::JobStatus::Queued);
        assert_eq!(created.credits_used, 3);
        let job = client.wait_for_job(&created.job_id).await;
        assert_eq!(job.status(), pb::JobStatus::Completed, "{job:?}");
        assert_eq!(job.outputs.len(), 1);
        let output = &job.outputs[0];
        assert_eq!(output.content_type, "image/png");
        if mode == Mode::Distributed {
            let s3 = std::env::var("CUTX_TEST_S3_ENDPOINT").unwrap();
            assert!(output.url.starts_with(&format!("{s3}/cutx-media-test/jobs/")), "not an S3 URL: {}", output.url);
            assert!(output.url.contains("X-Amz-Signature="), "not presigned: {}", output.url);
        }
        let response = cutx_tests::get(&output.url).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/png");
        let bytes = response.bytes().await.unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()));
        let info = decoder.read_info().unwrap();
        let (width, height) = (info.info().width, info.info().height);
        assert_eq!(width * h, height * w, "{width}x{height} is not {ratio}");
        assert_eq!((output.width, output.height), (width, height));
    }
}

async fn a_copy_job_completes_inline_with_variants(mode: Mode, transport: Transport) {
    let Some((_server, client)) = signed_in(mode, transport, "ada@example.com").await else { return };
    let created = client.copy(copy_request()).await.unwrap();
    assert_eq!(created.status(), pb::JobStatus::Completed);
    assert_eq!(created.credits_used, 1);
    assert_eq!(created.credits_remaining, 24);
    assert!(created.variants.len() >= 2);
    for v in &created.variants {
        assert!(!v.hook.is_empty() && !v.body.is_empty() && !v.cta.is_empty());
        assert!(!v.hashtags.is_empty() && v.hashtags.iter().all(|h| h.starts_with('#')));
    }
    assert!(created.variants.iter().any(|v| v.body.to_lowercase().contains("free returns")));
    let job = client.get_job(&created.job_id).await.unwrap();
    assert_eq!(job.kind(), pb::JobKind::Copy);
    assert_eq!(job.variants, created.variants);
}

async fn the_balance_goes_down_by_exactly_the_prices(mode: Mode, transport: Transport) {
    let Some((_server, client)) = signed_in(mode, transport, "ada@example.com").await else { return };
    let first = client.static_ad(ad("Linen tote bags for summer", "1:1")).await.unwrap();
    assert_eq!(first.credits_remaining, 22);
    client.copy(copy_request()).await.unwrap();
    client.wait_for_job(&first.job_id).await;
    let balance = client.balance().await.unwrap();
    assert_eq!((balance.balance, balance.lifetime_used), (21, 4));
    let ledger = client.ledger().await.unwrap();
    let sum: i64 = ledger.iter().map(|e| e.amount).sum();
    assert_eq!(sum, 21);
    assert_eq!(ledger[0].balance_after, 21, "newest first, with the balance after it");
}

async fn the_same_idempotency_key_twice_gives_one_job_and_one_charge(mode: Mode, transport: Transport) {
    let Some((_server, client)) = signed_in(mode, transport, "ada@example.com").await else { return };
    let request =
        pb::GenerateStaticAdRequest { idempotency_key: "order-42".into(), ..ad("Walnut desk organiser", "4:5") };
    let first = client.static_ad(request.clone()).await.unwrap();
    let second = client.static_ad(request).await.unwrap();
    assert_eq!(first.job_id, second.job_id);
    assert_eq!(second.credits_remaining, 22);
    let copy = pb::GenerateCopyRequest { idempotency_key: "copy-1".into(), ..copy_request() };
    let c1 = client.copy(copy.clone()).await.unwrap();
    let c2 = client.copy(copy).await.unwrap();
    assert_eq!(c1.job_id, c2.job_id);
    assert_eq!(c1.variants, c2.variants);
    assert_eq!(client.balance().await.unwrap().balance, 21);
    assert_eq!(client.all_jobs().await.len(), 2);
    // The same key for a different request is refused, not answered with the first job.
    let other = pb::GenerateStaticAdRequest { idempotency_key: "order-42".into(), ..ad("A different prompt", "1:1") };
    let err = client.static_ad(other).await.unwrap_err();
    // A conflict with what the key already stands for: 409 over REST, as the reference's
    // Idempotency-Key semantics have it, still naming the field.
    assert_eq!((err.code, err.fields.as_slice()), (Code::AlreadyExists, ["idempotency_key".to_string()].as_slice()));
    assert_eq!(err.reason.as_deref(), Some("IDEMPOTENCY_KEY_REUSED"));
    assert_eq!(err.http, http_of(transport, 409));
    assert_eq!(client.balance().await.unwrap().balance, 21);
}

async fn too_few_credits_is_refused_and_makes_no_job(mode: Mode, transport: Transport) {
    let Some((_server, client)) = signed_in(mode, transport, "ada@example.com").await else { return };
    for _ in 0..24 {
        client.copy(copy_request()).await.unwrap();
    }
    assert_eq!(client.balance().await.unwrap().balance, 1);
    let refused = client.static_ad(ad("A lamp that costs three credits", "1:1")).await.unwrap_err();
    assert_eq!(refused.code, Code::FailedPrecondition, "{refused:?}");
    assert_eq!(refused.http, http_of(transport, 402));
    assert_eq!(refused.reason.as_deref(), Some("INSUFFICIENT_CREDITS"));
    assert_eq!(client.all_jobs().await.len(), 24);
    assert_eq!(client.balance().await.unwrap().balance, 1);
    client.copy(copy_request()).await.unwrap();
    let empty = client.copy(copy_request()).await.unwrap_err();
    assert_eq!(empty.code, Code::FailedPrecondition);
    assert_eq!(client.balance().await.unwrap().balance, 0);
    assert_eq!(client.all_jobs().await.len(), 25);
    // Listed newest first, ten at a time.
    let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = client.list_jobs(10, &token).await.unwrap();
        assert!(page.jobs.len() <= 10);
        seen.extend(page.jobs.into_iter().map(|j| (j.created_at.unwrap().seconds, j.created_at.unwrap().nanos, j.id)));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!((seen.len(), pages), (25, 3));
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "not newest first");
}

async fn another_users_job_is_not_found(mode: Mode, transport: Transport) {
    let Some((server, ada)) = signed_in(mode, transport, "ada@example.com").await else { return };
    let job = ada.copy(copy_request()).await.unwrap();
    let mut bob = Client::new(&server, transport);
    bob.sign_in("bob@example.com").await;
    let err = bob.get_job(&job.job_id).await.unwrap_err();
    assert_eq!(err.code, Code::NotFound);
    assert_eq!(err.http, http_of(transport, 404));
    let missing = bob.get_job(&uuid::Uuid::now_v7().to_string()).await.unwrap_err();
    assert_eq!(missing.code, Code::NotFound, "an unknown id looks the same as someone else's");
    assert!(bob.all_jobs().await.is_empty());
    assert_eq!(ada.all_jobs().await.len(), 1);
}

async fn bad_input_names_the_field_and_charges_nothing(mode: Mode, transport: Transport) {
    let Some((_server, client)) = signed_in(mode, transport, "ada@example.com").await else { return };
    let cases = [
        (ad("", "1:1"), "prompt"),
        (ad(&"p".repeat(1001), "1:1"), "prompt"),
        (ad("A fine prompt", "2:1"), "aspect_ratio"),
        (pb::GenerateStaticAdRequest { style: 42, ..ad("A fine prompt", "1:1") }, "style"),
        (pb::GenerateStaticAdRequest { project_id: "not-an-id".into(), ..ad("A fine prompt", "1:1") }, "project_id"),
    ];
    for (request, field) in cases {
        let err = client.static_ad(request.clone()).await.unwrap_err();
        assert_eq!(err.code, Code::InvalidArgument, "{request:?}: {err:?}");
        assert_eq!(err.http, http_of(transport, 400));
        assert!(err.fields.iter().any(|f| f == field), "{field} not named in {err:?}");
        assert!(err.message.contains(field), "{field} not in message {:?}", err.message);
    }
    let copy = pb::GenerateCopyRequest { custom_instructions: "x".repeat(501), ..copy_request() };
    let err = client.copy(copy).await.unwrap_err();
    assert_eq!(err.fields, ["custom_instructions"]);
    assert_eq!(client.balance().await.unwrap().balance, 25);
    assert!(client.all_jobs().await.is_empty());
}

async fn calls_without_a_session_are_unauthenticated(mode: Mode, transport: Transport) {
    let Some(server) = Server::start(mode).await else { return };
    let mut client = Client::new(&server, transport);
    let err = client.balance().await.unwrap_err();
    assert_eq!((err.code, err.http), (Code::Unauthenticated, http_of(transport, 401)));
    client.set_token(Some("not.a.jwt".into()));
    let err = client.static_ad(ad("A fine prompt", "1:1")).await.unwrap_err();
    assert_eq!(err.code, Code::Unauthenticated);
}

async fn a_magic_link_signs_in_only_once(mode: Mode, transport: Transport) {
    let Some(server) = Server::start(mode).await else { return };
    let client = Client::new(&server, transport);
    let answer = client.request_magic_link("ada@example.com").await.unwrap();
    let unknown = client.request_magic_link("nobody-yet@example.com").await.unwrap();
    assert_eq!(answer.message, unknown.message, "the answer does not reveal who has an account");
    let token = client.link_token_for("ada@example.com").await;
    client.verify(&token).await.unwrap();
    let again = client.verify(&token).await.unwrap_err();
    assert_eq!((again.code, again.http), (Code::Unauthenticated, http_of(transport, 401)));
    let forged = client.verify(&"0".repeat(64)).await.unwrap_err();
    assert_eq!(forged.code, Code::Unauthenticated);
    let bad_email = client.request_magic_link("not an email").await.unwrap_err();
    assert_eq!(bad_email.fields, ["email"]);
}

async fn logging_out_ends_the_session_for_every_later_call(mode: Mode, transport: Transport) {
    let Some((_server, client)) = signed_in(mode, transport, "ada@example.com").await else { return };
    assert_eq!(client.balance().await.unwrap().balance, 25);
    client.logout().await.unwrap();
    // Every gateway follows auth-svc's logouts within about a second.
    let refused = cutx_tests::eventually("the session to end", std::time::Duration::from_secs(10), || async {
        client.balance().await.err()
    })
    .await;
    assert_eq!((refused.code, refused.http), (Code::Unauthenticated, http_of(transport, 401)));
}
