//! What Stripe's events do to credits and plans, each idempotent on its Stripe object: a
//! checkout session or an invoice grants once (its row in `stripe_payments` is the claim, taken
//! in the same transaction as the grant), a subscription keeps the newest state Stripe reported,
//! and a refunded charge takes back what it bought, as far as the balance allows, once per
//! refunded amount.

use cutx_platform::clock::now_millis;
use cutx_platform::credits::Credits;
use cutx_platform::ids::UserId;
use cutx_platform::mesh::Caller;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, DeriveActiveEnum, EntityTrait, EnumIter, QueryFilter, QueryOrder};

use crate::catalog::{Pack, Plan};
use crate::entity::{customer, payment, subscription};
use crate::entry::EntryType;
use crate::store::{Movement, Store, StoreError, apply_in, current_balance, ensure_balance_row};

/// A subscription's status, in Stripe's words (stored as them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text", rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Trialing,
    PastDue,
    Unpaid,
    Incomplete,
    Paused,
    Canceled,
}

impl SubscriptionStatus {
    /// Stripe's word; `incomplete_expired` is a subscription that never started: canceled.
    pub fn from_stripe(word: &str) -> Option<Self> {
        Some(match word {
            "active" => Self::Active,
            "trialing" => Self::Trialing,
            "past_due" => Self::PastDue,
            "unpaid" => Self::Unpaid,
            "incomplete" => Self::Incomplete,
            "paused" => Self::Paused,
            "canceled" | "incomplete_expired" => Self::Canceled,
            _ => return None,
        })
    }

    pub fn to_pb(self) -> cutx_proto::pb::SubscriptionStatus {
        use cutx_proto::pb::SubscriptionStatus as S;
        match self {
            Self::Active => S::Active,
            Self::Trialing => S::Trialing,
            Self::PastDue => S::PastDue,
            Self::Unpaid => S::Unpaid,
            Self::Incomplete => S::Incomplete,
            Self::Paused => S::Paused,
            Self::Canceled => S::Canceled,
        }
    }
}

/// What an effect did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Credits or a plan changed; the balance after.
    Applied { balance: Credits },
    /// Done before (another event about the same object), or older than what is kept.
    AlreadyDone,
    /// About something billing-svc does not know (a customer it did not create, a price no plan
    /// has): nothing to do.
    NotOurs(String),
}

/// A paid checkout session of a pack.
pub struct CheckoutPaid<'a> {
    pub session_id: &'a str,
    pub user: UserId,
    pub pack: &'a Pack,
    pub payment_intent_id: Option<&'a str>,
    pub amount: i64,
}

/// A paid invoice of a plan.
pub struct InvoicePaid<'a> {
    pub invoice_id: &'a str,
    pub customer_id: &'a str,
    pub plan: &'a Plan,
    pub charge_id: Option<&'a str>,
    pub payment_intent_id: Option<&'a str>,
    pub amount: i64,
}

/// A subscription's state as an event reported it.
pub struct SubscriptionState<'a> {
    pub subscription_id: &'a str,
    pub customer_id: &'a str,
    pub plan: &'a Plan,
    pub status: SubscriptionStatus,
    /// Millis.
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    /// The event's time, in millis.
    pub changed_at: i64,
}

/// A charge's refunds so far.
pub struct ChargeRefunded<'a> {
    pub charge_id: &'a str,
    pub payment_intent_id: Option<&'a str>,
    pub invoice_id: Option<&'a str>,
    pub amount: i64,
    pub amount_refunded: i64,
}

/// The credits a refund of `refunded` out of `amount` takes back of `credits`: all of them for
/// a full refund, else the same share rounded down (the user keeps a part credit).
pub fn credits_for_refund(credits: i64, amount: i64, refunded: i64) -> i64 {
    if amount <= 0 || refunded >= amount {
        return credits;
    }
    let share = i128::from(credits) * i128::from(Ord::max(refunded, 0)) / i128::from(amount);
    i64::try_from(share).unwrap_or(credits)
}

impl Store {
    /// The user's Stripe customer, if one was made.
    pub async fn customer_of(&self, user: UserId) -> Result<Option<String>, StoreError> {
        let row = customer::Entity::find_by_id(user.to_string()).one(self.db.reads()).await?;
        Ok(row.map(|r| r.customer_id))
    }

    /// Keeps `customer_id` as the user's; if another was kept first (a concurrent checkout), that
    /// one is the user's and is answered.
    pub async fn keep_customer(&self, user: UserId, customer_id: &str) -> Result<String, StoreError> {
        let row = customer::ActiveModel {
            user_id: Set(user.to_string()),
            customer_id: Set(customer_id.to_string()),
            created_at: Set(now_millis()),
        };
        customer::Entity::insert(row)
            .on_conflict_do_nothing_on([customer::Column::UserId])
            .exec_without_returning(self.db.writes())
            .await?;
        let kept = customer::Entity::find_by_id(user.to_string()).one(self.db.writes()).await?;
        Ok(kept.map(|r| r.customer_id).unwrap_or_else(|| customer_id.to_string()))
    }

    async fn user_of_customer(&self, customer_id: &str) -> Result<Option<UserId>, StoreError> {
        let row =
            customer::Entity::find().filter(customer::Column::CustomerId.eq(customer_id)).one(self.db.reads()).await?;
        row.map(|r| {
            r.user_id.parse().map_err(|_| StoreError::Corrupt {
                row: format!("stripe_customers {customer_id}"),
                what: "user_id is not a user id".into(),
            })
        })
        .transpose()
    }

    /// The caller's newest subscription.
    pub async fn subscription(&self, caller: Caller) -> Result<Option<subscription::Model>, StoreError> {
        Ok(subscription::Entity::find()
            .filter(subscription::Column::UserId.eq(caller.user_id().to_string()))
            .order_by_desc(subscription::Column::ChangedAt)
            .one(self.db.reads())
            .await?)
    }

    pub async fn grant_checkout(&self, paid: &CheckoutPaid<'_>) -> Result<Effect, StoreError> {
        let claim = Claim {
            id: paid.session_id,
            user: paid.user,
            charge_id: None,
            payment_intent_id: paid.payment_intent_id,
            amount: paid.amount,
            credits: paid.pack.credits,
        };
        let key = format!("stripe:checkout:{}", paid.session_id);
        let grant = Movement {
            user: paid.user,
            amount: paid.pack.credits,
            entry_type: EntryType::Purchase,
            key: &key,
            reference: paid.session_id,
        };
        self.grant_once(&claim, &grant).await
    }

    pub async fn grant_invoice(&self, paid: &InvoicePaid<'_>) -> Result<Effect, StoreError> {
        let Some(user) = self.user_of_customer(paid.customer_id).await? else {
            return Ok(Effect::NotOurs(format!("customer {} is not one of ours", paid.customer_id)));
        };
        let credits = paid.plan.credits_per_month;
        let claim = Claim {
            id: paid.invoice_id,
            user,
            charge_id: paid.charge_id,
            payment_intent_id: paid.payment_intent_id,
            amount: paid.amount,
            credits,
        };
        let key = format!("stripe:invoice:{}", paid.invoice_id);
        let grant = Movement {
            user,
            amount: credits,
            entry_type: EntryType::Subscription,
            key: &key,
            reference: paid.invoice_id,
        };
        self.grant_once(&claim, &grant).await
    }

    /// The payment's row and its grant in one transaction: the row is the claim on the object.
    async fn grant_once(&self, claim: &Claim<'_>, grant: &Movement<'_>) -> Result<Effect, StoreError> {
        let txn = self.db.begin_write().await?;
        ensure_balance_row(&txn, claim.user).await?;
        let row = payment::ActiveModel {
            id: Set(claim.id.to_string()),
            user_id: Set(claim.user.to_string()),
            charge_id: Set(claim.charge_id.map(str::to_string)),
            payment_intent_id: Set(claim.payment_intent_id.map(str::to_string)),
            amount: Set(claim.amount),
            credits: Set(claim.credits.get()),
            credits_reversed: Set(0),
            credits_unrecovered: Set(0),
            created_at: Set(now_millis()),
        };
        let inserted = payment::Entity::insert(row)
            .on_conflict_do_nothing_on([payment::Column::Id])
            .exec_without_returning(&txn)
            .await?;
        if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            txn.commit().await?;
            return Ok(Effect::AlreadyDone);
        }
        let applied = apply_in(&txn, grant).await?;
        txn.commit().await?;
        Ok(Effect::Applied { balance: applied.balance })
    }

    /// Keeps the subscription's state unless a newer one is kept already.
    pub async fn sync_subscription(&self, state: &SubscriptionState<'_>) -> Result<Effect, StoreError> {
        let Some(user) = self.user_of_customer(state.customer_id).await? else {
            return Ok(Effect::NotOurs(format!("customer {} is not one of ours", state.customer_id)));
        };
        let row = subscription::ActiveModel {
            id: Set(state.subscription_id.to_string()),
            user_id: Set(user.to_string()),
            plan: Set(state.plan.id.clone()),
            status: Set(state.status),
            current_period_end: Set(state.current_period_end),
            cancel_at_period_end: Set(state.cancel_at_period_end),
            changed_at: Set(state.changed_at),
            updated_at: Set(now_millis()),
        };
        use subscription::Column as C;
        let newer = Expr::col((subscription::Entity, C::ChangedAt)).lte(state.changed_at);
        let upsert = OnConflict::column(C::Id)
            .update_columns([C::Plan, C::Status, C::CurrentPeriodEnd, C::CancelAtPeriodEnd, C::ChangedAt, C::UpdatedAt])
            .action_and_where(newer)
            .to_owned();
        let changed =
            subscription::Entity::insert(row).on_conflict(upsert).exec_without_returning(self.db.writes()).await?;
        Ok(if changed == 0 { Effect::AlreadyDone } else { Effect::Applied { balance: self.balance_of(user).await? } })
    }

    /// A failed invoice payment: the subscription is past due, unless a newer state is kept or it
    /// has ended.
    pub async fn mark_past_due(&self, subscription_id: &str, changed_at: i64) -> Result<Effect, StoreError> {
        use subscription::Column as C;
        let known = subscription::Entity::find_by_id(subscription_id).one(self.db.reads()).await?;
        let Some(known) = known else {
            return Ok(Effect::NotOurs(format!("subscription {subscription_id} is not one of ours")));
        };
        let changed = subscription::Entity::update_many()
            .col_expr(C::Status, Expr::value(SubscriptionStatus::PastDue))
            .col_expr(C::ChangedAt, Expr::value(changed_at))
            .col_expr(C::UpdatedAt, Expr::value(now_millis()))
            .filter(C::Id.eq(subscription_id))
            .filter(C::ChangedAt.lte(changed_at))
            .filter(C::Status.ne(SubscriptionStatus::Canceled))
            .exec(self.db.writes())
            .await?
            .rows_affected;
        let user: UserId = known.user_id.parse().map_err(|_| StoreError::Corrupt {
            row: format!("subscriptions {subscription_id}"),
            what: "user_id is not a user id".into(),
        })?;
        Ok(if changed == 0 { Effect::AlreadyDone } else { Effect::Applied { balance: self.balance_of(user).await? } })
    }

    /// Takes back what the refunded part of a charge bought, as far as the balance allows; what
    /// it cannot take is recorded as unrecovered. Once per refunded amount.
    pub async fn reverse_charge(&self, refunded: &ChargeRefunded<'_>) -> Result<Effect, StoreError> {
        let Some(paid) = self.payment_of(refunded).await? else {
            return Ok(Effect::NotOurs(format!("charge {} bought no credits of ours", refunded.charge_id)));
        };
        let user: UserId = paid.user_id.parse().map_err(|_| StoreError::Corrupt {
            row: format!("stripe_payments {}", paid.id),
            what: "user_id is not a user id".into(),
        })?;
        let target = credits_for_refund(paid.credits, refunded.amount, refunded.amount_refunded);
        let txn = self.db.begin_write().await?;
        ensure_balance_row(&txn, user).await?;
        let now = payment::Entity::find_by_id(paid.id.clone())
            .one(&txn)
            .await?
            .ok_or(StoreError::Contended(paid.id.clone()))?;
        let settled = now.credits_reversed + now.credits_unrecovered;
        let owed = target - settled;
        if owed <= 0 {
            txn.commit().await?;
            return Ok(Effect::AlreadyDone);
        }
        let balance = current_balance(&txn, user).await?;
        let take = Ord::min(owed, balance.get());
        // Conditional on what was read: a concurrent reversal of the same payment makes this
        // change nothing, and the caller tries again.
        use payment::Column as C;
        let moved = payment::Entity::update_many()
            .col_expr(C::CreditsReversed, Expr::col(C::CreditsReversed).add(take))
            .col_expr(C::CreditsUnrecovered, Expr::col(C::CreditsUnrecovered).add(owed - take))
            .filter(C::Id.eq(paid.id.clone()))
            .filter(C::CreditsReversed.eq(now.credits_reversed))
            .filter(C::CreditsUnrecovered.eq(now.credits_unrecovered))
            .exec(&txn)
            .await?
            .rows_affected;
        if moved == 0 {
            txn.rollback().await?;
            return Err(StoreError::Contended(paid.id));
        }
        let balance = if take > 0 {
            let key = format!("stripe:refund:{}:{target}", paid.id);
            let amount =
                Credits::new(take).map_err(|e| StoreError::Corrupt { row: paid.id.clone(), what: e.to_string() })?;
            let adjustment =
                Movement { user, amount, entry_type: EntryType::Adjustment, key: &key, reference: refunded.charge_id };
            apply_in(&txn, &adjustment).await?.balance
        } else {
            balance
        };
        txn.commit().await?;
        if owed > take {
            tracing::warn!(payment = %paid.id, unrecovered = owed - take, "a refund took back more credits than the balance held");
        }
        Ok(Effect::Applied { balance })
    }

    /// The payment a charge paid for: by the charge, its payment intent, or its invoice.
    async fn payment_of(&self, refunded: &ChargeRefunded<'_>) -> Result<Option<payment::Model>, StoreError> {
        let mut any = sea_orm::Condition::any().add(payment::Column::ChargeId.eq(refunded.charge_id));
        if let Some(pi) = refunded.payment_intent_id {
            any = any.add(payment::Column::PaymentIntentId.eq(pi));
        }
        if let Some(invoice) = refunded.invoice_id {
            any = any.add(payment::Column::Id.eq(invoice));
        }
        Ok(payment::Entity::find().filter(any).one(self.db.reads()).await?)
    }

    async fn balance_of(&self, user: UserId) -> Result<Credits, StoreError> {
        let row = crate::entity::balance::Entity::find_by_id(user.to_string()).one(self.db.reads()).await?;
        row.map_or(Ok(Credits::ZERO), |r| {
            Credits::new(r.balance).map_err(|e| StoreError::Corrupt { row: r.user_id, what: format!("balance: {e}") })
        })
    }
}

/// A payment's row, claimed with its grant.
struct Claim<'a> {
    id: &'a str,
    user: UserId,
    charge_id: Option<&'a str>,
    payment_intent_id: Option<&'a str>,
    amount: i64,
    credits: Credits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refund_takes_back_the_share_of_credits_it_refunds_rounded_down() {
        let cases = [
            // (credits, amount, refunded) -> taken back
            ((150, 1299, 1299), 150),
            ((150, 1299, 2000), 150),
            ((150, 1299, 0), 0),
            ((150, 1300, 650), 75),
            ((150, 1299, 650), 75),
            ((100, 999, 1), 0),
            ((100, 999, 998), 99),
            ((100, 0, 0), 100),
        ];
        for ((credits, amount, refunded), taken) in cases {
            assert_eq!(credits_for_refund(credits, amount, refunded), taken, "{credits} {amount} {refunded}");
        }
    }

    #[test]
    fn every_stripe_status_word_has_a_status_and_unknown_words_none() {
        for (word, status) in [
            ("active", SubscriptionStatus::Active),
            ("trialing", SubscriptionStatus::Trialing),
            ("past_due", SubscriptionStatus::PastDue),
            ("unpaid", SubscriptionStatus::Unpaid),
            ("incomplete", SubscriptionStatus::Incomplete),
            ("incomplete_expired", SubscriptionStatus::Canceled),
            ("paused", SubscriptionStatus::Paused),
            ("canceled", SubscriptionStatus::Canceled),
        ] {
            assert_eq!(SubscriptionStatus::from_stripe(word), Some(status), "{word}");
        }
        assert_eq!(SubscriptionStatus::from_stripe("Active"), None);
        assert_eq!(SubscriptionStatus::from_stripe(""), None);
    }
}
