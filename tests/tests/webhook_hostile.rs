//! Hostile text in signed webhooks (issue #13), over HTTP to the server
//! process on PostgreSQL and SQLite: a vendor retries whatever we refuse, so
//! NUL and control characters are cleaned (`api::webhooks::text`), never
//! refused, and nothing downstream (event log, `jsonb` ledger, projections,
//! policies) fails on them.

use std::time::{Duration, Instant};

use api::webhooks::signature::signing;
use chrono::Utc;
use commands::domain::customer::CustomerCommand;
use commands::domain::ids::CustomerId;
use commands::domain::loyalty::LoyaltyRules;
use commands::domain::{Actor as DomainActor, DomainServices};
use commands::{Actor, Crm, EventMetadata, LogPosition};
use serde_json::{json, Value};
use tests::{Engine, TestDb};
use uuid::Uuid;
use worker::inbound::ledger;
use worker::inbound::Provider;

const STRIPE_SECRET: &str = "whsec_hostile_test_secret";
const TWILIO_TOKEN: &str = "twilio_auth_token_for_hostile_tests";
const RESEND_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PUBLIC_URL: &str = "https://crm.example.com";
const ADMIN: (&str, &str) = ("owner@dirtfree.example", "correct horse battery");
const PHONE: &str = "+15125550142";
const EMAIL: &str = "hostile@example.com";

/// The server on `database_url` with every webhook secret and an admin.
async fn start(database_url: &str) -> tests::ServerProcess {
    tests::ServerProcess::start_hermetic(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &[
            ("DATABASE_URL", database_url),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "warn"),
            ("DEMO_SEED", "off"),
            ("ADMIN_EMAIL", ADMIN.0),
            ("ADMIN_PASSWORD", ADMIN.1),
            ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
            ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
            ("RESEND_WEBHOOK_SECRET", RESEND_SECRET),
            ("PUBLIC_URL", PUBLIC_URL),
        ],
        Duration::from_secs(60),
    )
    .await
}

/// A fresh database holding one customer with [`PHONE`] and [`EMAIL`].
async fn with_customer(engine: Engine) -> (TestDb, CustomerId) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    let crm = Crm::new(
        log.clone(),
        DomainServices::new(
            api::Config::defaults().business_timezone,
            LoyaltyRules::default(),
        ),
    );
    let customer = CustomerId(Uuid::new_v4());
    crm.customers()
        .execute(
            customer,
            DomainActor::System,
            CustomerCommand::Create {
                customer_id: customer,
                name: "Hostile Example".into(),
                email: Some(EMAIL.into()),
                phone: Some(PHONE.into()),
                birthday: None,
                customer_since: None,
            },
            &EventMetadata::new(Actor::System("test-seed".into()), Utc::now()),
        )
        .await
        .expect("customer");
    log.close().await;
    (db, customer)
}

// ---------------------------------------------------------------- requests

/// `application/x-www-form-urlencoded`, every byte outside the unreserved set escaped.
fn form_body(params: &[(String, String)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn post_twilio(base: &str, params: &[(&str, &str)]) -> reqwest::Response {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let path = "/api/webhooks/twilio";
    let sig = signing::twilio_signature(TWILIO_TOKEN, &format!("{PUBLIC_URL}{path}"), &owned);
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(form_body(&owned))
        .send()
        .await
        .expect("send")
}

async fn post_stripe(base: &str, body: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(body).expect("json");
    reqwest::Client::new()
        .post(format!("{base}/api/webhooks/stripe"))
        .header("content-type", "application/json")
        .header(
            "stripe-signature",
            signing::stripe_header(STRIPE_SECRET, Utc::now().timestamp(), &body),
        )
        .body(body)
        .send()
        .await
        .expect("send")
}

async fn post_resend(base: &str, msg_id: &str, body: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(body).expect("json");
    let t = Utc::now().timestamp();
    reqwest::Client::new()
        .post(format!("{base}/api/webhooks/resend"))
        .header("content-type", "application/json")
        .header("svix-id", msg_id)
        .header("svix-timestamp", t.to_string())
        .header(
            "svix-signature",
            signing::svix_signature(RESEND_SECRET, msg_id, t, &body),
        )
        .body(body)
        .send()
        .await
        .expect("send")
}

async fn gql(
    s: &tests::ServerProcess,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Value {
    let mut req = reqwest::Client::new()
        .post(&s.url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("send").json().await.expect("json")
}

async fn login(s: &tests::ServerProcess) -> String {
    let r = gql(
        s,
        None,
        "mutation($i: LoginInput!) { login(input: $i) { token } }",
        json!({"i": {"email": ADMIN.0, "password": ADMIN.1}}),
    )
    .await;
    r.pointer("/data/login/token")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("login failed: {r}"))
        .to_string()
}

/// Asks `query` until `done` holds of the answer or 20 s pass; the last answer.
async fn eventually(
    s: &tests::ServerProcess,
    token: &str,
    query: &str,
    variables: Value,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = gql(s, Some(token), query, variables.clone()).await;
        if done(&r) || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn position(v: &Value) -> Option<LogPosition> {
    match v {
        Value::String(s) => s.parse().ok(),
        other => serde_json::from_value(other.clone()).ok(),
    }
}

/// Waits until every projection and policy has handled the log as it stands
/// now, then asserts that `/api/health/detailed` reports none failed.
async fn assert_nothing_failed(base: &str) {
    let detailed = || async {
        reqwest::get(format!("{base}/api/health/detailed"))
            .await
            .expect("health")
            .json::<Value>()
            .await
            .expect("json")
    };
    let first = detailed().await;
    let head = position(&first["eventStore"]["headPosition"])
        .unwrap_or_else(|| panic!("no head position: {first}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let h = detailed().await;
        let reached = |list: &Value, field: &str| {
            list.as_array().is_some_and(|items| {
                items
                    .iter()
                    .all(|i| position(&i[field]).is_some_and(|p| p >= head))
            })
        };
        let failed = h["status"] != "ok";
        if failed
            || (reached(&h["projections"], "position") && reached(&h["policies"], "checkpoint"))
        {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "projections and policies did not reach {head}: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["status"], "ok", "{health}");
    for p in health["projections"].as_array().expect("projections") {
        assert_ne!(p["state"], "failed", "projection failed: {p}");
    }
    for p in health["policies"].as_array().expect("policies") {
        assert!(p["last_error"].is_null(), "policy failed: {p}");
    }
}

fn has_string(v: &Value, wanted: &str) -> bool {
    match v {
        Value::String(s) => s == wanted,
        Value::Array(items) => items.iter().any(|i| has_string(i, wanted)),
        Value::Object(fields) => fields.values().any(|f| has_string(f, wanted)),
        _ => false,
    }
}

// --------------------------------------------------------------- scenarios

async fn a_signed_sms_with_nul_and_control_characters_is_accepted_and_shown_cleaned(
    engine: Engine,
) {
    let (db, customer) = with_customer(engine).await;
    let server = start(&db.url).await;
    let base = server.base.as_str();

    let body = "Hi\0 there\u{1}\u{7f}, is \u{1b}[31mTuesday\u{85} ok?\r\nThanks\tPat\0";
    let r = post_twilio(
        base,
        &[
            ("MessageSid", "SMhostile\u{0}1"),
            ("From", &format!("{PHONE}\u{0}")),
            ("To", "+15125550199\u{7}"),
            ("Body", body),
        ],
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());

    let admin = login(&server).await;
    let query = "query($c: ID) { conversations(customerId: $c, first: 5) { nodes { customerId messages { nodes { sender text } } } } }";
    let vars = json!({ "c": customer.to_string() });
    let found = eventually(&server, &admin, query, vars, |r| {
        r.pointer("/data/conversations/nodes/0/messages/nodes/0")
            .is_some()
    })
    .await;
    let messages = found
        .pointer("/data/conversations/nodes/0/messages/nodes")
        .unwrap_or_else(|| panic!("no conversation: {found}"));
    assert_eq!(
        messages,
        &json!([{ "sender": "customer", "text": "Hi there, is [31mTuesday ok?\r\nThanks\tPat" }]),
        "{found}"
    );

    let log = db.log().await;
    assert_eq!(
        ledger::count(&projections::ReadDb::of(&log), Provider::Twilio)
            .await
            .expect("count"),
        1
    );
    log.close().await;
    assert_nothing_failed(base).await;
}

async fn stripe_and_resend_events_with_nul_in_their_text_change_the_customer_and_fail_nothing(
    engine: Engine,
) {
    let (db, customer) = with_customer(engine).await;
    let server = start(&db.url).await;
    let base = server.base.as_str();

    let linked = json!({
        "id": "evt_\u{0}hostile1",
        "object": "event",
        "type": "customer.updated",
        "data": { "object": {
            "id": "cus_\u{0}Hostile\u{7}1",
            "object": "customer",
            "description": "\u{0}\u{1b}[2J",
            "metadata": { "customer_id": format!("{customer}\u{0}"), "note\u{0}": "\u{1}" },
        } },
    });
    let r = post_stripe(base, &linked).await;
    assert!(r.status().is_success(), "{}", r.status());
    let outcome: Value = r.json().await.expect("json");
    assert_eq!(outcome["outcome"], "applied: 1 event(s)", "{outcome}");

    let bounced = json!({
        "type": "email.bounced\u{0}",
        "created_at": "2026-11-25T12:00:00Z",
        "data": {
            "email_id": "em_\u{0}1",
            "to": [format!("{EMAIL}\u{0}")],
            "subject": "\u{0}\u{85}",
            "bounce": { "type": "Permanent", "message": "\u{0}" },
        },
    });
    let r = post_resend(base, "msg_hostile_1", &bounced).await;
    assert!(r.status().is_success(), "{}", r.status());
    let outcome: Value = r.json().await.expect("json");
    assert_eq!(outcome["outcome"], "applied: 1 event(s)", "{outcome}");

    let log = db.log().await;
    let events = tests::app_support::stream_types(&log, "Customer", &customer.to_string()).await;
    assert!(
        events.iter().any(|t| t == "StripeCustomerLinked")
            && events.iter().any(|t| t == "EmailSuppressed"),
        "{events:?}"
    );
    let stream = log
        .load_stream("Customer", &customer.to_string(), 0)
        .await
        .expect("stream");
    assert!(
        stream
            .iter()
            .any(|e| has_string(&e.payload, "cus_Hostile1")),
        "the cleaned Stripe id is in the event: {:?}",
        stream.iter().map(|e| &e.payload).collect::<Vec<_>>()
    );
    for provider in [Provider::Stripe, Provider::Resend] {
        assert_eq!(
            ledger::count(&projections::ReadDb::of(&log), provider)
                .await
                .expect("count"),
            1,
            "{provider}"
        );
    }
    log.close().await;

    let admin = login(&server).await;
    let r = eventually(
        &server,
        &admin,
        "query($id: ID!) { customer(id: $id) { emailSuppressed } }",
        json!({ "id": customer.to_string() }),
        |r| r.pointer("/data/customer/emailSuppressed") == Some(&json!(true)),
    )
    .await;
    assert_eq!(
        r.pointer("/data/customer/emailSuppressed"),
        Some(&json!(true)),
        "{r}"
    );
    assert_nothing_failed(base).await;
}

tests::on_both_engines!(
    a_signed_sms_with_nul_and_control_characters_is_accepted_and_shown_cleaned,
    stripe_and_resend_events_with_nul_in_their_text_change_the_customer_and_fail_nothing,
);
