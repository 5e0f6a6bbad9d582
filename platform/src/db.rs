//! The database connection: SQLite for the embedded default, PostgreSQL when distributed.

use std::time::Duration;

use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

/// A service's database: reads go to a pool, writes to [`Db::writes`]. On SQLite the writer is
/// one connection shared by the whole process, so writers queue in the process (a cheap wait on
/// the pool) instead of fighting over SQLite's one write lock and sleeping in its busy handler,
/// and the reading connections are read-only, so a write sent to them fails loudly. On
/// PostgreSQL, which has no single writer, both are the same pool.
#[derive(Clone, Debug)]
pub struct Db {
    reads: DatabaseConnection,
    writes: DatabaseConnection,
}

impl Db {
    /// One pool for reads and writes alike (PostgreSQL).
    pub fn single(connection: DatabaseConnection) -> Self {
        Self { reads: connection.clone(), writes: connection }
    }

    /// Whether this is PostgreSQL, which can do in one statement (a data-modifying `WITH`) what
    /// SQLite needs a transaction of several for.
    pub fn is_postgres(&self) -> bool {
        sea_orm::ConnectionTrait::get_database_backend(&self.writes) == sea_orm::DbBackend::Postgres
    }

    /// For queries that only read.
    pub fn reads(&self) -> &DatabaseConnection {
        &self.reads
    }

    /// For statements that write, transactions included (see [`Db::begin_write`]).
    pub fn writes(&self) -> &DatabaseConnection {
        &self.writes
    }

    /// Starts a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: a deferred
    /// transaction that reads first and writes later cannot wait for another writer (WAL
    /// answers `SQLITE_BUSY` at once, past any busy timeout, when the snapshot it read is no
    /// longer the newest; another process, `cutx migrate`, can still be one), while an immediate
    /// one takes the write lock up front and so waits its turn. PostgreSQL ignores the mode.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        self.writes
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
    }
}

/// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`) with up to `max_connections`
/// for reads. Every SQLite connection runs in WAL mode with `synchronous=NORMAL` (a sync at
/// checkpoints, not at every commit) and a busy timeout for other processes' writers.
pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbErr> {
    if !url.starts_with("sqlite:") {
        return Ok(Db::single(pool(url, max_connections, false).await?));
    }
    // The writer first: it creates the file and turns WAL on, which read-only connections cannot.
    let writes = pool(url, 1, false).await?;
    let reads = pool(url, max_connections, true).await?;
    Ok(Db { reads, writes })
}

async fn pool(url: &str, max_connections: u32, read_only: bool) -> Result<DatabaseConnection, DbErr> {
    use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        // Per connection: a pragma set on one pooled connection says nothing of the others.
        .map_sqlx_sqlite_opts(move |sqlite| {
            sqlite
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .read_only(read_only)
        });
    Database::connect(options).await
}

/// The SQLite URL of a database file, created if missing.
pub fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// A statement whose `RETURNING` rows feed a second one, as one PostgreSQL statement:
/// `WITH moved AS (<first> RETURNING ..) <then>`, where `then` reads `moved` and numbers its own
/// parameters from `$1` (they are renumbered after the first's). One statement is atomic on its
/// own: no transaction, one round trip. Written out because the query builder has no
/// data-modifying `WITH`.
pub fn chained(
    first: sea_orm::Statement,
    returning: &str,
    then: &str,
    then_values: Vec<sea_orm::Value>,
) -> sea_orm::Statement {
    let mut values = first.values.map(|v| v.0).unwrap_or_default();
    let offset = values.len();
    let then_sql = renumbered(then, offset);
    values.extend(then_values);
    let sql = format!("WITH moved AS ({} RETURNING {returning}) {then_sql}", first.sql);
    sea_orm::Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values)
}

/// `sql` with every parameter `$n` made `$(n + offset)`.
fn renumbered(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

/// A fresh, empty PostgreSQL database on the test run's server (`CUTX_TEST_POSTGRES_URL`, which
/// scripts/test.sh sets), named `<prefix>_<random>`; `None` when the run has no server, which
/// `CUTX_REQUIRE_TOOLS` turns into a failure.
#[cfg(any(test, feature = "test-util"))]
pub async fn fresh_postgres(prefix: &str, max_connections: u32) -> Option<Db> {
    use sea_orm::ConnectionTrait;
    let Ok(admin_url) = std::env::var("CUTX_TEST_POSTGRES_URL") else {
        assert!(std::env::var("CUTX_REQUIRE_TOOLS").is_err(), "CUTX_TEST_POSTGRES_URL is not set");
        eprintln!("PostgreSQL not available: skipped");
        return None;
    };
    let admin = Database::connect(&admin_url).await.expect("connecting to the test PostgreSQL");
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("creating a test database");
    let (server, _) = admin_url.rsplit_once('/').expect("a database URL ends in /<database>");
    Some(connect(&format!("{server}/{name}"), max_connections).await.expect("connecting to the test database"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectionTrait, DbBackend};

    /// Four reading connections, each held by a transaction of its own, and the writer: every
    /// one has the pragmas, not only the first.
    #[tokio::test]
    async fn every_sqlite_connection_has_wal_normal_sync_and_the_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let db = connect(&sqlite_url(&dir.path().join("t.db")), 4).await.unwrap();
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(db.reads().begin().await.unwrap());
        }
        held.push(db.begin_write().await.unwrap());
        let pragma = |name: &'static str| sea_orm::Statement::from_string(DbBackend::Sqlite, format!("PRAGMA {name}"));
        for txn in &held {
            let mode = txn.query_one_raw(pragma("journal_mode")).await.unwrap().unwrap();
            assert_eq!(mode.try_get_by_index::<String>(0).unwrap(), "wal");
            let sync = txn.query_one_raw(pragma("synchronous")).await.unwrap().unwrap();
            assert_eq!(sync.try_get_by_index::<i64>(0).unwrap(), 1, "NORMAL");
            let busy = txn.query_one_raw(pragma("busy_timeout")).await.unwrap().unwrap();
            assert_eq!(busy.try_get_by_index::<i64>(0).unwrap(), 10_000);
        }
    }

    /// A write sent to the reading pool is refused, so one that bypasses the single writer
    /// shows up in tests; the writer's commits are seen by the readers at once.
    #[tokio::test]
    async fn sqlite_reads_are_read_only_and_see_the_writers_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = connect(&sqlite_url(&dir.path().join("t.db")), 2).await.unwrap();
        db.writes().execute_unprepared("CREATE TABLE t (n INTEGER NOT NULL)").await.unwrap();
        let refused = db.reads().execute_unprepared("INSERT INTO t (n) VALUES (1)").await.unwrap_err();
        assert!(refused.to_string().contains("readonly"), "{refused}");
        let txn = db.begin_write().await.unwrap();
        txn.execute_unprepared("INSERT INTO t (n) VALUES (7)").await.unwrap();
        txn.commit().await.unwrap();
        let row = db
            .reads()
            .query_one_raw(sea_orm::Statement::from_string(DbBackend::Sqlite, "SELECT n FROM t"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 7);
    }

    #[test]
    fn a_chained_statement_numbers_its_second_parts_parameters_after_the_firsts() {
        assert_eq!(renumbered("SELECT $1, $2, $10, '$' FROM moved", 9), "SELECT $10, $11, $19, '$' FROM moved");
        let first = sea_orm::Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE t SET n = $1 WHERE id = $2",
            [1i64.into(), "a".into()],
        );
        let chained = chained(first, "id", "INSERT INTO h (id, note) SELECT id, $1 FROM moved", vec!["x".into()]);
        assert_eq!(
            chained.sql,
            "WITH moved AS (UPDATE t SET n = $1 WHERE id = $2 RETURNING id) INSERT INTO h (id, note) SELECT id, $3 FROM moved"
        );
        assert_eq!(chained.values.unwrap().0.len(), 3);
    }

    /// Eight transactions that each read a counter, then write it back plus one, all at once on
    /// one SQLite file: every one lands, none answers "database is locked".
    #[test]
    fn concurrent_read_then_write_transactions_on_sqlite_all_commit() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let db = connect(&sqlite_url(&dir.path().join("t.db")), 8).await.unwrap();
            db.writes().execute_unprepared("CREATE TABLE counter (n INTEGER NOT NULL)").await.unwrap();
            db.writes().execute_unprepared("INSERT INTO counter (n) VALUES (0)").await.unwrap();
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let db = db.clone();
                    tokio::spawn(async move {
                        for _ in 0..10 {
                            let txn = db.begin_write().await?;
                            let row = txn
                                .query_one_raw(sea_orm::Statement::from_string(
                                    DbBackend::Sqlite,
                                    "SELECT n FROM counter",
                                ))
                                .await?
                                .expect("one row");
                            let n: i64 = row.try_get("", "n")?;
                            tokio::task::yield_now().await;
                            txn.execute_unprepared(&format!("UPDATE counter SET n = {}", n + 1)).await?;
                            txn.commit().await?;
                        }
                        Ok::<(), DbErr>(())
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().expect("no transaction is refused");
            }
            let row = db
                .reads()
                .query_one_raw(sea_orm::Statement::from_string(DbBackend::Sqlite, "SELECT n FROM counter"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.try_get::<i64>("", "n").unwrap(), 80, "no increment is lost");
        });
    }
}
