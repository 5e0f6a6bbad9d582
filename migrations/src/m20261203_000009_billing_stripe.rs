//! billing-svc and Stripe: each user's Stripe customer (created once), each subscription's plan
//! and status as Stripe last reported them, and each payment credits were granted for (a
//! checkout session or an invoice, its charge and payment intent), so a refund of that charge
//! takes back what it bought, once per refunded amount.

use sea_orm_migration::prelude::*;

use crate::{big, id, millis, millis_null, text, text_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StripeCustomers {
    Table,
    UserId,
    CustomerId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Subscriptions {
    Table,
    Id,
    UserId,
    Plan,
    Status,
    CurrentPeriodEnd,
    CancelAtPeriodEnd,
    /// When Stripe made the state kept (its event's `created`, in ms): an older one is ignored.
    ChangedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StripePayments {
    Table,
    /// The object credits were granted for: `cs_...` or `in_...`.
    Id,
    UserId,
    ChargeId,
    PaymentIntentId,
    /// What was paid, in the currency's smallest unit.
    Amount,
    Credits,
    CreditsReversed,
    /// Credits a refund should have taken back that the balance no longer held.
    CreditsUnrecovered,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StripeCustomers::Table)
                    .if_not_exists()
                    .col(id(StripeCustomers::UserId))
                    .col(text(StripeCustomers::CustomerId).unique_key().to_owned())
                    .col(millis(StripeCustomers::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Subscriptions::Table)
                    .if_not_exists()
                    .col(id(Subscriptions::Id))
                    .col(text(Subscriptions::UserId))
                    .col(text(Subscriptions::Plan))
                    .col(text(Subscriptions::Status))
                    .col(millis_null(Subscriptions::CurrentPeriodEnd))
                    .col(ColumnDef::new(Subscriptions::CancelAtPeriodEnd).boolean().not_null().default(false))
                    .col(millis(Subscriptions::ChangedAt))
                    .col(millis(Subscriptions::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("subscriptions_user")
                    .table(Subscriptions::Table)
                    .col(Subscriptions::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StripePayments::Table)
                    .if_not_exists()
                    .col(id(StripePayments::Id))
                    .col(text(StripePayments::UserId))
                    .col(text_null(StripePayments::ChargeId))
                    .col(text_null(StripePayments::PaymentIntentId))
                    .col(big(StripePayments::Amount))
                    .col(big(StripePayments::Credits))
                    .col(big(StripePayments::CreditsReversed))
                    .col(big(StripePayments::CreditsUnrecovered))
                    .col(millis(StripePayments::CreatedAt))
                    .check(Expr::col(StripePayments::CreditsReversed).lte(Expr::col(StripePayments::Credits)))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("stripe_payments_charge", StripePayments::ChargeId),
            ("stripe_payments_payment_intent", StripePayments::PaymentIntentId),
        ] {
            manager.create_index(Index::create().name(name).table(StripePayments::Table).col(col).to_owned()).await?;
        }
        Ok(())
    }
}
