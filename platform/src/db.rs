//! The database connection: SQLite for the embedded default, PostgreSQL when distributed.

use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

/// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`). SQLite runs in WAL mode with
/// a busy timeout, so the services of one process can write concurrently without `SQLITE_BUSY`.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        // WAL is a property of the file, so once is enough; sqlx already gives every pooled
        // connection a 5 s busy timeout, and this raises it on the first one.
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
        db.execute_unprepared("PRAGMA busy_timeout=10000").await?;
        db.execute_unprepared("PRAGMA synchronous=NORMAL").await?;
    }
    Ok(db)
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
