//! `POST /webhooks/stripe`: Stripe's events, turned into calls on billing-svc.
//!
//! Order of work, each step before the next: the `Stripe-Signature` is checked on the raw body
//! (401 and nothing changes if it fails); the body is parsed, only the few fields each event
//! needs (Stripe adds fields with every API version, and localstripe sends older shapes, so
//! nothing else is required); the event id is claimed (a duplicate answers 200 at once); the
//! event is applied through `BillingInternalService`, whose effects are idempotent on the Stripe
//! object too, so two events about one checkout session or one invoice grant once.
//!
//! Which events do what:
//! - `checkout.session.completed` with `payment_status=paid`, and
//!   `checkout.session.async_payment_succeeded`: a pack's credits (mode `payment`); a
//!   subscription's session grants nothing, its invoice does;
//! - `invoice.paid` and `invoice.payment_succeeded` (Stripe sends both for one payment;
//!   localstripe only the second): the plan's credits, once per invoice;
//! - `customer.subscription.created/updated/deleted`: the user's plan and its status;
//! - `invoice.payment_failed`: the plan is past due;
//! - `charge.refunded`: the credits the charge bought are taken back as far as the balance
//!   allows.
//!
//! Any other type is acknowledged and ignored. A failure that may pass (billing-svc unreachable)
//! gives the claim back and answers 503, so Stripe's retry applies it.

use std::sync::Arc;

use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use cutx_platform::grpc::MeshChannel;
use cutx_platform::secret::Secret;
use cutx_proto::pb::{self, billing_internal_service_client::BillingInternalServiceClient};
use serde_json::Value;

use crate::claims::{self, Claims};
use crate::stripe_signature::{self, SignatureError};

/// The largest event taken (Stripe's are a few kilobytes).
const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub struct State {
    pub claims: Claims,
    pub billing: BillingInternalServiceClient<MeshChannel>,
    /// The endpoint's signing secrets (`whsec_...`); several while one is rolled.
    pub secrets: Arc<Vec<Secret>>,
}

pub fn routes(state: State) -> axum::Router {
    axum::Router::new()
        .route("/webhooks/stripe", post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Why an event was not taken, as the sender is told.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the Stripe-Signature is missing, stale or wrong")]
    Signature(#[source] SignatureError),
    #[error("Stripe webhooks are not configured on this server")]
    NotConfigured,
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("try again later")]
    Busy,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        use crate::refusal::Kind;
        let kind = match self {
            Self::Signature(_) => Kind::Unauthenticated,
            Self::NotConfigured | Self::Busy => Kind::Unavailable,
            Self::BadRequest(_) => Kind::InvalidArgument,
        };
        crate::refusal::answer(kind, self.to_string())
    }
}

async fn receive(AxumState(state): AxumState<State>, headers: HeaderMap, body: Bytes) -> Result<Response, Refusal> {
    if state.secrets.is_empty() {
        return Err(Refusal::NotConfigured);
    }
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    let now = cutx_platform::clock::now_millis() / 1000;
    stripe_signature::verify(header, &body, &state.secrets, now).map_err(|e| {
        tracing::info!(reason = %e, "a Stripe webhook was refused");
        Refusal::Signature(e)
    })?;
    let event: Value =
        serde_json::from_slice(&body).map_err(|_| Refusal::BadRequest("the body is not a JSON event"))?;
    let (Some(id), Some(kind)) = (event["id"].as_str(), event["type"].as_str()) else {
        return Err(Refusal::BadRequest("an event has an id and a type"));
    };
    if id.is_empty() || id.len() > claims::MAX_WEBHOOK_ID {
        return Err(Refusal::BadRequest("the event id must be 1 to 256 characters"));
    }
    let Some(call) = Call::of(kind, &event) else {
        tracing::debug!(event = id, kind, "a Stripe event we do not act on; acknowledged");
        return Ok((StatusCode::OK, "ignored").into_response());
    };
    let claim = claims::claim_id("stripe", id);
    match state.claims.claim("stripe", &claim).await {
        Ok(claims::Claim::Taken) => {}
        Ok(claims::Claim::Done) => return Ok((StatusCode::OK, "duplicate").into_response()),
        Ok(claims::Claim::InFlight) => return Err(Refusal::Busy),
        Err(e) => {
            tracing::error!(error = %e, "claiming a Stripe event id");
            return Err(Refusal::Busy);
        }
    }
    let outcome = call.send(state.billing.clone()).await;
    let settled = match &outcome {
        Ok(_) => state.claims.done(&claim).await,
        Err(_) => state.claims.release(&claim).await,
    };
    if let Err(e) = settled {
        tracing::error!(event = id, error = %e, "recording a Stripe event");
    }
    match outcome {
        Ok(answer) => {
            if !answer.applied {
                tracing::info!(event = id, kind, note = %answer.note, "a Stripe event changed nothing");
            }
            Ok((StatusCode::OK, "ok").into_response())
        }
        Err(status) => {
            tracing::warn!(event = id, kind, code = ?status.code(), "billing-svc did not take a Stripe event; Stripe retries");
            Err(Refusal::Busy)
        }
    }
}

/// The call on billing-svc an event makes.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    GrantCheckout(pb::GrantCheckoutRequest),
    GrantInvoice(pb::GrantInvoiceRequest),
    SyncSubscription(pb::SyncSubscriptionRequest),
    MarkInvoiceFailed(pb::MarkInvoiceFailedRequest),
    ReverseCharge(pb::ReverseChargeRequest),
}

/// A string field, or the `id` of an expanded object in its place (localstripe expands
/// `invoice.charge`; Stripe does when asked).
fn id_of(value: &Value) -> String {
    value.as_str().or_else(|| value["id"].as_str()).unwrap_or_default().to_string()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// A price's id, or the plan's on older API versions.
fn price_of(item: &Value) -> Option<String> {
    [&item["price"]["id"], &item["plan"]["id"], &item["pricing"]["price_details"]["price"]]
        .into_iter()
        .find_map(|v| v.as_str().map(str::to_string))
}

impl Call {
    fn of(kind: &str, event: &Value) -> Option<Self> {
        let object = &event["data"]["object"];
        let created = event["created"].as_i64().unwrap_or(0);
        Some(match kind {
            "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
                // A subscription's credits come with its invoices; an unpaid session (a delayed
                // payment method) with its async_payment_succeeded.
                if object["mode"] != "payment" || object["payment_status"] != "paid" {
                    return None;
                }
                let user = object["client_reference_id"].as_str().or_else(|| object["metadata"]["user_id"].as_str());
                Self::GrantCheckout(pb::GrantCheckoutRequest {
                    session_id: text(&object["id"]),
                    user_id: user.unwrap_or_default().to_string(),
                    customer_id: id_of(&object["customer"]),
                    pack: text(&object["metadata"]["item"]),
                    payment_intent_id: id_of(&object["payment_intent"]),
                    amount: object["amount_total"].as_i64().unwrap_or(0),
                    currency: text(&object["currency"]),
                })
            }
            "invoice.paid" | "invoice.payment_succeeded" => {
                let lines = object["lines"]["data"].as_array().map(Vec::as_slice).unwrap_or_default();
                let subscription = match object["subscription"].as_str() {
                    Some(s) => s.to_string(),
                    None => id_of(&object["parent"]["subscription_details"]["subscription"]),
                };
                Self::GrantInvoice(pb::GrantInvoiceRequest {
                    invoice_id: text(&object["id"]),
                    customer_id: id_of(&object["customer"]),
                    subscription_id: subscription,
                    price_ids: lines.iter().filter_map(price_of).collect(),
                    charge_id: id_of(&object["charge"]),
                    payment_intent_id: id_of(&object["payment_intent"]),
                    amount: object["amount_paid"].as_i64().unwrap_or(0),
                    period_end: object["period_end"].as_i64().unwrap_or(0),
                })
            }
            "invoice.payment_failed" => Self::MarkInvoiceFailed(pb::MarkInvoiceFailedRequest {
                invoice_id: text(&object["id"]),
                customer_id: id_of(&object["customer"]),
                subscription_id: id_of(&object["subscription"]),
                event_created: created,
            }),
            "customer.subscription.created" | "customer.subscription.updated" | "customer.subscription.deleted" => {
                let item = &object["items"]["data"][0];
                let status =
                    if kind == "customer.subscription.deleted" { "canceled".into() } else { text(&object["status"]) };
                Self::SyncSubscription(pb::SyncSubscriptionRequest {
                    subscription_id: text(&object["id"]),
                    customer_id: id_of(&object["customer"]),
                    price_id: price_of(item).or_else(|| price_of(object)).unwrap_or_default(),
                    status,
                    // Newer API versions keep the period on each item.
                    current_period_end: object["current_period_end"]
                        .as_i64()
                        .or_else(|| item["current_period_end"].as_i64())
                        .unwrap_or(0),
                    cancel_at_period_end: object["cancel_at_period_end"].as_bool().unwrap_or(false),
                    event_created: created,
                })
            }
            "charge.refunded" => Self::ReverseCharge(pb::ReverseChargeRequest {
                charge_id: text(&object["id"]),
                payment_intent_id: id_of(&object["payment_intent"]),
                invoice_id: id_of(&object["invoice"]),
                amount: object["amount"].as_i64().unwrap_or(0),
                amount_refunded: object["amount_refunded"].as_i64().unwrap_or(0),
            }),
            _ => return None,
        })
    }

    /// Sends the call. A refusal of the event's data (INVALID_ARGUMENT: a field missing) is
    /// final and answered as done; anything else is for Stripe to retry.
    async fn send(
        self,
        mut billing: BillingInternalServiceClient<MeshChannel>,
    ) -> Result<pb::StripeEffect, tonic::Status> {
        let answer = match self {
            Self::GrantCheckout(r) => billing.grant_checkout(r).await.map(|a| a.into_inner().effect),
            Self::GrantInvoice(r) => billing.grant_invoice(r).await.map(|a| a.into_inner().effect),
            Self::SyncSubscription(r) => billing.sync_subscription(r).await.map(|a| a.into_inner().effect),
            Self::MarkInvoiceFailed(r) => billing.mark_invoice_failed(r).await.map(|a| a.into_inner().effect),
            Self::ReverseCharge(r) => billing.reverse_charge(r).await.map(|a| a.into_inner().effect),
        };
        match answer {
            Ok(effect) => Ok(effect.unwrap_or_default()),
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                tracing::warn!(message = status.message(), "billing-svc refused a Stripe event's data; not retried");
                Ok(pb::StripeEffect { applied: false, balance: 0, note: "refused".into() })
            }
            Err(status) => Err(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_paid_pack_checkout_grants_and_an_unpaid_or_subscription_one_does_not() {
        let session = |mode: &str, paid: &str| {
            json!({"id": "evt_1", "created": 1, "data": {"object": {
                "id": "cs_1", "object": "checkout.session", "mode": mode, "payment_status": paid,
                "client_reference_id": "u1", "customer": "cus_1", "payment_intent": "pi_1",
                "amount_total": 1299, "currency": "usd", "metadata": {"item": "pack_150", "user_id": "u1"}}}})
        };
        let granted = Call::of("checkout.session.completed", &session("payment", "paid"));
        assert_eq!(
            granted,
            Some(Call::GrantCheckout(pb::GrantCheckoutRequest {
                session_id: "cs_1".into(),
                user_id: "u1".into(),
                customer_id: "cus_1".into(),
                pack: "pack_150".into(),
                payment_intent_id: "pi_1".into(),
                amount: 1299,
                currency: "usd".into(),
            }))
        );
        assert_eq!(Call::of("checkout.session.async_payment_succeeded", &session("payment", "paid")), granted);
        assert_eq!(Call::of("checkout.session.completed", &session("payment", "unpaid")), None);
        assert_eq!(Call::of("checkout.session.completed", &session("subscription", "paid")), None);
    }

    #[test]
    fn an_invoice_is_read_with_its_charge_expanded_or_not_and_its_plan_from_price_or_plan() {
        // localstripe's shape: the charge expanded, the plan (no price) on each line.
        let localstripe = json!({"id": "evt_2", "type": "invoice.payment_succeeded", "created": 5, "data": {"object": {
            "id": "in_1", "customer": "cus_1", "subscription": "sub_1", "amount_paid": 999, "period_end": 99,
            "charge": {"id": "ch_1", "object": "charge"}, "payment_intent": "pi_1",
            "lines": {"data": [{"plan": {"id": "price_starter"}}]}}}});
        // Stripe's newer shape: no charge field, the subscription under parent, price on lines.
        let stripe = json!({"id": "evt_3", "type": "invoice.paid", "created": 5, "data": {"object": {
            "id": "in_1", "customer": "cus_1", "amount_paid": 999, "period_end": 99, "payment_intent": "pi_1",
            "parent": {"subscription_details": {"subscription": "sub_1"}},
            "lines": {"data": [{"pricing": {"price_details": {"price": "price_starter"}}}]}}}});
        let Some(Call::GrantInvoice(a)) = Call::of("invoice.payment_succeeded", &localstripe) else { panic!() };
        let Some(Call::GrantInvoice(b)) = Call::of("invoice.paid", &stripe) else { panic!() };
        assert_eq!(
            (a.invoice_id.as_str(), a.subscription_id.as_str(), a.charge_id.as_str()),
            ("in_1", "sub_1", "ch_1")
        );
        assert_eq!(a.price_ids, ["price_starter"]);
        assert_eq!((b.subscription_id.as_str(), b.charge_id.as_str()), ("sub_1", ""));
        assert_eq!(b.price_ids, ["price_starter"]);
    }

    #[test]
    fn a_deleted_subscription_is_canceled_and_unknown_event_types_are_not_acted_on() {
        let sub = json!({"id": "evt_4", "created": 7, "data": {"object": {
            "id": "sub_1", "customer": "cus_1", "status": "active", "cancel_at_period_end": true,
            "items": {"data": [{"price": {"id": "price_pro"}, "current_period_end": 1000}]}}}});
        let Some(Call::SyncSubscription(updated)) = Call::of("customer.subscription.updated", &sub) else { panic!() };
        assert_eq!((updated.status.as_str(), updated.price_id.as_str()), ("active", "price_pro"));
        assert_eq!((updated.current_period_end, updated.cancel_at_period_end, updated.event_created), (1000, true, 7));
        let Some(Call::SyncSubscription(deleted)) = Call::of("customer.subscription.deleted", &sub) else { panic!() };
        assert_eq!(deleted.status, "canceled");
        for kind in ["customer.created", "payment_intent.succeeded", "invoice.created", ""] {
            assert_eq!(Call::of(kind, &sub), None, "{kind}");
        }
    }

    #[test]
    fn a_refunded_charge_names_its_payment_intent_and_invoice() {
        let charge = json!({"id": "evt_5", "data": {"object": {
            "id": "ch_1", "payment_intent": "pi_1", "invoice": {"id": "in_1"}, "amount": 999, "amount_refunded": 500}}});
        assert_eq!(
            Call::of("charge.refunded", &charge),
            Some(Call::ReverseCharge(pb::ReverseChargeRequest {
                charge_id: "ch_1".into(),
                payment_intent_id: "pi_1".into(),
                invoice_id: "in_1".into(),
                amount: 999,
                amount_refunded: 500,
            }))
        );
    }
}
