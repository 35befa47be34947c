//! The outbox against stand-ins for the vendors' send APIs: HTTP servers on loopback that
//! record every request and, like Resend, answer a repeated `Idempotency-Key` with the first
//! result instead of sending again. On PostgreSQL and SQLite.
//!
//! In process: delivery (through the policies, from a completed job), retries with back-off on
//! 500 and 429, no retry after a 400, "not sent" without vendor keys or consent. As a process:
//! the server SIGKILLed between the vendor's send and the recording never sends twice, and
//! Twilio's status callbacks move the message's delivery status forward only.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener as StdListener;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use commands::domain::consent::{Channel, ConsentSource, MarketingEligibility, SuppressionReason};
use commands::domain::customer::CustomerCommand;
use commands::domain::ids::{CustomerId, OutboundMessageId, PaymentId};
use commands::domain::loyalty::LoyaltyRules;
use commands::domain::message::{
    DeliveryStatus, MessageCommand, MessageEvent, MessageKind, MessageStatus, NotSentReason,
    OutboundMessage, Recipient,
};
use commands::domain::{Actor as DomainActor, DomainServices};
use commands::policies::PolicyRunner;
use commands::{Actor, Crm, EventLog, EventMetadata};
use serde_json::{json, Value};
use tests::app_support;
use tests::{Engine, TempDir, TestDb};
use worker::outbox::resend::ResendSender;
use worker::outbox::stripe::{
    request_payment, PaymentIntentRequest, PaymentRequestError, StripePaymentIntents,
};
use worker::outbox::twilio::TwilioSender;
use worker::outbox::SendError;
use worker::outbox::{OutboxSettings, OutboxWorker};
use worker::secret::Secret;

const TZ: chrono_tz::Tz = chrono_tz::America::Chicago;
const TWILIO_SID: &str = "AC00000000000000000000000000000001";
const TWILIO_TOKEN: &str = "twilio-test-token";
const RESEND_KEY: &str = "re_test_key";
const FROM_PHONE: &str = "+15125559999";
const FROM_EMAIL: &str = "Dirt Free <hello@dirtfree.example>";
const PUBLIC_URL: &str = "https://crm.example.com";

// ------------------------------------------------------------------ vendor stand-ins

/// One request a stand-in received.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    idempotency_key: Option<String>,
    authorization: Option<String>,
    body: String,
    status: u16,
    replayed: bool,
}

#[derive(Debug, Default)]
struct VendorState {
    /// Statuses for the next new requests; empty → success.
    script: VecDeque<u16>,
    requests: Vec<Received>,
    /// Ids of the messages the vendor "sent".
    sent: Vec<String>,
    /// `Idempotency-Key` → the saved answer (Resend: successes; Stripe: anything but 429/409).
    by_key: HashMap<String, (u16, Value)>,
    /// Delay the answer to a send (after recording it) by this much.
    hold: Option<Duration>,
}

/// A vendor's send API on loopback.
#[derive(Debug, Clone)]
struct Vendor {
    state: Arc<Mutex<VendorState>>,
    base: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Twilio,
    Resend,
    Stripe,
}

impl Vendor {
    async fn start(kind: Kind) -> Self {
        let state = Arc::new(Mutex::new(VendorState::default()));
        let path = match kind {
            Kind::Twilio => "/2010-04-01/Accounts/{sid}/Messages.json",
            Kind::Resend => "/emails",
            Kind::Stripe => "/v1/payment_intents",
        };
        let handler =
            move |s: State<Arc<Mutex<VendorState>>>, h: HeaderMap, b: String| answer(s, h, b, kind);
        let app = Router::new()
            .route(path, post(handler))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stand-in");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Vendor { state, base }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VendorState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn script(&self, statuses: &[u16]) {
        self.lock().script = statuses.iter().copied().collect();
    }
    fn hold(&self, d: Option<Duration>) {
        self.lock().hold = d;
    }
    fn requests(&self) -> Vec<Received> {
        self.lock().requests.clone()
    }
    fn sent(&self) -> Vec<String> {
        self.lock().sent.clone()
    }
}

async fn answer(
    State(state): State<Arc<Mutex<VendorState>>>,
    headers: HeaderMap,
    body: String,
    kind: Kind,
) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let key = header("idempotency-key");
    let mut received = Received {
        at: Instant::now(),
        idempotency_key: key.clone(),
        authorization: header("authorization"),
        body,
        status: 200,
        replayed: false,
    };
    let hold;
    let reply;
    {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        // Resend and Stripe honour Idempotency-Key; Twilio has none.
        if let Some((status, prev)) = key.as_ref().and_then(|k| s.by_key.get(k)).cloned() {
            received.replayed = true;
            received.status = status;
            s.requests.push(received);
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return (code, Json(prev)).into_response();
        }
        let status = s.script.pop_front().unwrap_or(200);
        received.status = status;
        s.requests.push(received);
        if status != 200 {
            let error = match kind {
                Kind::Stripe => {
                    json!({"error": {"type": "api_error", "message": format!("scripted {status}")}})
                }
                _ => json!({"name": "scripted", "message": format!("scripted {status}")}),
            };
            // Stripe saves any answer once the endpoint ran (500s included), not 429/409.
            if let (Kind::Stripe, Some(k), false) = (kind, &key, status == 429 || status == 409) {
                s.by_key.insert(k.clone(), (status, error.clone()));
            }
            let mut r = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Json(error),
            )
                .into_response();
            if status == 429 {
                r.headers_mut()
                    .insert("retry-after", axum::http::HeaderValue::from_static("0"));
            }
            return r;
        }
        let n = s.sent.len() + 1;
        let id = match kind {
            Kind::Twilio => format!("SM{n:032}"),
            Kind::Resend => format!("email-{n}"),
            Kind::Stripe => format!("pi_{n:024}"),
        };
        s.sent.push(id.clone());
        reply = match kind {
            Kind::Twilio => json!({"sid": id, "status": "queued"}),
            Kind::Resend => json!({"id": id}),
            Kind::Stripe => {
                json!({"id": id, "object": "payment_intent", "client_secret": format!("{id}_secret_x")})
            }
        };
        if let Some(k) = key {
            s.by_key.insert(k, (200, reply.clone()));
        }
        hold = s.hold;
    }
    if let Some(d) = hold {
        tokio::time::sleep(d).await;
    }
    (StatusCode::OK, Json(reply)).into_response()
}

// ------------------------------------------------------------------ helpers

fn meta() -> EventMetadata {
    EventMetadata::new(Actor::System("test".into()), Utc::now())
}

/// A CRM on the real clock (the worker's back-off and leases are real time).
fn crm(log: EventLog) -> Crm {
    Crm::new(log, DomainServices::new(TZ, LoyaltyRules::default()))
}

fn settings() -> OutboxSettings {
    OutboxSettings {
        backoff_base: chrono::Duration::milliseconds(200),
        backoff_cap: chrono::Duration::seconds(5),
        max_attempts: 4,
        http_timeout: Duration::from_secs(5),
        public_url: PUBLIC_URL.into(),
        ..OutboxSettings::default()
    }
}

fn twilio(v: &Vendor) -> Arc<TwilioSender> {
    Arc::new(
        TwilioSender::new(
            &v.base,
            TWILIO_SID.into(),
            Secret::new(TWILIO_TOKEN),
            FROM_PHONE.into(),
            None,
            Duration::from_secs(5),
        )
        .expect("client"),
    )
}

fn resend(v: &Vendor) -> Arc<ResendSender> {
    Arc::new(
        ResendSender::new(
            &v.base,
            Secret::new(RESEND_KEY),
            FROM_EMAIL.into(),
            Duration::from_secs(5),
        )
        .expect("client"),
    )
}

/// Customer `n` with a phone, an email and consent on both channels.
async fn customer(crm: &Crm, n: u128) -> CustomerId {
    let id = app_support::customer(crm, n).await;
    let consent = CustomerCommand::GrantMarketingConsent {
        channel: Channel::Email,
        source: ConsentSource::Staff,
    };
    crm.customers()
        .execute(id, app_support::staff(), consent, &meta())
        .await
        .expect("email consent");
    id
}

/// Queues an offer for `customer` on `channel` directly (the policy's command).
async fn queue(
    crm: &Crm,
    customer: CustomerId,
    channel: Channel,
    cause: &str,
) -> OutboundMessageId {
    let id = OutboundMessageId::for_cause(cause);
    let cmd = MessageCommand::Queue {
        kind: MessageKind::Offer,
        channel,
        recipient: Recipient::Customer {
            customer_id: customer,
        },
        cause: cause.into(),
        subject: Some("An offer".into()),
        body: "15% off your next cleaning: {public_url}/offer".into(),
    };
    crm.messages()
        .execute(id, DomainActor::System, cmd, &meta())
        .await
        .expect("queue");
    id
}

async fn message(crm: &Crm, id: OutboundMessageId) -> OutboundMessage {
    crm.messages().load(id).await.expect("load").aggregate
}

async fn events(crm: &Crm, id: OutboundMessageId) -> Vec<MessageEvent> {
    let store = crm.messages();
    crm.log()
        .load_stream("OutboundMessage", &id.to_string(), 0)
        .await
        .expect("stream")
        .into_iter()
        .map(|e| store.store().decode(e).expect("decode"))
        .collect()
}

fn finished(m: &OutboundMessage) -> bool {
    matches!(m.status(), MessageStatus::Sent | MessageStatus::NotSent)
}

/// Runs the worker until the message is sent or given up.
async fn drive(worker: &OutboxWorker, crm: &Crm, id: OutboundMessageId) -> OutboundMessage {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        worker.run_once().await.expect("outbox round");
        let m = message(crm, id).await;
        if finished(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "message never finished: {m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------------ in process

async fn a_completed_jobs_review_request_is_texted_through_twilio(engine: Engine) {
    let db = TestDb::new(engine).await;
    let crm = crm(db.log().await);
    let sms = Vendor::start(Kind::Twilio).await;
    let c = customer(&crm, 1).await;
    let tech = app_support::technician(&crm).await;
    let job = app_support::scheduled_job(&crm, 500, c, tech).await;
    app_support::complete(&crm, job, 12_000).await;
    PolicyRunner::new(crm.clone())
        .run_until_caught_up()
        .await
        .expect("policies");
    let request = commands::domain::ids::ReviewRequestId::for_job(job);
    let id = OutboundMessageId::for_cause(&format!("ReviewRequest:{request}:1"));
    let worker = OutboxWorker::new(crm.clone(), settings()).with_sms(twilio(&sms));
    let m = drive(&worker, &crm, id).await;

    assert_eq!(m.status(), MessageStatus::Sent, "{m:?}");
    assert_eq!(m.kind(), Some(MessageKind::ReviewRequest));
    let sent = sms.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(m.provider_message_id(), Some(sent[0].as_str()));
    let r = &sms.requests()[0];
    let form: HashMap<String, String> = form_urlencoded(&r.body);
    assert_eq!(form.get("To").map(String::as_str), Some("+15125550001"));
    assert_eq!(form.get("From").map(String::as_str), Some(FROM_PHONE));
    let body = form.get("Body").cloned().unwrap_or_default();
    assert!(
        body.contains(&format!("{PUBLIC_URL}/review/{request}")) && body.contains("STOP"),
        "{body}"
    );
    assert!(
        r.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic ")),
        "basic auth with the account SID and token"
    );
    // Running the policies and the worker again changes nothing.
    PolicyRunner::new(crm.clone())
        .run_until_caught_up()
        .await
        .expect("policies");
    worker.run_once().await.expect("round");
    assert_eq!(sms.requests().len(), 1);
}

fn form_urlencoded(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn an_email_is_retried_with_back_off_after_500_and_429_then_sent_once(engine: Engine) {
    let db = TestDb::new(engine).await;
    let crm = crm(db.log().await);
    let email = Vendor::start(Kind::Resend).await;
    email.script(&[500, 429]);
    let c = customer(&crm, 2).await;
    let id = queue(&crm, c, Channel::Email, "test:retry").await;
    let worker = OutboxWorker::new(crm.clone(), settings()).with_email(resend(&email));
    let m = drive(&worker, &crm, id).await;

    assert_eq!(m.status(), MessageStatus::Sent, "{m:?}");
    let requests = email.requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 429, 200]
    );
    let key = format!("dirtfree-msg-{id}");
    assert!(
        requests
            .iter()
            .all(|r| r.idempotency_key.as_deref() == Some(key.as_str())),
        "every attempt carries the message's key"
    );
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some(format!("Bearer {RESEND_KEY}").as_str())
    );
    // Exponential back-off: 200 ms after the first failure, 400 ms after the second.
    let gaps: Vec<Duration> = requests.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(190), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(390), "{gaps:?}");
    let body: Value = serde_json::from_str(&requests[2].body).expect("json");
    assert_eq!(body["to"], json!(["c2@example.com"]));
    assert_eq!(body["from"], json!(FROM_EMAIL));
    // A marketing email: the offer, then its unsubscribe link, also as RFC 8058 headers.
    let text = body["text"].as_str().expect("text");
    let link_at = format!("15% off your next cleaning: {PUBLIC_URL}/offer\n\nUnsubscribe: {PUBLIC_URL}/api/unsubscribe/");
    assert!(text.starts_with(&link_at), "{text}");
    let link = &text["15% off your next cleaning: ".len()
        + PUBLIC_URL.len()
        + "/offer\n\nUnsubscribe: ".len()..];
    assert_eq!(
        body["headers"]["List-Unsubscribe"],
        json!(format!("<{link}>"))
    );
    assert_eq!(
        body["headers"]["List-Unsubscribe-Post"],
        json!("List-Unsubscribe=One-Click")
    );
    let types: Vec<&str> = events(&crm, id)
        .await
        .iter()
        .map(|e| match e {
            MessageEvent::MessageQueued { .. } => "queued",
            MessageEvent::MessageHeld { .. } => "held",
            MessageEvent::MessageSendStarted { .. } => "started",
            MessageEvent::MessageSendAttemptFailed { .. } => "failed",
            MessageEvent::MessageSent { .. } => "sent",
            MessageEvent::MessageNotSent { .. } => "not_sent",
            MessageEvent::MessageDeliveryStatusChanged { .. } => "status",
        })
        .collect();
    assert_eq!(
        types,
        vec!["queued", "started", "failed", "started", "failed", "started", "sent"]
    );
    assert_eq!(email.sent().len(), 1);
}

async fn a_message_the_vendor_refuses_with_400_is_given_up_without_retrying(engine: Engine) {
    let db = TestDb::new(engine).await;
    let crm = crm(db.log().await);
    let sms = Vendor::start(Kind::Twilio).await;
    sms.script(&[400]);
    let c = customer(&crm, 3).await;
    let id = queue(&crm, c, Channel::Sms, "test:400").await;
    let worker = OutboxWorker::new(crm.clone(), settings()).with_sms(twilio(&sms));
    let m = drive(&worker, &crm, id).await;

    assert_eq!(
        m.not_sent_reason(),
        Some(&NotSentReason::Rejected {
            status: 400,
            error: "scripted 400".into()
        })
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.run_once().await.expect("round");
    assert_eq!(sms.requests().len(), 1, "a refused message is not retried");
}

async fn without_vendor_keys_a_message_is_recorded_as_not_sent(engine: Engine) {
    let db = TestDb::new(engine).await;
    let crm = crm(db.log().await);
    let c = customer(&crm, 4).await;
    let sms = queue(&crm, c, Channel::Sms, "test:offline-sms").await;
    let email = queue(&crm, c, Channel::Email, "test:offline-email").await;
    let worker = OutboxWorker::new(crm.clone(), settings());
    for id in [sms, email] {
        let m = drive(&worker, &crm, id).await;
        assert_eq!(
            m.not_sent_reason(),
            Some(&NotSentReason::NoProviderConfigured)
        );
    }
}

async fn consent_revoked_or_email_suppressed_after_queueing_is_checked_at_send_time(
    engine: Engine,
) {
    let db = TestDb::new(engine).await;
    let crm = crm(db.log().await);
    let sms_vendor = Vendor::start(Kind::Twilio).await;
    let email_vendor = Vendor::start(Kind::Resend).await;
    let c = customer(&crm, 5).await;
    let sms = queue(&crm, c, Channel::Sms, "test:stop").await;
    let email = queue(&crm, c, Channel::Email, "test:bounce").await;
    // After queueing: the customer texts STOP and their address hard-bounces.
    crm.customers()
        .execute(
            c,
            DomainActor::System,
            CustomerCommand::ApplyInboundSms {
                body: "STOP".into(),
            },
            &meta(),
        )
        .await
        .expect("stop");
    crm.customers()
        .execute(
            c,
            DomainActor::System,
            CustomerCommand::SuppressEmail {
                reason: SuppressionReason::HardBounce,
                provider_event_id: "msg_bounce".into(),
            },
            &meta(),
        )
        .await
        .expect("suppress");
    let worker = OutboxWorker::new(crm.clone(), settings())
        .with_sms(twilio(&sms_vendor))
        .with_email(resend(&email_vendor));
    for (id, why) in [
        (sms, MarketingEligibility::OptedOut),
        (email, MarketingEligibility::Suppressed),
    ] {
        let m = drive(&worker, &crm, id).await;
        assert_eq!(
            m.not_sent_reason(),
            Some(&NotSentReason::NotEligible { eligibility: why })
        );
    }
    assert!(sms_vendor.requests().is_empty() && email_vendor.requests().is_empty());
}

async fn a_payment_requested_twice_makes_one_stripe_intent(engine: Engine) {
    let db = TestDb::new(engine).await;
    let crm = crm(db.log().await);
    let stripe = Vendor::start(Kind::Stripe).await;
    stripe.script(&[429]);
    let c = customer(&crm, 8).await;
    let tech = app_support::technician(&crm).await;
    let job = app_support::scheduled_job(&crm, 800, c, tech).await;
    let provider = StripePaymentIntents::new(
        &stripe.base,
        Secret::new("sk_test_outbox"),
        Duration::from_secs(5),
    )
    .expect("client");
    let request = PaymentIntentRequest {
        payment_id: PaymentId(uuid::Uuid::new_v4()),
        job_id: job,
        customer_id: c,
        amount_cents: 12_000,
        currency: "usd".into(),
        stripe_customer: None,
    };
    let m = meta();
    let pay = || request_payment(&crm, &provider, &request, &m, 3, Duration::from_millis(50));
    let (first, _) = pay().await.expect("first request");
    // The caller retries (say it never saw the answer): same payment id, same intent.
    let (second, _) = pay().await.expect("second request");
    assert_eq!(first.id, second.id);
    assert_eq!(
        stripe.sent(),
        vec![first.id.clone()],
        "one intent at Stripe"
    );
    let requests = stripe.requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200, 200]
    );
    let key = format!("dirtfree-pi-{}", request.payment_id);
    assert!(requests
        .iter()
        .all(|r| r.idempotency_key.as_deref() == Some(key.as_str())));
    assert_eq!(
        requests[1].authorization.as_deref(),
        Some("Bearer sk_test_outbox")
    );
    let form = form_urlencoded(&requests[1].body);
    assert_eq!(form.get("amount").map(String::as_str), Some("12000"));
    assert_eq!(form.get("currency").map(String::as_str), Some("usd"));
    assert_eq!(form.get("metadata[job_id]").cloned(), Some(job.to_string()));
    let types =
        app_support::stream_types(crm.log(), "Payment", &request.payment_id.to_string()).await;
    assert_eq!(types, vec!["PaymentIntentCreated".to_string()]);

    // A 500 is saved by Stripe under its key: it is reported, not repeated.
    let failing = PaymentIntentRequest {
        payment_id: PaymentId(uuid::Uuid::new_v4()),
        ..request.clone()
    };
    stripe.script(&[500]);
    let e = request_payment(
        &crm,
        &provider,
        &failing,
        &meta(),
        3,
        Duration::from_millis(10),
    )
    .await
    .expect_err("500");
    assert!(
        matches!(
            e,
            PaymentRequestError::Provider(SendError::Ambiguous { .. })
        ),
        "{e}"
    );
    assert_eq!(stripe.requests().len(), 4, "not retried");
}

/// A promotion message that could not be sent counts as a failed delivery of its promotion,
/// with why: one because no vendor is configured, one because the vendor refused it. The one
/// that reached the vendor was the template rendered for its customer, every placeholder
/// filled; the message's events keep the template as written.
async fn a_promotion_message_that_could_not_be_sent_is_a_failed_delivery(engine: Engine) {
    use commands::domain::ids::PromotionId;
    use commands::domain::promotion::{
        AudienceSegment, PromotionCommand, PromotionDraft, PromotionEvent, PromotionKind,
    };
    let db = TestDb::new(engine).await;
    // The promotion's clock is the test's: its send time passes when the test says, not
    // when a loaded machine gets round to it.
    let now = Utc::now();
    let clock = Arc::new(commands::domain::ports::FixedClock::new(now));
    let mut services = DomainServices::new(TZ, LoyaltyRules::default());
    services.clock = clock.clone();
    let crm = Crm::new(db.log().await, services);
    // Rendering reads the customer's points and tier from the read models: their tables exist
    // on a server, here they are made.
    projections::ProjectionRunner::new(crm.log().clone(), TZ)
        .prepare()
        .await
        .expect("read models");
    let sms = Vendor::start(Kind::Twilio).await;
    sms.script(&[400]);
    let c = customer(&crm, 9).await;
    // A first name that is not the whole name, to tell `first_name` from `name`.
    let ada = CustomerId(uuid::Uuid::from_u128(10));
    for cmd in [
        CustomerCommand::Create {
            customer_id: ada,
            name: "Ada Lovelace".into(),
            email: None,
            phone: Some("+15125550142".into()),
            birthday: None,
            customer_since: None,
        },
        CustomerCommand::GrantMarketingConsent {
            channel: Channel::Sms,
            source: ConsentSource::Staff,
        },
    ] {
        crm.customers()
            .execute(ada, app_support::staff(), cmd, &meta())
            .await
            .expect("Ada");
    }
    let promotion = PromotionId(uuid::Uuid::new_v4());
    let template = "Spring special for {{ first_name }} ({{ name }}): 20% off carpets with {{ code }} until {{ ends_on }}.";
    let draft = PromotionDraft {
        name: "Spring clean".into(),
        kind: PromotionKind::Campaign,
        audience: AudienceSegment::AllCustomers,
        channel: Channel::Sms,
        template: template.into(),
        discount_code: Some("SPRING20".into()),
        discount: None,
        starts_at: now - chrono::Duration::days(1),
        ends_at: now + chrono::Duration::days(7),
    };
    let run = |cmd| {
        let crm = crm.clone();
        async move {
            crm.promotions()
                .execute(promotion, app_support::staff(), cmd, &meta())
                .await
                .expect("promotion command")
        }
    };
    run(PromotionCommand::Create {
        promotion_id: promotion,
        draft,
    })
    .await;
    run(PromotionCommand::Schedule {
        send_at: now + chrono::Duration::milliseconds(50),
    })
    .await;
    clock.advance(chrono::Duration::milliseconds(100));
    for customer_id in [c, ada] {
        run(PromotionCommand::RecordDelivery {
            customer_id,
            eligibility: MarketingEligibility::Eligible,
        })
        .await;
    }
    let policies = PolicyRunner::new(crm.clone());
    policies.run_until_caught_up().await.expect("policies");
    // Each delivery's message, by its place in the promotion's stream (created, scheduled,
    // then one delivery each).
    let to_c = OutboundMessageId::for_cause(&format!("Promotion:{promotion}:3"));
    let to_ada = OutboundMessageId::for_cause(&format!("Promotion:{promotion}:4"));
    for id in [to_c, to_ada] {
        let m = message(&crm, id).await;
        assert_eq!(m.kind(), Some(MessageKind::Promotion));
        // The template as written: the customer's details are filled in when it is sent.
        assert_eq!(m.body(), template);
    }

    // Each worker is given its one message (a round would take both). No vendor keys: not
    // sent, and nothing was rendered or handed to anyone.
    OutboxWorker::new(crm.clone(), settings())
        .process(to_c)
        .await
        .expect("without a vendor");
    assert_eq!(
        message(&crm, to_c).await.not_sent_reason(),
        Some(&NotSentReason::NoProviderConfigured)
    );
    assert!(sms.requests().is_empty());
    // Twilio refuses Ada's (400): not sent, after the one attempt.
    OutboxWorker::new(crm.clone(), settings())
        .with_sms(twilio(&sms))
        .process(to_ada)
        .await
        .expect("refused by the vendor");
    assert_eq!(
        message(&crm, to_ada).await.not_sent_reason(),
        Some(&NotSentReason::Rejected {
            status: 400,
            error: "scripted 400".into()
        })
    );
    let requests = sms.requests();
    assert_eq!(requests.len(), 1, "one attempt");
    // What Twilio was handed: the template rendered for Ada (her first name, her name, the
    // code, the promotion's last day in the business's zone), with the opt-out sentence.
    let form = form_urlencoded(&requests[0].body);
    assert_eq!(form.get("To").map(String::as_str), Some("+15125550142"));
    let ends_on = (now + chrono::Duration::days(7))
        .with_timezone(&TZ)
        .format("%B %-d, %Y")
        .to_string();
    let body = form.get("Body").cloned().unwrap_or_default();
    assert_eq!(
        body,
        format!(
            "Spring special for Ada (Ada Lovelace): 20% off carpets with SPRING20 until {ends_on}. Reply STOP to opt out."
        )
    );
    assert!(
        !body.contains('{') && !body.contains('}'),
        "a raw placeholder was sent: {body}"
    );
    // The rendered text, which holds her name, stays out of the message's events (erasure
    // cannot reach them).
    let stored: String = crm
        .log()
        .load_stream("OutboundMessage", &to_ada.to_string(), 0)
        .await
        .expect("stream")
        .iter()
        .map(|e| e.payload.to_string())
        .collect();
    assert!(!stored.contains("Lovelace"), "{stored}");

    // Both count as failed deliveries of the promotion, each with its reason.
    policies.run_until_caught_up().await.expect("policies");
    let store = crm.promotions();
    let failed: Vec<(CustomerId, String)> = crm
        .log()
        .load_stream("Promotion", &promotion.to_string(), 0)
        .await
        .expect("stream")
        .into_iter()
        .filter_map(|e| match store.store().decode(e).expect("decode") {
            PromotionEvent::PromotionDeliveryFailed {
                customer_id,
                reason,
                ..
            } => Some((customer_id, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        vec![
            (c, "not sent: no provider configured".to_string()),
            (ada, "refused (400): scripted 400".to_string()),
        ]
    );
}

async fn a_generated_report_is_emailed_to_each_recipient_and_recorded_sent_once(engine: Engine) {
    use commands::domain::ids::ScheduledReportId;
    use commands::domain::scheduled_report::{ReportMetric, ReportPeriod, ScheduledReportCommand};
    let db = TestDb::new(engine).await;
    let crm = crm(db.log().await);
    let email = Vendor::start(Kind::Resend).await;
    let report = ScheduledReportId(uuid::Uuid::new_v4());
    let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 11, d).expect("date");
    for cmd in [
        ScheduledReportCommand::Define {
            report_id: report,
            name: "Weekly revenue".into(),
            metrics: vec![ReportMetric::Revenue],
            period: ReportPeriod::Weekly,
            recipients: vec![
                "owner@dirtfree.example".into(),
                "ops@dirtfree.example".into(),
            ],
            cron: "0 7 * * 1".into(),
        },
        ScheduledReportCommand::RecordGenerated {
            period_start: day(16),
            period_end: day(22),
            row_count: 1,
            figures: vec![commands::domain::report::ReportFigure::new(
                ReportMetric::Revenue,
                "revenue_cents",
                Some(60_000),
            )],
        },
    ] {
        crm.scheduled_reports()
            .execute(report, app_support::staff(), cmd, &meta())
            .await
            .expect("report command");
    }
    let policies = PolicyRunner::new(crm.clone());
    policies.run_until_caught_up().await.expect("policies");
    let worker = OutboxWorker::new(crm.clone(), settings()).with_email(resend(&email));
    for i in 0..2 {
        let id = OutboundMessageId::for_cause(&format!("ScheduledReport:{report}:2:{i}"));
        let m = drive(&worker, &crm, id).await;
        assert_eq!(m.status(), MessageStatus::Sent, "{m:?}");
        assert_eq!(m.kind(), Some(MessageKind::ScheduledReport));
    }
    policies.run_until_caught_up().await.expect("policies");
    let to: Vec<Value> = email
        .requests()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).expect("json")["to"].clone())
        .collect();
    assert_eq!(
        to,
        vec![
            json!(["owner@dirtfree.example"]),
            json!(["ops@dirtfree.example"])
        ]
    );
    // Each email carries the figures as text and HTML, and the run's CSV attached.
    for r in email.requests() {
        let body: Value = serde_json::from_str(&r.body).expect("json");
        let text = body["text"].as_str().expect("text");
        assert!(text.contains("Revenue: $600.00"), "{text}");
        assert!(
            text.contains(&format!("/api/reports/{report}/runs/2026-11-16.csv")),
            "{text}"
        );
        assert!(body["html"].as_str().expect("html").contains("$600.00"));
        let attachment = &body["attachments"][0];
        assert_eq!(attachment["filename"], "report-2026-11-16.csv");
        use base64::Engine as _;
        let csv = base64::engine::general_purpose::STANDARD
            .decode(attachment["content"].as_str().expect("base64"))
            .expect("decodes");
        assert_eq!(
            String::from_utf8(csv).expect("utf-8"),
            "report,period_start,period_end,metric,figure,value,unit\n\
             Weekly revenue,2026-11-16,2026-11-22,revenue,revenue_cents,60000,cents\n"
        );
    }
    let types = app_support::stream_types(crm.log(), "ScheduledReport", &report.to_string()).await;
    assert_eq!(
        types,
        vec![
            "ScheduledReportDefined",
            "ScheduledReportGenerated",
            "ScheduledReportSent"
        ]
    );
}

/// At 23:00 in the business's zone a marketing SMS waits for 08:00 (and goes then, not a
/// minute before), while a transactional email goes at once.
async fn a_marketing_sms_due_at_eleven_at_night_is_sent_at_eight_and_a_transactional_email_at_once(
    engine: Engine,
) {
    let db = TestDb::new(engine).await;
    // 23:00 CST on December 7th.
    let night = chrono::DateTime::parse_from_rfc3339("2026-12-08T05:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    let clock = Arc::new(commands::domain::ports::FixedClock::new(night));
    let mut services = DomainServices::new(TZ, LoyaltyRules::default());
    services.clock = clock.clone();
    let crm = Crm::new(db.log().await, services);
    let (sms, email) = (
        Vendor::start(Kind::Twilio).await,
        Vendor::start(Kind::Resend).await,
    );
    let c = customer(&crm, 7).await;
    let offer = queue(&crm, c, Channel::Sms, "test:quiet-offer").await;
    let notice_id = OutboundMessageId::for_cause("test:quiet-notice");
    crm.messages()
        .execute(
            notice_id,
            DomainActor::System,
            MessageCommand::Queue {
                kind: MessageKind::Test,
                channel: Channel::Email,
                recipient: Recipient::Email {
                    address: commands::domain::values::Email::parse("ops@example.com")
                        .expect("email"),
                },
                cause: "test:quiet-notice".into(),
                subject: Some("Test".into()),
                body: "A transactional message".into(),
            },
            &meta(),
        )
        .await
        .expect("queue");
    let worker = OutboxWorker::new(
        crm.clone(),
        OutboxSettings {
            quiet_hours: Some(
                commands::domain::quiet_hours::QuietHours::parse("21:00-08:00").expect("hours"),
            ),
            ..settings()
        },
    )
    .with_sms(twilio(&sms))
    .with_email(resend(&email));

    // The worker's index sees a commit once no older transaction on the server is in flight
    // (gap-safe order), so other tests' transactions can delay it: drive until both are decided.
    assert_eq!(
        drive(&worker, &crm, notice_id).await.status(),
        MessageStatus::Sent
    );
    let morning = chrono::DateTime::parse_from_rfc3339("2026-12-08T14:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    let held = MessageEvent::MessageHeld {
        until: morning,
        at: night,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !events(&crm, offer).await.contains(&held) {
        assert!(
            Instant::now() < deadline,
            "never held: {:?}",
            events(&crm, offer).await
        );
        worker.run_once().await.expect("round");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    clock.set(morning - chrono::Duration::minutes(1));
    worker.run_once().await.expect("round");
    assert_eq!(message(&crm, offer).await.status(), MessageStatus::Pending);
    assert!(sms.requests().is_empty(), "sent in quiet hours");
    clock.set(morning);
    let m = drive(&worker, &crm, offer).await;
    assert_eq!(
        m.status(),
        MessageStatus::Sent,
        "{:?}",
        events(&crm, offer).await
    );
    assert_eq!(sms.requests().len(), 1);
}

tests::on_both_engines!(
    a_marketing_sms_due_at_eleven_at_night_is_sent_at_eight_and_a_transactional_email_at_once,
    a_generated_report_is_emailed_to_each_recipient_and_recorded_sent_once,
    a_promotion_message_that_could_not_be_sent_is_a_failed_delivery,
    a_payment_requested_twice_makes_one_stripe_intent,
    a_completed_jobs_review_request_is_texted_through_twilio,
    an_email_is_retried_with_back_off_after_500_and_429_then_sent_once,
    a_message_the_vendor_refuses_with_400_is_given_up_without_retrying,
    without_vendor_keys_a_message_is_recorded_as_not_sent,
    consent_revoked_or_email_suppressed_after_queueing_is_checked_at_send_time,
);

// ------------------------------------------------------------------ the server process

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The server, killed (SIGKILL) on drop.
struct Server {
    child: std::process::Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(url: &str, port: u16, dir: &TempDir, sms: &Vendor, email: &Vendor) -> Server {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dirtfree-api"))
        .current_dir(&dir.0)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("DEMO_SEED", "off")
        // The offers here are marketing: sent at whatever hour the test runs.
        .env("QUIET_HOURS", "off")
        .env("PUBLIC_URL", PUBLIC_URL)
        .env("TWILIO_ACCOUNT_SID", TWILIO_SID)
        .env("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
        .env("TWILIO_PHONE_NUMBER", FROM_PHONE)
        .env("TWILIO_API_BASE", &sms.base)
        .env("RESEND_API_KEY", RESEND_KEY)
        .env("RESEND_FROM_EMAIL", FROM_EMAIL)
        .env("RESEND_API_BASE", &email.base)
        .env("OUTBOX_HTTP_TIMEOUT_MS", "2000")
        .env("OUTBOX_CLAIM_LEASE_MS", "3000")
        .env("OUTBOX_POLL_MS", "100")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/api/health/ready", server.base)).await {
            if r.status().is_success() {
                return server;
            }
        }
        assert!(Instant::now() < deadline, "server did not become healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_finished(crm: &Crm, id: OutboundMessageId) -> OutboundMessage {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = message(crm, id).await;
        if finished(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "message never finished: {m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILLs the server while the vendor, having sent the message, holds its answer back; then
/// restarts it. Returns the message once the restarted server has resolved it.
async fn killed_between_sending_and_recording(
    engine: Engine,
    channel: Channel,
) -> (
    TestDb,
    Crm,
    OutboundMessageId,
    Vendor,
    OutboundMessage,
    Server,
) {
    let db = TestDb::new(engine).await;
    let crm = crm(db.log().await);
    let (sms, email) = (
        Vendor::start(Kind::Twilio).await,
        Vendor::start(Kind::Resend).await,
    );
    let vendor = match channel {
        Channel::Sms => sms.clone(),
        Channel::Email => email.clone(),
    };
    vendor.hold(Some(Duration::from_secs(30)));
    let c = customer(&crm, 6).await;
    let id = queue(&crm, c, channel, "test:sigkill").await;
    let dir = TempDir::new();
    let port = free_port();

    let mut server = start(&db.url, port, &dir, &sms, &email).await;
    wait_until("the vendor to send the message", || {
        !vendor.sent().is_empty()
    })
    .await;
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
    let m = message(&crm, id).await;
    assert_eq!(
        m.status(),
        MessageStatus::Sending,
        "killed after claiming, before recording: {m:?}"
    );
    drop(server);

    vendor.hold(None);
    let server = start(&db.url, port, &dir, &sms, &email).await;
    let m = wait_finished(&crm, id).await;
    (db, crm, id, vendor, m, server)
}

async fn an_email_is_sent_once_when_the_worker_dies_between_sending_and_recording(engine: Engine) {
    let (_db, crm, id, vendor, m, server) =
        killed_between_sending_and_recording(engine, Channel::Email).await;
    assert_eq!(m.status(), MessageStatus::Sent, "{m:?}");
    assert_eq!(vendor.sent(), vec!["email-1".to_string()], "sent once");
    assert_eq!(m.provider_message_id(), Some("email-1"));
    let requests = vendor.requests();
    assert_eq!(requests.len(), 2, "the claim was resumed once");
    assert!(requests[1].replayed, "the vendor deduplicated the repeat");
    assert_eq!(requests[0].idempotency_key, requests[1].idempotency_key);
    let resumed = events(&crm, id)
        .await
        .into_iter()
        .filter(|e| matches!(e, MessageEvent::MessageSendStarted { resumed: true, .. }))
        .count();
    assert_eq!(resumed, 1);
    tests::health::assert_no_failures(&server.base).await;
}

async fn an_sms_is_not_resent_when_the_worker_dies_between_sending_and_recording(engine: Engine) {
    let (_db, _crm, _id, vendor, m, server) =
        killed_between_sending_and_recording(engine, Channel::Sms).await;
    assert_eq!(
        m.not_sent_reason(),
        Some(&NotSentReason::OutcomeUnknown { attempt: 1 }),
        "{m:?}"
    );
    // Operators see it: a person has to check Twilio's log.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health: serde_json::Value =
            reqwest::get(format!("{}/api/health/detailed", server.base))
                .await
                .expect("health")
                .json()
                .await
                .expect("json");
        if health["outbox"]["outcomeUnknown"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not reported: {}",
            health["outbox"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        vendor.requests().len(),
        1,
        "Twilio cannot deduplicate: never re-sent"
    );
    tests::health::assert_no_failures(&server.base).await;
}

/// Posts a Twilio status callback for `sid`, signed as Twilio signs it.
async fn status_callback(base: &str, sid: &str, status: &str) -> String {
    let params = vec![
        ("MessageSid".to_string(), sid.to_string()),
        ("MessageStatus".to_string(), status.to_string()),
        ("AccountSid".to_string(), TWILIO_SID.to_string()),
    ];
    let path = "/api/webhooks/twilio/status";
    let sig = api::webhooks::signature::signing::twilio_signature(
        TWILIO_TOKEN,
        &format!("{PUBLIC_URL}{path}"),
        &params,
    );
    let body = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sig)
        .body(body)
        .send()
        .await
        .expect("status callback");
    assert_eq!(r.status(), 200);
    r.text().await.unwrap_or_default()
}

async fn status_callbacks_move_the_delivery_status_forward_only(engine: Engine) {
    let db = TestDb::new(engine).await;
    let crm = crm(db.log().await);
    let (sms, email) = (
        Vendor::start(Kind::Twilio).await,
        Vendor::start(Kind::Resend).await,
    );
    let c = customer(&crm, 7).await;
    let id = queue(&crm, c, Channel::Sms, "test:status").await;
    let dir = TempDir::new();
    let server = start(&db.url, free_port(), &dir, &sms, &email).await;
    let m = wait_finished(&crm, id).await;
    let sid = m.provider_message_id().expect("sent").to_string();
    let form = form_urlencoded(&sms.requests()[0].body);
    assert_eq!(
        form.get("StatusCallback").map(String::as_str),
        Some(format!("{PUBLIC_URL}/api/webhooks/twilio/status").as_str())
    );

    // Out of order: delivered arrives before sent; each is also redelivered.
    let mut answers = Vec::new();
    for status in ["delivered", "sent", "delivered", "queued", "sent"] {
        answers.push(status_callback(&server.base, &sid, status).await);
    }
    let m = message(&crm, id).await;
    assert_eq!(
        m.delivery_status(),
        Some(DeliveryStatus::Delivered),
        "{answers:#?}"
    );
    let changes: Vec<(DeliveryStatus, DeliveryStatus)> = events(&crm, id)
        .await
        .into_iter()
        .filter_map(|e| match e {
            MessageEvent::MessageDeliveryStatusChanged { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        vec![(DeliveryStatus::Accepted, DeliveryStatus::Delivered)],
        "a late sent never overwrites delivered"
    );
    status_callback(&server.base, &sid, "read").await;
    assert_eq!(
        message(&crm, id).await.delivery_status(),
        Some(DeliveryStatus::Read)
    );
    tests::health::assert_no_failures(&server.base).await;
}

mod process {
    use super::*;
    tests::on_both_engines!(
        an_email_is_sent_once_when_the_worker_dies_between_sending_and_recording,
        an_sms_is_not_resent_when_the_worker_dies_between_sending_and_recording,
        status_callbacks_move_the_delivery_status_forward_only,
    );
}

// ------------------------------------------------------------------ Google reviews

#[derive(Debug, Default)]
struct GoogleState {
    token_requests: Vec<String>,
    review_requests: Vec<(Option<String>, Option<String>)>,
}

async fn google_stand_in() -> (Arc<Mutex<GoogleState>>, String) {
    use axum::extract::{Path, Query};
    use axum::routing::get;
    let state = Arc::new(Mutex::new(GoogleState::default()));
    let token = |State(s): State<Arc<Mutex<GoogleState>>>, body: String| async move {
        s.lock()
            .unwrap_or_else(|e| e.into_inner())
            .token_requests
            .push(body);
        Json(json!({"access_token": "ya29.fresh", "expires_in": 3599, "token_type": "Bearer"}))
    };
    let reviews = |State(s): State<Arc<Mutex<GoogleState>>>,
                   Path((account, location)): Path<(String, String)>,
                   Query(q): Query<HashMap<String, String>>,
                   headers: HeaderMap| async move {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        s.lock()
            .unwrap_or_else(|e| e.into_inner())
            .review_requests
            .push((auth, q.get("pageToken").cloned()));
        assert_eq!((account.as_str(), location.as_str()), ("111", "222"));
        let page = match q.get("pageToken").map(String::as_str) {
            None => json!({
                "reviews": [
                    {"reviewId": "g-1", "starRating": "FIVE", "comment": "Spotless!",
                     "reviewer": {"displayName": "Pat"}},
                    {"reviewId": "g-2", "starRating": "THREE"}
                ],
                "nextPageToken": "p2"
            }),
            _ => json!({"reviews": [{"reviewId": "g-3", "starRating": "FOUR", "comment": "Good"}]}),
        };
        Json(page)
    };
    let app = Router::new()
        .route("/token", post(token))
        .route(
            "/v4/accounts/{account}/locations/{location}/reviews",
            get(reviews),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (state, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn google_reviews_are_read_page_by_page_with_a_refreshed_token_and_imported_once() {
    use commands::domain::ports::{FixedClock, RandomIds};
    use worker::outbox::google_reviews::{GoogleBusinessReviews, GoogleReviewsConfig};
    use worker::scheduler::{GoogleReviews, JobName, Scheduler, SchedulerOptions};

    let (google, base) = google_stand_in().await;
    let adapter = GoogleBusinessReviews::new(
        GoogleReviewsConfig {
            api_base: base.clone(),
            token_url: format!("{base}/token"),
            account_id: "111".into(),
            location_id: "222".into(),
            client_id: "client-1".into(),
            client_secret: Secret::new("client-secret"),
            refresh_token: Secret::new("refresh-1"),
        },
        Duration::from_secs(5),
    )
    .expect("client");
    let reviews = adapter
        .recent_reviews()
        .await
        .expect("reviews")
        .expect("configured");
    assert_eq!(
        reviews
            .iter()
            .map(|r| (r.external_id.as_str(), r.rating))
            .collect::<Vec<_>>(),
        vec![("g-1", 5), ("g-2", 3), ("g-3", 4)]
    );
    {
        let g = google.lock().unwrap_or_else(|e| e.into_inner());
        let token_form = form_urlencoded(&g.token_requests[0]);
        assert_eq!(
            token_form.get("grant_type").map(String::as_str),
            Some("refresh_token")
        );
        assert_eq!(
            token_form.get("refresh_token").map(String::as_str),
            Some("refresh-1")
        );
        assert_eq!(
            g.review_requests,
            vec![
                (Some("Bearer ya29.fresh".into()), None),
                (Some("Bearer ya29.fresh".into()), Some("p2".into())),
            ]
        );
    }

    // Through the sync-google-reviews job: imported once, however often it runs.
    let db = TestDb::new(Engine::Sqlite).await;
    let log = db.log().await;
    let start = chrono::TimeZone::with_ymd_and_hms(&TZ, 2026, 7, 2, 2, 0, 0)
        .single()
        .expect("time")
        .with_timezone(&Utc);
    let clock = Arc::new(FixedClock::new(start));
    let services = DomainServices {
        clock: Arc::clone(&clock) as _,
        ids: Arc::new(RandomIds),
        tz: TZ,
        loyalty: LoyaltyRules::default(),
    };
    let crm = Crm::new(log.clone(), services);
    let projections = projections::ProjectionRunner::new(log.clone(), TZ);
    projections.prepare().await.expect("read models");
    let scheduler = Scheduler::new(crm.clone(), projections, SchedulerOptions::default())
        .with_google_reviews(Arc::new(adapter));
    let run = scheduler
        .tick_only(&[JobName::SyncGoogleReviews])
        .await
        .expect("tick");
    assert_eq!((run[0].status, run[0].counts.changed), ("finished", 3));
    clock.set(start + chrono::Duration::days(1));
    let run = scheduler
        .tick_only(&[JobName::SyncGoogleReviews])
        .await
        .expect("tick");
    assert_eq!((run[0].counts.changed, run[0].counts.skipped), (0, 3));
}
