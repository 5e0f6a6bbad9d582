//! auth-svc: sessions ended by logout, kept until their tokens expire.

use sea_orm_migration::prelude::*;

use crate::{id, millis, text};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RevokedSessions {
    Table,
    SessionId,
    UserId,
    ExpiresAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RevokedSessions::Table)
                    .if_not_exists()
                    .col(id(RevokedSessions::SessionId))
                    .col(text(RevokedSessions::UserId))
                    .col(millis(RevokedSessions::ExpiresAt))
                    .col(millis(RevokedSessions::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("revoked_sessions_revoked_at")
                    .table(RevokedSessions::Table)
                    .col(RevokedSessions::RevokedAt)
                    .to_owned(),
            )
            .await
    }
}
