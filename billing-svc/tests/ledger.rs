//! The ledger's invariants, against a real SQLite database with the real schema.

use billing_svc::EntryType;
use billing_svc::store::{Store, StoreError};
use cutx_platform::credits::Credits;
use cutx_platform::ids::UserId;
use cutx_platform::mesh::Caller;
use cutx_platform::paging::Page;
use proptest::prelude::*;

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = cutx_platform::db::connect(&cutx_platform::db::sqlite_url(&dir.path().join("t.db")), 4).await.unwrap();
    cutx_migrations::migrate(db.writes()).await.unwrap();
    (Store::new(db), dir)
}

/// The first `limit` entries, newest first.
/// `n` credits.
fn c(n: i64) -> Credits {
    Credits::new(n).unwrap()
}

fn page(limit: u64) -> Page {
    Page { limit, before: None, offset: 0 }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn the_same_debit_key_twice_charges_once() {
    rt().block_on(async {
        let (s, _dir) = store().await;
        let u = UserId::new();
        s.grant(u, c(25), EntryType::FreeTier, "free:u", "signup").await.unwrap();
        let first = s.debit(u, c(3), "debit:j1", "j1").await.unwrap();
        let again = s.debit(u, c(3), "debit:j1", "j1").await.unwrap();
        assert!(first.applied && !again.applied);
        assert_eq!((first.balance.get(), again.balance.get()), (22, 22));
    });
}

#[test]
fn a_debit_beyond_the_balance_is_refused_and_changes_nothing() {
    rt().block_on(async {
        let (s, _dir) = store().await;
        let u = UserId::new();
        s.grant(u, c(2), EntryType::Bonus, "b", "").await.unwrap();
        let err = s.debit(u, c(3), "debit:j", "j").await.unwrap_err();
        assert!(matches!(err, StoreError::InsufficientCredits { needed, balance } if (needed.get(), balance.get()) == (3, 2)), "{err:?}");
        assert_eq!(s.balance(Caller::for_tests(u)).await.unwrap().balance.get(), 2);
        assert_eq!(s.ledger(Caller::for_tests(u), &page(10)).await.unwrap().len(), 1);
    });
}

#[test]
fn a_refund_gives_back_its_debit_once_and_nothing_without_one() {
    rt().block_on(async {
        let (s, _dir) = store().await;
        let u = UserId::new();
        s.grant(u, c(10), EntryType::FreeTier, "f", "").await.unwrap();
        s.debit(u, c(4), "debit:j", "j").await.unwrap();
        let r1 = s.refund(u, "debit:j", "refund:j", "j").await.unwrap();
        let r2 = s.refund(u, "debit:j", "refund:j", "j").await.unwrap();
        let none = s.refund(u, "debit:other", "refund:other", "other").await.unwrap();
        assert_eq!((r1.applied, r1.amount.get(), r1.balance.get()), (true, 4, 10));
        assert!(!r2.applied && !none.applied);
        let b = s.balance(Caller::for_tests(u)).await.unwrap();
        assert_eq!((b.balance.get(), b.lifetime_used.get()), (10, 0));
    });
}

#[test]
fn a_debit_arriving_after_the_refund_of_its_job_charges_nothing() {
    rt().block_on(async {
        let (s, _dir) = store().await;
        let u = UserId::new();
        s.grant(u, c(10), EntryType::FreeTier, "f", "").await.unwrap();
        // The job was canceled before its debit landed: the refund closes the debit key.
        let closed = s.refund(u, "debit:j", "refund:j", "j").await.unwrap();
        assert_eq!((closed.applied, closed.amount.get()), (false, 0));
        let late = s.debit(u, c(3), "debit:j", "j").await.unwrap();
        assert!(!late.applied);
        assert_eq!(s.balance(Caller::for_tests(u)).await.unwrap().balance.get(), 10);
        let again = s.refund(u, "debit:j", "refund:j", "j").await.unwrap();
        assert_eq!((again.applied, again.balance.get()), (false, 10));
    });
}

#[test]
fn concurrent_debits_never_take_the_balance_below_zero() {
    rt().block_on(async {
        let (s, _dir) = store().await;
        let u = UserId::new();
        s.grant(u, c(10), EntryType::FreeTier, "f", "").await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.debit(u, c(3), &format!("debit:{i}"), "").await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::InsufficientCredits { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 3);
        assert_eq!(s.balance(Caller::for_tests(u)).await.unwrap().balance.get(), 1);
    });
}

#[derive(Debug, Clone)]
enum Op {
    Grant { user: usize, key: u8, amount: i64 },
    Debit { user: usize, job: u8, amount: i64 },
    Refund { user: usize, job: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 0..4u8, 1..30i64).prop_map(|(user, key, amount)| Op::Grant { user, key, amount }),
        (0..2usize, 0..6u8, 1..15i64).prop_map(|(user, job, amount)| Op::Debit { user, job, amount }),
        (0..2usize, 0..6u8).prop_map(|(user, job)| Op::Refund { user, job }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn for_every_user_the_ledger_sums_to_the_balance_which_never_goes_negative(ops in proptest::collection::vec(op(), 1..40)) {
        rt().block_on(async {
            let (s, _dir) = store().await;
            let users = [UserId::new(), UserId::new()];
            for op in &ops {
                // Keys are per user, as jobs-svc's are (job ids are unique).
                let result = match *op {
                    Op::Grant { user, key, amount } =>
                        s.grant(users[user], c(amount), EntryType::Bonus, &format!("grant:{user}:{key}"), "").await,
                    Op::Debit { user, job, amount } =>
                        s.debit(users[user], c(amount), &format!("debit:{user}:{job}"), "").await,
                    Op::Refund { user, job } =>
                        s.refund(users[user], &format!("debit:{user}:{job}"), &format!("refund:{user}:{job}"), "").await,
                };
                match result {
                    // A key reused for another amount is refused (and moves nothing).
                    Ok(_) | Err(StoreError::InsufficientCredits { .. }) | Err(StoreError::KeyReused { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            for u in users {
                let caller = Caller::for_tests(u);
                let b = s.balance(caller).await.unwrap();
                let entries = s.ledger(caller, &page(1000)).await.unwrap();
                let sum: i64 = entries.iter().map(|e| e.amount).sum();
                assert!(b.balance.get() >= 0);
                assert_eq!(b.balance.get(), sum);
                // Newest first: each row's balance_after is the running sum.
                let mut running = 0;
                for e in entries.iter().rev() {
                    running += e.amount;
                    assert_eq!(e.balance_after, running);
                }
                let refunds = entries.iter().filter(|e| e.entry_type == EntryType::Refund && e.amount != 0).count();
                let debits = entries.iter().filter(|e| e.entry_type == EntryType::Deduction).count();
                assert!(refunds <= debits);
            }
        });
    }
}

#[test]
fn a_debit_racing_the_refund_of_its_job_is_either_refunded_or_never_charged() {
    rt().block_on(async {
        for round in 0..20 {
            let (s, _dir) = store().await;
            let u = UserId::new();
            s.grant(u, c(10), EntryType::FreeTier, "f", "").await.unwrap();
            let (a, b) = (s.clone(), s.clone());
            let debit = tokio::spawn(async move { a.debit(u, c(3), "debit:j", "j").await });
            let refund = tokio::spawn(async move { b.refund(u, "debit:j", "refund:j", "j").await });
            debit.await.unwrap().unwrap();
            refund.await.unwrap().unwrap();
            assert_eq!(s.balance(Caller::for_tests(u)).await.unwrap().balance.get(), 10, "round {round}");
        }
    });
}

/// A store on a fresh PostgreSQL database, when the test run has a server (scripts/test.sh).
async fn postgres_store() -> Option<Store> {
    let db = cutx_platform::db::fresh_postgres("billing", 8).await?;
    cutx_migrations::migrate(db.writes()).await.unwrap();
    Some(Store::new(db))
}

#[test]
fn on_postgresql_concurrent_debits_refunds_and_replays_keep_every_balance_exact() {
    rt().block_on(async {
        let Some(s) = postgres_store().await else { return };
        let u = UserId::new();
        s.grant(u, c(30), EntryType::FreeTier, "f", "").await.unwrap();
        // Ten jobs of 3, each debited twice concurrently, half of them refunded concurrently
        // with their debits.
        let mut tasks = Vec::new();
        for j in 0..10 {
            for _ in 0..2 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move { s.debit(u, c(3), &format!("debit:{j}"), "").await.map(|_| ()) }));
            }
            if j % 2 == 0 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    s.refund(u, &format!("debit:{j}"), &format!("refund:{j}"), "").await.map(|_| ())
                }));
            }
        }
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) | Err(StoreError::InsufficientCredits { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let caller = Caller::for_tests(u);
        let entries = s.ledger(caller, &page(1000)).await.unwrap();
        let balance = s.balance(caller).await.unwrap().balance.get();
        assert_eq!(balance, entries.iter().map(|e| e.amount).sum::<i64>());
        let charged = entries.iter().filter(|e| e.entry_type == EntryType::Deduction).count() as i64;
        let refunded = entries.iter().filter(|e| e.entry_type == EntryType::Refund && e.amount != 0).count() as i64;
        assert_eq!(balance, 30 - 3 * (charged - refunded));
        assert_eq!(
            charged,
            10 - entries.iter().filter(|e| e.entry_type == EntryType::Refund && e.amount == 0).count() as i64
        );
    });
}

#[test]
fn a_grant_that_would_pass_the_largest_count_is_refused_and_changes_nothing() {
    rt().block_on(async {
        let (s, _dir) = store().await;
        let u = UserId::new();
        s.grant(u, Credits::MAX, EntryType::Bonus, "all", "").await.unwrap();
        let err = s.grant(u, c(1), EntryType::Bonus, "one more", "").await.unwrap_err();
        assert!(matches!(err, StoreError::Overflow { adding } if adding == c(1)), "{err:?}");
        assert_eq!(s.balance(Caller::for_tests(u)).await.unwrap().balance, Credits::MAX);
        assert_eq!(s.ledger(Caller::for_tests(u), &page(10)).await.unwrap().len(), 1);
    });
}

#[test]
fn a_ledger_entry_with_an_unknown_type_is_an_error_naming_its_row_and_only_its_owner_sees_it() {
    use sea_orm::ConnectionTrait;
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = cutx_platform::db::sqlite_url(&dir.path().join("t.db"));
        let db = cutx_platform::db::connect(&url, 4).await.unwrap();
        cutx_migrations::migrate(db.writes()).await.unwrap();
        let s = Store::new(db.clone());
        let (alice, bob) = (UserId::new(), UserId::new());
        s.grant(alice, c(5), EntryType::Bonus, "a", "").await.unwrap();
        s.grant(bob, c(5), EntryType::Bonus, "b", "").await.unwrap();
        db.writes()
            .execute_unprepared(&format!("UPDATE credit_ledger SET entry_type = 'gift' WHERE user_id = '{bob}'"))
            .await
            .unwrap();
        let row: String = s.ledger(Caller::for_tests(alice), &page(10)).await.unwrap()[0].id.clone();
        assert!(!row.is_empty(), "alice's ledger reads as before");
        match s.ledger(Caller::for_tests(bob), &page(10)).await.unwrap_err() {
            StoreError::Corrupt { row, what } => {
                assert_eq!(what, "unknown entry type \"gift\"");
                assert_ne!(row, "", "the row is named");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    });
}
