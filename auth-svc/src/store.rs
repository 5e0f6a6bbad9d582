//! Users and magic links. A link's token is stored only as its SHA-256; redeeming it is one
//! conditional update (`used_at IS NULL AND expires_at > now`), so a link signs in once.

use cutx_platform::clock::now_millis;
use cutx_platform::ids::UserId;
use cutx_platform::mesh::Caller;
use cutx_platform::session::Session;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use sha2::{Digest, Sha256};

use crate::email::Email;
use crate::entity::{magic_link, revoked_session, user};

/// How long a link lives.
pub const LINK_LIFETIME_MILLIS: i64 = 15 * 60 * 1000;
/// At most one link per address in this window.
pub const LINK_INTERVAL_MILLIS: i64 = 60 * 1000;

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random link token: 32 bytes, URL-safe hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Stores a link for `email` unless one was made in the last minute; returns whether it did.
    pub async fn create_link(&self, email: &Email, token: &str) -> Result<bool, DbErr> {
        let now = now_millis();
        let recent = magic_link::Entity::find()
            .filter(magic_link::Column::Email.eq(email.as_str()))
            .filter(magic_link::Column::CreatedAt.gt(now - LINK_INTERVAL_MILLIS))
            .one(&self.db)
            .await?;
        if recent.is_some() {
            return Ok(false);
        }
        let link = magic_link::ActiveModel {
            token_hash: Set(hash_token(token)),
            email: Set(email.as_str().to_string()),
            created_at: Set(now),
            expires_at: Set(now + LINK_LIFETIME_MILLIS),
            used_at: Set(None),
        };
        magic_link::Entity::insert(link).exec_without_returning(&self.db).await?;
        Ok(true)
    }

    /// Uses up a link; the address it was for, if it was valid, unused and unexpired.
    pub async fn redeem_link(&self, token: &str) -> Result<Option<String>, DbErr> {
        let now = now_millis();
        let hash = hash_token(token);
        let used = magic_link::Entity::update_many()
            .col_expr(magic_link::Column::UsedAt, Expr::value(now))
            .filter(magic_link::Column::TokenHash.eq(hash.clone()))
            .filter(magic_link::Column::UsedAt.is_null())
            .filter(magic_link::Column::ExpiresAt.gt(now))
            .exec(&self.db)
            .await?;
        if used.rows_affected != 1 {
            return Ok(None);
        }
        Ok(magic_link::Entity::find_by_id(hash).one(&self.db).await?.map(|l| l.email))
    }

    /// The user with this address, created if new.
    pub async fn user_for_email(&self, email: &str) -> Result<user::Model, DbErr> {
        let row = user::ActiveModel {
            id: Set(UserId::new().to_string()),
            email: Set(email.to_string()),
            role: Set(crate::user::Role::User),
            status: Set(crate::user::UserStatus::Active),
            created_at: Set(now_millis()),
        };
        user::Entity::insert(row)
            .on_conflict_do_nothing_on([user::Column::Email])
            .exec_without_returning(&self.db)
            .await?;
        user::Entity::find()
            .filter(user::Column::Email.eq(email))
            .one(&self.db)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("user {email}")))
    }

    pub async fn me(&self, caller: Caller) -> Result<Option<user::Model>, DbErr> {
        user::Entity::find_by_id(caller.user_id().to_string()).one(&self.db).await
    }

    /// Ends a session: its token is refused from now on. Ending it twice changes nothing.
    pub async fn revoke(&self, session: &Session) -> Result<(), DbErr> {
        let row = revoked_session::ActiveModel {
            session_id: Set(session.session_id.clone()),
            user_id: Set(session.user_id.to_string()),
            expires_at: Set(session.expires_at.timestamp_millis()),
            revoked_at: Set(now_millis()),
        };
        revoked_session::Entity::insert(row)
            .on_conflict_do_nothing_on([revoked_session::Column::SessionId])
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Sessions revoked at or after `after` (millis) that have not expired, oldest first.
    pub async fn revoked_since(&self, after: i64, limit: u64) -> Result<Vec<revoked_session::Model>, DbErr> {
        revoked_session::Entity::find()
            .filter(revoked_session::Column::RevokedAt.gte(after))
            .filter(revoked_session::Column::ExpiresAt.gt(now_millis()))
            .order_by_asc(revoked_session::Column::RevokedAt)
            .limit(limit)
            .all(&self.db)
            .await
    }
}
