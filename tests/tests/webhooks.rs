//! Vendor webhooks as the vendors send them: signed requests over HTTP to the
//! server process, on PostgreSQL and SQLite. Redeliveries and concurrent
//! copies have one effect; bad input is refused and records nothing.

use std::time::Duration;

use api::webhooks::signature::signing;
use chrono::Utc;
use commands::domain::consent::{Channel, ConsentSource};
use commands::domain::customer::CustomerCommand;
use commands::domain::ids::{CustomerId, JobId, PaymentId};
use commands::domain::job::{BookingSource, JobCommand};
use commands::domain::loyalty::LoyaltyRules;
use commands::domain::payment::PaymentCommand;
use commands::domain::{Actor as DomainActor, DomainServices};
use commands::{Actor, Crm, EventLog, EventMetadata};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::app_support::all_events;
use tests::{Engine, TestDb};
use uuid::Uuid;
use worker::inbound::ledger;
use worker::inbound::{Provider, SmsStatus};

const STRIPE_SECRET: &str = "whsec_integration_test_secret";
const TWILIO_TOKEN: &str = "twilio_auth_token_for_tests";
const RESEND_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PUBLIC_URL: &str = "https://crm.example.com";
const PHONE: &str = "+15125550100";
const EMAIL: &str = "pat@example.com";
const INTENT: &str = "pi_3Pintegration";

type Server = tests::ServerProcess;

/// Starts the server on `database_url`, with every webhook secret unless `secrets` is false.
async fn start(database_url: &str, secrets: bool) -> Server {
    let mut envs = vec![
        ("DATABASE_URL", database_url),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "warn"),
    ];
    if secrets {
        envs.extend([
            ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
            ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
            ("RESEND_WEBHOOK_SECRET", RESEND_SECRET),
            ("PUBLIC_URL", PUBLIC_URL),
        ]);
    }
    tests::ServerProcess::start_hermetic(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &envs,
        Duration::from_secs(30),
    )
    .await
}

/// The ids of the customer, job and payment every scenario starts from.
struct Seed {
    customer: CustomerId,
    job: JobId,
    payment: PaymentId,
}

/// A customer (SMS consent given) with a booked job and its payment intent.
async fn seed(log: &EventLog) -> Seed {
    let tz = api::Config::defaults().business_timezone;
    let crm = Crm::new(
        log.clone(),
        DomainServices::new(tz, LoyaltyRules::default()),
    );
    let meta = EventMetadata::new(Actor::System("test-seed".into()), Utc::now());
    let customer = CustomerId(Uuid::new_v4());
    let job = JobId(Uuid::new_v4());
    let payment = PaymentId(Uuid::new_v4());
    let sys = DomainActor::System;
    crm.customers()
        .execute(
            customer,
            sys,
            CustomerCommand::Create {
                customer_id: customer,
                name: "Pat Example".into(),
                email: Some(EMAIL.into()),
                phone: Some(PHONE.into()),
                birthday: None,
                customer_since: None,
            },
            &meta,
        )
        .await
        .expect("customer");
    crm.customers()
        .execute(
            customer,
            sys,
            CustomerCommand::GrantMarketingConsent {
                channel: Channel::Sms,
                source: ConsentSource::Staff,
            },
            &meta,
        )
        .await
        .expect("consent");
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
    crm.payments()
        .execute(
            payment,
            sys,
            PaymentCommand::CreateIntent {
                payment_id: payment,
                job_id: job,
                customer_id: customer,
                amount_cents: 25_000,
                provider_intent_id: INTENT.into(),
            },
            &meta,
        )
        .await
        .expect("payment intent");
    Seed {
        customer,
        job,
        payment,
    }
}

/// Opens the database, seeds it, closes it (the server has it to itself).
async fn seeded(engine: Engine) -> (TestDb, Seed) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    let seed = seed(&log).await;
    log.close().await;
    (db, seed)
}

fn count_type(events: &[commands::RecordedEvent], event_type: &str) -> usize {
    events.iter().filter(|e| e.event_type == event_type).count()
}

// ---------------------------------------------------------------- requests

fn stripe_event(id: &str, event_type: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id,
        "object": "event",
        "type": event_type,
        "data": { "object": object },
    }))
    .expect("json")
}

async fn post_stripe(client: &reqwest::Client, base: &str, body: &[u8]) -> reqwest::Response {
    let header = signing::stripe_header(STRIPE_SECRET, Utc::now().timestamp(), body);
    client
        .post(format!("{base}/api/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body.to_vec())
        .send()
        .await
        .expect("send")
}

/// `application/x-www-form-urlencoded` escaping, as browsers and Twilio do it.
fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn form(params: &[(&str, &str)]) -> (Vec<(String, String)>, String) {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = owned
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    (owned, body)
}

async fn post_twilio(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    params: &[(&str, &str)],
) -> reqwest::Response {
    let (owned, body) = form(params);
    let sig = signing::twilio_signature(TWILIO_TOKEN, &format!("{PUBLIC_URL}{path}"), &owned);
    client
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(body)
        .send()
        .await
        .expect("send")
}

async fn post_resend(
    client: &reqwest::Client,
    base: &str,
    msg_id: &str,
    body: &[u8],
) -> reqwest::Response {
    let t = Utc::now().timestamp();
    client
        .post(format!("{base}/api/webhooks/resend"))
        .header("content-type", "application/json")
        .header("svix-id", msg_id)
        .header("svix-timestamp", t.to_string())
        .header(
            "svix-signature",
            signing::svix_signature(RESEND_SECRET, msg_id, t, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("send")
}

/// Announces a Stripe delivery of `len` bytes, sends only its headers and
/// returns the status the server answers with.
async fn status_of_announced_body(base: &str, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/webhooks/stripe HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Stripe-Signature: t=1,v1=00\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("the server answers without waiting for the body")
        .expect("read");
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// Sends `request` three times; the first is processed, the others are duplicates.
async fn thrice<F, Fut>(what: &str, mut request: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    for attempt in 1..=3 {
        let r = request().await;
        assert_eq!(r.status(), StatusCode::OK, "{what} attempt {attempt}");
        let is_xml = r
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/xml"));
        if !is_xml {
            let body: Value = r.json().await.expect("json");
            let expected = if attempt == 1 {
                "processed"
            } else {
                "duplicate"
            };
            assert_eq!(body["status"], expected, "{what} attempt {attempt}: {body}");
        }
    }
}

// --------------------------------------------------------------- scenarios

async fn each_webhook_delivered_three_times_has_one_effect(engine: Engine) {
    let (db, seed) = seeded(engine).await;
    let server = start(&db.url, true).await;
    let base = server.base.as_str();
    let client = reqwest::Client::new();

    let paid = stripe_event(
        "evt_paid_1",
        "payment_intent.succeeded",
        json!({ "id": INTENT, "object": "payment_intent", "metadata": { "job_id": seed.job.to_string() } }),
    );
    thrice("payment_intent.succeeded", || {
        post_stripe(&client, base, &paid)
    })
    .await;

    let linked = stripe_event(
        "evt_cus_1",
        "customer.updated",
        json!({ "id": "cus_Integration1", "object": "customer", "metadata": { "customer_id": seed.customer.to_string() } }),
    );
    thrice("customer.updated", || post_stripe(&client, base, &linked)).await;

    let unknown = stripe_event("evt_other_1", "charge.refunded", json!({ "id": "ch_1" }));
    let r = post_stripe(&client, base, &unknown).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.expect("json")["outcome"], "ignored");

    let stop = [
        ("MessageSid", "SMstop1"),
        ("From", PHONE),
        ("To", "+15125550199"),
        ("Body", " Stop "),
    ];
    thrice("inbound STOP", || {
        post_twilio(&client, base, "/api/webhooks/twilio", &stop)
    })
    .await;

    let chat = [
        ("MessageSid", "SMchat1"),
        ("From", PHONE),
        ("To", "+15125550199"),
        ("Body", "Can you come Tuesday?"),
    ];
    thrice("inbound message", || {
        post_twilio(&client, base, "/api/webhooks/twilio", &chat)
    })
    .await;

    // Status callbacks out of order: `sent` arrives after `delivered`.
    let delivered = [("MessageSid", "SMout1"), ("MessageStatus", "delivered")];
    thrice("status delivered", || {
        post_twilio(&client, base, "/api/webhooks/twilio/status", &delivered)
    })
    .await;
    let sent = [("MessageSid", "SMout1"), ("MessageStatus", "sent")];
    thrice("status sent", || {
        post_twilio(&client, base, "/api/webhooks/twilio/status", &sent)
    })
    .await;

    let bounce = serde_json::to_vec(&json!({
        "type": "email.bounced",
        "created_at": "2026-11-25T12:00:00Z",
        "data": { "email_id": "em_1", "to": [EMAIL], "bounce": { "type": "Permanent" } },
    }))
    .expect("json");
    thrice("email.bounced", || {
        post_resend(&client, base, "msg_bounce_1", &bounce)
    })
    .await;

    let log = db.log().await;
    let payment = log
        .load_stream("Payment", &seed.payment.to_string(), 0)
        .await
        .expect("payment stream");
    let types: Vec<&str> = payment.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["PaymentIntentCreated", "PaymentSucceeded"]);
    assert_eq!(
        payment[1].metadata["actor"], "webhook:stripe",
        "{}",
        payment[1].metadata
    );

    let events = all_events(&log).await;
    assert_eq!(count_type(&events, "StripeCustomerLinked"), 1);
    assert_eq!(count_type(&events, "SmsConsentRevoked"), 1);
    assert_eq!(count_type(&events, "ConversationStarted"), 1);
    assert_eq!(count_type(&events, "MessageAdded"), 1);
    assert_eq!(count_type(&events, "EmailSuppressed"), 1);
    assert_eq!(
        ledger::sms_status(&projections::ReadDb::of(&log), "SMout1")
            .await
            .expect("status"),
        Some(SmsStatus::Delivered)
    );
    assert_eq!(
        ledger::count(&projections::ReadDb::of(&log), Provider::Stripe)
            .await
            .expect("count"),
        3
    );
    assert_eq!(
        ledger::count(&projections::ReadDb::of(&log), Provider::Twilio)
            .await
            .expect("count"),
        4
    );
    assert_eq!(
        ledger::count(&projections::ReadDb::of(&log), Provider::Resend)
            .await
            .expect("count"),
        1
    );
    log.close().await;
    tests::health::assert_no_failures(&server.base).await;
}

async fn fifty_concurrent_deliveries_of_one_stripe_event_make_one_payment_event(engine: Engine) {
    let (db, seed) = seeded(engine).await;
    let server = start(&db.url, true).await;
    let client = reqwest::Client::new();
    let body = stripe_event(
        "evt_concurrent_1",
        "payment_intent.succeeded",
        json!({ "id": INTENT, "object": "payment_intent" }),
    );
    let requests = (0..50).map(|_| post_stripe(&client, &server.base, &body));
    let responses = futures::future::join_all(requests).await;
    let mut statuses: Vec<(StatusCode, String)> = Vec::new();
    for r in responses {
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        statuses.push((
            status,
            body["status"].as_str().unwrap_or_default().to_string(),
        ));
    }
    assert!(
        statuses.iter().all(|(s, _)| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|(_, b)| b == "processed").count(),
        1,
        "{statuses:?}"
    );

    let log = db.log().await;
    let payment = log
        .load_stream("Payment", &seed.payment.to_string(), 0)
        .await
        .expect("payment stream");
    assert_eq!(
        payment
            .iter()
            .filter(|e| e.event_type == "PaymentSucceeded")
            .count(),
        1
    );
    assert_eq!(
        ledger::count(&projections::ReadDb::of(&log), Provider::Stripe)
            .await
            .expect("count"),
        1
    );
    log.close().await;
    tests::health::assert_no_failures(&server.base).await;
}

async fn bad_input_is_refused_and_nothing_is_recorded(engine: Engine) {
    let (db, _seed) = seeded(engine).await;
    let before = {
        let log = db.log().await;
        let n = tests::business_event_count(&log).await;
        log.close().await;
        n
    };
    let server = start(&db.url, true).await;
    let base = server.base.as_str();
    let client = reqwest::Client::new();
    let stripe_url = format!("{base}/api/webhooks/stripe");
    let now = Utc::now().timestamp();

    // Stripe: correctly signed but not JSON.
    let r = post_stripe(&client, base, b"this is not json").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Stripe: truncated JSON, correctly signed.
    let r = post_stripe(
        &client,
        base,
        br#"{"id":"evt_t","type":"payment_intent.succ"#,
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let good = stripe_event(
        "evt_bad_1",
        "payment_intent.succeeded",
        json!({ "id": INTENT }),
    );
    // Missing signature header.
    let r = client
        .post(&stripe_url)
        .body(good.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // One body byte changed after signing.
    let header = signing::stripe_header(STRIPE_SECRET, now, &good);
    let mut tampered = good.clone();
    tampered[8] ^= 1;
    let r = client
        .post(&stripe_url)
        .header("stripe-signature", &header)
        .body(tampered)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Signed ten minutes ago.
    let stale = signing::stripe_header(STRIPE_SECRET, now - 600, &good);
    let r = client
        .post(&stripe_url)
        .header("stripe-signature", stale)
        .body(good.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "INVALID_SIGNATURE");
    // Signed with another secret.
    let other = signing::stripe_header("whsec_not_ours", now, &good);
    let r = client
        .post(&stripe_url)
        .header("stripe-signature", other)
        .body(good.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Twilio: a form body cut short after signing.
    let twilio_url = format!("{base}/api/webhooks/twilio");
    let (params, body) = form(&[("MessageSid", "SMcut"), ("From", PHONE), ("Body", "STOP")]);
    let sig = signing::twilio_signature(
        TWILIO_TOKEN,
        &format!("{PUBLIC_URL}/api/webhooks/twilio"),
        &params,
    );
    let cut = body[..body.len() - 3].to_string();
    let r = client
        .post(&twilio_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", &sig)
        .body(cut)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Twilio: signed over another URL (a proxy's view of the request).
    let wrong = signing::twilio_signature(
        TWILIO_TOKEN,
        &format!("{base}/api/webhooks/twilio"),
        &params,
    );
    let r = client
        .post(&twilio_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", wrong)
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Twilio: not a form.
    let r = client
        .post(&twilio_url)
        .header("content-type", "application/json")
        .header("x-twilio-signature", &sig)
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Twilio: correctly signed, but no MessageSid.
    let r = post_twilio(
        &client,
        base,
        "/api/webhooks/twilio",
        &[("From", PHONE), ("Body", "STOP")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Twilio: no signature header.
    let r = client
        .post(&twilio_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Resend: missing svix headers, then a bad signature.
    let resend_url = format!("{base}/api/webhooks/resend");
    let bounce = br#"{"type":"email.bounced","data":{"to":["pat@example.com"]}}"#.to_vec();
    let r = client
        .post(&resend_url)
        .body(bounce.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client
        .post(&resend_url)
        .header("svix-id", "msg_bad")
        .header("svix-timestamp", now.to_string())
        .header(
            "svix-signature",
            signing::svix_signature(RESEND_SECRET, "msg_other", now, &bounce),
        )
        .body(bounce.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Resend: correctly signed, not JSON.
    let r = post_resend(&client, base, "msg_notjson", b"<xml/>").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A 10 MB body is refused by the size limit before it is read: the
    // answer comes with only the headers sent.
    assert_eq!(status_of_announced_body(base, 10 * 1024 * 1024).await, 413);
    assert!(client
        .get(format!("{base}/api/health"))
        .send()
        .await
        .expect("health")
        .status()
        .is_success());

    let log = db.log().await;
    for p in [Provider::Stripe, Provider::Twilio, Provider::Resend] {
        assert_eq!(
            ledger::count(&projections::ReadDb::of(&log), p)
                .await
                .expect("count"),
            0,
            "{p}"
        );
    }
    assert_eq!(tests::business_event_count(&log).await, before);
    log.close().await;
    tests::health::assert_no_failures(&server.base).await;
}

#[tokio::test]
async fn each_webhook_delivered_three_times_has_one_effect_on_postgres() {
    each_webhook_delivered_three_times_has_one_effect(Engine::Postgres).await;
}

#[tokio::test]
async fn each_webhook_delivered_three_times_has_one_effect_on_sqlite() {
    each_webhook_delivered_three_times_has_one_effect(Engine::Sqlite).await;
}

#[tokio::test]
async fn fifty_concurrent_deliveries_of_one_stripe_event_make_one_payment_event_on_postgres() {
    fifty_concurrent_deliveries_of_one_stripe_event_make_one_payment_event(Engine::Postgres).await;
}

#[tokio::test]
async fn fifty_concurrent_deliveries_of_one_stripe_event_make_one_payment_event_on_sqlite() {
    fifty_concurrent_deliveries_of_one_stripe_event_make_one_payment_event(Engine::Sqlite).await;
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_recorded_on_postgres() {
    bad_input_is_refused_and_nothing_is_recorded(Engine::Postgres).await;
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_recorded_on_sqlite() {
    bad_input_is_refused_and_nothing_is_recorded(Engine::Sqlite).await;
}

#[tokio::test]
async fn a_webhook_without_its_secret_is_disabled_with_a_clear_error() {
    let db = TestDb::new(Engine::Sqlite).await;
    let server = start(&db.url, false).await;
    let client = reqwest::Client::new();
    for (path, message) in [
        (
            "/api/webhooks/stripe",
            "stripe webhooks disabled: STRIPE_WEBHOOK_SECRET not set",
        ),
        (
            "/api/webhooks/twilio",
            "twilio webhooks disabled: TWILIO_AUTH_TOKEN not set",
        ),
        (
            "/api/webhooks/twilio/status",
            "twilio webhooks disabled: TWILIO_AUTH_TOKEN not set",
        ),
        (
            "/api/webhooks/resend",
            "resend webhooks disabled: RESEND_WEBHOOK_SECRET not set",
        ),
    ] {
        let r = client
            .post(format!("{}{path}", server.base))
            .body("{}")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "WEBHOOK_DISABLED", "{path}");
        assert_eq!(body["error"]["message"], message, "{path}");
    }
    tests::health::assert_no_failures(&server.base).await;
}
