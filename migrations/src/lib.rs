//! The CutX schema, one migration per owning service, valid on PostgreSQL and SQLite alike.
//!
//! Ids are text (UUIDs), times are integer milliseconds since the Unix epoch (the same type and
//! the same comparisons on both engines), payloads are binary protobuf.
//! A service reads and writes only its own tables.

use sea_orm_migration::prelude::*;

mod m20261128_000001_auth;
mod m20261128_000002_billing;
mod m20261128_000003_jobs;
mod m20261128_000004_queue;
mod m20261128_000005_job_leases;
mod m20261128_000006_revoked_sessions;
mod m20261202_000007_job_predictions;
mod m20261202_000008_webhooks;
mod m20261203_000009_billing_stripe;
mod m20261203_000010_magic_link_limits;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_auth::Migration),
            Box::new(m20261128_000002_billing::Migration),
            Box::new(m20261128_000003_jobs::Migration),
            Box::new(m20261128_000004_queue::Migration),
            Box::new(m20261128_000005_job_leases::Migration),
            Box::new(m20261128_000006_revoked_sessions::Migration),
            Box::new(m20261202_000007_job_predictions::Migration),
            Box::new(m20261202_000008_webhooks::Migration),
            Box::new(m20261203_000009_billing_stripe::Migration),
            Box::new(m20261203_000010_magic_link_limits::Migration),
        ]
    }
}

/// Applies every migration not yet applied.
pub async fn migrate(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

pub(crate) fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(64).not_null().primary_key().to_owned()
}

pub(crate) fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().not_null().to_owned()
}

pub(crate) fn text_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().null().to_owned()
}

pub(crate) fn millis(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().to_owned()
}

pub(crate) fn millis_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().null().to_owned()
}

pub(crate) fn big(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().default(0).to_owned()
}
