//! The database connection: SQLite for the embedded default, PostgreSQL when distributed.

use std::time::Duration;

use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

/// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`). Every pooled SQLite
/// connection runs in WAL mode with `synchronous=NORMAL` (a sync at checkpoints, not at every
/// commit) and a 10 s busy timeout, so the services of one process can write concurrently.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        // Per connection: a pragma set on one pooled connection says nothing of the others.
        .map_sqlx_sqlite_opts(|sqlite| {
            sqlite
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
        });
    Database::connect(options).await
}

/// Starts a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: a deferred transaction
/// that reads first and writes later cannot wait for another writer (WAL answers `SQLITE_BUSY` at
/// once, past any busy timeout, when the snapshot it read is no longer the newest), while an
/// immediate one takes the write lock up front and so waits its turn. PostgreSQL ignores the mode.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// The SQLite URL of a database file, created if missing.
pub fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectionTrait, DbBackend};

    /// Four connections of one pool, each held by a transaction of its own: every one has the
    /// pragmas, not only the first.
    #[tokio::test]
    async fn every_pooled_sqlite_connection_has_wal_normal_sync_and_the_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let db = connect(&sqlite_url(&dir.path().join("t.db")), 4).await.unwrap();
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(db.begin().await.unwrap());
        }
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

    /// Eight transactions that each read a counter, then write it back plus one, all at once on
    /// one SQLite file: every one lands, none answers "database is locked".
    #[test]
    fn concurrent_read_then_write_transactions_on_sqlite_all_commit() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let db = connect(&sqlite_url(&dir.path().join("t.db")), 8).await.unwrap();
            db.execute_unprepared("CREATE TABLE counter (n INTEGER NOT NULL)").await.unwrap();
            db.execute_unprepared("INSERT INTO counter (n) VALUES (0)").await.unwrap();
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let db = db.clone();
                    tokio::spawn(async move {
                        for _ in 0..10 {
                            let txn = begin_write(&db).await?;
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
                .query_one_raw(sea_orm::Statement::from_string(DbBackend::Sqlite, "SELECT n FROM counter"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.try_get::<i64>("", "n").unwrap(), 80, "no increment is lost");
        });
    }
}
