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

use crate::entry::EntryType;
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
        }
    }
}

#[derive(Clone)]
pub struct Billing {
    pub(crate) store: Store,
    pub(crate) mesh: MeshKey,
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
}
