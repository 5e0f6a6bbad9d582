//! jobs-svc: projects, jobs, their outputs and every state transition.

use sea_orm_migration::prelude::*;

use crate::{big, id, millis, text, text_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    UserId,
    Name,
    Description,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    UserId,
    Kind,
    Status,
    Cost,
    Input,
    Result,
    Error,
    IdempotencyKey,
    ProjectId,
    ProductId,
    ProviderRef,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JobOutputs {
    Table,
    Id,
    JobId,
    Position,
    MediaKey,
    ContentType,
    Width,
    Height,
    SizeBytes,
}

#[derive(DeriveIden)]
enum JobTransitions {
    Table,
    Id,
    JobId,
    FromStatus,
    ToStatus,
    Reason,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .if_not_exists()
                    .col(id(Projects::Id))
                    .col(text(Projects::UserId))
                    .col(text(Projects::Name))
                    .col(text(Projects::Description))
                    .col(millis(Projects::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("projects_user")
                    .table(Projects::Table)
                    .col(Projects::UserId)
                    .col(Projects::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(id(Jobs::Id))
                    .col(text(Jobs::UserId))
                    .col(text(Jobs::Kind))
                    .col(text(Jobs::Status))
                    .col(big(Jobs::Cost))
                    .col(ColumnDef::new(Jobs::Input).blob().not_null())
                    .col(ColumnDef::new(Jobs::Result).blob().null())
                    .col(text_null(Jobs::Error))
                    .col(text_null(Jobs::IdempotencyKey))
                    .col(text_null(Jobs::ProjectId))
                    .col(text_null(Jobs::ProductId))
                    .col(text_null(Jobs::ProviderRef))
                    .col(millis(Jobs::CreatedAt))
                    .col(millis(Jobs::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("jobs_user").table(Jobs::Table).col(Jobs::UserId).col(Jobs::Id).to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("jobs_user_idempotency_key")
                    .table(Jobs::Table)
                    .col(Jobs::UserId)
                    .col(Jobs::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("jobs_status_updated")
                    .table(Jobs::Table)
                    .col(Jobs::Status)
                    .col(Jobs::UpdatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobOutputs::Table)
                    .if_not_exists()
                    .col(id(JobOutputs::Id))
                    .col(text(JobOutputs::JobId))
                    .col(ColumnDef::new(JobOutputs::Position).integer().not_null())
                    .col(text(JobOutputs::MediaKey))
                    .col(text(JobOutputs::ContentType))
                    .col(big(JobOutputs::Width))
                    .col(big(JobOutputs::Height))
                    .col(big(JobOutputs::SizeBytes))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("job_outputs_job_position")
                    .table(JobOutputs::Table)
                    .col(JobOutputs::JobId)
                    .col(JobOutputs::Position)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobTransitions::Table)
                    .if_not_exists()
                    .col(id(JobTransitions::Id))
                    .col(text(JobTransitions::JobId))
                    .col(text_null(JobTransitions::FromStatus))
                    .col(text(JobTransitions::ToStatus))
                    .col(text(JobTransitions::Reason))
                    .col(millis(JobTransitions::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("job_transitions_job")
                    .table(JobTransitions::Table)
                    .col(JobTransitions::JobId)
                    .to_owned(),
            )
            .await
    }
}
