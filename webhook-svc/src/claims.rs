//! The webhook ids webhook-svc has taken in. A delivery claims its id before it is acted on;
//! the claim is atomic (the id is the primary key), so of three concurrent deliveries of one
//! webhook exactly one acts. A claim whose action failed is given back, so the sender's retry
//! is acted on.

use cutx_platform::clock::now_millis;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

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

/// The longest webhook id kept (the column's width).
pub const MAX_ID: usize = 64;

#[derive(Clone)]
pub struct Claims {
    db: DatabaseConnection,
}

impl Claims {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// True if this delivery is the first to claim `id`.
    pub async fn claim(&self, source: &str, id: &str) -> Result<bool, DbErr> {
        let row = entity::ActiveModel {
            id: Set(id.to_string()),
            source: Set(source.to_string()),
            received_at: Set(now_millis()),
            done_at: Set(None),
        };
        let inserted = entity::Entity::insert(row)
            .on_conflict_do_nothing_on([entity::Column::Id])
            .exec_without_returning(&self.db)
            .await?;
        Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n == 1))
    }

    /// Records that the webhook was acted on.
    pub async fn done(&self, id: &str) -> Result<(), DbErr> {
        entity::Entity::update_many()
            .col_expr(entity::Column::DoneAt, Expr::value(now_millis()))
            .filter(entity::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Gives a claim back, so the next delivery of the webhook is acted on.
    pub async fn release(&self, id: &str) -> Result<(), DbErr> {
        entity::Entity::delete_by_id(id.to_string()).exec(&self.db).await?;
        Ok(())
    }
}
