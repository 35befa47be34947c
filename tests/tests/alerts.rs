//! Alerts (issue #15), against the server process with local stand-ins for Sentry, Resend
//! and Google's review API: a scheduled job that fails three attempts in a row is announced
//! once — one Sentry event and one email to `ALERT_EMAIL` — however often it fails again
//! while the incident lasts; when the job succeeds the recovery is announced once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::app::TestApp;
use tests::standins::{Mailbox, SentryIngest};
use tests::{Engine, TestDb};

const CRON_SECRET: &str = "alerts-test-cron-secret-0123456789abcdef";
const ALERT_EMAIL: &str = "owner-alerts@dirtfree.example";
const JOB: &str = "sync-google-reviews";

/// Google's token and reviews endpoints; failing (HTTP 503) until told otherwise.
async fn google() -> (Arc<AtomicBool>, String) {
    let failing = Arc::new(AtomicBool::new(true));
    let f = Arc::clone(&failing);
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(move || {
                let failing = f.load(Ordering::SeqCst);
                async move {
                    if failing {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            axum::Json(json!({"error": "down"})),
                        )
                    } else {
                        (
                            axum::http::StatusCode::OK,
                            axum::Json(json!({"access_token": "t", "expires_in": 3600})),
                        )
                    }
                }
            }),
        )
        .route(
            "/v4/accounts/{account}/locations/{location}/reviews",
            axum::routing::get(|| async { axum::Json(json!({"reviews": []})) }),
        );
    let base = format!("http://{}", tests::standins::serve(app).await);
    (failing, base)
}

/// Runs the job by hand; while a run (the start-up's catch-up of a missed slot, say) is in
/// progress the trigger answers 409 `JOB_RUNNING`, and it is asked again.
async fn run_job(app: &TestApp) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/api/cron/execute/{JOB}", app.server.base))
            .bearer_auth(CRON_SECRET)
            .send()
            .await
            .expect("cron")
            .json()
            .await
            .expect("json");
        if answer["error"]["code"] != "JOB_RUNNING" {
            return answer;
        }
        assert!(Instant::now() < deadline, "the job stayed busy: {answer}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn alerts_of(ingest: &SentryIngest, incident: &str) -> Vec<Value> {
    ingest
        .events()
        .into_iter()
        .filter(|e| e["tags"]["alert"] == incident)
        .collect()
}

fn emails_to(mailbox: &Mailbox, to: &str) -> Vec<Value> {
    mailbox
        .sent()
        .into_iter()
        .filter(|m| m["to"][0] == to)
        .collect()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn postgres_a_job_failing_again_and_again_is_announced_once_and_its_recovery_once() {
    a_job_failing_again_and_again_is_announced_once_and_its_recovery_once(Engine::Postgres).await;
}

#[tokio::test]
async fn sqlite_a_job_failing_again_and_again_is_announced_once_and_its_recovery_once() {
    a_job_failing_again_and_again_is_announced_once_and_its_recovery_once(Engine::Sqlite).await;
}

async fn a_job_failing_again_and_again_is_announced_once_and_its_recovery_once(engine: Engine) {
    let (ingest, dsn) = SentryIngest::start().await;
    let (mailbox, resend) = Mailbox::start().await;
    let (failing, google) = google().await;
    let token_url = format!("{google}/token");
    let db = TestDb::new(engine).await;
    let app = TestApp::start_with(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &db.url,
        &[
            ("SENTRY_DSN", dsn.as_str()),
            ("ALERT_EMAIL", ALERT_EMAIL),
            ("CRON_SECRET", CRON_SECRET),
            ("RESEND_API_KEY", "re_test_key"),
            ("RESEND_FROM_EMAIL", "Dirt Free <hello@dirtfree.example>"),
            ("RESEND_API_BASE", resend.as_str()),
            ("GOOGLE_REVIEWS_API_BASE", google.as_str()),
            ("GOOGLE_OAUTH_TOKEN_URL", token_url.as_str()),
            ("GOOGLE_BUSINESS_ACCOUNT_ID", "acct"),
            ("GOOGLE_BUSINESS_LOCATION_ID", "loc"),
            ("GOOGLE_OAUTH_CLIENT_ID", "client"),
            ("GOOGLE_OAUTH_CLIENT_SECRET", "client-secret"),
            ("GOOGLE_OAUTH_REFRESH_TOKEN", "refresh"),
        ],
    )
    .await;
    let incident = format!("job:{JOB}");

    // Three attempts fail: one run failed for good, one incident.
    let first = run_job(&app).await;
    assert_eq!(first["status"], "failed", "{first}");
    wait_until("the alert", || !alerts_of(&ingest, &incident).is_empty()).await;
    wait_until("the alert email", || {
        !emails_to(&mailbox, ALERT_EMAIL).is_empty()
    })
    .await;
    // It fails again while the incident is open: nothing new is announced.
    let second = run_job(&app).await;
    assert_eq!(second["status"], "failed", "{second}");
    tokio::time::sleep(worker::alerts::CHECK_EVERY * 3).await;
    let raised = alerts_of(&ingest, &incident);
    assert_eq!(raised.len(), 1, "one alert per incident: {raised:?}");
    assert_eq!(raised[0]["level"].as_str().unwrap_or("error"), "error");
    assert_eq!(
        raised[0]["message"],
        format!("Alert: job {JOB} failed after 3 attempt(s)")
    );
    let emails = emails_to(&mailbox, ALERT_EMAIL);
    assert_eq!(emails.len(), 1, "one alert email per incident: {emails:?}");
    assert_eq!(
        emails[0]["subject"],
        format!("Alert: job {JOB} failed after 3 attempt(s)")
    );

    // Google answers again: the next run finishes and the recovery is announced once.
    failing.store(false, Ordering::SeqCst);
    let third = run_job(&app).await;
    assert_eq!(third["status"], "finished", "{third}");
    wait_until("the recovery", || alerts_of(&ingest, &incident).len() == 2).await;
    wait_until("the recovery email", || {
        emails_to(&mailbox, ALERT_EMAIL).len() == 2
    })
    .await;
    tokio::time::sleep(worker::alerts::CHECK_EVERY * 2).await;
    let all = alerts_of(&ingest, &incident);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1]["level"], "info");
    assert!(
        all[1]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Resolved: job"),
        "{}",
        all[1]
    );
    let emails = emails_to(&mailbox, ALERT_EMAIL);
    assert_eq!(emails.len(), 2, "{emails:?}");
    assert!(
        emails[1]["subject"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Resolved: job"),
        "{}",
        emails[1]
    );
}
