//! The credit ledger. Every movement is one transaction that changes the balance and writes a
//! ledger row with the balance after it; the row's idempotency key is unique, so the same key
//! twice moves credits once. A debit is one conditional update (`balance >= amount`), so a
//! balance never goes below zero, whatever runs concurrently.
//!
//! Invariant (property-tested): for every user, balance == sum of their ledger amounts >= 0.

use cutx_platform::clock::now_millis;
use cutx_platform::credits::Credits;
use cutx_platform::ids::UserId;
use cutx_platform::mesh::Caller;
use cutx_platform::paging::Page;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveEnum, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, Iterable, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};

use crate::entity::{balance, ledger};
use crate::entry::EntryType;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("insufficient credits: {needed} needed, {balance} available")]
    InsufficientCredits { needed: Credits, balance: Credits },
    #[error("the balance cannot hold {adding} more credits")]
    Overflow { adding: Credits },
    /// TigerBeetle's rule: an idempotency key names one movement; the same key for another
    /// amount, type or user is refused rather than answered as the first.
    #[error("idempotency key {key:?} was used for another movement")]
    KeyReused { key: String },
    /// A concurrent change to the same payment won; the caller may try again.
    #[error("payment {0} changed meanwhile")]
    Contended(String),
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// A stored entry holds a word no enum of ours knows (sea-orm's own error names only the
    /// enum).
    #[error("stored ledger entry {row} is corrupt: {what}")]
    Corrupt { row: String, what: String },
}

/// The outcome of a movement: the balance now, and whether this call moved anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub balance: Credits,
    pub applied: bool,
    pub amount: Credits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    pub balance: Credits,
    pub lifetime_purchased: Credits,
    pub lifetime_used: Credits,
}

#[derive(Clone)]
pub struct Store {
    pub(crate) db: cutx_platform::db::Db,
}

/// One movement to apply.
pub(crate) struct Movement<'a> {
    pub user: UserId,
    /// Taken from the balance for a deduction or an adjustment, added to it for every other type.
    pub amount: Credits,
    pub entry_type: EntryType,
    pub key: &'a str,
    pub reference: &'a str,
}

impl Store {
    pub fn new(db: cutx_platform::db::Db) -> Self {
        Self { db }
    }

    pub async fn balance(&self, caller: Caller) -> Result<Balance, StoreError> {
        let row = balance::Entity::find_by_id(caller.user_id().to_string()).one(self.db.reads()).await?;
        let Some(row) = row else { return Ok(Balance::default()) };
        Ok(Balance {
            balance: stored(&row.user_id, "balance", row.balance)?,
            lifetime_purchased: stored(&row.user_id, "lifetime_purchased", row.lifetime_purchased)?,
            lifetime_used: stored(&row.user_id, "lifetime_used", row.lifetime_used)?,
        })
    }

    /// The caller's ledger, newest first, after the entry `before` (an id) if given.
    pub async fn ledger(&self, caller: Caller, page: &Page) -> Result<Vec<ledger::Model>, StoreError> {
        let mut query = ledger::Entity::find().filter(ledger::Column::UserId.eq(caller.user_id().to_string()));
        if let Some(before) = &page.before {
            query = query.filter(ledger::Column::Id.lt(before));
        }
        let rows =
            query.order_by_desc(ledger::Column::Id).offset(page.offset).limit(page.limit).all(self.db.reads()).await;
        let scope = ledger::Column::UserId.eq(caller.user_id().to_string()).into();
        self.named(rows.map_err(StoreError::from), scope).await
    }

    /// An answer, with a stored word that no enum of ours knows named by its row: sea-orm fails
    /// the whole read with an error naming only the enum, so the row holding one, among those
    /// `scope` picks (the rows the read was after), is looked up.
    async fn named<T>(&self, answer: Result<T, StoreError>, scope: Condition) -> Result<T, StoreError> {
        match answer {
            Err(StoreError::Db(DbErr::Type(what))) => {
                let known: Vec<String> = EntryType::iter().map(|t| t.to_value()).collect();
                let corrupt: Result<Option<(String, String)>, DbErr> = ledger::Entity::find()
                    .select_only()
                    .columns([ledger::Column::Id, ledger::Column::EntryType])
                    .filter(scope)
                    .filter(ledger::Column::EntryType.is_not_in(known))
                    .into_tuple()
                    .one(self.db.reads())
                    .await;
                match corrupt {
                    Ok(Some((row, word))) => {
                        Err(StoreError::Corrupt { row, what: format!("unknown entry type {word:?}") })
                    }
                    _ => Err(StoreError::Db(DbErr::Type(what))),
                }
            }
            other => other,
        }
    }

    pub async fn debit(
        &self,
        user: UserId,
        amount: Credits,
        key: &str,
        reference: &str,
    ) -> Result<Applied, StoreError> {
        self.apply(Movement { user, amount, entry_type: EntryType::Deduction, key, reference }).await
    }

    pub async fn grant(
        &self,
        user: UserId,
        amount: Credits,
        entry_type: EntryType,
        key: &str,
        reference: &str,
    ) -> Result<Applied, StoreError> {
        self.apply(Movement { user, amount, entry_type, key, reference }).await
    }

    /// Gives back what the debit `debit_key` took, once. If there was no such debit, the debit
    /// key is closed with a refund of 0 credits, so a debit arriving late (a create racing a
    /// cancel or the sweeper) charges nothing.
    pub async fn refund(
        &self,
        user: UserId,
        debit_key: &str,
        key: &str,
        reference: &str,
    ) -> Result<Applied, StoreError> {
        let answer = match self.refund_once(user, debit_key, key, reference).await {
            // The debit or another refund committed its row first: look again.
            Err(StoreError::Db(e)) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
                self.refund_once(user, debit_key, key, reference).await
            }
            other => other,
        };
        self.named(answer, ledger::Column::IdempotencyKey.is_in([key, debit_key]).into()).await
    }

    async fn refund_once(
        &self,
        user: UserId,
        debit_key: &str,
        key: &str,
        reference: &str,
    ) -> Result<Applied, StoreError> {
        let txn = self.db.begin_write().await?;
        ensure_balance_row(&txn, user).await?;
        if let Some(done) = find_by_key(&txn, key).await? {
            let balance = current_balance(&txn, user).await?;
            txn.commit().await?;
            return Ok(Applied { balance, applied: false, amount: moved(&done)? });
        }
        let debit = find_by_key(&txn, debit_key).await?.filter(|d| d.user_id == user.to_string());
        match debit {
            Some(debit) if debit.entry_type == EntryType::Deduction && debit.amount < 0 => {
                let refund = Movement { user, amount: moved(&debit)?, entry_type: EntryType::Refund, key, reference };
                let applied = apply_in(&txn, &refund).await?;
                txn.commit().await?;
                Ok(applied)
            }
            // Closed already (a refund of nothing), or a key that is not a debit: nothing to give.
            Some(_) => {
                let balance = current_balance(&txn, user).await?;
                txn.commit().await?;
                Ok(Applied { balance, applied: false, amount: Credits::ZERO })
            }
            None => {
                let balance = current_balance(&txn, user).await?;
                insert_entry(&txn, user, EntryType::Refund, 0, balance, debit_key, reference).await?;
                txn.commit().await?;
                Ok(Applied { balance, applied: false, amount: Credits::ZERO })
            }
        }
    }

    async fn apply(&self, m: Movement<'_>) -> Result<Applied, StoreError> {
        let answer = match self.apply_once(&m).await {
            // A concurrent call with the same key committed first (PostgreSQL lets both get this
            // far): run again, and find its row.
            Err(StoreError::Db(e)) if matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => {
                self.apply_once(&m).await
            }
            other => other,
        };
        self.named(answer, ledger::Column::IdempotencyKey.eq(m.key).into()).await
    }

    async fn apply_once(&self, m: &Movement<'_>) -> Result<Applied, StoreError> {
        // The common case first, in two statements (one on PostgreSQL): the balance row exists,
        // the key is new, the credits suffice. A replayed key moves the credits too, but its
        // ledger row then breaks the key's uniqueness and the whole is undone; anything else
        // goes the careful way.
        let unique = |e: &DbErr| matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)));
        if self.db.is_postgres() {
            match apply_at_once(self.db.writes(), m).await {
                Ok(Some(applied)) => return Ok(applied),
                Ok(None) => {}
                Err(StoreError::Db(e)) if !unique(&e) => return Err(StoreError::Db(e)),
                Err(_) => {}
            }
        } else {
            let txn = self.db.begin_write().await?;
            match apply_in(&txn, m).await {
                Ok(applied) => {
                    txn.commit().await?;
                    return Ok(applied);
                }
                Err(StoreError::Db(e)) if !unique(&e) => return Err(StoreError::Db(e)),
                Err(_) => txn.rollback().await?,
            }
        }
        let txn = self.db.begin_write().await?;
        ensure_balance_row(&txn, m.user).await?;
        if let Some(existing) = find_by_key(&txn, m.key).await? {
            let balance = current_balance(&txn, m.user).await?;
            txn.commit().await?;
            return replayed(&existing, m, balance);
        }
        match apply_in(&txn, m).await {
            Ok(applied) => {
                txn.commit().await?;
                Ok(applied)
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
    }
}

/// The answer to a movement whose key is already used: the first movement's, if it is the same
/// one; a debit whose job was refunded before it arrived finds its key closed (a refund of 0).
fn replayed(existing: &ledger::Model, m: &Movement<'_>, balance: Credits) -> Result<Applied, StoreError> {
    let closed =
        m.entry_type == EntryType::Deduction && existing.entry_type == EntryType::Refund && existing.amount == 0;
    if closed {
        return Ok(Applied { balance, applied: false, amount: Credits::ZERO });
    }
    let amount = moved(existing)?;
    if existing.user_id != m.user.to_string() || existing.entry_type != m.entry_type || amount != m.amount {
        return Err(StoreError::KeyReused { key: m.key.to_string() });
    }
    Ok(Applied { balance, applied: false, amount })
}

/// The conditional update that moves the credits of `m` (none if it would go below zero or past
/// the largest count), and the signed amount its ledger row records.
fn movement(m: &Movement<'_>) -> (sea_orm::UpdateMany<balance::Entity>, i64) {
    let used = Expr::col(balance::Column::LifetimeUsed);
    let purchased = Expr::col(balance::Column::LifetimePurchased);
    let amount = m.amount.get();
    // The ledger's amounts are signed: what a deduction takes is negative.
    let signed = if m.entry_type.takes() { -amount } else { amount };
    // What a count may hold before adding this would pass the largest count: refused below, never
    // wrapped (nor, on SQLite, turned into a float).
    let room = Credits::MAX.checked_sub(m.amount).map(Credits::get).unwrap_or(0);
    let mut update = balance::Entity::update_many()
        .col_expr(balance::Column::Balance, Expr::col(balance::Column::Balance).add(signed))
        .col_expr(balance::Column::UpdatedAt, Expr::value(now_millis()))
        .filter(balance::Column::UserId.eq(m.user.to_string()));
    match m.entry_type {
        EntryType::Deduction => {
            update = update
                .col_expr(balance::Column::LifetimeUsed, used.add(amount))
                .filter(balance::Column::Balance.gte(amount))
                .filter(balance::Column::LifetimeUsed.lte(room));
        }
        EntryType::Refund => {
            update = update
                .col_expr(balance::Column::LifetimeUsed, used.sub(amount))
                .filter(balance::Column::Balance.lte(room))
        }
        EntryType::Purchase | EntryType::Subscription => {
            update = update
                .col_expr(balance::Column::LifetimePurchased, purchased.add(amount))
                .filter(balance::Column::Balance.lte(room))
                .filter(balance::Column::LifetimePurchased.lte(room))
        }
        // Given, not bought: only the balance moves.
        EntryType::Bonus | EntryType::FreeTier => update = update.filter(balance::Column::Balance.lte(room)),
        // Taken back, not used: only the balance moves, and never below zero.
        EntryType::Adjustment => update = update.filter(balance::Column::Balance.gte(amount)),
    }
    (update, signed)
}

/// PostgreSQL: the movement of `m` and its ledger row as one statement (atomic on its own, one
/// round trip). `None` when it moved nothing: no balance row yet, too few credits, or too many;
/// a key already used fails the statement, and nothing moves.
async fn apply_at_once(db: &sea_orm::DatabaseConnection, m: &Movement<'_>) -> Result<Option<Applied>, StoreError> {
    let (update, signed) = movement(m);
    let then = "INSERT INTO credit_ledger \
                (id, user_id, entry_type, amount, balance_after, reference, idempotency_key, created_at) \
                SELECT $1, $2, $3, $4, balance, $5, $6, $7 FROM moved RETURNING balance_after";
    let values = vec![
        uuid::Uuid::now_v7().to_string().into(),
        m.user.to_string().into(),
        m.entry_type.to_value().into(),
        signed.into(),
        m.reference.into(),
        m.key.into(),
        now_millis().into(),
    ];
    let statement = cutx_platform::db::chained(update.build(DbBackend::Postgres), "balance", then, values);
    let Some(row) = db.query_one_raw(statement).await? else { return Ok(None) };
    let balance: i64 = row.try_get("", "balance_after")?;
    Ok(Some(Applied { balance: stored(&m.user.to_string(), "balance", balance)?, applied: true, amount: m.amount }))
}

/// Moves the credits of `m` and writes its ledger row, inside `txn`.
pub(crate) async fn apply_in(txn: &DatabaseTransaction, m: &Movement<'_>) -> Result<Applied, StoreError> {
    let (update, signed) = movement(m);
    let Some(after) = update.exec_with_returning(txn).await?.into_iter().next() else {
        if !m.entry_type.takes() {
            return Err(StoreError::Overflow { adding: m.amount });
        }
        let balance = current_balance(txn, m.user).await?;
        return Err(StoreError::InsufficientCredits { needed: m.amount, balance });
    };
    let balance_after = stored(&after.user_id, "balance", after.balance)?;
    insert_entry(txn, m.user, m.entry_type, signed, balance_after, m.key, m.reference).await?;
    Ok(Applied { balance: balance_after, applied: true, amount: m.amount })
}

async fn insert_entry(
    txn: &DatabaseTransaction,
    user: UserId,
    entry_type: EntryType,
    amount: i64,
    balance_after: Credits,
    key: &str,
    reference: &str,
) -> Result<(), DbErr> {
    let row = ledger::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        user_id: Set(user.to_string()),
        entry_type: Set(entry_type),
        amount: Set(amount),
        balance_after: Set(balance_after.get()),
        reference: Set(reference.to_string()),
        idempotency_key: Set(key.to_string()),
        created_at: Set(now_millis()),
    };
    ledger::Entity::insert(row).exec_without_returning(txn).await?;
    Ok(())
}

pub(crate) async fn ensure_balance_row(txn: &DatabaseTransaction, user: UserId) -> Result<(), DbErr> {
    let row = balance::ActiveModel {
        user_id: Set(user.to_string()),
        balance: Set(0),
        lifetime_purchased: Set(0),
        lifetime_used: Set(0),
        updated_at: Set(now_millis()),
    };
    balance::Entity::insert(row)
        .on_conflict_do_nothing_on([balance::Column::UserId])
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

async fn find_by_key(txn: &DatabaseTransaction, key: &str) -> Result<Option<ledger::Model>, DbErr> {
    ledger::Entity::find().filter(ledger::Column::IdempotencyKey.eq(key)).one(txn).await
}

pub(crate) async fn current_balance(txn: &DatabaseTransaction, user: UserId) -> Result<Credits, StoreError> {
    let row = balance::Entity::find_by_id(user.to_string()).one(txn).await?;
    row.map_or(Ok(Credits::ZERO), |r| stored(&r.user_id, "balance", r.balance))
}

/// A stored count as credits; a negative one (which the schema's check forbids) names its row.
fn stored(row: &str, column: &str, n: i64) -> Result<Credits, StoreError> {
    Credits::new(n).map_err(|e| StoreError::Corrupt { row: row.to_string(), what: format!("{column}: {e}") })
}

/// How many credits a ledger entry moved, whichever way.
fn moved(entry: &ledger::Model) -> Result<Credits, StoreError> {
    let amount = entry.amount.checked_abs().unwrap_or(-1);
    stored(&entry.id, "amount", amount)
}
