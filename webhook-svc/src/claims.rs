//! The webhook ids webhook-svc has taken in. A delivery claims its id before it is acted on;
//! the claim is atomic (the id is the primary key), so of three concurrent deliveries of one
//! webhook exactly one acts. A duplicate of a webhook already acted on is done with; one that
//! arrives while the first is still being acted on is told to come back (the first may yet
//! fail). A claim whose action failed is given back, and one left behind by a crash can be
//! taken again after [`ABANDONED_AFTER`], so the sender's retry is acted on.

use std::time::Duration;

use cutx_platform::clock::now_millis;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter};

mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "processed_webhooks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub source: String,
        pub received_at: i64,
        pub done_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_claim_is_per_job_and_webhook_id_and_fits_the_column() {
        let a = super::claim_id("job-a", "msg_1");
        assert_eq!(a.len(), 64);
        assert_eq!(a, super::claim_id("job-a", "msg_1"));
        assert_ne!(a, super::claim_id("job-b", "msg_1"));
        assert_ne!(a, super::claim_id("job-a", "msg_2"));
        // Known answer: sha256("job-a\nmsg_1").
        assert_eq!(a, "81dab88d84c1413eb08b371e54b3ce3bc385c409266945e31c1907ac44486d03");
    }
}

/// The longest `webhook-id` taken.
pub const MAX_WEBHOOK_ID: usize = 256;

/// What a claim is kept under: the job and the sender's webhook id, hashed to the column's
/// width (64 hex characters).
pub fn claim_id(job_id: &str, webhook_id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("{job_id}\n{webhook_id}").as_bytes()))
}

/// A claim not done nor given back after this long was left by a crash.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(120);

/// What claiming a webhook id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This delivery acts on the webhook.
    Taken,
    /// The webhook was acted on already.
    Done,
    /// Another delivery is acting on it right now.
    InFlight,
}

#[derive(Clone)]
pub struct Claims {
    db: cutx_platform::db::Db,
}

impl Claims {
    pub fn new(db: cutx_platform::db::Db) -> Self {
        Self { db }
    }

    /// Claims `id` for this delivery, unless it is done or another delivery is acting on it.
    pub async fn claim(&self, source: &str, id: &str) -> Result<Claim, DbErr> {
        let row = entity::ActiveModel {
            id: Set(id.to_string()),
            source: Set(source.to_string()),
            received_at: Set(now_millis()),
            done_at: Set(None),
        };
        let inserted = entity::Entity::insert(row)
            .on_conflict_do_nothing_on([entity::Column::Id])
            .exec_without_returning(self.db.writes())
            .await?;
        if matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n == 1) {
            return Ok(Claim::Taken);
        }
        // Take over a claim a crash left behind: one conditional update, so one delivery wins.
        let abandoned = now_millis() - ABANDONED_AFTER.as_millis() as i64;
        let retaken = entity::Entity::update_many()
            .col_expr(entity::Column::ReceivedAt, Expr::value(now_millis()))
            .filter(entity::Column::Id.eq(id))
            .filter(entity::Column::DoneAt.is_null())
            .filter(entity::Column::ReceivedAt.lt(abandoned))
            .exec(self.db.writes())
            .await?;
        if retaken.rows_affected == 1 {
            return Ok(Claim::Taken);
        }
        let row = entity::Entity::find_by_id(id.to_string()).one(self.db.reads()).await?;
        Ok(match row {
            Some(row) if row.done_at.is_some() => Claim::Done,
            Some(_) => Claim::InFlight,
            // Given back between the insert and the read: the sender's next retry takes it.
            None => Claim::InFlight,
        })
    }

    /// Records that the webhook was acted on.
    pub async fn done(&self, id: &str) -> Result<(), DbErr> {
        entity::Entity::update_many()
            .col_expr(entity::Column::DoneAt, Expr::value(now_millis()))
            .filter(entity::Column::Id.eq(id))
            .exec(self.db.writes())
            .await?;
        Ok(())
    }

    /// Gives a claim back, so the next delivery of the webhook is acted on.
    pub async fn release(&self, id: &str) -> Result<(), DbErr> {
        entity::Entity::delete_by_id(id.to_string()).exec(self.db.writes()).await?;
        Ok(())
    }
}
