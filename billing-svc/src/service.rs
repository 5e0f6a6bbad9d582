//! The gRPC faces of billing-svc: `BillingService` for signed-in users, `BillingInternalService`
//! for the mesh.

use cutx_platform::credits::Credits;
use cutx_platform::error::{insufficient_credits, internal, invalid_field};
use cutx_platform::ids::UserId;
use cutx_platform::mesh::MeshKey;
use cutx_platform::paging::{Page, PageQuery};
use cutx_proto::pb::{
    self, billing_internal_service_server::BillingInternalService, billing_service_server::BillingService,
};
use tonic::{Request, Response, Status};

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::checkout::{Checkout, CheckoutError, SessionRequest};
use crate::entry::EntryType;
use crate::payments::{ChargeRefunded, CheckoutPaid, Effect, InvoicePaid, SubscriptionState, SubscriptionStatus};
use crate::store::{Store, StoreError};

const DEFAULT_PAGE: u64 = 50;
const MAX_KEY_LEN: usize = 200;

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InsufficientCredits { needed, balance } => insufficient_credits(needed, balance),
            StoreError::Db(e) => internal("billing store", e),
            e @ StoreError::Corrupt { .. } => internal("billing store", e),
            e @ StoreError::Overflow { .. } => {
                cutx_platform::error::with_reason(tonic::Code::FailedPrecondition, e.to_string(), "CREDITS_OVERFLOW")
            }
            e @ StoreError::KeyReused { .. } => {
                cutx_platform::error::with_reason(tonic::Code::AlreadyExists, e.to_string(), "IDEMPOTENCY_KEY_REUSED")
            }
            e @ StoreError::Contended(_) => Status::aborted(e.to_string()),
        }
    }
}

#[derive(Clone)]
pub struct Billing {
    pub(crate) store: Store,
    pub(crate) mesh: MeshKey,
    pub(crate) catalog: Arc<Catalog>,
    /// None: no Stripe key is configured, and checkout answers UNAVAILABLE.
    pub(crate) checkout: Option<Arc<dyn Checkout>>,
}

impl From<CheckoutError> for Status {
    fn from(e: CheckoutError) -> Self {
        match e {
            CheckoutError::Unavailable(_) => {
                tracing::warn!(error = %e, "a Stripe call failed");
                Status::unavailable("payments are unavailable right now; try again shortly")
            }
            CheckoutError::Refused { .. } => internal("Stripe", e),
        }
    }
}

fn no_stripe() -> Status {
    cutx_platform::error::with_reason(
        tonic::Code::Unavailable,
        "payments are not configured on this server (no Stripe key)",
        "PAYMENTS_NOT_CONFIGURED",
    )
}

/// What an effect answers to webhook-svc.
fn effect(e: Effect) -> Option<pb::StripeEffect> {
    Some(match e {
        Effect::Applied { balance } => pb::StripeEffect { applied: true, balance: balance.get(), note: String::new() },
        Effect::AlreadyDone => pb::StripeEffect { applied: false, balance: 0, note: "done before".into() },
        Effect::NotOurs(note) => pb::StripeEffect { applied: false, balance: 0, note },
    })
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() || value.len() > 255 {
        return Err(invalid_field(field, "must be 1 to 255 characters"));
    }
    Ok(value)
}

fn optional(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

fn cents(field: &str, amount: i64) -> Result<i64, Status> {
    if amount < 0 {
        return Err(invalid_field(field, "must not be negative"));
    }
    Ok(amount)
}

/// Unix seconds as millis; 0 is unknown.
fn millis_of(field: &str, seconds: i64) -> Result<Option<i64>, Status> {
    match seconds {
        0 => Ok(None),
        s if s > 0 => s.checked_mul(1000).map(Some).ok_or_else(|| invalid_field(field, "is too large")),
        _ => Err(invalid_field(field, "must not be negative")),
    }
}

#[tonic::async_trait]
impl BillingService for Billing {
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let caller = self.mesh.caller(&request)?;
        let b = self.store.balance(caller).await?;
        Ok(Response::new(pb::GetBalanceResponse {
            balance: b.balance.get(),
            lifetime_purchased: b.lifetime_purchased.get(),
            lifetime_used: b.lifetime_used.get(),
        }))
    }

    async fn list_ledger(
        &self,
        request: Request<pb::ListLedgerRequest>,
    ) -> Result<Response<pb::ListLedgerResponse>, Status> {
        let caller = self.mesh.caller(&request)?;
        let pb::ListLedgerRequest { page_size, page_token, limit, offset } = request.into_inner();
        let page = Page::parse(PageQuery { page_size, page_token, limit, offset }, DEFAULT_PAGE)?;
        let rows = self.store.ledger(caller, &page).await?;
        let next_page_token = page.next_token(rows.iter().map(|r| r.id.as_str()));
        let entries = rows
            .into_iter()
            .map(|r| {
                let balance_after = Credits::new(r.balance_after)
                    .map_err(|e| internal("billing store", format!("ledger entry {}: balance_after: {e}", r.id)))?;
                Ok(pb::LedgerEntry {
                    r#type: r.entry_type.to_pb() as i32,
                    id: r.id,
                    amount: r.amount,
                    balance_after: balance_after.get(),
                    reference: r.reference,
                    created_at: Some(cutx_platform::clock::to_timestamp(r.created_at)),
                })
            })
            .collect::<Result<_, Status>>()?;
        Ok(Response::new(pb::ListLedgerResponse { entries, next_page_token }))
    }

    async fn get_catalog(
        &self,
        request: Request<pb::GetCatalogRequest>,
    ) -> Result<Response<pb::GetCatalogResponse>, Status> {
        self.mesh.caller(&request)?;
        let packs = self
            .catalog
            .packs
            .iter()
            .map(|p| pb::CreditPack {
                id: p.id.clone(),
                credits: p.credits.get(),
                price: p.price,
                currency: p.currency.clone(),
            })
            .collect();
        let plans = self
            .catalog
            .plans
            .iter()
            .map(|p| pb::Plan {
                id: p.id.clone(),
                name: p.name.clone(),
                credits_per_month: p.credits_per_month.get(),
                price: p.price,
                currency: p.currency.clone(),
            })
            .collect();
        Ok(Response::new(pb::GetCatalogResponse { packs, plans }))
    }

    async fn create_checkout_session(
        &self,
        request: Request<pb::CreateCheckoutSessionRequest>,
    ) -> Result<Response<pb::CreateCheckoutSessionResponse>, Status> {
        let caller = self.mesh.caller(&request)?;
        let pb::CreateCheckoutSessionRequest { r#type, pack, plan } = request.into_inner();
        let (item, price, subscription) = match pb::CheckoutType::try_from(r#type) {
            Ok(pb::CheckoutType::OneTime) => {
                let found = self.catalog.pack(&pack).ok_or_else(|| {
                    let known: Vec<&str> = self.catalog.packs.iter().map(|p| p.id.as_str()).collect();
                    invalid_field("pack", format!("must be one of {}", known.join(", ")))
                })?;
                (found.id.as_str(), found.stripe_price.as_deref(), false)
            }
            Ok(pb::CheckoutType::Subscription) => {
                let found = self.catalog.plan(&plan).ok_or_else(|| {
                    let known: Vec<&str> = self.catalog.plans.iter().map(|p| p.id.as_str()).collect();
                    invalid_field("plan", format!("must be one of {}", known.join(", ")))
                })?;
                (found.id.as_str(), found.stripe_price.as_deref(), true)
            }
            _ => return Err(invalid_field("type", "must be one_time or subscription")),
        };
        let checkout = self.checkout.as_ref().ok_or_else(no_stripe)?;
        let price = price.ok_or_else(|| {
            cutx_platform::error::with_reason(
                tonic::Code::Unavailable,
                format!("{item} cannot be bought yet: it has no Stripe price configured"),
                "PAYMENTS_NOT_CONFIGURED",
            )
        })?;
        let user = caller.user_id();
        let customer_id = match self.store.customer_of(user).await? {
            Some(customer) => customer,
            None => {
                let made = checkout.create_customer(user).await?;
                self.store.keep_customer(user, &made).await?
            }
        };
        let session = checkout
            .create_session(SessionRequest { user, customer_id: &customer_id, price, subscription, item })
            .await?;
        Ok(Response::new(pb::CreateCheckoutSessionResponse { session_id: session.id, url: session.url }))
    }

    async fn create_portal_session(
        &self,
        request: Request<pb::CreatePortalSessionRequest>,
    ) -> Result<Response<pb::CreatePortalSessionResponse>, Status> {
        let caller = self.mesh.caller(&request)?;
        let checkout = self.checkout.as_ref().ok_or_else(no_stripe)?;
        let customer = self.store.customer_of(caller.user_id()).await?.ok_or_else(|| {
            cutx_platform::error::with_reason(
                tonic::Code::FailedPrecondition,
                "there is nothing to manage before a first checkout",
                "NO_STRIPE_CUSTOMER",
            )
        })?;
        Ok(Response::new(pb::CreatePortalSessionResponse { url: checkout.create_portal(&customer).await? }))
    }

    async fn get_subscription(
        &self,
        request: Request<pb::GetSubscriptionRequest>,
    ) -> Result<Response<pb::GetSubscriptionResponse>, Status> {
        let caller = self.mesh.caller(&request)?;
        let Some(kept) = self.store.subscription(caller).await? else {
            return Ok(Response::new(pb::GetSubscriptionResponse::default()));
        };
        Ok(Response::new(pb::GetSubscriptionResponse {
            plan: kept.plan,
            status: kept.status.to_pb() as i32,
            current_period_end: kept.current_period_end.map(cutx_platform::clock::to_timestamp),
            cancel_at_period_end: kept.cancel_at_period_end,
        }))
    }
}

fn user_id(raw: &str) -> Result<UserId, Status> {
    raw.parse().map_err(|_| invalid_field("user_id", "must be a user id"))
}

fn key(field: &str, raw: &str) -> Result<(), Status> {
    if raw.is_empty() || raw.len() > MAX_KEY_LEN {
        return Err(invalid_field(field, "must be 1 to 200 characters"));
    }
    Ok(())
}

fn positive(amount: i64) -> Result<Credits, Status> {
    match Credits::new(amount) {
        Ok(credits) if !credits.is_zero() => Ok(credits),
        _ => Err(invalid_field("amount", "must be positive")),
    }
}

#[tonic::async_trait]
impl BillingInternalService for Billing {
    async fn debit(&self, request: Request<pb::DebitRequest>) -> Result<Response<pb::DebitResponse>, Status> {
        let pb::DebitRequest { user_id: user, amount, idempotency_key, reference } = request.into_inner();
        let user = user_id(&user)?;
        key("idempotency_key", &idempotency_key)?;
        let applied = self.store.debit(user, positive(amount)?, &idempotency_key, &reference).await?;
        Ok(Response::new(pb::DebitResponse { balance: applied.balance.get(), applied: applied.applied }))
    }

    async fn refund(&self, request: Request<pb::RefundRequest>) -> Result<Response<pb::RefundResponse>, Status> {
        let pb::RefundRequest { user_id: user, debit_idempotency_key, idempotency_key, reference } =
            request.into_inner();
        let user = user_id(&user)?;
        key("debit_idempotency_key", &debit_idempotency_key)?;
        key("idempotency_key", &idempotency_key)?;
        let applied = self.store.refund(user, &debit_idempotency_key, &idempotency_key, &reference).await?;
        Ok(Response::new(pb::RefundResponse {
            balance: applied.balance.get(),
            applied: applied.applied,
            amount: applied.amount.get(),
        }))
    }

    async fn grant(&self, request: Request<pb::GrantRequest>) -> Result<Response<pb::GrantResponse>, Status> {
        let pb::GrantRequest { user_id: user, amount, r#type, idempotency_key, reference } = request.into_inner();
        let user = user_id(&user)?;
        key("idempotency_key", &idempotency_key)?;
        let entry_type = pb::LedgerEntryType::try_from(r#type)
            .ok()
            .and_then(EntryType::grant_from_pb)
            .ok_or_else(|| invalid_field("type", "must be purchase, subscription, bonus or free_tier"))?;
        let applied = self.store.grant(user, positive(amount)?, entry_type, &idempotency_key, &reference).await?;
        Ok(Response::new(pb::GrantResponse { balance: applied.balance.get(), applied: applied.applied }))
    }

    async fn grant_checkout(
        &self,
        request: Request<pb::GrantCheckoutRequest>,
    ) -> Result<Response<pb::GrantCheckoutResponse>, Status> {
        let pb::GrantCheckoutRequest {
            session_id,
            user_id: user,
            customer_id,
            pack,
            payment_intent_id,
            amount,
            currency: _,
        } = request.into_inner();
        let session_id = required("session_id", &session_id)?;
        let user = user_id(&user)?;
        let Some(pack) = self.catalog.pack(&pack) else {
            let note = format!("checkout session {session_id} bought no pack of ours ({pack:?})");
            return Ok(Response::new(pb::GrantCheckoutResponse { effect: effect(Effect::NotOurs(note)) }));
        };
        if let Some(customer) = optional(&customer_id) {
            self.store.keep_customer(user, customer).await?;
        }
        let paid = CheckoutPaid {
            session_id,
            user,
            pack,
            payment_intent_id: optional(&payment_intent_id),
            amount: cents("amount", amount)?,
        };
        Ok(Response::new(pb::GrantCheckoutResponse { effect: effect(self.store.grant_checkout(&paid).await?) }))
    }

    async fn grant_invoice(
        &self,
        request: Request<pb::GrantInvoiceRequest>,
    ) -> Result<Response<pb::GrantInvoiceResponse>, Status> {
        let pb::GrantInvoiceRequest {
            invoice_id,
            customer_id,
            subscription_id: _,
            price_ids,
            charge_id,
            payment_intent_id,
            amount,
            period_end: _,
        } = request.into_inner();
        let invoice_id = required("invoice_id", &invoice_id)?;
        let customer_id = required("customer_id", &customer_id)?;
        let Some(plan) = price_ids.iter().find_map(|p| self.catalog.plan_by_price(p)) else {
            return Ok(Response::new(pb::GrantInvoiceResponse {
                effect: effect(Effect::NotOurs(format!("invoice {invoice_id} bills no plan of ours ({price_ids:?})"))),
            }));
        };
        let paid = InvoicePaid {
            invoice_id,
            customer_id,
            plan,
            charge_id: optional(&charge_id),
            payment_intent_id: optional(&payment_intent_id),
            amount: cents("amount", amount)?,
        };
        Ok(Response::new(pb::GrantInvoiceResponse { effect: effect(self.store.grant_invoice(&paid).await?) }))
    }

    async fn sync_subscription(
        &self,
        request: Request<pb::SyncSubscriptionRequest>,
    ) -> Result<Response<pb::SyncSubscriptionResponse>, Status> {
        let pb::SyncSubscriptionRequest {
            subscription_id,
            customer_id,
            price_id,
            status,
            current_period_end,
            cancel_at_period_end,
            event_created,
        } = request.into_inner();
        let subscription_id = required("subscription_id", &subscription_id)?;
        let customer_id = required("customer_id", &customer_id)?;
        let status = SubscriptionStatus::from_stripe(&status)
            .ok_or_else(|| invalid_field("status", "must be a Stripe subscription status"))?;
        let Some(plan) = self.catalog.plan_by_price(&price_id) else {
            let note = format!("subscription {subscription_id} is to no plan of ours ({price_id:?})");
            return Ok(Response::new(pb::SyncSubscriptionResponse { effect: effect(Effect::NotOurs(note)) }));
        };
        let state = SubscriptionState {
            subscription_id,
            customer_id,
            plan,
            status,
            current_period_end: millis_of("current_period_end", current_period_end)?,
            cancel_at_period_end,
            changed_at: millis_of("event_created", event_created)?.unwrap_or(0),
        };
        Ok(Response::new(pb::SyncSubscriptionResponse { effect: effect(self.store.sync_subscription(&state).await?) }))
    }

    async fn mark_invoice_failed(
        &self,
        request: Request<pb::MarkInvoiceFailedRequest>,
    ) -> Result<Response<pb::MarkInvoiceFailedResponse>, Status> {
        let pb::MarkInvoiceFailedRequest { invoice_id: _, customer_id: _, subscription_id, event_created } =
            request.into_inner();
        let Some(subscription_id) = optional(&subscription_id) else {
            return Ok(Response::new(pb::MarkInvoiceFailedResponse {
                effect: effect(Effect::NotOurs("a failed invoice of no subscription".into())),
            }));
        };
        let changed_at = millis_of("event_created", event_created)?.unwrap_or(0);
        Ok(Response::new(pb::MarkInvoiceFailedResponse {
            effect: effect(self.store.mark_past_due(subscription_id, changed_at).await?),
        }))
    }

    async fn reverse_charge(
        &self,
        request: Request<pb::ReverseChargeRequest>,
    ) -> Result<Response<pb::ReverseChargeResponse>, Status> {
        let pb::ReverseChargeRequest { charge_id, payment_intent_id, invoice_id, amount, amount_refunded } =
            request.into_inner();
        let refunded = ChargeRefunded {
            charge_id: required("charge_id", &charge_id)?,
            payment_intent_id: optional(&payment_intent_id),
            invoice_id: optional(&invoice_id),
            amount: cents("amount", amount)?,
            amount_refunded: cents("amount_refunded", amount_refunded)?,
        };
        Ok(Response::new(pb::ReverseChargeResponse { effect: effect(self.store.reverse_charge(&refunded).await?) }))
    }
}
