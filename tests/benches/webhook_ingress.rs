//! Webhook ingress throughput: signed Stripe deliveries over HTTP to the
//! server process on PostgreSQL, from 64 concurrent clients.
//!
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p tests --bench webhook_ingress`
//! (`BENCH_DELIVERIES`, default 5,000 per run; figures in docs/performance.md).
//!
//! Two runs: deliveries of an event type the server ignores (verify the
//! signature, record the delivery once, answer) and `payment_intent.succeeded`
//! for distinct seeded payments (also look the payment up and append
//! `PaymentSucceeded`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::webhooks::signature::signing;
use chrono::Utc;
use commands::domain::customer::CustomerCommand;
use commands::domain::ids::{CustomerId, JobId, PaymentId};
use commands::domain::job::{BookingSource, JobCommand};
use commands::domain::loyalty::LoyaltyRules;
use commands::domain::payment::PaymentCommand;
use commands::domain::{Actor as DomainActor, DomainServices};
use commands::{Actor, Crm, EventMetadata};
use serde_json::json;
use tests::{Engine, TestDb};
use uuid::Uuid;

const SECRET: &str = "whsec_bench_secret";
const CLIENTS: usize = 64;

async fn seed_payments(crm: &Crm, n: usize) -> Vec<(String, JobId)> {
    let meta = EventMetadata::new(Actor::System("bench-seed".into()), Utc::now());
    let sys = DomainActor::System;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (customer, job, payment) = (
            CustomerId(Uuid::new_v4()),
            JobId(Uuid::new_v4()),
            PaymentId(Uuid::new_v4()),
        );
        crm.customers()
            .execute(
                customer,
                sys,
                CustomerCommand::Create {
                    customer_id: customer,
                    name: format!("Bench {i}"),
                    email: None,
                    phone: None,
                    birthday: None,
                    customer_since: None,
                },
                &meta,
            )
            .await
            .expect("customer");
        crm.jobs()
            .execute(
                job,
                sys,
                JobCommand::Book {
                    job_id: job,
                    customer_id: customer,
                    source: BookingSource::Staff,
                    services: vec!["carpet cleaning".into()],
                    window: None,
                },
                &meta,
            )
            .await
            .expect("job");
        let intent = format!("pi_bench_{i}");
        crm.payments()
            .execute(
                payment,
                sys,
                PaymentCommand::CreateIntent {
                    payment_id: payment,
                    job_id: job,
                    customer_id: customer,
                    amount_cents: 25_000,
                    provider_intent_id: intent.clone(),
                },
                &meta,
            )
            .await
            .expect("intent");
        out.push((intent, job));
    }
    out
}

/// Sends every body from `CLIENTS` concurrent clients; (requests/s, sorted latencies).
async fn drive(base: &str, bodies: Vec<Vec<u8>>) -> (f64, Vec<Duration>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client");
    let queue = Arc::new(tokio::sync::Mutex::new(bodies));
    let url = format!("{base}/api/webhooks/stripe");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, queue, url) = (client.clone(), queue.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let Some(body) = queue.lock().await.pop() else {
                    return lat;
                };
                let header = signing::stripe_header(SECRET, Utc::now().timestamp(), &body);
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("stripe-signature", header)
                    .body(body)
                    .send()
                    .await
                    .expect("send");
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                assert!(status.is_success(), "status {status}: {text}");
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

/// Sends the bodies at a steady `rate` per second (open loop: a slow answer
/// does not slow the sender); (achieved requests/s, sorted latencies).
async fn drive_paced(base: &str, bodies: Vec<Vec<u8>>, rate: f64) -> (f64, Vec<Duration>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let url = format!("{base}/api/webhooks/stripe");
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.into_iter().enumerate() {
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            start + Duration::from_secs_f64(i as f64 / rate),
        ))
        .await;
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let header = signing::stripe_header(SECRET, Utc::now().timestamp(), &body);
            let t = Instant::now();
            let r = client
                .post(&url)
                .header("content-type", "application/json")
                .header("stripe-signature", header)
                .body(body)
                .send()
                .await
                .expect("send");
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            assert!(status.is_success(), "status {status}: {text}");
            t.elapsed()
        }));
    }
    let mut all = Vec::with_capacity(tasks.len());
    for t in tasks {
        all.push(t.await.expect("request"));
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

fn pct(l: &[Duration], q: f64) -> f64 {
    l[((l.len() as f64 * q) as usize).min(l.len() - 1)].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("BENCH_DELIVERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let db = TestDb::new(Engine::Postgres).await;
    let log = db.log().await;
    let crm = Crm::new(
        log.clone(),
        DomainServices::new(
            api::Config::defaults().business_timezone,
            LoyaltyRules::default(),
        ),
    );
    let t = Instant::now();
    let payments = seed_payments(&crm, n).await;
    println!("seeded {n} payments in {:.1} s", t.elapsed().as_secs_f64());
    log.close().await;

    let server = tests::ServerProcess::start(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("STRIPE_WEBHOOK_SECRET", SECRET),
            ("DEMO_SEED", "off"),
            ("RUST_LOG", "warn"),
        ],
        Duration::from_secs(60),
    )
    .await;
    let base = server.base.clone();

    let ignored = |tag: &str| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| serde_json::to_vec(&json!({"id": format!("evt_{tag}_{i}"), "object": "event", "type": "charge.refunded", "data": {"object": {}}})).expect("json"))
            .collect()
    };
    let (rate, lat) = drive(&base, ignored("max")).await;
    println!("| ingress, ignored event type, {CLIENTS} clients flat out ({n} deliveries) | {rate:.0}/s | p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms |", pct(&lat, 0.5), pct(&lat, 0.95), pct(&lat, 0.99));
    let (rate, lat) = drive_paced(&base, ignored("paced"), 1_000.0).await;
    println!("| ingress, ignored event type, paced at 1,000/s ({n} deliveries) | {rate:.0}/s | p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms |", pct(&lat, 0.5), pct(&lat, 0.95), pct(&lat, 0.99));

    let paid: Vec<Vec<u8>> = payments
        .iter()
        .enumerate()
        .map(|(i, (intent, job))| serde_json::to_vec(&json!({"id": format!("evt_paid_{i}"), "object": "event", "type": "payment_intent.succeeded", "data": {"object": {"id": intent, "object": "payment_intent", "metadata": {"job_id": job.to_string()}}}})).expect("json"))
        .collect();
    let (rate, lat) = drive_paced(&base, paid, 1_000.0).await;
    println!("| ingress, payment_intent.succeeded → PaymentSucceeded, paced at 1,000/s ({n} deliveries) | {rate:.0}/s | p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms |", pct(&lat, 0.5), pct(&lat, 0.95), pct(&lat, 0.99));

    drop(server);
    let log = db.log().await;
    let succeeded = tests::app_support::all_events(&log)
        .await
        .iter()
        .filter(|e| e.event_type == "PaymentSucceeded")
        .count();
    println!("PaymentSucceeded events recorded: {succeeded} (expected {n})");
    assert_eq!(succeeded, n, "every delivery took effect exactly once");
}
