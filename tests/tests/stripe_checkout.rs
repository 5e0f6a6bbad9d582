//! Buying through Stripe end to end, in both modes: CutX calls Stripe's API through
//! async-stripe (at localstripe, behind `fake_stripe`'s Checkout and portal endpoints), Stripe's
//! signed events come back through webhook-svc, and credits move only in billing-svc.
//! Skipped without localstripe (and, for the distributed mode, the test servers), unless
//! `CUTX_REQUIRE_TOOLS=1`.

use std::time::Duration;

use axum::http::Method;
use cutx_proto::pb;
use cutx_tests::fake_stripe::{FakeStripe, KEY, LocalStripe};
use cutx_tests::{Client, Infra, Mode, Server, Transport, eventually};

const SECRET: &str = "whsec_cutx_checkout_test";

struct Stripe {
    localstripe: LocalStripe,
    fake: FakeStripe,
}

/// localstripe with a product and the starter plan (whose id is the catalog's Stripe price).
async fn stripe() -> Option<Stripe> {
    let localstripe = LocalStripe::start().await?;
    let product = localstripe.call(Method::POST, "/v1/products", &[("name", "CutX Starter")]).await;
    let plan = [
        ("id", "price_starter"),
        ("amount", "999"),
        ("currency", "usd"),
        ("interval", "month"),
        ("product", product["id"].as_str().unwrap()),
    ];
    localstripe.call(Method::POST, "/v1/plans", &plan).await;
    let fake = FakeStripe::start(&localstripe).await;
    Some(Stripe { localstripe, fake })
}

async fn mesh(mode: Mode, stripe: &Stripe) -> Option<Server> {
    let env = [
        ("CUTX_STRIPE_SECRET_KEY", KEY),
        ("CUTX_STRIPE_BASE_URL", stripe.fake.base.as_str()),
        ("CUTX_STRIPE_WEBHOOK_SECRET", SECRET),
        ("CUTX_STRIPE_PRICES", "pack_150=price_pack150,starter=price_starter"),
    ];
    let server = match mode {
        Mode::Dev => Server::spawn_with(&env).await,
        Mode::Distributed => Server::spawn_distributed_with(&Infra::from_env()?, &env).await,
    };
    let endpoint = match mode {
        Mode::Dev => format!("{}/webhooks/stripe", server.base),
        Mode::Distributed => format!("{}/webhooks/stripe", server.service("webhook")),
    };
    stripe.fake.send_events_to(&endpoint, SECRET);
    stripe.localstripe.register_webhook(&endpoint, SECRET).await;
    Some(server)
}

fn checkout(r#type: pb::CheckoutType, item: &str) -> pb::CreateCheckoutSessionRequest {
    match r#type {
        pb::CheckoutType::Subscription => {
            pb::CreateCheckoutSessionRequest { r#type: r#type as i32, plan: item.into(), pack: String::new() }
        }
        _ => pb::CreateCheckoutSessionRequest { r#type: r#type as i32, pack: item.into(), plan: String::new() },
    }
}

async fn balance_reaches(client: &Client, want: i64) {
    eventually(&format!("a balance of {want}"), Duration::from_secs(15), || async {
        (client.balance().await.unwrap().balance == want).then_some(())
    })
    .await;
}

async fn a_pack_and_a_plan_are_bought_through_stripe_checkout(mode: Mode) {
    let Some(stripe) = stripe().await else { return };
    let Some(server) = mesh(mode, &stripe).await else { return };
    let mut client = Client::new(&server, Transport::Rest);
    let user = client.sign_in("checkout@example.com").await;
    let start = client.balance().await.unwrap().balance;

    // A pack: the session names the user, the pack and a Stripe customer made for the user. Stripe
    // fails the first create (a 500): it is sent again with the same Idempotency-Key.
    stripe.fake.fail_next_session_creates(1);
    let session = client.checkout_session(checkout(pb::CheckoutType::OneTime, "pack_150")).await.unwrap();
    let keys = stripe.fake.session_create_keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].is_some() && keys[0] == keys[1], "one key for both attempts: {keys:?}");
    assert!(session.session_id.starts_with("cs_") && session.url.starts_with("http"), "{session:?}");
    let kept = stripe.fake.session(&session.session_id).expect("the session reached Stripe");
    assert_eq!((kept.mode.as_str(), kept.price.as_str()), ("payment", "price_pack150"));
    assert_eq!(kept.client_reference_id, user.id);
    assert_eq!(kept.metadata.get("item").map(String::as_str), Some("pack_150"));
    assert!(kept.success_url.contains("{CHECKOUT_SESSION_ID}"), "{}", kept.success_url);
    let customer = stripe.localstripe.call(Method::GET, &format!("/v1/customers/{}", kept.customer), &[]).await;
    assert_eq!(customer["metadata"]["user_id"], user.id.as_str(), "the customer is in Stripe, naming the user");
    // Paid; the event delivered three times at once: the balance rises once.
    let answers = stripe.fake.complete(&stripe.localstripe, &session.session_id, 3).await;
    assert!(answers.iter().all(|s| *s == 200 || *s == 503), "{answers:?}");
    balance_reaches(&client, start + 150).await;

    // A plan: the same customer, and localstripe's own signed invoice events grant its credits.
    let plan = client.checkout_session(checkout(pb::CheckoutType::Subscription, "starter")).await.unwrap();
    let kept_plan = stripe.fake.session(&plan.session_id).unwrap();
    assert_eq!(kept_plan.customer, kept.customer, "one Stripe customer per user");
    assert_eq!(kept_plan.mode, "subscription");
    stripe.fake.complete(&stripe.localstripe, &plan.session_id, 1).await;
    balance_reaches(&client, start + 150 + 100).await;
    eventually("the plan to be kept", Duration::from_secs(15), || async {
        let s = client.subscription().await.unwrap();
        (s.plan == "starter" && s.status() == pb::SubscriptionStatus::Active).then_some(())
    })
    .await;

    // The next month's invoice, paid in localstripe: 100 more, once.
    let subscription =
        stripe.localstripe.call(Method::GET, &format!("/v1/subscriptions?customer={}", kept.customer), &[]).await;
    let sub_id = subscription["data"][0]["id"].as_str().expect("the subscription in localstripe").to_string();
    let invoice = stripe
        .localstripe
        .call(Method::POST, "/v1/invoices", &[("customer", kept.customer.as_str()), ("subscription", sub_id.as_str())])
        .await;
    let invoice_id = invoice["id"].as_str().unwrap().to_string();
    stripe.localstripe.call(Method::POST, &format!("/v1/invoices/{invoice_id}/pay"), &[]).await;
    balance_reaches(&client, start + 150 + 200).await;

    // That invoice's charge refunded in full: its 100 credits taken back.
    let paid = stripe.localstripe.call(Method::GET, &format!("/v1/invoices/{invoice_id}"), &[]).await;
    let charge =
        paid["charge"]["id"].as_str().or_else(|| paid["charge"].as_str()).expect("the invoice's charge").to_string();
    let answers = stripe.fake.refund(&stripe.localstripe, &charge, 999).await;
    assert_eq!(answers, [200]);
    balance_reaches(&client, start + 150 + 100).await;
    let ledger = client.ledger().await.unwrap();
    let moved: Vec<(pb::LedgerEntryType, i64)> = ledger
        .iter()
        .rev()
        .filter(|e| e.r#type() != pb::LedgerEntryType::FreeTier)
        .map(|e| (e.r#type(), e.amount))
        .collect();
    assert_eq!(
        moved,
        [
            (pb::LedgerEntryType::Purchase, 150),
            (pb::LedgerEntryType::Subscription, 100),
            (pb::LedgerEntryType::Subscription, 100),
            (pb::LedgerEntryType::Adjustment, -100),
        ]
    );

    // The customer portal, for the plan.
    let portal = client_portal(&client, &server).await;
    assert!(portal.contains("/portal/bps_"), "{portal}");
    server.stop().await;
}

/// `POST /api/checkout/portal` over REST: the portal's URL.
async fn client_portal(client: &Client, server: &Server) -> String {
    let answer = cutx_tests::http()
        .post(format!("{}/api/checkout/portal", server.base))
        .bearer_auth(client.token().unwrap())
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    body["url"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_and_a_plan_are_bought_through_stripe_checkout_in_dev() {
    a_pack_and_a_plan_are_bought_through_stripe_checkout(Mode::Dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_and_a_plan_are_bought_through_stripe_checkout_when_distributed() {
    a_pack_and_a_plan_are_bought_through_stripe_checkout(Mode::Distributed).await;
}
