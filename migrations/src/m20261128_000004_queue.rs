//! The embedded default's durable job queue (platform's `SqlQueue`) and its dead letters.
//! A message's id is the job id, so publishing the same job twice stores one message.

use sea_orm_migration::prelude::*;

use crate::{big, id, millis, millis_null, text, text_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum QueueMessages {
    Table,
    Id,
    Topic,
    Payload,
    Deliveries,
    AvailableAt,
    ClaimToken,
    ClaimedUntil,
    AckedAt,
    LastError,
    CreatedAt,
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Id,
    Topic,
    Payload,
    Deliveries,
    Error,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(QueueMessages::Table)
                    .if_not_exists()
                    .col(id(QueueMessages::Id))
                    .col(text(QueueMessages::Topic))
                    .col(ColumnDef::new(QueueMessages::Payload).blob().not_null())
                    .col(big(QueueMessages::Deliveries))
                    .col(millis(QueueMessages::AvailableAt))
                    .col(text_null(QueueMessages::ClaimToken))
                    .col(millis_null(QueueMessages::ClaimedUntil))
                    .col(millis_null(QueueMessages::AckedAt))
                    .col(text_null(QueueMessages::LastError))
                    .col(millis(QueueMessages::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("queue_messages_ready")
                    .table(QueueMessages::Table)
                    .col(QueueMessages::AckedAt)
                    .col(QueueMessages::AvailableAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeadLetters::Table)
                    .if_not_exists()
                    .col(id(DeadLetters::Id))
                    .col(text(DeadLetters::Topic))
                    .col(ColumnDef::new(DeadLetters::Payload).blob().not_null())
                    .col(big(DeadLetters::Deliveries))
                    .col(text(DeadLetters::Error))
                    .col(millis(DeadLetters::CreatedAt))
                    .to_owned(),
            )
            .await
    }
}
