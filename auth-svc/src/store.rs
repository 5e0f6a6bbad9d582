//! Users and magic links. A link's token is stored only as its SHA-256; redeeming it is one
//! conditional update (`used_at IS NULL AND expires_at > now`), so a link signs in once.

use cutx_platform::clock::now_millis;
use cutx_platform::ids::UserId;
use cutx_platform::mesh::Caller;
use cutx_platform::session::Session;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveEnum, ActiveValue::Set, ColumnTrait, Condition, DbErr, EntityTrait, Iterable, QueryFilter, QueryOrder,
    QuerySelect,
};
use sha2::{Digest, Sha256};

use crate::email::Email;
use crate::entity::{magic_link, magic_link_limit, revoked_session, user};
use crate::user::{Role, UserStatus};

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database")]
    Db(#[from] DbErr),
    /// A stored user holds a word no enum of ours knows.
    #[error("stored user {row} is corrupt: {what}")]
    Corrupt { row: String, what: String },
}

/// What asking for a link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewLink {
    Created,
    /// One was made for the address less than [`LINK_INTERVAL_MILLIS`] ago.
    TooSoon {
        retry_in: std::time::Duration,
    },
}

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
    db: cutx_platform::db::Db,
}

impl Store {
    pub fn new(db: cutx_platform::db::Db) -> Self {
        Self { db }
    }

    /// Stores a link for `email` unless one was made in the last minute. The address's limit
    /// row is claimed first, by one upsert that only moves a time a minute old or more: of two
    /// requests at once, one claims it and the other is told to wait.
    pub async fn create_link(&self, email: &Email, token: &str) -> Result<NewLink, StoreError> {
        use magic_link_limit::Column::{Email as LimitEmail, LastSentAt};
        let now = now_millis();
        let claim = magic_link_limit::ActiveModel { email: Set(email.as_str().to_string()), last_sent_at: Set(now) };
        let claimed = magic_link_limit::Entity::insert(claim)
            .on_conflict(
                OnConflict::column(LimitEmail)
                    .update_column(LastSentAt)
                    .action_and_where(Expr::col((magic_link_limit::Entity, LastSentAt)).lte(now - LINK_INTERVAL_MILLIS))
                    .to_owned(),
            )
            .exec_without_returning(self.db.writes())
            .await?;
        if claimed == 0 {
            let last = magic_link_limit::Entity::find_by_id(email.as_str()).one(self.db.writes()).await?;
            let wait = Ord::max(last.map_or(LINK_INTERVAL_MILLIS, |l| l.last_sent_at + LINK_INTERVAL_MILLIS - now), 1);
            return Ok(NewLink::TooSoon { retry_in: std::time::Duration::from_millis(wait as u64) });
        }
        let link = magic_link::ActiveModel {
            token_hash: Set(hash_token(token)),
            email: Set(email.as_str().to_string()),
            created_at: Set(now),
            expires_at: Set(now + LINK_LIFETIME_MILLIS),
            used_at: Set(None),
        };
        magic_link::Entity::insert(link).exec_without_returning(self.db.writes()).await?;
        Ok(NewLink::Created)
    }

    /// Uses up a link; the address it was for, if it was valid, unused and unexpired.
    pub async fn redeem_link(&self, token: &str) -> Result<Option<String>, StoreError> {
        let now = now_millis();
        let hash = hash_token(token);
        let used = magic_link::Entity::update_many()
            .col_expr(magic_link::Column::UsedAt, Expr::value(now))
            .filter(magic_link::Column::TokenHash.eq(hash.clone()))
            .filter(magic_link::Column::UsedAt.is_null())
            .filter(magic_link::Column::ExpiresAt.gt(now))
            .exec(self.db.writes())
            .await?;
        if used.rows_affected != 1 {
            return Ok(None);
        }
        Ok(magic_link::Entity::find_by_id(hash).one(self.db.reads()).await?.map(|l| l.email))
    }

    /// The user with this address, created if new.
    pub async fn user_for_email(&self, email: &str) -> Result<user::Model, StoreError> {
        let row = user::ActiveModel {
            id: Set(UserId::new().to_string()),
            email: Set(email.to_string()),
            role: Set(crate::user::Role::User),
            status: Set(crate::user::UserStatus::Active),
            created_at: Set(now_millis()),
        };
        user::Entity::insert(row)
            .on_conflict_do_nothing_on([user::Column::Email])
            .exec_without_returning(self.db.writes())
            .await?;
        let found = user::Entity::find().filter(user::Column::Email.eq(email)).one(self.db.reads()).await;
        self.named(found, user::Column::Email.eq(email).into())
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("the user just stored".into()).into())
    }

    pub async fn me(&self, caller: Caller) -> Result<Option<user::Model>, StoreError> {
        let found = user::Entity::find_by_id(caller.user_id().to_string()).one(self.db.reads()).await;
        self.named(found, user::Column::Id.eq(caller.user_id().to_string()).into()).await
    }

    /// A read's answer. A stored role or status that no enum of ours knows fails the whole read
    /// with an error naming only the enum, so the row holding one, among those `scope` picks, is
    /// looked up and named.
    async fn named<T>(&self, answer: Result<T, DbErr>, scope: Condition) -> Result<T, StoreError> {
        let Err(DbErr::Type(what)) = answer else { return Ok(answer?) };
        let roles: Vec<String> = Role::iter().map(|r| r.to_value()).collect();
        let statuses: Vec<String> = UserStatus::iter().map(|s| s.to_value()).collect();
        let corrupt: Result<Option<(String, String, String)>, DbErr> = user::Entity::find()
            .select_only()
            .columns([user::Column::Id, user::Column::Role, user::Column::Status])
            .filter(scope)
            .filter(user::Column::Role.is_not_in(roles.clone()).or(user::Column::Status.is_not_in(statuses)))
            .into_tuple()
            .one(self.db.reads())
            .await;
        match corrupt {
            Ok(Some((row, role, status))) => {
                let what = if roles.contains(&role) {
                    format!("unknown status {status:?}")
                } else {
                    format!("unknown role {role:?}")
                };
                Err(StoreError::Corrupt { row, what })
            }
            _ => Err(StoreError::Db(DbErr::Type(what))),
        }
    }

    /// Ends a session: its token is refused from now on. Ending it twice changes nothing.
    pub async fn revoke(&self, session: &Session) -> Result<(), StoreError> {
        let row = revoked_session::ActiveModel {
            session_id: Set(session.session_id.clone()),
            user_id: Set(session.user_id.to_string()),
            expires_at: Set(session.expires_at.timestamp_millis()),
            revoked_at: Set(now_millis()),
        };
        revoked_session::Entity::insert(row)
            .on_conflict_do_nothing_on([revoked_session::Column::SessionId])
            .exec_without_returning(self.db.writes())
            .await?;
        Ok(())
    }

    /// Sessions that have not expired, revoked after the position (`after` millis, then
    /// `after_session` among those revoked in that millisecond; empty for all of them), in
    /// (revoked at, session id) order: a keyset page, so that paging always moves forward.
    pub async fn revoked_since(
        &self,
        after: i64,
        after_session: &str,
        limit: u64,
    ) -> Result<Vec<revoked_session::Model>, StoreError> {
        use revoked_session::Column::{RevokedAt, SessionId};
        let later = Condition::any()
            .add(RevokedAt.gt(after))
            .add(Condition::all().add(RevokedAt.eq(after)).add(SessionId.gt(after_session)));
        Ok(revoked_session::Entity::find()
            .filter(later)
            .filter(revoked_session::Column::ExpiresAt.gt(now_millis()))
            .order_by_asc(RevokedAt)
            .order_by_asc(SessionId)
            .limit(limit)
            .all(self.db.reads())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::ConnectionTrait;

    #[tokio::test]
    async fn a_stored_user_with_an_unknown_role_or_status_is_an_error_naming_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            cutx_platform::db::connect(&cutx_platform::db::sqlite_url(&dir.path().join("auth.db")), 2).await.unwrap();
        cutx_migrations::migrate(db.writes()).await.unwrap();
        let store = Store::new(db.clone());
        let user = store.user_for_email("corrupt@example.com").await.unwrap();
        let caller = Caller::for_tests(user.id.parse().unwrap());
        for (column, word, said) in
            [("role", "root", "unknown role \"root\""), ("status", "banned", "unknown status \"banned\"")]
        {
            let corrupt = format!("UPDATE users SET role = 'user', status = 'active', {column} = '{word}'");
            db.writes().execute_unprepared(&corrupt).await.unwrap();
            match store.me(caller).await.unwrap_err() {
                StoreError::Corrupt { row, what } => {
                    assert_eq!((row.as_str(), what.as_str()), (user.id.as_str(), said))
                }
                other => panic!("{column}: expected Corrupt, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn paging_revocations_by_position_reads_each_once_though_many_share_a_millisecond() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            cutx_platform::db::connect(&cutx_platform::db::sqlite_url(&dir.path().join("auth.db")), 2).await.unwrap();
        cutx_migrations::migrate(db.writes()).await.unwrap();
        let store = Store::new(db.clone());
        let (revoked_at, expires_at) = (now_millis(), now_millis() + 60_000);
        let mut want = Vec::new();
        for i in 0..250 {
            // Three out of every five in one millisecond, the rest one millisecond later.
            let at = if i % 5 < 3 { revoked_at } else { revoked_at + 1 };
            let row = revoked_session::ActiveModel {
                session_id: Set(new_token()),
                user_id: Set(UserId::new().to_string()),
                expires_at: Set(expires_at),
                revoked_at: Set(at),
            };
            want.push(row.session_id.clone().unwrap());
            revoked_session::Entity::insert(row).exec_without_returning(db.writes()).await.unwrap();
        }
        let (mut position, mut read) = ((revoked_at - 5_000, String::new()), Vec::new());
        loop {
            let page = store.revoked_since(position.0, &position.1, 40).await.unwrap();
            let Some(last) = page.last() else { break };
            position = (last.revoked_at, last.session_id.clone());
            read.extend(page.into_iter().map(|r| r.session_id));
        }
        assert_eq!(read.len(), want.len(), "each session read exactly once");
        read.sort();
        want.sort();
        assert_eq!(read, want);
    }

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db =
            cutx_platform::db::connect(&cutx_platform::db::sqlite_url(&dir.path().join("auth.db")), 4).await.unwrap();
        cutx_migrations::migrate(db.writes()).await.unwrap();
        (Store::new(db), dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_ten_link_requests_at_once_for_one_address_exactly_one_makes_a_link() {
        let (store, _dir) = store().await;
        let email = Email::parse("race@example.com").unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (store, email) = (store.clone(), email.clone());
            tasks.spawn(async move { store.create_link(&email, &new_token()).await.unwrap() });
        }
        let outcomes = tasks.join_all().await;
        assert_eq!(outcomes.iter().filter(|o| **o == NewLink::Created).count(), 1, "{outcomes:?}");
        for outcome in outcomes {
            if let NewLink::TooSoon { retry_in } = outcome {
                assert!(retry_in > std::time::Duration::ZERO && retry_in.as_millis() <= LINK_INTERVAL_MILLIS as u128);
            }
        }
        // Another address is not held back by this one.
        let other = Email::parse("other@example.com").unwrap();
        assert_eq!(store.create_link(&other, &new_token()).await.unwrap(), NewLink::Created);
    }

    #[tokio::test]
    async fn a_link_works_once_and_not_after_it_expires() {
        let (store, _dir) = store().await;
        let email = Email::parse("once@example.com").unwrap();
        let token = new_token();
        assert_eq!(store.create_link(&email, &token).await.unwrap(), NewLink::Created);
        assert_eq!(store.redeem_link("not-a-token").await.unwrap(), None);
        assert_eq!(store.redeem_link(&token).await.unwrap().as_deref(), Some("once@example.com"));
        assert_eq!(store.redeem_link(&token).await.unwrap(), None, "a second use");

        // A link whose 15 minutes are over is refused.
        let later = Email::parse("expired@example.com").unwrap();
        let stale = new_token();
        store.create_link(&later, &stale).await.unwrap();
        magic_link::Entity::update_many()
            .col_expr(magic_link::Column::ExpiresAt, Expr::value(now_millis() - 1))
            .filter(magic_link::Column::TokenHash.eq(hash_token(&stale)))
            .exec(store.db.writes())
            .await
            .unwrap();
        assert_eq!(store.redeem_link(&stale).await.unwrap(), None, "an expired link");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_redeems_of_one_link_at_once_sign_in_once() {
        let (store, _dir) = store().await;
        let email = Email::parse("twice@example.com").unwrap();
        let token = new_token();
        store.create_link(&email, &token).await.unwrap();
        let (a, b) = tokio::join!(store.redeem_link(&token), store.redeem_link(&token));
        let signed_in = [a.unwrap(), b.unwrap()].into_iter().flatten().count();
        assert_eq!(signed_in, 1);
    }
}
