//! webhook-svc: the webhook ids it has taken in, so a retried or duplicated delivery changes
//! nothing. A row is claimed before the webhook is acted on and removed again if acting on it
//! failed, so the sender's retry is acted on.

use sea_orm_migration::prelude::*;

use crate::{id, millis, millis_null, text};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ProcessedWebhooks {
    Table,
    Id,
    Source,
    ReceivedAt,
    DoneAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProcessedWebhooks::Table)
                    .if_not_exists()
                    .col(id(ProcessedWebhooks::Id))
                    .col(text(ProcessedWebhooks::Source))
                    .col(millis(ProcessedWebhooks::ReceivedAt))
                    .col(millis_null(ProcessedWebhooks::DoneAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("processed_webhooks_received_at")
                    .table(ProcessedWebhooks::Table)
                    .col(ProcessedWebhooks::ReceivedAt)
                    .to_owned(),
            )
            .await
    }
}
