//! `GET /metrics` (issue #15), against the server process on both engines: after a short
//! business flow — a booking, a command the rules refuse, a webhook (with its duplicate and
//! a forged copy), a cron run — the scrape parses as Prometheus text and each counter moved
//! by exactly what the flow did (read before and after); the main port wants
//! `METRICS_TOKEN`, `METRICS_ADDR` serves it without one, and with neither it is 404.

use std::collections::BTreeSet;
use std::time::Duration;

use api::webhooks::signature::signing;
use chrono::Utc;
use prometheus_parse::{LineInfo, Sample, Scrape, Value as Metric};
use serde_json::{json, Value};
use tests::app::{data, text, TestApp};
use tests::{Engine, ServerProcess, TestDb};
use worker::scheduler::{JobName, Schedule};

const METRICS_TOKEN: &str = "metrics-token-for-the-scrape-test-7a1e2c";
const CRON_SECRET: &str = "cron-secret-for-the-metrics-test-0b9d4f";
const STRIPE_SECRET: &str = "whsec_metrics_test_secret";
const CUSTOMER_EMAIL: &str = "grace.hopper@example.com";
const CUSTOMER_PHONE: &str = "+15125550177";

/// A free port on loopback (bound, then let go for the server to take).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// `GET {url}` with an optional bearer token: (status, body).
async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("send");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// One parsed scrape.
struct Metrics {
    text: String,
    samples: Vec<Sample>,
}

impl Metrics {
    /// Parses `text` as Prometheus would (panics when it does not parse, or when the parser
    /// would skip a sample line: it drops what it cannot read without a word).
    fn parse(text: String) -> Self {
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            assert!(
                matches!(LineInfo::parse(line), LineInfo::Sample { .. }),
                "not a sample line: {line}"
            );
        }
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = Scrape::parse(lines).expect("the Prometheus text format");
        Metrics {
            text,
            samples: scrape.samples,
        }
    }

    /// The sum of `name`'s samples whose labels include `labels` (0 when there is none, as
    /// for a counter never incremented). A histogram counts its observations (`_count`).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
                Metric::Histogram(_) | Metric::Summary(_) => 0.0,
            })
            .sum()
    }

    /// Every value of label `label` on `name`'s samples.
    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| s.labels.get(label).map(str::to_string))
            .collect()
    }
}

/// Scrapes the main port with the token.
async fn scrape(app: &TestApp) -> Metrics {
    let (status, body) = get(&format!("{}/metrics", app.server.base), Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    Metrics::parse(body)
}

/// A signed Stripe delivery of an event type the CRM ignores (it still goes through the
/// ledger: recorded, then answered `processed`, and a redelivery `duplicate`).
async fn post_stripe(base: &str, event_id: &str, secret: &str) -> (u16, Value) {
    let body = serde_json::to_vec(&json!({
        "id": event_id, "object": "event", "type": "charge.refunded",
        "data": { "object": { "id": "ch_metrics" } },
    }))
    .expect("json");
    let r = reqwest::Client::new()
        .post(format!("{base}/api/webhooks/stripe"))
        .header("content-type", "application/json")
        .header(
            "stripe-signature",
            signing::stripe_header(secret, Utc::now().timestamp(), &body),
        )
        .body(body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits (up to a minute) until the scheduler has run every job's latest slot of the last
/// day: the start-up catch-up runs them in the background, and its commands must not fall
/// between the two scrapes.
async fn wait_for_the_scheduler(base: &str) {
    let tz = api::Config::defaults().business_timezone;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = get(&format!("{base}/api/health/detailed"), None).await;
        let detail: Value = serde_json::from_str(&body).expect("json");
        let now = Utc::now();
        let mut pending = Vec::new();
        for job in detail["scheduler"]["jobs"].as_array().expect("jobs") {
            let name = job["job"].as_str().expect("job name");
            let parsed: JobName = name.parse().expect("a job");
            let slot = Schedule::of(parsed, tz)
                .latest_at_or_before(now)
                .expect("slot");
            let ran = job["lastRun"]["slot"]
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .is_some_and(|s| s >= slot)
                && !job["lastRun"]["endedAt"].is_null();
            if now - slot <= chrono::Duration::hours(24) && !ran {
                pending.push(name.to_string());
            }
        }
        if pending.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduler did not catch up: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `(before, after, labels)` of a counter that must have moved by exactly `by`.
fn assert_moved(before: &Metrics, after: &Metrics, name: &str, labels: &[(&str, &str)], by: f64) {
    let (b, a) = (before.value(name, labels), after.value(name, labels));
    assert_eq!(
        a - b,
        by,
        "{name}{labels:?} went from {b} to {a}, expected +{by}\n--- after:\n{}",
        after.text
    );
}

async fn the_counters_move_by_what_a_business_flow_did(engine: Engine) {
    let db = TestDb::new(engine).await;
    let metrics_addr = free_addr();
    let app = TestApp::start_with(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &db.url,
        &[
            ("METRICS_TOKEN", METRICS_TOKEN),
            ("METRICS_ADDR", &metrics_addr),
            ("CRON_SECRET", CRON_SECRET),
            ("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET),
            ("RUST_LOG", "warn"),
        ],
    )
    .await;
    let base = app.server.base.clone();
    let admin = app.login_admin().await;
    let c = app
        .gql(
            Some(&admin),
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } position } }",
            json!({"i": {"name": "Grace Hopper", "email": CUSTOMER_EMAIL, "phone": CUSTOMER_PHONE}}),
        )
        .await;
    let customer = text(&c, "/data/createCustomer/customer/id");
    app.sync(&admin, &text(&c, "/data/createCustomer/position"))
        .await;
    tests::health::assert_no_failures(&base).await;
    wait_for_the_scheduler(&base).await;

    let before = scrape(&app).await;

    // A booking (no window: the job is booked, not scheduled).
    let booked = app
        .gql(
            Some(&admin),
            "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id } position } }",
            json!({"i": {"customerId": customer, "services": ["carpet cleaning"]}}),
        )
        .await;
    let job = text(&booked, "/data/bookJob/job/id");
    // A command the rules refuse: an unscheduled job cannot start.
    let refused = app
        .gql(
            Some(&admin),
            "mutation($i: StartJobInput!) { go: startJob(input: $i) { position } }",
            json!({"i": {"jobId": job}}),
        )
        .await;
    assert_eq!(
        refused.pointer("/errors/0/extensions/code"),
        Some(&json!("RULE_VIOLATION")),
        "{refused}"
    );
    // A query that is not valid GraphQL for this schema never reaches a root field.
    let invalid = app.gql(Some(&admin), "{ noSuchField }", json!({})).await;
    assert!(invalid.get("errors").is_some(), "{invalid}");
    // A webhook, its redelivery, and a forged copy.
    let (status, body) = post_stripe(&base, "evt_metrics_1", STRIPE_SECRET).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("processed")),
        "{body}"
    );
    let (status, body) = post_stripe(&base, "evt_metrics_1", STRIPE_SECRET).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("duplicate")),
        "{body}"
    );
    let (status, _) = post_stripe(&base, "evt_metrics_2", "whsec_forged").await;
    assert_eq!(status, 401);
    // A cron run.
    let run = reqwest::Client::new()
        .post(format!("{base}/api/cron/execute/cleanup-expired-sessions"))
        .bearer_auth(CRON_SECRET)
        .send()
        .await
        .expect("send");
    assert_eq!(run.status().as_u16(), 200);
    let run: Value = run.json().await.expect("json");
    assert_eq!(run["status"], "finished", "{run}");
    // Wait for the read side, so that no policy is still acting on the flow.
    app.sync(&admin, &text(&booked, "/data/bookJob/position"))
        .await;
    tests::health::assert_no_failures(&base).await;

    // Refused scrapes: no token, a wrong one.
    let url = format!("{base}/metrics");
    assert_eq!(get(&url, None).await.0, 401);
    let wrong = format!("{}x", &METRICS_TOKEN[..METRICS_TOKEN.len() - 1]);
    assert_eq!(get(&url, Some(&wrong)).await.0, 401);

    let after = scrape(&app).await;
    let moved = |name: &str, labels: &[(&str, &str)], by: f64| {
        assert_moved(&before, &after, name, labels, by)
    };
    // GraphQL: by root field as the schema names it (the alias `go` is not a label).
    moved(
        "dirtfree_graphql_operations_total",
        &[("field", "bookJob"), ("outcome", "ok")],
        1.0,
    );
    moved(
        "dirtfree_graphql_operations_total",
        &[("field", "startJob"), ("outcome", "error")],
        1.0,
    );
    moved(
        "dirtfree_graphql_operations_total",
        &[("field", "(invalid)"), ("outcome", "error")],
        1.0,
    );
    // The read-your-writes wait after the flow (the one before the first scrape is not).
    moved(
        "dirtfree_graphql_operations_total",
        &[("field", "sync"), ("outcome", "ok")],
        1.0,
    );
    moved(
        "dirtfree_graphql_operation_duration_seconds_count",
        &[("field", "bookJob"), ("outcome", "ok")],
        1.0,
    );
    // Commands: the booking, the refusal, the run's start and finish.
    moved(
        "dirtfree_commands_total",
        &[("aggregate", "Job"), ("outcome", "ok")],
        1.0,
    );
    moved(
        "dirtfree_commands_total",
        &[("aggregate", "Job"), ("outcome", "rejected")],
        1.0,
    );
    // A job run is a start and a finish. Normally only the manual run falls between the
    // scrapes, but a slot may come due meanwhile (one job runs every 15 minutes): the
    // scheduler's runs are counted with theirs.
    let runs =
        |m: &Metrics, status: &str| m.value("dirtfree_cron_runs_total", &[("status", status)]);
    assert_eq!(
        runs(&after, "failed"),
        runs(&before, "failed"),
        "a job failed"
    );
    let finished = runs(&after, "finished") - runs(&before, "finished");
    assert!(finished >= 1.0);
    moved(
        "dirtfree_commands_total",
        &[("aggregate", "JobRun"), ("outcome", "ok")],
        2.0 * finished,
    );
    moved(
        "dirtfree_command_duration_seconds_count",
        &[("aggregate", "Job"), ("outcome", "rejected")],
        1.0,
    );
    moved(
        "dirtfree_events_appended_total",
        &[("aggregate", "Job")],
        1.0,
    );
    moved(
        "dirtfree_events_appended_total",
        &[("aggregate", "JobRun")],
        2.0 * finished,
    );
    // Webhooks, by vendor and result.
    for (result, by) in [
        ("processed", 1.0),
        ("duplicate", 1.0),
        ("invalid_signature", 1.0),
    ] {
        moved(
            "dirtfree_webhook_deliveries_total",
            &[("vendor", "stripe"), ("result", result)],
            by,
        );
    }
    // The cron run.
    let manual = [
        ("job", "cleanup-expired-sessions"),
        ("trigger", "manual"),
        ("status", "finished"),
    ];
    moved("dirtfree_cron_runs_total", &manual, 1.0);
    moved("dirtfree_cron_run_duration_seconds_count", &manual, 1.0);
    // HTTP, by route template: 4 GraphQL posts (book, start, invalid, sync), the webhooks,
    // the cron trigger, the first scrape (counted once answered) and the two refusals.
    fn http<'a>(route: &'a str, method: &'a str, status: &'a str) -> [(&'static str, &'a str); 3] {
        [("route", route), ("method", method), ("status", status)]
    }
    moved(
        "dirtfree_http_requests_total",
        &http("/graphql", "POST", "200"),
        4.0,
    );
    moved(
        "dirtfree_http_requests_total",
        &http("/api/webhooks/stripe", "POST", "200"),
        2.0,
    );
    moved(
        "dirtfree_http_requests_total",
        &http("/api/webhooks/stripe", "POST", "401"),
        1.0,
    );
    moved(
        "dirtfree_http_requests_total",
        &http("/api/cron/execute/:job", "POST", "200"),
        1.0,
    );
    moved(
        "dirtfree_http_requests_total",
        &http("/metrics", "GET", "200"),
        1.0,
    );
    moved(
        "dirtfree_http_requests_total",
        &http("/metrics", "GET", "401"),
        2.0,
    );
    moved(
        "dirtfree_http_request_duration_seconds_count",
        &http("/graphql", "POST", "200"),
        4.0,
    );

    // Gauges read at scrape time: every projection and policy caught up, pools, outbox.
    let projections = after.label_values("dirtfree_projection_lag_events", "projection");
    assert!(projections.contains("customers"), "{projections:?}");
    assert!(projections.contains("jobs"), "{projections:?}");
    assert_eq!(after.value("dirtfree_projection_lag_events", &[]), 0.0);
    assert_eq!(after.value("dirtfree_projection_lag_seconds", &[]), 0.0);
    assert!(!after
        .label_values("dirtfree_policy_lag_events", "policy")
        .is_empty());
    assert_eq!(after.value("dirtfree_policy_lag_events", &[]), 0.0);
    let pools = after.label_values("dirtfree_db_pool_connections_open", "pool");
    let expected: &[&str] = match engine {
        Engine::Postgres => &["main"],
        Engine::Sqlite => &["reader", "writer"],
    };
    assert_eq!(
        pools.iter().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
    assert!(after.text.contains("dirtfree_db_pool_connections_in_use{"));
    assert!(after.text.contains("dirtfree_outbox_oldest_due_seconds "));

    // No label carries personal data, an id or a secret; routes are templates.
    for secret in [
        CUSTOMER_EMAIL,
        CUSTOMER_PHONE,
        "Grace",
        &customer,
        &job,
        METRICS_TOKEN,
        CRON_SECRET,
        "evt_metrics",
    ] {
        assert!(!after.text.contains(secret), "/metrics shows {secret:?}");
    }
    for route in after.label_values("dirtfree_http_requests_total", "route") {
        assert!(
            route == "unmatched" || !route.chars().any(|c| c.is_ascii_digit()),
            "a raw path as a route label: {route}"
        );
    }

    // METRICS_ADDR serves the same without a token, and nothing else.
    let (status, body) = get(&format!("http://{metrics_addr}/metrics"), None).await;
    assert_eq!(status, 200, "{body}");
    let separate = Metrics::parse(body);
    assert!(separate.value("dirtfree_commands_total", &[("aggregate", "Job")]) >= 2.0);
    let (status, _) = get(&format!("http://{metrics_addr}/api/health"), None).await;
    assert_eq!(status, 404);
    tests::health::assert_no_failures(&base).await;
}

tests::on_both_engines!(the_counters_move_by_what_a_business_flow_did);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_or_an_address_metrics_are_off_and_404() {
    let db = TestDb::new(Engine::Sqlite).await;
    let s = ServerProcess::start_hermetic(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("DEMO_SEED", "off"),
            ("RUST_LOG", "warn"),
        ],
        Duration::from_secs(120),
    )
    .await;
    let (status, _) = get(&format!("{}/metrics", s.base), Some(METRICS_TOKEN)).await;
    assert_eq!(status, 404);
    let (status, body) = get(&format!("{}/api/health/detailed", s.base), None).await;
    assert_eq!(status, 200, "{body}");
    let detail: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(data(&detail, "/metrics/status"), "off", "{detail}");
}
