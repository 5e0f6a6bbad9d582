//! auth-svc: when each address was last sent a sign-in link. One row per address, claimed by a
//! conditional upsert, so that two requests at once cannot both pass the one-a-minute limit.

use sea_orm_migration::prelude::*;

use crate::millis;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MagicLinkLimits {
    Table,
    Email,
    LastSentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MagicLinkLimits::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(MagicLinkLimits::Email).string_len(320).not_null().primary_key())
                    .col(millis(MagicLinkLimits::LastSentAt))
                    .to_owned(),
            )
            .await
    }
}
