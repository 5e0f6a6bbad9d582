//! jobs-svc: which delivery holds a processing job, and until when (the database, not the
//! queue's ack, decides who works on a job); and when an unfinished job's refund was confirmed
//! (until then the sweeper asks billing-svc again; the refund is idempotent).

use sea_orm_migration::prelude::*;

use crate::{millis_null, text_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    LeaseOwner,
    LeaseUntil,
    RefundedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        manager
            .alter_table(Table::alter().table(Jobs::Table).add_column(text_null(Jobs::LeaseOwner)).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(Jobs::Table).add_column(millis_null(Jobs::LeaseUntil)).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(Jobs::Table).add_column(millis_null(Jobs::RefundedAt)).to_owned())
            .await
    }
}
