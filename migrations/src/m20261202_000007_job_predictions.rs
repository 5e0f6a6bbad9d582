//! jobs-svc: a job handed to an outside provider (a prediction, whose id is `provider_ref`)
//! waits for its callback until `provider_deadline`; `provider_heard_at` is when the provider
//! last told us anything (a callback, or the reconciler asking), so the reconciler asks only
//! about jobs that went quiet.

use sea_orm_migration::prelude::*;

use crate::millis_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    ProviderRef,
    ProviderDeadline,
    ProviderHeardAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        manager
            .alter_table(Table::alter().table(Jobs::Table).add_column(millis_null(Jobs::ProviderDeadline)).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(Jobs::Table).add_column(millis_null(Jobs::ProviderHeardAt)).to_owned())
            .await?;
        manager
            .create_index(
                Index::create().name("jobs_provider_ref").table(Jobs::Table).col(Jobs::ProviderRef).to_owned(),
            )
            .await
    }
}
