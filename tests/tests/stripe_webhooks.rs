//! Stripe's signed events through webhook-svc into billing-svc, in both modes (`cutx dev` with
//! `/webhooks/stripe` on its one port; distributed with `cutx webhook` as its own process, which
//! reaches billing-svc only over gRPC). The events follow Stripe's documented shapes and are
//! signed as Stripe signs them (`Stripe-Signature: t=..,v1=..`); the tests post them as Stripe
//! would, duplicates and concurrency included.

use std::time::Duration;

use cutx_proto::pb;
use cutx_tests::{Client, Infra, Mode, Server, Transport, eventually};
use serde_json::{Value, json};

const SECRET: &str = "whsec_cutx_test_endpoint";
const PRICES: &str = "pack_150=price_pack150,starter=price_starter,pro=price_pro";

async fn mesh(mode: Mode) -> Option<Server> {
    let env = [("CUTX_STRIPE_WEBHOOK_SECRET", SECRET), ("CUTX_STRIPE_PRICES", PRICES)];
    match mode {
        Mode::Dev => Some(Server::spawn_with(&env).await),
        Mode::Distributed => Some(Server::spawn_distributed_with(&Infra::from_env()?, &env).await),
    }
}

/// Where Stripe posts: `cutx dev`'s one port, or `cutx webhook`.
fn endpoint(server: &Server, mode: Mode) -> String {
    let base = match mode {
        Mode::Dev => server.base.clone(),
        Mode::Distributed => server.service("webhook").to_string(),
    };
    format!("{base}/webhooks/stripe")
}

fn now() -> i64 {
    cutx_platform::clock::now_millis() / 1000
}

/// Posts `event` signed with `secret` at `timestamp`; the HTTP status.
async fn post_signed(url: &str, event: &Value, secret: &str, timestamp: i64) -> u16 {
    let body = serde_json::to_vec_pretty(event).unwrap();
    let signature = webhook_svc::stripe_signature::sign(secret, timestamp, &body);
    let answer = cutx_tests::http()
        .post(url)
        .header("stripe-signature", signature)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    answer.status().as_u16()
}

async fn post(url: &str, event: &Value) -> u16 {
    post_signed(url, event, SECRET, now()).await
}

fn event(id: &str, kind: &str, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": kind, "created": now(), "livemode": false,
           "api_version": "2024-06-20", "pending_webhooks": 1, "data": {"object": object}})
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn session_completed(user: &str, session: &str, customer: &str, pi: &str) -> Value {
    json!({"id": session, "object": "checkout.session", "mode": "payment", "payment_status": "paid",
           "status": "complete", "client_reference_id": user, "customer": customer, "payment_intent": pi,
           "amount_total": 1299, "currency": "usd", "metadata": {"user_id": user, "kind": "pack", "item": "pack_150"}})
}

fn invoice(id: &str, customer: &str, charge: &str) -> Value {
    json!({"id": id, "object": "invoice", "customer": customer, "subscription": "sub_1", "status": "paid",
           "amount_paid": 999, "charge": charge, "payment_intent": new_id("pi"), "period_end": now() + 2_592_000,
           "lines": {"object": "list", "data": [{"object": "line_item", "price": {"id": "price_starter"}, "quantity": 1}]}})
}

async fn purchases(client: &Client) -> Vec<(pb::LedgerEntryType, i64)> {
    let ledger = client.ledger().await.unwrap();
    let mut moved: Vec<_> =
        ledger.iter().filter(|e| e.r#type() != pb::LedgerEntryType::FreeTier).map(|e| (e.r#type(), e.amount)).collect();
    moved.reverse();
    moved
}

async fn a_pack_is_granted_once_however_often_and_however_its_events_arrive(mode: Mode) {
    let Some(server) = mesh(mode).await else { return };
    let url = endpoint(&server, mode);
    let mut client = Client::new(&server, Transport::Rest);
    let user = client.sign_in("buyer@example.com").await;
    let start = client.balance().await.unwrap().balance;
    let (session, customer, pi) = (new_id("cs"), new_id("cus"), new_id("pi"));
    let completed =
        event(&new_id("evt"), "checkout.session.completed", session_completed(&user.id, &session, &customer, &pi));
    // Three deliveries of one event, at once; then a second event about the same session.
    let answers = futures::future::join_all((0..3).map(|_| post(&url, &completed))).await;
    assert!(answers.iter().all(|s| *s == 200 || *s == 503), "{answers:?}");
    // A delivery told to come back (503, another was in flight) is retried, as Stripe does.
    assert_eq!(post(&url, &completed).await, 200);
    let async_paid = event(
        &new_id("evt"),
        "checkout.session.async_payment_succeeded",
        session_completed(&user.id, &session, &customer, &pi),
    );
    assert_eq!(post(&url, &async_paid).await, 200);
    assert_eq!(client.balance().await.unwrap().balance, start + 150);
    assert_eq!(purchases(&client).await, [(pb::LedgerEntryType::Purchase, 150)]);
    assert_eq!(client.balance().await.unwrap().lifetime_purchased, 150);

    // Refused on the raw body, before anything is parsed: nothing changes.
    let forged = event(
        &new_id("evt"),
        "checkout.session.completed",
        session_completed(&user.id, &new_id("cs"), &customer, &new_id("pi")),
    );
    assert_eq!(post_signed(&url, &forged, "whsec_someone_else", now()).await, 401, "another secret");
    // Well past the 300 s tolerance (the exact boundary is the unit test's): this side's clock
    // and webhook-svc's read the second at different moments.
    assert_eq!(post_signed(&url, &forged, SECRET, now() - 310).await, 401, "a stale timestamp");
    assert_eq!(post_signed(&url, &forged, SECRET, now() + 310).await, 401, "a timestamp from the future");
    let unsigned = cutx_tests::http().post(&url).body(forged.to_string()).send().await.unwrap();
    assert_eq!(unsigned.status().as_u16(), 401, "no signature");
    // A replay of the genuine event, freshly signed: acknowledged, nothing granted.
    assert_eq!(post(&url, &completed).await, 200);
    // An unpaid session (a delayed payment method) grants nothing yet.
    let mut unpaid = session_completed(&user.id, &new_id("cs"), &customer, &new_id("pi"));
    unpaid["payment_status"] = "unpaid".into();
    assert_eq!(post(&url, &event(&new_id("evt"), "checkout.session.completed", unpaid)).await, 200);
    // Event types CutX does not act on are acknowledged and ignored.
    assert_eq!(post(&url, &event(&new_id("evt"), "customer.created", json!({"id": customer}))).await, 200);
    assert_eq!(client.balance().await.unwrap().balance, start + 150);
    assert_eq!(purchases(&client).await, [(pb::LedgerEntryType::Purchase, 150)]);
    server.stop().await;
}

async fn a_plan_is_credited_once_per_invoice_followed_and_its_refund_taken_back(mode: Mode) {
    let Some(server) = mesh(mode).await else { return };
    let url = endpoint(&server, mode);
    let mut client = Client::new(&server, Transport::Rest);
    let user = client.sign_in("subscriber@example.com").await;
    let start = client.balance().await.unwrap().balance;
    // The customer becomes the user's with their first checkout (here a pack).
    let customer = new_id("cus");
    let completed = session_completed(&user.id, &new_id("cs"), &customer, &new_id("pi"));
    assert_eq!(post(&url, &event(&new_id("evt"), "checkout.session.completed", completed)).await, 200);

    // Stripe sends both invoice.paid and invoice.payment_succeeded for one payment.
    let (invoice_id, charge) = (new_id("in"), new_id("ch"));
    let paid = invoice(&invoice_id, &customer, &charge);
    assert_eq!(post(&url, &event(&new_id("evt"), "invoice.paid", paid.clone())).await, 200);
    assert_eq!(post(&url, &event(&new_id("evt"), "invoice.payment_succeeded", paid)).await, 200);
    assert_eq!(client.balance().await.unwrap().balance, start + 150 + 100);

    let subscription = |status: &str, created_offset: i64, price: &str| {
        let mut e = event(
            &new_id("evt"),
            "customer.subscription.updated",
            json!({"id": "sub_1", "object": "subscription", "customer": customer, "status": status,
                   "cancel_at_period_end": false,
                   "items": {"data": [{"price": {"id": price}, "current_period_end": now() + 2_592_000}]}}),
        );
        e["created"] = (now() + created_offset).into();
        e
    };
    assert_eq!(post(&url, &subscription("active", 0, "price_pro")).await, 200);
    // An older update, delivered late, changes nothing.
    assert_eq!(post(&url, &subscription("active", -60, "price_starter")).await, 200);
    let plan = client.subscription().await.unwrap();
    assert_eq!((plan.plan.as_str(), plan.status()), ("pro", pb::SubscriptionStatus::Active));
    assert!(plan.current_period_end.is_some());
    let mut failed = event(
        &new_id("evt"),
        "invoice.payment_failed",
        json!({"id": new_id("in"), "customer": customer, "subscription": "sub_1"}),
    );
    failed["created"] = (now() + 1).into();
    assert_eq!(post(&url, &failed).await, 200);
    assert_eq!(client.subscription().await.unwrap().status(), pb::SubscriptionStatus::PastDue);

    // The invoice's charge refunded in full: its 100 credits taken back, once.
    let refunded = json!({"id": charge, "object": "charge", "amount": 999, "amount_refunded": 999, "refunded": true,
                          "invoice": invoice_id, "payment_intent": null});
    assert_eq!(post(&url, &event(&new_id("evt"), "charge.refunded", refunded.clone())).await, 200);
    assert_eq!(post(&url, &event(&new_id("evt"), "charge.refunded", refunded)).await, 200);
    eventually("the refund to be taken back", Duration::from_secs(5), || async {
        (client.balance().await.unwrap().balance == start + 150).then_some(())
    })
    .await;
    assert_eq!(
        purchases(&client).await,
        [
            (pb::LedgerEntryType::Purchase, 150),
            (pb::LedgerEntryType::Subscription, 100),
            (pb::LedgerEntryType::Adjustment, -100)
        ]
    );
    let deleted = event(
        &new_id("evt"),
        "customer.subscription.deleted",
        json!({"id": "sub_1", "customer": customer, "status": "canceled", "items": {"data": [{"price": {"id": "price_pro"}}]}}),
    );
    let mut deleted = deleted;
    deleted["created"] = (now() + 2).into();
    assert_eq!(post(&url, &deleted).await, 200);
    assert_eq!(client.subscription().await.unwrap().status(), pb::SubscriptionStatus::Canceled);
    server.stop().await;
}

async fn without_a_stripe_key_checkout_is_unavailable_and_the_rest_works(mode: Mode) {
    let Some(server) = mesh(mode).await else { return };
    for transport in [Transport::Rest, Transport::Grpc, Transport::GrpcWeb] {
        let mut client = Client::new(&server, transport);
        client.sign_in(&format!("shopper-{transport:?}@example.com").to_lowercase()).await;
        let catalog = client.catalog().await.unwrap();
        assert_eq!(catalog.packs.iter().map(|p| p.credits).collect::<Vec<_>>(), [50, 150, 500, 1500]);
        assert_eq!(catalog.plans.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["starter", "pro", "agency"]);
        let pack = pb::CreateCheckoutSessionRequest {
            r#type: pb::CheckoutType::OneTime as i32,
            pack: "pack_150".into(),
            plan: String::new(),
        };
        let refused = client.checkout_session(pack).await.unwrap_err();
        assert_eq!(refused.code, tonic::Code::Unavailable, "{refused:?}");
        assert!(refused.message.contains("not configured"), "{}", refused.message);
        if transport == Transport::Rest {
            assert_eq!(refused.http, Some(503));
        }
        let unknown = pb::CreateCheckoutSessionRequest {
            r#type: pb::CheckoutType::OneTime as i32,
            pack: "pack_7".into(),
            plan: String::new(),
        };
        let refused = client.checkout_session(unknown).await.unwrap_err();
        assert_eq!(
            (refused.code, refused.fields.clone()),
            (tonic::Code::InvalidArgument, vec!["pack".to_string()]),
            "{refused:?}"
        );
        let no_type = pb::CreateCheckoutSessionRequest { r#type: 0, pack: "pack_150".into(), plan: String::new() };
        let refused = client.checkout_session(no_type).await.unwrap_err();
        assert_eq!(refused.code, tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.fields.iter().any(|f| f == "type"), "{refused:?}");
        assert_eq!(client.subscription().await.unwrap(), pb::GetSubscriptionResponse::default());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_is_granted_once_however_often_and_however_its_events_arrive_in_dev() {
    a_pack_is_granted_once_however_often_and_however_its_events_arrive(Mode::Dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_is_granted_once_however_often_and_however_its_events_arrive_when_distributed() {
    a_pack_is_granted_once_however_often_and_however_its_events_arrive(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_credited_once_per_invoice_followed_and_its_refund_taken_back_in_dev() {
    a_plan_is_credited_once_per_invoice_followed_and_its_refund_taken_back(Mode::Dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_credited_once_per_invoice_followed_and_its_refund_taken_back_when_distributed() {
    a_plan_is_credited_once_per_invoice_followed_and_its_refund_taken_back(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_stripe_key_checkout_is_unavailable_and_the_rest_works_in_dev() {
    without_a_stripe_key_checkout_is_unavailable_and_the_rest_works(Mode::Dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_stripe_key_checkout_is_unavailable_and_the_rest_works_when_distributed() {
    without_a_stripe_key_checkout_is_unavailable_and_the_rest_works(Mode::Distributed).await;
}
