//! Stripe's effects on credits and plans, against the real schema on SQLite and (when the test
//! servers run) PostgreSQL: each is idempotent on its Stripe object, concurrent duplicates grant
//! once, a refund takes back what it bought as far as the balance allows, and an older
//! subscription state never overwrites a newer one.

use billing_svc::EntryType;
use billing_svc::catalog::Catalog;
use billing_svc::payments::{ChargeRefunded, CheckoutPaid, Effect, InvoicePaid, SubscriptionState, SubscriptionStatus};
use billing_svc::store::{Store, StoreError};
use cutx_platform::credits::Credits;
use cutx_platform::ids::UserId;
use cutx_platform::mesh::Caller;
use cutx_platform::paging::Page;
use proptest::prelude::*;

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = cutx_platform::db::connect(&cutx_platform::db::sqlite_url(&dir.path().join("t.db")), 4).await.unwrap();
    cutx_migrations::migrate(db.writes()).await.unwrap();
    (Store::new(db), dir)
}

async fn postgres() -> Option<Store> {
    let db = cutx_platform::db::fresh_postgres("billing_stripe", 16).await?;
    cutx_migrations::migrate(db.writes()).await.unwrap();
    Some(Store::new(db))
}

/// Each test runs on SQLite, then on PostgreSQL when the test servers are up.
async fn each_store<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (s, _dir) = sqlite().await;
    test(s).await;
    if let Some(s) = postgres().await {
        test(s).await;
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn catalog() -> Catalog {
    Catalog::reference().with_prices("pack_150=price_pack150,starter=price_starter,pro=price_pro").unwrap()
}

fn c(n: i64) -> Credits {
    Credits::new(n).unwrap()
}

async fn balance(s: &Store, u: UserId) -> i64 {
    s.balance(Caller::for_tests(u)).await.unwrap().balance.get()
}

async fn entries(s: &Store, u: UserId) -> Vec<(EntryType, i64)> {
    let page = Page { limit: 1000, before: None, offset: 0 };
    let mut rows: Vec<_> = s.ledger(Caller::for_tests(u), &page).await.unwrap();
    rows.reverse();
    rows.into_iter().map(|e| (e.entry_type, e.amount)).collect()
}

fn checkout<'a>(catalog: &'a Catalog, session_id: &'a str, user: UserId) -> CheckoutPaid<'a> {
    CheckoutPaid {
        session_id,
        user,
        pack: catalog.pack("pack_150").unwrap(),
        payment_intent_id: Some("pi_1"),
        amount: 1299,
    }
}

fn invoice_paid<'a>(catalog: &'a Catalog, invoice_id: &'a str, customer_id: &'a str) -> InvoicePaid<'a> {
    InvoicePaid {
        invoice_id,
        customer_id,
        plan: catalog.plan("starter").unwrap(),
        charge_id: Some("ch_1"),
        payment_intent_id: None,
        amount: 999,
    }
}

fn state<'a>(
    catalog: &'a Catalog,
    ids: &'a (String, String),
    plan: &str,
    status: SubscriptionStatus,
    changed_at: i64,
) -> SubscriptionState<'a> {
    SubscriptionState {
        subscription_id: &ids.0,
        customer_id: &ids.1,
        plan: catalog.plan(plan).unwrap(),
        status,
        current_period_end: Some(2_000_000_000_000),
        cancel_at_period_end: false,
        changed_at,
    }
}

#[test]
fn three_concurrent_events_for_one_checkout_session_grant_its_pack_once() {
    rt().block_on(each_store(|s| async move {
        let catalog = std::sync::Arc::new(catalog());
        let u = UserId::new();
        let session = format!("cs_{}", uuid::Uuid::new_v4().simple());
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let (s, catalog, session) = (s.clone(), catalog.clone(), session.clone());
                tokio::spawn(async move { s.grant_checkout(&checkout(&catalog, &session, u)).await.unwrap() })
            })
            .collect();
        let mut applied = 0;
        for t in tasks {
            match t.await.unwrap() {
                Effect::Applied { balance } => {
                    applied += 1;
                    assert_eq!(balance.get(), 150);
                }
                Effect::AlreadyDone => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(applied, 1);
        assert_eq!(balance(&s, u).await, 150);
        assert_eq!(entries(&s, u).await, [(EntryType::Purchase, 150)]);
        let b = s.balance(Caller::for_tests(u)).await.unwrap();
        assert_eq!(b.lifetime_purchased.get(), 150);
    }));
}

#[test]
fn an_invoice_grants_its_plans_credits_once_and_only_for_a_customer_of_ours() {
    rt().block_on(each_store(|s| async move {
        let catalog = catalog();
        let u = UserId::new();
        let customer = format!("cus_{}", uuid::Uuid::new_v4().simple());
        let invoice = format!("in_{}", uuid::Uuid::new_v4().simple());
        let stranger = s.grant_invoice(&invoice_paid(&catalog, &invoice, "cus_stranger")).await.unwrap();
        assert!(matches!(stranger, Effect::NotOurs(ref why) if why.contains("cus_stranger")), "{stranger:?}");
        assert_eq!(s.keep_customer(u, &customer).await.unwrap(), customer);
        assert_eq!(
            s.keep_customer(u, "cus_other").await.unwrap(),
            customer,
            "the first customer kept stays the user's"
        );
        // invoice.paid and invoice.payment_succeeded both arrive for one paid invoice.
        let paid = invoice_paid(&catalog, &invoice, &customer);
        assert_eq!(s.grant_invoice(&paid).await.unwrap(), Effect::Applied { balance: c(100) });
        assert_eq!(s.grant_invoice(&paid).await.unwrap(), Effect::AlreadyDone);
        assert_eq!(entries(&s, u).await, [(EntryType::Subscription, 100)]);
    }));
}

#[test]
fn the_same_idempotency_key_for_another_amount_is_refused_and_moves_nothing() {
    rt().block_on(each_store(|s| async move {
        let u = UserId::new();
        s.grant(u, c(50), EntryType::Bonus, &format!("bonus:{u}"), "").await.unwrap();
        let again = s.grant(u, c(50), EntryType::Bonus, &format!("bonus:{u}"), "").await.unwrap();
        assert!(!again.applied, "the same movement again is a replay");
        for (amount, entry_type) in [(60, EntryType::Bonus), (50, EntryType::Purchase)] {
            let refused = s.grant(u, c(amount), entry_type, &format!("bonus:{u}"), "").await.unwrap_err();
            assert!(matches!(refused, StoreError::KeyReused { .. }), "{refused}");
        }
        let other = UserId::new();
        let refused = s.grant(other, c(50), EntryType::Bonus, &format!("bonus:{u}"), "").await.unwrap_err();
        assert!(matches!(refused, StoreError::KeyReused { .. }), "another user's key: {refused}");
        let refused = s.debit(u, c(5), &format!("bonus:{u}"), "").await.unwrap_err();
        assert!(matches!(refused, StoreError::KeyReused { .. }), "a debit under a grant's key: {refused}");
        assert_eq!(balance(&s, u).await, 50);
    }));
}

#[test]
fn a_refunded_charge_takes_back_its_credits_once_and_records_what_the_balance_no_longer_held() {
    rt().block_on(each_store(|s| async move {
        let catalog = catalog();
        let u = UserId::new();
        let session = format!("cs_{}", uuid::Uuid::new_v4().simple());
        let pi = format!("pi_{}", uuid::Uuid::new_v4().simple());
        let paid = CheckoutPaid { payment_intent_id: Some(&pi), ..checkout(&catalog, &session, u) };
        s.grant_checkout(&paid).await.unwrap();
        s.debit(u, c(100), &format!("debit:{u}"), "job").await.unwrap();
        let refunded = |amount_refunded| ChargeRefunded {
            charge_id: "ch_unknown_to_us",
            payment_intent_id: Some(&pi),
            invoice_id: None,
            amount: 1299,
            amount_refunded,
        };
        // Half refunded: 75 credits owed back, all held.
        assert_eq!(
            s.reverse_charge(&refunded(650)).await.unwrap(),
            Effect::Applied { balance: c(0) },
            "75 owed, 50 held: 50 taken"
        );
        assert_eq!(s.reverse_charge(&refunded(650)).await.unwrap(), Effect::AlreadyDone, "the same refund again");
        // Then the rest: 75 more owed, nothing held.
        assert_eq!(s.reverse_charge(&refunded(1299)).await.unwrap(), Effect::Applied { balance: c(0) });
        assert_eq!(s.reverse_charge(&refunded(1299)).await.unwrap(), Effect::AlreadyDone);
        assert_eq!(
            entries(&s, u).await,
            [(EntryType::Purchase, 150), (EntryType::Deduction, -100), (EntryType::Adjustment, -50)]
        );
        let stranger = ChargeRefunded {
            charge_id: "ch_x",
            payment_intent_id: Some("pi_x"),
            invoice_id: None,
            amount: 1,
            amount_refunded: 1,
        };
        assert!(matches!(s.reverse_charge(&stranger).await.unwrap(), Effect::NotOurs(_)));
    }));
}

#[test]
fn a_subscription_keeps_the_newest_state_stripe_reported_whatever_order_events_arrive_in() {
    rt().block_on(each_store(|s| async move {
        let catalog = catalog();
        let u = UserId::new();
        let ids = (format!("sub_{}", uuid::Uuid::new_v4().simple()), format!("cus_{}", uuid::Uuid::new_v4().simple()));
        let sub = ids.0.clone();
        s.keep_customer(u, &ids.1).await.unwrap();
        let state = |plan, status, changed_at| state(&catalog, &ids, plan, status, changed_at);
        assert!(matches!(
            s.sync_subscription(&state("starter", SubscriptionStatus::Active, 1_000)).await.unwrap(),
            Effect::Applied { .. }
        ));
        assert!(matches!(
            s.sync_subscription(&state("pro", SubscriptionStatus::Active, 3_000)).await.unwrap(),
            Effect::Applied { .. }
        ));
        // An update made before the upgrade arrives late: ignored.
        assert_eq!(
            s.sync_subscription(&state("starter", SubscriptionStatus::Active, 2_000)).await.unwrap(),
            Effect::AlreadyDone
        );
        let kept = s.subscription(Caller::for_tests(u)).await.unwrap().unwrap();
        assert_eq!((kept.plan.as_str(), kept.status), ("pro", SubscriptionStatus::Active));
        // A failed payment marks it past due; a stale one does not.
        assert_eq!(s.mark_past_due(&sub, 2_500).await.unwrap(), Effect::AlreadyDone);
        assert!(matches!(s.mark_past_due(&sub, 4_000).await.unwrap(), Effect::Applied { .. }));
        assert_eq!(s.subscription(Caller::for_tests(u)).await.unwrap().unwrap().status, SubscriptionStatus::PastDue);
        assert!(matches!(
            s.sync_subscription(&state("pro", SubscriptionStatus::Canceled, 5_000)).await.unwrap(),
            Effect::Applied { .. }
        ));
        assert_eq!(s.mark_past_due(&sub, 6_000).await.unwrap(), Effect::AlreadyDone, "a canceled plan stays canceled");
        assert!(matches!(s.mark_past_due("sub_unknown", 1).await.unwrap(), Effect::NotOurs(_)));
        // No credits moved for any of it.
        assert_eq!(balance(&s, u).await, 0);
    }));
}

#[test]
fn two_hundred_concurrent_debits_of_ten_against_a_thousand_leave_exactly_a_hundred_charged() {
    rt().block_on(each_store(|s| async move {
        let u = UserId::new();
        s.grant(u, c(1000), EntryType::Purchase, &format!("buy:{u}"), "").await.unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.debit(u, c(10), &format!("debit:{u}:{i}"), "").await })
            })
            .collect();
        let (mut ok, mut refused) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(a) => {
                    assert!(a.applied);
                    ok += 1;
                }
                Err(StoreError::InsufficientCredits { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, refused), (100, 100));
        assert_eq!(balance(&s, u).await, 0);
        assert_eq!(entries(&s, u).await.len(), 101);
    }));
}

#[derive(Debug, Clone)]
enum Op {
    /// A pack bought through checkout session `session` (replays share the session).
    Purchase {
        user: usize,
        session: u8,
    },
    Debit {
        user: usize,
        job: u8,
        amount: i64,
    },
    Refund {
        user: usize,
        job: u8,
    },
    /// A plan's invoice paid (replays share the invoice).
    Invoice {
        user: usize,
        invoice: u8,
    },
    /// Part (or all) of a checkout session's payment refunded.
    ChargeRefund {
        user: usize,
        session: u8,
        refunded: i64,
    },
    /// A subscription event (its state at a time), or a failed invoice payment.
    Subscription {
        user: usize,
        status: u8,
        at: i64,
        failed: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 0..3u8).prop_map(|(user, session)| Op::Purchase { user, session }),
        (0..2usize, 0..6u8, 1..80i64).prop_map(|(user, job, amount)| Op::Debit { user, job, amount }),
        (0..2usize, 0..6u8).prop_map(|(user, job)| Op::Refund { user, job }),
        (0..2usize, 0..3u8).prop_map(|(user, invoice)| Op::Invoice { user, invoice }),
        (0..2usize, 0..3u8, 0..1400i64).prop_map(|(user, session, refunded)| Op::ChargeRefund {
            user,
            session,
            refunded
        }),
        (0..2usize, 0..3u8, 0..10i64, any::<bool>()).prop_map(|(user, status, at, failed)| Op::Subscription {
            user,
            status,
            at,
            failed
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn purchases_debits_refunds_replays_invoices_and_subscription_events_keep_every_ledger_summing_to_its_balance(ops in proptest::collection::vec(op(), 1..40)) {
        rt().block_on(async {
            let (s, _dir) = sqlite().await;
            let catalog = catalog();
            let users = [UserId::new(), UserId::new()];
            for (n, u) in users.iter().enumerate() {
                s.keep_customer(*u, &format!("cus_{n}")).await.unwrap();
            }
            for op in &ops {
                match *op {
                    Op::Purchase { user, session } => {
                        let id = format!("cs_{user}_{session}");
                        let pi = format!("pi_{user}_{session}");
                        let paid = CheckoutPaid { payment_intent_id: Some(&pi), ..checkout(&catalog, &id, users[user]) };
                        s.grant_checkout(&paid).await.unwrap();
                    }
                    Op::Debit { user, job, amount } => {
                        match s.debit(users[user], c(amount), &format!("debit:{user}:{job}"), &format!("job:{user}:{job}")).await {
                            Ok(_) | Err(StoreError::InsufficientCredits { .. }) => {}
                            // The same job's key with another amount.
                            Err(StoreError::KeyReused { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    Op::Refund { user, job } => {
                        s.refund(users[user], &format!("debit:{user}:{job}"), &format!("refund:{user}:{job}"), &format!("job:{user}:{job}")).await.unwrap();
                    }
                    Op::Invoice { user, invoice } => {
                        let id = format!("in_{user}_{invoice}");
                        let customer = format!("cus_{user}");
                        let paid = InvoicePaid { invoice_id: &id, customer_id: &customer, plan: catalog.plan("starter").unwrap(), charge_id: None, payment_intent_id: None, amount: 999 };
                        s.grant_invoice(&paid).await.unwrap();
                    }
                    Op::Subscription { user, status, at, failed } => {
                        let sub = format!("sub_{user}");
                        if failed {
                            s.mark_past_due(&sub, at).await.unwrap();
                        } else {
                            let ids = (sub, format!("cus_{user}"));
                            let status = [SubscriptionStatus::Active, SubscriptionStatus::PastDue, SubscriptionStatus::Canceled][status as usize];
                            s.sync_subscription(&state(&catalog, &ids, "starter", status, at)).await.unwrap();
                        }
                    }
                    Op::ChargeRefund { user, session, refunded } => {
                        let pi = format!("pi_{user}_{session}");
                        let charge = format!("ch_{user}_{session}");
                        let r = ChargeRefunded { charge_id: &charge, payment_intent_id: Some(&pi), invoice_id: None, amount: 1299, amount_refunded: refunded };
                        s.reverse_charge(&r).await.unwrap();
                    }
                }
            }
            for (n, u) in users.iter().enumerate() {
                let caller = Caller::for_tests(*u);
                // The plan kept is the newest state reported, whatever the order (a canceled one stays canceled).
                let newest = ops.iter().filter_map(|op| match *op {
                    Op::Subscription { user, status, at, failed: false } if user == n => Some((at, status)),
                    _ => None,
                }).max_by_key(|(at, _)| *at);
                let kept = s.subscription(caller).await.unwrap();
                assert_eq!(kept.is_some(), newest.is_some());
                if let (Some(kept), Some((at, _))) = (kept, newest) {
                    assert!(kept.changed_at >= at, "an older state overwrote a newer one");
                    assert_eq!(kept.user_id, u.to_string());
                }
                let b = s.balance(caller).await.unwrap();
                let page = Page { limit: 1000, before: None, offset: 0 };
                let rows = s.ledger(caller, &page).await.unwrap();
                assert!(b.balance.get() >= 0);
                assert_eq!(b.balance.get(), rows.iter().map(|e| e.amount).sum::<i64>());
                let mut running = 0;
                for e in rows.iter().rev() {
                    running += e.amount;
                    assert_eq!(e.balance_after, running);
                }
                // Each session and invoice granted at most once; each job charged and refunded at most once.
                for session in 0..3 {
                    let reference = format!("cs_{n}_{session}");
                    assert!(rows.iter().filter(|e| e.entry_type == EntryType::Purchase && e.reference == reference).count() <= 1);
                    // What a refund takes back never passes what the session bought.
                    let taken: i64 = rows.iter().filter(|e| e.entry_type == EntryType::Adjustment && e.reference == format!("ch_{n}_{session}")).map(|e| -e.amount).sum();
                    assert!(taken <= 150, "{taken}");
                }
                for invoice in 0..3 {
                    let reference = format!("in_{n}_{invoice}");
                    assert!(rows.iter().filter(|e| e.reference == reference).count() <= 1);
                }
                for job in 0..6 {
                    let reference = format!("job:{n}:{job}");
                    let of = |t: EntryType| rows.iter().filter(|e| e.entry_type == t && e.reference == reference && e.amount != 0).count();
                    assert!(of(EntryType::Deduction) <= 1 && of(EntryType::Refund) <= of(EntryType::Deduction), "job {job}");
                }
            }
        });
    }
}
