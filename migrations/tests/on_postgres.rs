//! The schema applies on PostgreSQL as on SQLite, twice without harm. Runs when
//! `CUTX_TEST_POSTGRES_URL` names a database (the distributed-mode test run starts one);
//! otherwise it says it was skipped.

use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

#[tokio::test]
async fn the_schema_applies_on_postgresql_and_applying_it_again_changes_nothing() {
    let Ok(url) = std::env::var("CUTX_TEST_POSTGRES_URL") else {
        eprintln!("CUTX_TEST_POSTGRES_URL is not set: skipped");
        return;
    };
    let db = Database::connect(url).await.unwrap();
    assert_eq!(db.get_database_backend(), DbBackend::Postgres);
    cutx_migrations::Migrator::fresh(&db).await.unwrap();
    cutx_migrations::migrate(&db).await.unwrap();
    let tables = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        ))
        .await
        .unwrap();
    let names: Vec<String> = tables.iter().map(|r| r.try_get_by_index(0).unwrap()).collect();
    for table in [
        "credit_balances",
        "credit_ledger",
        "dead_letters",
        "job_outputs",
        "job_transitions",
        "jobs",
        "magic_link_limits",
        "magic_links",
        "projects",
        "queue_messages",
        "stripe_customers",
        "stripe_payments",
        "subscriptions",
        "users",
    ] {
        assert!(names.iter().any(|n| n == table), "{table} missing from {names:?}");
    }
}
