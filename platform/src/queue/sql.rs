//! The embedded default's queue: a table in the service database.
//!
//! A claim is one conditional update (`... WHERE id = ? AND claim is free`), so two workers never
//! hold the same message; settling checks the claim token, so a worker whose claim expired and
//! was taken over cannot ack or retry the new holder's delivery.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sea_orm::sea_query::OnConflict;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::Notify;

use super::{DeadLetter, Delivery, JobQueue, MAX_DELIVERIES, OutgoingMessage, QueueError, Settle};
use crate::clock::now_millis;
use crate::db::Db;

mod entity {
    pub mod message {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "queue_messages")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: String,
            pub topic: String,
            pub payload: Vec<u8>,
            pub deliveries: i64,
            pub available_at: i64,
            pub claim_token: Option<String>,
            pub claimed_until: Option<i64>,
            pub acked_at: Option<i64>,
            pub last_error: Option<String>,
            pub created_at: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod dead_letter {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "dead_letters")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: String,
            pub topic: String,
            pub payload: Vec<u8>,
            pub deliveries: i64,
            pub error: String,
            pub created_at: i64,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entity::{dead_letter, message};

/// How long a settled message id keeps dropping publishes of the same id (JetStream's default).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

pub(super) fn storage(e: impl Into<super::Cause>) -> QueueError {
    QueueError::Storage(e.into())
}

/// A durable queue in SQL tables `queue_messages` and `dead_letters`.
#[derive(Clone)]
pub struct SqlQueue {
    db: Db,
    visibility: Duration,
    poll: Duration,
    wake: Arc<Notify>,
}

impl SqlQueue {
    /// `visibility` is how long a delivery stays claimed without `in_progress`.
    pub fn new(db: Db, visibility: Duration) -> Self {
        Self { db, visibility, poll: Duration::from_millis(100), wake: Arc::new(Notify::new()) }
    }

    async fn try_claim(&self) -> Result<Option<Delivery>, QueueError> {
        let now = now_millis();
        let free = || {
            message::Column::AckedAt
                .is_null()
                .and(message::Column::AvailableAt.lte(now))
                .and(message::Column::ClaimedUntil.is_null().or(message::Column::ClaimedUntil.lte(now)))
        };
        // A few candidates, in case another worker wins the first one.
        let candidates: Vec<String> = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .filter(free())
            .order_by_asc(message::Column::AvailableAt)
            .order_by_asc(message::Column::Id)
            .limit(4)
            .into_tuple()
            .all(self.db.reads())
            .await
            .map_err(storage)?;
        for id in candidates {
            let token = uuid::Uuid::new_v4().to_string();
            let claimed = message::Entity::update_many()
                .col_expr(message::Column::ClaimToken, Expr::value(token.clone()))
                .col_expr(message::Column::ClaimedUntil, Expr::value(now + self.visibility.as_millis() as i64))
                .col_expr(message::Column::Deliveries, Expr::col(message::Column::Deliveries).add(1))
                .filter(message::Column::Id.eq(id.clone()))
                .filter(free())
                .exec_with_returning(self.db.writes())
                .await
                .map_err(storage)?;
            // Another worker won it (or it was settled meanwhile): the next candidate.
            let Some(row) = claimed.into_iter().next() else { continue };
            let attempt = u32::try_from(row.deliveries)
                .map_err(|_| QueueError::Broken(format!("message {id} has {} deliveries", row.deliveries)))?;
            let settle = SqlSettle { queue: self.clone(), id: id.clone(), token, deliveries: attempt };
            return Ok(Some(Delivery::new(
                row.id,
                row.topic,
                Bytes::from(row.payload),
                std::cmp::min(attempt, MAX_DELIVERIES),
                attempt > MAX_DELIVERIES,
                Box::new(settle),
            )));
        }
        Ok(None)
    }
}

#[async_trait]
impl JobQueue for SqlQueue {
    async fn publish(&self, m: OutgoingMessage) -> Result<(), QueueError> {
        let now = now_millis();
        let row = message::ActiveModel {
            id: Set(m.id),
            topic: Set(m.topic),
            payload: Set(m.payload.to_vec()),
            deliveries: Set(0),
            available_at: Set(now),
            claim_token: Set(None),
            claimed_until: Set(None),
            acked_at: Set(None),
            last_error: Set(None),
            created_at: Set(now),
        };
        // Like JetStream's duplicate window: an id settled (acked or dead-lettered) longer ago
        // than the window may be published again, so a relay can recover a job whose message
        // was settled without the job ending. Within the window, or while it is still queued,
        // it is a duplicate, dropped. One statement either way.
        let settled_long_ago =
            Expr::col((message::Entity, message::Column::AckedAt)).lt(now - DUPLICATE_WINDOW.as_millis() as i64);
        let again = OnConflict::column(message::Column::Id)
            .update_columns([
                message::Column::Deliveries,
                message::Column::AvailableAt,
                message::Column::AckedAt,
                message::Column::ClaimToken,
                message::Column::ClaimedUntil,
                message::Column::Payload,
            ])
            .action_and_where(settled_long_ago)
            .to_owned();
        message::Entity::insert(row).on_conflict(again).try_insert().exec(self.db.writes()).await.map_err(storage)?;
        self.wake.notify_waiters();
        Ok(())
    }

    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.wake.notified();
            if let Some(delivery) = self.try_claim().await? {
                return Ok(Some(delivery));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let nap = self.poll.min(deadline - now);
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        let rows = dead_letter::Entity::find()
            .order_by_asc(dead_letter::Column::CreatedAt)
            .order_by_asc(dead_letter::Column::Id)
            .all(self.db.reads())
            .await
            .map_err(storage)?;
        Ok(rows
            .into_iter()
            .map(|r| DeadLetter {
                id: r.id,
                topic: r.topic,
                payload: Bytes::from(r.payload),
                deliveries: r.deliveries as u32,
                error: r.error,
            })
            .collect())
    }
}

struct SqlSettle {
    queue: SqlQueue,
    id: String,
    token: String,
    deliveries: u32,
}

impl SqlSettle {
    fn mine(&self) -> Expr {
        message::Column::Id.eq(self.id.clone()).and(message::Column::ClaimToken.eq(self.token.clone()))
    }

    fn lost(&self, what: &str) {
        tracing::warn!(message = %self.id, "{what} of a delivery whose claim expired: ignored");
    }
}

#[async_trait]
impl Settle for SqlSettle {
    async fn ack(&self) -> Result<(), QueueError> {
        let done = message::Entity::update_many()
            .col_expr(message::Column::AckedAt, Expr::value(now_millis()))
            .col_expr(message::Column::ClaimToken, Expr::value(Option::<String>::None))
            .col_expr(message::Column::ClaimedUntil, Expr::value(Option::<i64>::None))
            .filter(self.mine())
            .exec(self.queue.db.writes())
            .await
            .map_err(storage)?;
        if done.rows_affected == 0 {
            self.lost("ack");
        }
        Ok(())
    }

    async fn retry(&self, error: &str, delay: Duration) -> Result<(), QueueError> {
        let done = message::Entity::update_many()
            .col_expr(message::Column::AvailableAt, Expr::value(now_millis() + delay.as_millis() as i64))
            .col_expr(message::Column::ClaimToken, Expr::value(Option::<String>::None))
            .col_expr(message::Column::ClaimedUntil, Expr::value(Option::<i64>::None))
            .col_expr(message::Column::LastError, Expr::value(error.to_string()))
            .filter(self.mine())
            .exec(self.queue.db.writes())
            .await
            .map_err(storage)?;
        if done.rows_affected == 0 {
            self.lost("retry");
        }
        Ok(())
    }

    async fn dead_letter(&self, error: &str) -> Result<(), QueueError> {
        let txn = self.queue.db.begin_write().await.map_err(storage)?;
        // Write first: on SQLite a transaction that reads before it writes fails outright
        // (SQLITE_BUSY_SNAPSHOT) if another connection wrote in between.
        let settled = message::Entity::update_many()
            .col_expr(message::Column::AckedAt, Expr::value(now_millis()))
            .col_expr(message::Column::ClaimToken, Expr::value(Option::<String>::None))
            .col_expr(message::Column::LastError, Expr::value(error.to_string()))
            .filter(self.mine())
            .exec(&txn)
            .await
            .map_err(storage)?;
        if settled.rows_affected == 0 {
            txn.rollback().await.map_err(storage)?;
            self.lost("dead-letter");
            return Ok(());
        }
        let row = message::Entity::find_by_id(self.id.clone())
            .one(&txn)
            .await
            .map_err(storage)?
            .ok_or_else(|| QueueError::Broken(format!("message {} vanished", self.id)))?;
        let letter = dead_letter::ActiveModel {
            id: Set(row.id),
            topic: Set(row.topic),
            payload: Set(row.payload),
            deliveries: Set(i64::from(std::cmp::min(self.deliveries, MAX_DELIVERIES))),
            error: Set(error.to_string()),
            created_at: Set(now_millis()),
        };
        dead_letter::Entity::insert(letter)
            .on_conflict_do_nothing_on([dead_letter::Column::Id])
            .exec(&txn)
            .await
            .map_err(storage)?;
        txn.commit().await.map_err(storage)
    }

    async fn in_progress(&self) -> Result<(), QueueError> {
        let until = now_millis() + self.queue.visibility.as_millis() as i64;
        message::Entity::update_many()
            .col_expr(message::Column::ClaimedUntil, Expr::value(until))
            .filter(self.mine())
            .exec(self.queue.db.writes())
            .await
            .map_err(storage)?;
        Ok(())
    }
}
