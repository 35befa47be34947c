//! Password hashing never stalls the server (issue #14): Argon2 runs on blocking threads, so
//! sign-ups in flight do not hold back a vendor's webhook, over HTTP against the server
//! process.
//!
//! The server runs one runtime thread (a hash computed on it would hold every request back).
//! Two registrations are sent at once and, while they are in flight, a webhook is sent again
//! and again; each must answer within [`BOUND`]. On this two-core machine a hash takes about
//! 25-40 ms, so the bound also passes with hashing on the runtime: the unit test
//! `it_should_hash_passwords_without_holding_the_runtime_thread` (api/src/graphql/auth.rs) is
//! the one that fails then. This one holds the promise end to end, under the load two
//! sign-ups put on the machine.

use std::time::{Duration, Instant};

use serde_json::json;
use tests::app::TestApp;
use tests::{Engine, TestDb};

/// The slowest a webhook may answer while passwords are hashed.
const BOUND: Duration = Duration::from_millis(100);

/// Sign-ups at once.
const SIGN_UPS: u32 = 2;

/// One Stripe webhook (a wrong signature: refused after the signature check, as an attacker's
/// would be; the route, body limit and check all run on the runtime).
async fn webhook(client: &reqwest::Client, base: &str) -> Duration {
    let started = Instant::now();
    let r = client
        .post(format!("{base}/api/webhooks/stripe"))
        .header("stripe-signature", "t=1,v1=00")
        .body(r#"{"id":"evt_1","type":"payment_intent.succeeded"}"#)
        .send()
        .await
        .expect("webhook");
    assert!(r.status().is_client_error(), "{}", r.status());
    started.elapsed()
}

async fn registrations_in_flight_do_not_hold_back_a_webhook(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::start_with(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &db.url,
        &[
            ("STRIPE_WEBHOOK_SECRET", "whsec_hashing_load_test"),
            // One runtime thread: a hash computed on it would hold every request back.
            ("TOKIO_WORKER_THREADS", "1"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let base = app.server.base.clone();
    // Warm the connection and the route.
    for _ in 0..5 {
        webhook(&client, &base).await;
    }
    // The codes first: what is measured is registering, which hashes the password.
    let mut codes = Vec::new();
    for n in 1..=SIGN_UPS {
        let email = format!("load-{n}@example.com");
        let r = app
            .gql(
                None,
                tests::standins::START_SIGN_UP,
                json!({"i": {"email": email}}),
            )
            .await;
        assert_eq!(r["data"]["startPortalSignUp"]["accepted"], true, "{r}");
        codes.push(app.mailbox.code_for(&email).await);
    }
    let register = |n: u32| {
        let (client, url) = (client.clone(), app.server.url.clone());
        let code = codes[n as usize - 1].clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r: serde_json::Value = client
                .post(&url)
                .json(&json!({
                    "query": "mutation($i: RegisterPortalAccountInput!) { registerPortalAccount(input: $i) { customerId } }",
                    "variables": {"i": {"name": format!("Load {n}"), "email": format!("load-{n}@example.com"),
                        "password": format!("hash-me-slowly-{n}"), "code": code}},
                }))
                .send()
                .await
                .expect("register")
                .json()
                .await
                .expect("json");
            assert!(r["errors"].is_null(), "{r}");
            started.elapsed()
        })
    };
    let sign_ups: Vec<_> = (1..=SIGN_UPS).map(register).collect();
    let mut during = Vec::new();
    while sign_ups.iter().any(|s| !s.is_finished()) {
        during.push(webhook(&client, &base).await);
    }
    let mut took = Vec::new();
    for s in sign_ups {
        took.push(s.await.expect("sign-up task"));
    }
    let slowest = during.iter().max().copied().unwrap_or_default();
    println!(
        "sign-ups took {took:?}; {} webhooks meanwhile, slowest {slowest:?}",
        during.len()
    );
    assert!(
        during.len() >= 3,
        "the sign-ups ({took:?}) were too quick to measure anything against"
    );
    assert!(
        slowest < BOUND,
        "a webhook waited {slowest:?} while passwords were hashed ({during:?})"
    );
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(registrations_in_flight_do_not_hold_back_a_webhook);
