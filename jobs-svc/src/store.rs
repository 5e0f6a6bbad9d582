//! jobs-svc's storage. Reads and writes of a user's jobs and projects take a [`Caller`], so a
//! query that forgets the owner does not compile; the worker-side functions are named as such
//! and are reached only through the mesh-only `JobInternalService`.
//!
//! [`Store::transition`] is the one place a job's status changes: it checks the move against
//! the state machine, applies it with a conditional update (`WHERE status = <the status read>`),
//! and records it in `job_transitions`, all in one transaction. Moving a job to the status it
//! already has changes nothing, so a duplicate webhook or a redelivered message is harmless.

use cutx_platform::clock::now_millis;
use cutx_platform::credits::Credits;
use cutx_platform::db::chained;
use cutx_platform::ids::{JobId, ProjectId};
use cutx_platform::mesh::Caller;
use cutx_platform::paging::Page;
use cutx_proto::pb;
use prost::Message;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveEnum, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, Iterable,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};

use crate::entity::{job, output, project, transition};
use crate::input::NewJob;
use crate::kind::Kind;
use crate::state::Status;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job {0} not found")]
    JobNotFound(JobId),
    #[error("a {} job cannot become {}", .from.to_value(), .to.to_value())]
    Refused { from: Status, to: Status },
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// A stored job holds a word no enum of ours knows (sea-orm's own error names only the enum).
    #[error("stored job {row} is corrupt: {what}")]
    Corrupt { row: String, what: String },
    #[error("idempotency key {0:?} was already used for a different request")]
    KeyReused(String),
    #[error("job {0} is held by another delivery")]
    LeaseHeld(JobId),
}

/// The job a key already made, if this request is the one that made it.
fn same_request(existing: job::Model, new: &NewJob) -> Result<job::Model, StoreError> {
    if existing.kind == new.kind && existing.input == new.input.encode_to_vec() {
        return Ok(existing);
    }
    Err(StoreError::KeyReused(existing.idempotency_key.unwrap_or_default()))
}

/// What a transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub from: Status,
    pub to: Status,
    /// False when the job already had the status asked for.
    pub changed: bool,
}

/// Columns a transition may set along with the status.
#[derive(Debug, Default)]
pub struct Changes {
    pub result: Option<pb::RunSyncJobResponse>,
    pub error: Option<String>,
    pub lease: Option<Lease>,
    /// Move only if the job's lease ran out before this time (millis): the sweeper's guard
    /// against a delivery that took the job over meanwhile.
    pub lease_ended_before: Option<i64>,
    /// Files recorded with the move (a completion's), in the same transaction.
    pub outputs: Vec<pb::StoredOutput>,
}

/// Which delivery holds a processing job, and until when (millis).
#[derive(Debug, Clone)]
pub struct Lease {
    pub token: String,
    pub until: i64,
}

/// Whether a delivery may still act on a job: true unless the job is processing under another
/// delivery's lease that has not run out.
pub fn lease_allows(row: &job::Model, token: &str, now: i64) -> bool {
    if token.is_empty() || row.status != Status::Processing {
        return true;
    }
    match (&row.lease_owner, row.lease_until) {
        (Some(owner), Some(until)) => owner == token || until < now,
        _ => true,
    }
}

/// A stored job's id.
pub fn id_of(row: &job::Model) -> Result<JobId, StoreError> {
    row.id.parse().map_err(|_| StoreError::Corrupt { row: row.id.clone(), what: "its id is not a UUID".into() })
}

/// A stored job's id, for housekeeping that goes through many rows: a corrupt one is logged as
/// the error it is, naming the row, and the others still get their turn.
pub fn id_or_log(row: &job::Model) -> Option<JobId> {
    id_of(row).inspect_err(|e| tracing::error!(error = %e, "housekeeping passes over a corrupt job")).ok()
}

pub struct JobFilter {
    pub kind: Option<Kind>,
    pub status: Option<Status>,
    pub before: Option<String>,
    pub limit: u64,
    pub offset: u64,
}

#[derive(Clone)]
pub struct Store {
    db: cutx_platform::db::Db,
    moves: crate::moves::Moves,
}

impl Store {
    pub fn new(db: cutx_platform::db::Db) -> Self {
        Self { db, moves: crate::moves::Moves::default() }
    }

    /// What wakes a watcher of `id` when this process moves the job.
    pub fn watch(&self, id: JobId) -> std::sync::Arc<tokio::sync::Notify> {
        self.moves.watch(id)
    }

    /// Stores a new pending job, or returns the caller's job with the same idempotency key
    /// (made by the same request: a key reused for a different one is refused). The second
    /// value is true when this call created the job.
    pub async fn insert_job(
        &self,
        caller: Caller,
        new: &NewJob,
        cost: Credits,
    ) -> Result<(job::Model, bool), StoreError> {
        if let Some(existing) = self.find_by_key(caller, new.idempotency_key.as_deref()).await? {
            return same_request(existing, new).map(|job| (job, false));
        }
        let now = now_millis();
        let id = JobId::new();
        let job = job::Model {
            id: id.to_string(),
            user_id: caller.user_id().to_string(),
            kind: new.kind,
            status: Status::Pending,
            cost: cost.get(),
            input: new.input.encode_to_vec(),
            result: None,
            error: None,
            idempotency_key: new.idempotency_key.clone(),
            project_id: new.project_id.map(|p| p.to_string()),
            product_id: new.product_id.clone(),
            provider_ref: None,
            created_at: now,
            updated_at: now,
            lease_owner: None,
            lease_until: None,
            refunded_at: None,
            provider_deadline: None,
            provider_heard_at: None,
        };
        let row: job::ActiveModel = job.clone().into();
        if self.db.is_postgres() {
            // The job and its first record in one statement: one round trip, no transaction.
            let values = record_values(None, Status::Pending, "created", now);
            let statement = chained(job::Entity::insert(row).build(DbBackend::Postgres), "id", RECORD_MOVED, values);
            return match self.db.writes().execute_raw(statement).await {
                Ok(_) => Ok((job, true)),
                Err(e) => self.lost_race(caller, new, e).await,
            };
        }
        let txn = self.db.begin_write().await?;
        let inserted = job::Entity::insert(row).exec_without_returning(&txn).await;
        match inserted {
            Ok(_) => {}
            Err(e) => {
                txn.rollback().await?;
                return self.lost_race(caller, new, e).await;
            }
        }
        record(&txn, id, None, Status::Pending, "created").await?;
        txn.commit().await?;
        // The row as this call stored it (the caller moves it on from `pending` next).
        Ok((job, true))
    }

    /// After an insert failed: the same key from a concurrent call won the race, so the answer
    /// is its job; any other failure is the error it is.
    async fn lost_race(&self, caller: Caller, new: &NewJob, e: DbErr) -> Result<(job::Model, bool), StoreError> {
        if !matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) {
            return Err(e.into());
        }
        let existing = self.find_by_key(caller, new.idempotency_key.as_deref()).await?;
        same_request(existing.ok_or(StoreError::Db(e))?, new).map(|job| (job, false))
    }

    async fn find_by_key(&self, caller: Caller, key: Option<&str>) -> Result<Option<job::Model>, StoreError> {
        let Some(key) = key else { return Ok(None) };
        let scope = Condition::all()
            .add(job::Column::UserId.eq(caller.user_id().to_string()))
            .add(job::Column::IdempotencyKey.eq(key));
        self.read(job::Entity::find().filter(scope.clone()).one(self.db.reads()).await, scope).await
    }

    /// Removes a job that was never paid for (its debit was refused), with its history.
    pub async fn delete_unpaid(&self, caller: Caller, id: JobId) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        let deleted = job::Entity::delete_many()
            .filter(job::Column::Id.eq(id.to_string()))
            .filter(job::Column::UserId.eq(caller.user_id().to_string()))
            .filter(job::Column::Status.eq(Status::Pending))
            .exec(&txn)
            .await?;
        if deleted.rows_affected == 1 {
            transition::Entity::delete_many().filter(transition::Column::JobId.eq(id.to_string())).exec(&txn).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// One of the caller's jobs.
    pub async fn find(&self, caller: Caller, id: JobId) -> Result<job::Model, StoreError> {
        let found = job::Entity::find_by_id(id.to_string())
            .filter(job::Column::UserId.eq(caller.user_id().to_string()))
            .one(self.db.reads())
            .await;
        self.read(found, job::Column::Id.eq(id.to_string()).into()).await?.ok_or(StoreError::JobNotFound(id))
    }

    /// Any job, for the mesh-only worker calls.
    pub async fn find_for_worker(&self, id: JobId) -> Result<job::Model, StoreError> {
        let found = job::Entity::find_by_id(id.to_string()).one(self.db.reads()).await;
        self.read(found, job::Column::Id.eq(id.to_string()).into()).await?.ok_or(StoreError::JobNotFound(id))
    }

    /// The caller's jobs, newest first.
    pub async fn list(&self, caller: Caller, filter: JobFilter) -> Result<Vec<job::Model>, StoreError> {
        let mut query = job::Entity::find().filter(job::Column::UserId.eq(caller.user_id().to_string()));
        if let Some(kind) = filter.kind {
            query = query.filter(job::Column::Kind.eq(kind));
        }
        if let Some(status) = filter.status {
            query = query.filter(job::Column::Status.eq(status));
        }
        if let Some(before) = filter.before {
            query = query.filter(job::Column::Id.lt(before));
        }
        let page =
            query.order_by_desc(job::Column::Id).offset(filter.offset).limit(filter.limit).all(self.db.reads()).await;
        self.read(page, job::Column::UserId.eq(caller.user_id().to_string()).into()).await
    }

    /// The stored files of each of these jobs, in order, by job id.
    pub async fn outputs_of(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<output::Model>>, StoreError> {
        let mut by_job: std::collections::HashMap<String, Vec<output::Model>> = std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(by_job);
        }
        let rows = output::Entity::find()
            .filter(output::Column::JobId.is_in(ids.iter().copied()))
            .order_by_asc(output::Column::JobId)
            .order_by_asc(output::Column::Position)
            .all(self.db.reads())
            .await?;
        for row in rows {
            by_job.entry(row.job_id.clone()).or_default().push(row);
        }
        Ok(by_job)
    }

    /// Moves a job to `to`, if the state machine allows it from where the job is.
    pub async fn transition(&self, id: JobId, to: Status, reason: &str, changes: Changes) -> Result<Moved, StoreError> {
        self.transition_from(id, None, to, reason, changes).await
    }

    /// [`Store::transition`] for a caller that has just read the job's status (`seen`): the
    /// move is tried from there without reading the job again, and decided again from a fresh
    /// read if the job has moved on meanwhile.
    pub async fn transition_from(
        &self,
        id: JobId,
        mut seen: Option<Status>,
        to: Status,
        reason: &str,
        changes: Changes,
    ) -> Result<Moved, StoreError> {
        // A concurrent move can change the status between the read and the conditional update;
        // then read again and decide again. Three rounds is plenty: every move is final or
        // leads towards a final state.
        for _ in 0..3 {
            let from = match seen.take() {
                Some(status) => status,
                None => self.find_for_worker(id).await?.status,
            };
            if from == to {
                return Ok(Moved { from, to, changed: false });
            }
            if !from.can_move_to(to) {
                return Err(StoreError::Refused { from, to });
            }
            let mut update = job::Entity::update_many()
                .col_expr(job::Column::Status, Expr::value(to.to_value()))
                .col_expr(job::Column::UpdatedAt, Expr::value(now_millis()))
                .filter(job::Column::Id.eq(id.to_string()))
                .filter(job::Column::Status.eq(from));
            if let Some(result) = &changes.result {
                update = update.col_expr(job::Column::Result, Expr::value(result.encode_to_vec()));
            }
            if let Some(error) = &changes.error {
                update = update.col_expr(job::Column::Error, Expr::value(error.clone()));
            }
            if let Some(before) = changes.lease_ended_before {
                update = update.filter(job::Column::LeaseUntil.lt(before));
            }
            if let Some(lease) = &changes.lease {
                update = update
                    .col_expr(job::Column::LeaseOwner, Expr::value(lease.token.clone()))
                    .col_expr(job::Column::LeaseUntil, Expr::value(lease.until));
            }
            if self.db.is_postgres() {
                // The move, its files and its record in one statement: one round trip, no
                // transaction.
                let mut values = record_values(Some(from), to, reason, now_millis());
                let then = match outputs_values(&changes.outputs, &mut values) {
                    None => RECORD_MOVED.to_string(),
                    Some(rows) => format!(
                        ", files AS (INSERT INTO job_outputs \
                         (id, job_id, position, media_key, content_type, width, height, size_bytes) \
                         SELECT v.id, moved.id, v.position, v.media_key, v.content_type, v.width, v.height, \
                         v.size_bytes FROM moved, (VALUES {rows}) \
                         AS v (id, position, media_key, content_type, width, height, size_bytes) \
                         ON CONFLICT (job_id, position) DO NOTHING) {RECORD_MOVED}"
                    ),
                };
                let then = then.as_str();
                let statement = chained(update.build(DbBackend::Postgres), "id", then, values);
                if self.db.writes().execute_raw(statement).await?.rows_affected() == 1 {
                    self.moves.moved(id);
                    return Ok(Moved { from, to, changed: true });
                }
                if changes.lease_ended_before.is_some() {
                    return Err(StoreError::LeaseHeld(id));
                }
                continue;
            }
            let txn = self.db.begin_write().await?;
            if update.exec(&txn).await?.rows_affected == 1 {
                add_outputs(&txn, id, &changes.outputs).await?;
                record(&txn, id, Some(from), to, reason).await?;
                txn.commit().await?;
                self.moves.moved(id);
                return Ok(Moved { from, to, changed: true });
            }
            txn.rollback().await?;
            if changes.lease_ended_before.is_some() {
                return Err(StoreError::LeaseHeld(id));
            }
        }
        Err(StoreError::Db(DbErr::Custom(format!("job {id} kept changing status"))))
    }

    /// Leases a processing job to a new delivery if its lease has run out (its worker died) or
    /// is already this delivery's; false while another delivery holds it.
    pub async fn take_over(&self, id: JobId, lease: &Lease, now: i64) -> Result<bool, StoreError> {
        let free = job::Column::LeaseUntil
            .is_null()
            .or(job::Column::LeaseUntil.lt(now))
            .or(job::Column::LeaseOwner.eq(lease.token.clone()));
        let taken = job::Entity::update_many()
            .col_expr(job::Column::LeaseOwner, Expr::value(lease.token.clone()))
            .col_expr(job::Column::LeaseUntil, Expr::value(lease.until))
            .filter(job::Column::Id.eq(id.to_string()))
            .filter(job::Column::Status.eq(Status::Processing))
            // A job handed to a provider is the provider's: no delivery takes it back.
            .filter(job::Column::ProviderRef.is_null())
            .filter(free)
            .exec(self.db.writes())
            .await?;
        Ok(taken.rows_affected == 1)
    }

    /// Extends a lease its delivery still holds; false if it was lost.
    pub async fn renew(&self, id: JobId, lease: &Lease) -> Result<bool, StoreError> {
        let renewed = job::Entity::update_many()
            .col_expr(job::Column::LeaseUntil, Expr::value(lease.until))
            .filter(job::Column::Id.eq(id.to_string()))
            .filter(job::Column::Status.eq(Status::Processing))
            .filter(job::Column::LeaseOwner.eq(lease.token.clone()))
            .exec(self.db.writes())
            .await?;
        Ok(renewed.rows_affected == 1)
    }

    /// Ends a lease its delivery holds, so another delivery may take the job at once. The lease
    /// ends now, not at the epoch: the sweeper counts an orphan's age from its lease's end, and
    /// a job waiting out a retry delay is no orphan.
    pub async fn release(&self, id: JobId, token: &str) -> Result<(), StoreError> {
        job::Entity::update_many()
            .col_expr(job::Column::LeaseUntil, Expr::value(now_millis()))
            .filter(job::Column::Id.eq(id.to_string()))
            .filter(job::Column::Status.eq(Status::Processing))
            .filter(job::Column::LeaseOwner.eq(token))
            .exec(self.db.writes())
            .await?;
        Ok(())
    }

    /// Records that an unfinished job's refund was confirmed by billing-svc.
    pub async fn mark_refunded(&self, id: JobId) -> Result<(), StoreError> {
        job::Entity::update_many()
            .col_expr(job::Column::RefundedAt, Expr::value(now_millis()))
            .filter(job::Column::Id.eq(id.to_string()))
            .exec(self.db.writes())
            .await?;
        Ok(())
    }

    /// Jobs that ended unfinished before `before` (millis) whose refund is not confirmed.
    pub async fn unrefunded(&self, before: i64, limit: u64) -> Result<Vec<job::Model>, StoreError> {
        let unfinished = [Status::Failed, Status::Canceled, Status::Expired];
        let batch = job::Entity::find()
            .filter(job::Column::Status.is_in(unfinished))
            .filter(job::Column::RefundedAt.is_null())
            .filter(job::Column::UpdatedAt.lt(before))
            .order_by_asc(job::Column::UpdatedAt)
            .limit(limit);
        self.batch(batch).await
    }

    /// Processing jobs whose lease ran out before `before` (millis): no worker holds them, and
    /// no provider either (those are the reconciler's).
    pub async fn orphaned(&self, before: i64, limit: u64) -> Result<Vec<job::Model>, StoreError> {
        let batch = job::Entity::find()
            .filter(job::Column::Status.eq(Status::Processing))
            .filter(job::Column::ProviderRef.is_null())
            .filter(job::Column::LeaseUntil.lt(before))
            .order_by_asc(job::Column::LeaseUntil)
            .limit(limit);
        self.batch(batch).await
    }

    /// Hands a processing job that `lease` holds to a provider: records the prediction and its
    /// deadline and ends the lease, in one transaction with the note in its history. False when
    /// the lease is no longer this delivery's (or the job was handed over already).
    pub async fn submit(
        &self,
        id: JobId,
        lease_token: &str,
        prediction_id: &str,
        deadline: i64,
        note: &str,
    ) -> Result<bool, StoreError> {
        let now = now_millis();
        let txn = self.db.begin_write().await?;
        let handed = job::Entity::update_many()
            .col_expr(job::Column::ProviderRef, Expr::value(prediction_id))
            .col_expr(job::Column::ProviderDeadline, Expr::value(deadline))
            .col_expr(job::Column::ProviderHeardAt, Expr::value(now))
            .col_expr(job::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(job::Column::LeaseUntil, Expr::value(Option::<i64>::None))
            .filter(job::Column::Id.eq(id.to_string()))
            .filter(job::Column::Status.eq(Status::Processing))
            .filter(job::Column::LeaseOwner.eq(lease_token))
            .filter(job::Column::ProviderRef.is_null())
            .exec(&txn)
            .await?;
        if handed.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        record(&txn, id, Some(Status::Processing), Status::Processing, note).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Records that the provider told us something about a job (a callback, or an answer to
    /// the reconciler), with a note in the job's history.
    pub async fn heard(&self, id: JobId, note: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        job::Entity::update_many()
            .col_expr(job::Column::ProviderHeardAt, Expr::value(now_millis()))
            .filter(job::Column::Id.eq(id.to_string()))
            .exec(&txn)
            .await?;
        let row = job::Entity::find_by_id(id.to_string()).one(&txn).await;
        let row =
            self.read(row, job::Column::Id.eq(id.to_string()).into()).await?.ok_or(StoreError::JobNotFound(id))?;
        let status = row.status;
        record(&txn, id, Some(status), status, note).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Jobs handed to a provider that have not been heard of since `before` (millis), or whose
    /// deadline has passed: the reconciler asks the provider about them.
    pub async fn quiet_submissions(&self, before: i64, limit: u64) -> Result<Vec<job::Model>, StoreError> {
        let quiet = job::Column::ProviderHeardAt.lt(before).or(job::Column::ProviderDeadline.lt(now_millis()));
        let batch = job::Entity::find()
            .filter(job::Column::Status.eq(Status::Processing))
            .filter(job::Column::ProviderRef.is_not_null())
            .filter(quiet)
            .order_by_asc(job::Column::ProviderHeardAt)
            .limit(limit);
        self.batch(batch).await
    }

    /// The first stored output of one of the caller's completed jobs, to start another job from.
    pub async fn first_output(&self, caller: Caller, id: JobId) -> Result<Option<output::Model>, StoreError> {
        let job = self.find(caller, id).await?;
        if job.status != Status::Completed {
            return Ok(None);
        }
        Ok(output::Entity::find()
            .filter(output::Column::JobId.eq(id.to_string()))
            .order_by_asc(output::Column::Position)
            .one(self.db.reads())
            .await?)
    }

    /// Records in a job's history that something happened without a move (a worker taking over a
    /// job whose worker died).
    pub async fn record_note(&self, id: JobId, status: Status, reason: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().await?;
        record(&txn, id, Some(status), status, reason).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Jobs in `status` not touched since `before` (millis), oldest first.
    pub async fn stale(&self, status: Status, before: i64, limit: u64) -> Result<Vec<job::Model>, StoreError> {
        let batch = job::Entity::find()
            .filter(job::Column::Status.eq(status))
            .filter(job::Column::UpdatedAt.lt(before))
            .order_by_asc(job::Column::UpdatedAt)
            .limit(limit);
        self.batch(batch).await
    }

    /// A read's answer. A stored word that no enum of ours knows fails the whole read with an
    /// error naming only the enum, so the row holding one, among the rows `scope` picks (those
    /// the read was after), is looked up and named instead.
    async fn read<T>(&self, answer: Result<T, DbErr>, scope: Condition) -> Result<T, StoreError> {
        match answer {
            Err(DbErr::Type(what)) => match self.unknown_words(scope).await {
                Ok(Some(corrupt)) => Err(corrupt),
                _ => Err(StoreError::Db(DbErr::Type(what))),
            },
            other => Ok(other?),
        }
    }

    /// A housekeeping batch. One row holding a word no enum of ours knows would fail the whole
    /// read, and so every later round: then the batch is read row by row, and each such row is
    /// logged as the error it is, naming it, and passed over.
    async fn batch(&self, query: sea_orm::Select<job::Entity>) -> Result<Vec<job::Model>, StoreError> {
        match query.clone().all(self.db.reads()).await {
            Err(DbErr::Type(_)) => {}
            other => return Ok(other?),
        }
        let ids: Vec<String> = query.select_only().column(job::Column::Id).into_tuple().all(self.db.reads()).await?;
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            let scope: Condition = job::Column::Id.eq(id.clone()).into();
            match self.read(job::Entity::find().filter(scope.clone()).one(self.db.reads()).await, scope).await {
                Ok(row) => rows.extend(row),
                Err(e @ StoreError::Corrupt { .. }) => {
                    tracing::error!(error = %e, "housekeeping passes over a corrupt job");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(rows)
    }

    /// The first job among those `scope` picks whose kind or status is a word no enum of ours
    /// knows.
    async fn unknown_words(&self, scope: Condition) -> Result<Option<StoreError>, DbErr> {
        let kinds: Vec<String> = Kind::iter().map(|k| k.to_value()).collect();
        let statuses: Vec<String> = Status::iter().map(|s| s.to_value()).collect();
        let row: Option<(String, String, String)> = job::Entity::find()
            .select_only()
            .columns([job::Column::Id, job::Column::Kind, job::Column::Status])
            .filter(scope)
            .filter(job::Column::Kind.is_not_in(kinds.clone()).or(job::Column::Status.is_not_in(statuses)))
            .into_tuple()
            .one(self.db.reads())
            .await?;
        Ok(row.map(|(row, kind, status)| {
            let what = match kinds.contains(&kind) {
                false => format!("unknown kind {kind:?}"),
                true => format!("unknown status {status:?}"),
            };
            StoreError::Corrupt { row, what }
        }))
    }

    pub async fn create_project(
        &self,
        caller: Caller,
        name: &str,
        description: &str,
    ) -> Result<project::Model, StoreError> {
        let row = project::Model {
            id: ProjectId::new().to_string(),
            user_id: caller.user_id().to_string(),
            name: name.to_string(),
            description: description.to_string(),
            created_at: now_millis(),
        };
        let active: project::ActiveModel = row.clone().into();
        project::Entity::insert(active).exec_without_returning(self.db.writes()).await?;
        Ok(row)
    }

    pub async fn project(&self, caller: Caller, id: ProjectId) -> Result<Option<project::Model>, StoreError> {
        Ok(project::Entity::find_by_id(id.to_string())
            .filter(project::Column::UserId.eq(caller.user_id().to_string()))
            .one(self.db.reads())
            .await?)
    }

    pub async fn projects(&self, caller: Caller, page: &Page) -> Result<Vec<project::Model>, StoreError> {
        let mut query = project::Entity::find().filter(project::Column::UserId.eq(caller.user_id().to_string()));
        if let Some(before) = &page.before {
            query = query.filter(project::Column::Id.lt(before));
        }
        Ok(query.order_by_desc(project::Column::Id).offset(page.offset).limit(page.limit).all(self.db.reads()).await?)
    }
}

/// PostgreSQL: records the move of the job a chained statement's first part returned
/// (`moved`), with the parameters [`record_values`] gives.
const RECORD_MOVED: &str = "INSERT INTO job_transitions (id, job_id, from_status, to_status, reason, created_at) \
                            SELECT $1, id, $2, $3, $4, $5 FROM moved";

/// The parameters of [`RECORD_MOVED`].
fn record_values(from: Option<Status>, to: Status, reason: &str, at: i64) -> Vec<sea_orm::Value> {
    vec![
        uuid::Uuid::now_v7().to_string().into(),
        sea_orm::Value::String(from.map(|f| f.to_value())),
        to.to_value().into(),
        short(reason).into(),
        at.into(),
    ]
}

/// The `VALUES` rows of a job's files for a chained PostgreSQL statement, their parameters
/// appended to `values` (numbered after those already there); `None` without files.
fn outputs_values(outputs: &[pb::StoredOutput], values: &mut Vec<sea_orm::Value>) -> Option<String> {
    if outputs.is_empty() {
        return None;
    }
    let mut rows = Vec::with_capacity(outputs.len());
    for (position, o) in outputs.iter().enumerate() {
        let first = values.len() + 1;
        let row: Vec<String> = (first..first + 7).map(|n| format!("${n}")).collect();
        rows.push(format!("({})", row.join(", ")));
        values.extend([
            uuid::Uuid::now_v7().to_string().into(),
            (position as i32).into(),
            o.media_key.clone().into(),
            o.content_type.clone().into(),
            i64::from(o.width).into(),
            i64::from(o.height).into(),
            (o.size_bytes as i64).into(),
        ]);
    }
    Some(rows.join(", "))
}

/// A transition's reason as stored: at most 500 characters.
fn short(reason: &str) -> String {
    reason.chars().take(500).collect()
}

/// Records a job's stored files, in one statement; recording the same position twice keeps the
/// first.
async fn add_outputs(txn: &sea_orm::DatabaseTransaction, id: JobId, outputs: &[pb::StoredOutput]) -> Result<(), DbErr> {
    let rows = outputs.iter().enumerate().map(|(position, o)| output::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        job_id: Set(id.to_string()),
        position: Set(position as i32),
        media_key: Set(o.media_key.clone()),
        content_type: Set(o.content_type.clone()),
        width: Set(i64::from(o.width)),
        height: Set(i64::from(o.height)),
        size_bytes: Set(o.size_bytes as i64),
    });
    if outputs.is_empty() {
        return Ok(());
    }
    output::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([output::Column::JobId, output::Column::Position])
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

async fn record(
    txn: &sea_orm::DatabaseTransaction,
    id: JobId,
    from: Option<Status>,
    to: Status,
    reason: &str,
) -> Result<(), DbErr> {
    let row = transition::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        job_id: Set(id.to_string()),
        from_status: Set(from),
        to_status: Set(to),
        reason: Set(short(reason)),
        created_at: Set(now_millis()),
    };
    transition::Entity::insert(row).exec_without_returning(txn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutx_platform::ids::UserId;
    use sea_orm::ConnectionTrait;

    async fn store() -> (Store, sea_orm::DatabaseConnection, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = cutx_platform::db::sqlite_url(&dir.path().join("jobs.db"));
        let db = cutx_platform::db::connect(&url, 2).await.unwrap();
        cutx_migrations::migrate(db.writes()).await.unwrap();
        (Store::new(db.clone()), db.writes().clone(), dir)
    }

    /// A store on a fresh PostgreSQL database, when the tests have one.
    async fn postgres_store() -> Option<Store> {
        let db = cutx_platform::db::fresh_postgres("jobs", 4).await?;
        cutx_migrations::migrate(db.writes()).await.unwrap();
        Some(Store::new(db))
    }

    /// A job's whole life through the store, the same on SQLite (transactions) and PostgreSQL
    /// (one statement a move): every move recorded once, in order, with its reason; the files
    /// recorded with the completion; a repeated or refused move changes nothing.
    async fn moves_are_recorded_once_with_their_files(store: &Store) {
        let caller = Caller::for_tests(UserId::new());
        let (job, created) = store.insert_job(caller, &new_job(), Credits::from_u32(3)).await.unwrap();
        assert!(created);
        let id: JobId = job.id.parse().unwrap();
        let moved = store.transition_from(id, Some(Status::Pending), Status::Queued, "queued", Changes::default());
        assert!(moved.await.unwrap().changed);
        // A stale "seen" status is read again, not trusted.
        let lease = Lease { token: "t".into(), until: now_millis() + 60_000 };
        let changes = Changes { lease: Some(lease), ..Changes::default() };
        let moved = store.transition_from(id, Some(Status::Pending), Status::Processing, "taken", changes).await;
        assert_eq!(moved.unwrap(), Moved { from: Status::Queued, to: Status::Processing, changed: true });
        let file = |key: &str| pb::StoredOutput {
            media_key: key.into(),
            content_type: "image/png".into(),
            width: 2,
            height: 3,
            size_bytes: 4,
        };
        let changes = Changes { outputs: vec![file("a.png"), file("b.png")], ..Changes::default() };
        let done = store.transition_from(id, Some(Status::Processing), Status::Completed, "done", changes).await;
        assert!(done.unwrap().changed);
        let again = Changes { outputs: vec![file("c.png")], ..Changes::default() };
        let repeated = store.transition(id, Status::Completed, "done again", again).await.unwrap();
        assert!(!repeated.changed, "completing a completed job changes nothing");
        let refused = store.transition(id, Status::Queued, "back", Changes::default()).await;
        assert!(matches!(refused, Err(StoreError::Refused { .. })), "{refused:?}");

        let history: Vec<(Option<Status>, Status, String)> = transition::Entity::find()
            .filter(transition::Column::JobId.eq(job.id.clone()))
            .order_by_asc(transition::Column::Id)
            .all(store.db.reads())
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.from_status, t.to_status, t.reason))
            .collect();
        let expected = [
            (None, Status::Pending, "created"),
            (Some(Status::Pending), Status::Queued, "queued"),
            (Some(Status::Queued), Status::Processing, "taken"),
            (Some(Status::Processing), Status::Completed, "done"),
        ];
        let expected: Vec<_> = expected.into_iter().map(|(f, t, r)| (f, t, r.to_string())).collect();
        assert_eq!(history, expected);
        let files = store.outputs_of(&[job.id.as_str()]).await.unwrap().remove(&job.id).unwrap();
        let keys: Vec<(i32, &str, i64)> = files.iter().map(|o| (o.position, o.media_key.as_str(), o.width)).collect();
        assert_eq!(keys, [(0, "a.png", 2), (1, "b.png", 2)]);
        assert_eq!(store.find(caller, id).await.unwrap().status, Status::Completed);
    }

    #[tokio::test]
    async fn on_sqlite_moves_are_recorded_once_with_their_files() {
        let (store, _db, _dir) = store().await;
        moves_are_recorded_once_with_their_files(&store).await;
    }

    #[tokio::test]
    async fn on_postgresql_moves_are_recorded_once_with_their_files() {
        let Some(store) = postgres_store().await else { return };
        moves_are_recorded_once_with_their_files(&store).await;
    }

    fn new_job() -> NewJob {
        NewJob {
            kind: Kind::StaticAd,
            input: pb::JobInput::default(),
            project_id: None,
            product_id: None,
            idempotency_key: None,
        }
    }

    async fn set(db: &sea_orm::DatabaseConnection, column: &str, word: &str, id: &str) {
        db.execute_unprepared(&format!("UPDATE jobs SET {column} = '{word}' WHERE id = '{id}'")).await.unwrap();
    }

    #[tokio::test]
    async fn a_stored_job_with_an_unknown_status_or_kind_is_an_error_naming_its_row() {
        let (store, db, _dir) = store().await;
        let caller = Caller::for_tests(UserId::new());
        let (job, _) = store.insert_job(caller, &new_job(), Credits::from_u32(3)).await.unwrap();
        let id: JobId = job.id.parse().unwrap();
        for (column, word, said) in
            [("status", "zombie", "unknown status \"zombie\""), ("kind", "podcast", "unknown kind \"podcast\"")]
        {
            set(&db, "status", "pending", &job.id).await;
            set(&db, "kind", "static_ad", &job.id).await;
            set(&db, column, word, &job.id).await;
            let listed = store
                .list(caller, JobFilter { kind: None, status: None, before: None, limit: 10, offset: 0 })
                .await
                .unwrap_err();
            for err in [store.find(caller, id).await.unwrap_err(), store.find_for_worker(id).await.unwrap_err(), listed]
            {
                match &err {
                    StoreError::Corrupt { row, what } => {
                        assert_eq!((row.as_str(), what.as_str()), (job.id.as_str(), said))
                    }
                    other => panic!("{column} {word:?}: expected Corrupt, got {other:?}"),
                }
                assert!(err.to_string().contains(&job.id), "{err}");
            }
        }
    }

    #[tokio::test]
    async fn a_corrupt_job_is_named_only_to_reads_that_reach_it_and_housekeeping_passes_over_it() {
        let (store, db, _dir) = store().await;
        let (alice, bob) = (Caller::for_tests(UserId::new()), Caller::for_tests(UserId::new()));
        let (good, _) = store.insert_job(alice, &new_job(), Credits::from_u32(3)).await.unwrap();
        let (bad, _) = store.insert_job(bob, &new_job(), Credits::from_u32(3)).await.unwrap();
        set(&db, "status", "zombie", &bad.id).await;
        let all = || JobFilter { kind: None, status: None, before: None, limit: 10, offset: 0 };
        // Alice's reads never touch Bob's row, and are not told about it.
        assert_eq!(store.list(alice, all()).await.unwrap().len(), 1);
        assert_eq!(store.find(alice, good.id.parse().unwrap()).await.unwrap().id, good.id);
        // Bob's read of his own jobs names his row.
        let err = store.list(bob, all()).await.unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt { row, .. } if *row == bad.id), "{err:?}");
        // A batch over both rows still answers the good one: one corrupt row stops no sweep.
        set(&db, "status", "pending", &good.id).await;
        let stale = store.stale(Status::Pending, i64::MAX, 10).await.unwrap();
        assert_eq!(stale.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [good.id.as_str()]);
    }

    #[tokio::test]
    async fn a_stored_job_id_that_is_not_a_uuid_is_an_error_naming_its_row() {
        let (store, db, _dir) = store().await;
        let (job, _) =
            store.insert_job(Caller::for_tests(UserId::new()), &new_job(), Credits::from_u32(3)).await.unwrap();
        db.execute_unprepared(&format!("UPDATE jobs SET id = 'not-a-uuid' WHERE id = '{}'", job.id)).await.unwrap();
        let rows = store.stale(Status::Pending, i64::MAX, 10).await.unwrap();
        let err = id_of(&rows[0]).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt { row, .. } if row == "not-a-uuid"), "{err:?}");
        assert_eq!(id_or_log(&rows[0]), None);
    }
}
