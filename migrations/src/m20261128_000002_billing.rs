//! billing-svc: balances and the credit ledger. `idempotency_key` is unique, which is what makes
//! a repeated debit or refund change nothing.

use sea_orm_migration::prelude::*;

use crate::{big, id, millis, text};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CreditBalances {
    Table,
    UserId,
    Balance,
    LifetimePurchased,
    LifetimeUsed,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CreditLedger {
    Table,
    Id,
    UserId,
    EntryType,
    Amount,
    BalanceAfter,
    Reference,
    IdempotencyKey,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CreditBalances::Table)
                    .if_not_exists()
                    .col(id(CreditBalances::UserId))
                    .col(big(CreditBalances::Balance))
                    .col(big(CreditBalances::LifetimePurchased))
                    .col(big(CreditBalances::LifetimeUsed))
                    .col(millis(CreditBalances::UpdatedAt))
                    .check(Expr::col(CreditBalances::Balance).gte(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CreditLedger::Table)
                    .if_not_exists()
                    .col(id(CreditLedger::Id))
                    .col(text(CreditLedger::UserId))
                    .col(text(CreditLedger::EntryType))
                    .col(big(CreditLedger::Amount))
                    .col(big(CreditLedger::BalanceAfter))
                    .col(text(CreditLedger::Reference))
                    .col(text(CreditLedger::IdempotencyKey).unique_key().to_owned())
                    .col(millis(CreditLedger::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("credit_ledger_user")
                    .table(CreditLedger::Table)
                    .col(CreditLedger::UserId)
                    .col(CreditLedger::Id)
                    .to_owned(),
            )
            .await
    }
}
