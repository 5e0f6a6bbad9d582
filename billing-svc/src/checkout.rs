//! Where checkout and portal sessions are made: Stripe, behind a seam so billing-svc's rules
//! (which item, which customer, what to say when it fails) do not depend on the client.

use cutx_platform::ids::UserId;

/// A Checkout Session to create.
pub struct SessionRequest<'a> {
    pub user: UserId,
    pub customer_id: &'a str,
    /// The Stripe price to charge.
    pub price: &'a str,
    pub subscription: bool,
    /// The catalog item (`pack_50`, `starter`), kept in the session's metadata.
    pub item: &'a str,
}

/// A created Checkout Session.
pub struct Session {
    pub id: String,
    pub url: String,
}

/// Why Stripe did not make a session. The client is told only the kind.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// Stripe could not be reached or failed (connection, timeout, 5xx, 429): try again later.
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    /// Stripe refused the request (a 4xx): our configuration is wrong (a price id, the key).
    #[error("Stripe refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
}

#[tonic::async_trait]
pub trait Checkout: Send + Sync {
    /// Creates a Stripe customer for the user (its metadata names the user).
    async fn create_customer(&self, user: UserId) -> Result<String, CheckoutError>;
    async fn create_session(&self, request: SessionRequest<'_>) -> Result<Session, CheckoutError>;
    /// A customer-portal session's URL.
    async fn create_portal(&self, customer_id: &str) -> Result<String, CheckoutError>;
}
