//! A rolling deploy (issue #15): two instances of the next release, whose `customers` read
//! model is one version on (`src/bin/dirtfree-api-next.rs`), start at once beside a running
//! one on the same PostgreSQL. They take turns (the second finds the work done); one rebuilds that read model in shadow tables while the old
//! instance keeps serving and writing the old ones, swaps them in, and only then is ready.
//! From the swap on the old instance leaves the read model alone (every row carries the new
//! version's mark), no read comes back empty, and the checkpoint never moves back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tests::app::{text, TestApp};
use tests::{Engine, TestDb};

const CUSTOMERS_BEFORE: usize = 300;

async fn create_customer(app: &TestApp, token: &str, n: usize) -> String {
    let r = app
        .gql(
            Some(token),
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { position } }",
            json!({"i": {"name": format!("Rolling Customer {n}")}}),
        )
        .await;
    text(&r, "/data/createCustomer/position")
}

/// The number of customers the read model shows, or the answer when it is not a count.
async fn customer_count(app: &TestApp, token: &str) -> Result<i64, Value> {
    let r = app
        .gql(
            Some(token),
            "{ customers(first: 1) { totalCount } }",
            json!({}),
        )
        .await;
    r.pointer("/data/customers/totalCount")
        .and_then(Value::as_i64)
        .ok_or(r)
}

async fn checkpoint(pool: &sqlx::PgPool) -> (i64, i64, i64) {
    sqlx::query_as("SELECT tx, seq, version FROM projection_checkpoints WHERE name = 'customers'")
        .fetch_one(pool)
        .await
        .expect("customers checkpoint")
}

#[tokio::test]
async fn the_next_version_rebuilds_beside_the_old_one_and_takes_over_without_an_empty_read() {
    let db = TestDb::new(Engine::Postgres).await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let old = Arc::new(TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await);
    let token = old.login_admin().await;
    let mut last = String::new();
    for n in 0..CUSTOMERS_BEFORE {
        last = create_customer(&old, &token, n).await;
    }
    old.sync(&token, &last).await;
    let (_, _, old_version) = checkpoint(&pool).await;

    // Readers on the old instance and the checkpoint's course, for the whole deploy.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (old, token, stop) = (Arc::clone(&old), token.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut counts = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                counts.push(customer_count(&old, &token).await);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            counts
        })
    };
    let watcher = {
        let (pool, stop) = (pool.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                seen.push(checkpoint(&pool).await);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        })
    };
    // Two instances of the next release start at once while the old one takes bookings:
    // they take turns at the rebuild, and the second finds it done.
    let start_next = || {
        let url = db.url.clone();
        tokio::spawn(
            async move { TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api-next"), &url).await },
        )
    };
    let (next, twin) = (start_next(), start_next());
    let mut created = CUSTOMERS_BEFORE;
    while !(next.is_finished() && twin.is_finished()) {
        create_customer(&old, &token, created).await;
        created += 1;
    }
    let next = next.await.expect("the next release started");
    let twin = twin.await.expect("its twin started");
    let during_start = created - CUSTOMERS_BEFORE;
    let (_, _, taken_over) = checkpoint(&pool).await;
    assert_eq!(
        taken_over,
        old_version + 1,
        "ready before the new version took the read model over"
    );

    // The old instance still takes writes after the swap; only the new one projects them.
    for _ in 0..20 {
        last = create_customer(&old, &token, created).await;
        created += 1;
    }
    let next_token = next.login_admin().await;
    next.sync(&next_token, &last).await;
    stop.store(true, Ordering::SeqCst);
    let counts = reader.await.expect("reader");
    let course = watcher.await.expect("watcher");
    let old = Arc::try_unwrap(old).expect("the only handle");
    drop(old);
    let after_stop = create_customer(&next, &next_token, created).await;
    created += 1;
    next.sync(&next_token, &after_stop).await;

    // No read came back empty or failed, and none went back.
    assert!(counts.len() > 10, "too few reads to tell: {}", counts.len());
    let mut highest = CUSTOMERS_BEFORE as i64;
    for c in &counts {
        let n = *c.as_ref().unwrap_or_else(|r| panic!("a read failed: {r}"));
        assert!(n >= highest, "a read went back from {highest} to {n}");
        highest = n;
    }
    // The checkpoint only moved forward, through the swap.
    for pair in course.windows(2) {
        let (a, b) = ((pair[0].0, pair[0].1), (pair[1].0, pair[1].1));
        assert!(
            b >= a,
            "the checkpoint moved back: {:?} → {:?}",
            pair[0],
            pair[1]
        );
        assert!(pair[1].2 >= pair[0].2, "the version moved back: {course:?}");
    }
    // The new version built every row, and the old instance wrote none after the swap.
    let (rows, unmarked): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE next_version IS NULL) FROM rm_customers",
    )
    .fetch_one(&pool)
    .await
    .expect("rm_customers has the new version's shape");
    assert_eq!(rows, created as i64, "customers in the read model");
    assert_eq!(
        unmarked, 0,
        "rows written by the old version after the new one took over"
    );
    assert_eq!(
        customer_count(&next, &next_token).await.expect("count"),
        created as i64
    );
    assert!(
        during_start > 0,
        "no booking was taken while the next release started: the deploy was not rolling"
    );
    tests::health::assert_no_failures(&next.server.base).await;
    tests::health::assert_no_failures(&twin.server.base).await;
    let shadow: Option<String> =
        sqlx::query_scalar("SELECT name FROM projection_checkpoints WHERE name LIKE '%#shadow'")
            .fetch_optional(&pool)
            .await
            .expect("checkpoints");
    assert_eq!(shadow, None, "a shadow left behind");
}
