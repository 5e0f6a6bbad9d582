//! auth-svc: users and magic links.

use sea_orm_migration::prelude::*;

use crate::{id, millis, millis_null, text};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    Role,
    Status,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MagicLinks {
    Table,
    TokenHash,
    Email,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(id(Users::Id))
                    .col(text(Users::Email).unique_key().to_owned())
                    .col(text(Users::Role))
                    .col(text(Users::Status))
                    .col(millis(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MagicLinks::Table)
                    .if_not_exists()
                    .col(id(MagicLinks::TokenHash))
                    .col(text(MagicLinks::Email))
                    .col(millis(MagicLinks::CreatedAt))
                    .col(millis(MagicLinks::ExpiresAt))
                    .col(millis_null(MagicLinks::UsedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("magic_links_email_created")
                    .table(MagicLinks::Table)
                    .col(MagicLinks::Email)
                    .col(MagicLinks::CreatedAt)
                    .to_owned(),
            )
            .await
    }
}
