//! Checkout through Stripe's API with async-stripe, its base URL configurable (tests point it at
//! localstripe behind a fake that adds the Checkout and portal endpoints localstripe lacks).

use std::collections::HashMap;
use std::time::Duration;

use cutx_platform::ids::UserId;
use cutx_platform::secret::Secret;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{CreateCheckoutSession, CreateCheckoutSessionLineItems};
use stripe_core::customer::CreateCustomer;

use crate::checkout::{Checkout, CheckoutError, Session, SessionRequest};

/// How long one Stripe call may take (async-stripe has no deadline of its own).
const CALL_DEADLINE: Duration = Duration::from_secs(15);

/// Attempts of a call Stripe could not answer (a connection error, a 5xx, a 429), each with the
/// same Idempotency-Key, so a create that reached Stripe is answered again rather than repeated.
/// async-stripe's own retries send no key without its `uuid` feature, so they are not used.
const ATTEMPTS: u32 = 3;

/// Runs `call` with the idempotency key `key` until it is answered, at most [`ATTEMPTS`] times.
async fn with_retries<T, F, Fut>(what: &str, key: String, call: F) -> Result<T, CheckoutError>
where
    F: Fn(IdempotencyKey) -> Fut,
    Fut: std::future::Future<Output = Result<T, StripeError>>,
{
    let mut attempt = 1;
    loop {
        let idempotency = IdempotencyKey::new(key.clone())
            .map_err(|e| CheckoutError::Refused { status: 0, message: e.to_string() })?;
        match call(idempotency).await.map_err(classify) {
            Err(CheckoutError::Unavailable(why)) if attempt < ATTEMPTS => {
                tracing::info!(what, attempt, %why, "Stripe did not answer; trying again with the same key");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Where the user is sent back to.
#[derive(Debug, Clone)]
pub struct ReturnUrls {
    /// After paying; `{CHECKOUT_SESSION_ID}` is filled in by Stripe.
    pub success: String,
    pub cancel: String,
    /// From the customer portal.
    pub portal: String,
}

impl ReturnUrls {
    /// The app's billing pages under its public URL.
    pub fn under(public_url: &str) -> Self {
        let base = public_url.trim_end_matches('/');
        Self {
            success: format!("{base}/billing/success?session_id={{CHECKOUT_SESSION_ID}}"),
            cancel: format!("{base}/billing/cancel"),
            portal: format!("{base}/billing"),
        }
    }
}

pub struct StripeCheckout {
    client: Client,
    urls: ReturnUrls,
}

impl StripeCheckout {
    /// `base_url` is Stripe's (`https://api.stripe.com`), without `/v1`.
    pub fn new(key: &Secret, base_url: &str, urls: ReturnUrls) -> Result<Self, CheckoutError> {
        let base = format!("{}/", base_url.trim_end_matches('/'));
        let client = ClientBuilder::new(key.expose())
            .url(base)
            .timeout(CALL_DEADLINE)
            .build()
            .map_err(|e| CheckoutError::Refused { status: 0, message: format!("the Stripe client: {e}") })?;
        Ok(Self { client, urls })
    }
}

/// What a Stripe error means for the caller.
fn classify(e: StripeError) -> CheckoutError {
    match e {
        StripeError::ClientError(m) => CheckoutError::Unavailable(m),
        StripeError::Timeout => CheckoutError::Unavailable("timed out".into()),
        StripeError::Stripe(api, status) if status == 429 || status >= 500 => {
            CheckoutError::Unavailable(format!("{status}: {}", api.message.unwrap_or_default()))
        }
        StripeError::Stripe(api, status) => CheckoutError::Refused { status, message: api.message.unwrap_or_default() },
        // A failure answer whose body is not Stripe's error JSON (a proxy's 502 page).
        StripeError::JSONDeserialize(m) if m == "error deserializing Stripe error" => CheckoutError::Unavailable(m),
        e => CheckoutError::Refused { status: 0, message: e.to_string() },
    }
}

/// A key of its own for one create (its retries share it).
fn fresh_key(what: &str) -> String {
    format!("cutx-{what}-{}", uuid::Uuid::new_v4().simple())
}

fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tonic::async_trait]
impl Checkout for StripeCheckout {
    async fn create_customer(&self, user: UserId) -> Result<String, CheckoutError> {
        let user = user.to_string();
        // One customer per user even when two checkouts race: Stripe answers a repeated key with
        // the first customer for 24 hours (and billing-svc keeps the first one it stores).
        let create = CreateCustomer::new().metadata(metadata(&[("user_id", &user)]));
        let customer = with_retries("customer", format!("cutx-customer-{user}"), |key| {
            create.clone().customize().request_strategy(RequestStrategy::Idempotent(key)).send(&self.client)
        })
        .await?;
        Ok(customer.id.to_string())
    }

    async fn create_session(&self, request: SessionRequest<'_>) -> Result<Session, CheckoutError> {
        let user = request.user.to_string();
        let mut line = CreateCheckoutSessionLineItems::new();
        line.price = Some(request.price.to_string());
        line.quantity = Some(1);
        let (mode, kind) = match request.subscription {
            true => (CheckoutSessionMode::Subscription, "subscription"),
            false => (CheckoutSessionMode::Payment, "pack"),
        };
        let create = CreateCheckoutSession::new()
            .mode(mode)
            .line_items(vec![line])
            .success_url(self.urls.success.as_str())
            .cancel_url(self.urls.cancel.as_str())
            .client_reference_id(user.as_str())
            .metadata(metadata(&[("user_id", &user), ("kind", kind), ("item", request.item)]))
            .customer(request.customer_id);
        let session = with_retries("checkout", fresh_key("checkout"), |key| {
            create.clone().customize().request_strategy(RequestStrategy::Idempotent(key)).send(&self.client)
        })
        .await?;
        let url = session.url.ok_or_else(|| CheckoutError::Refused {
            status: 200,
            message: "a checkout session without a url".into(),
        })?;
        Ok(Session { id: session.id.to_string(), url })
    }

    async fn create_portal(&self, customer_id: &str) -> Result<String, CheckoutError> {
        let create = CreateBillingPortalSession::new().customer(customer_id).return_url(self.urls.portal.as_str());
        let session = with_retries("portal", fresh_key("portal"), |key| {
            create.clone().customize().request_strategy(RequestStrategy::Idempotent(key)).send(&self.client)
        })
        .await?;
        Ok(session.url)
    }
}
