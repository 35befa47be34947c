//! Error reporting (issue #15) against a local stand-in for Sentry's ingest endpoint
//! (`SENTRY_DSN` pointing at 127.0.0.1): a panic inside a request and an error-level event
//! arrive with the release and the request's id, and without the customer's email or phone
//! that the error's text carried; the panicking request answers 500 `INTERNAL`; health
//! calls Sentry configured only because a client really sends.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::app::{text, TestApp};
use tests::standins::SentryIngest as Ingest;
use tests::{Engine, TestDb};

const EMAIL: &str = "jane.doe@example.com";
const PHONE: &str = "+15125550123";

async fn report(app: &TestApp, token: &str, kind: &str) -> (u16, String, Value) {
    let r = reqwest::Client::new()
        .post(&app.server.url)
        .bearer_auth(token)
        .json(&json!({
            "query": "mutation($k: TestErrorKind!, $n: String) { reportTestError(kind: $k, note: $n) { reported requestId } }",
            "variables": {"k": kind, "n": format!("customer {EMAIL} at {PHONE} called")},
        }))
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let id = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, id, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_panic_and_an_error_reach_sentry_with_release_and_request_id_and_no_personal_data() {
    let (ingest, dsn) = Ingest::start().await;
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::start_with(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &db.url,
        &[("SENTRY_DSN", dsn.as_str())],
    )
    .await;
    let token = app.login_admin().await;
    let created = app
        .gql(
            Some(&token),
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { position } }",
            json!({"i": {"name": "Jane Doe", "email": EMAIL, "phone": PHONE}}),
        )
        .await;
    text(&created, "/data/createCustomer/position");

    let (panic_status, panic_id, panic_body) = report(&app, &token, "PANIC").await;
    assert_eq!(panic_status, 500, "{panic_body}");
    assert_eq!(panic_body["errors"][0]["extensions"]["code"], "INTERNAL");
    let (error_status, error_id, error_body) = report(&app, &token, "ERROR").await;
    assert_eq!(error_status, 200, "{error_body}");
    assert_eq!(error_body["data"]["reportTestError"]["reported"], true);
    assert_eq!(error_body["data"]["reportTestError"]["requestId"], error_id);
    // The server still serves after the panic.
    let health: Value = reqwest::get(format!("{}/api/health/detailed", app.server.base))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(
        health["integrations"]["sentry"]["status"], "configured",
        "{health}"
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    let tagged = |id: &str| {
        ingest
            .events()
            .iter()
            .any(|e| e["tags"]["request_id"] == id)
    };
    while !(tagged(&panic_id) && tagged(&error_id)) {
        assert!(
            Instant::now() < deadline,
            "events did not arrive: {:?}",
            ingest.bodies()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let version: Value = reqwest::get(format!("{}/api/version", app.server.base))
        .await
        .expect("version")
        .json()
        .await
        .expect("json");
    let release = format!(
        "dirtfree-crm@{}+{}",
        version["version"].as_str().unwrap_or_default(),
        version["build"].as_str().unwrap_or_default()
    );
    let events = ingest.events();
    let with_id = |id: &str| {
        events
            .iter()
            .find(|e| e["tags"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no event tagged {id}: {events:?}"))
    };
    let panicked = with_id(&panic_id);
    assert_eq!(panicked["release"], release.as_str());
    assert_eq!(
        panicked["exception"]["values"][0]["mechanism"]["type"], "panic",
        "{panicked}"
    );
    assert!(
        panicked
            .to_string()
            .contains("test panic requested by an admin"),
        "{panicked}"
    );
    let logged = with_id(&error_id);
    assert_eq!(logged["release"], release.as_str());
    // Sentry's protocol leaves `level` out when it is the default, `error`.
    assert_eq!(
        logged["level"].as_str().unwrap_or("error"),
        "error",
        "{logged}"
    );
    assert!(
        logged
            .to_string()
            .contains("test error requested by an admin"),
        "{logged}"
    );
    for body in ingest.bodies() {
        for secret in [EMAIL, "5125550123"] {
            assert!(!body.contains(secret), "{secret} reached Sentry: {body}");
        }
    }
}
