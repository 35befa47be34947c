//! Who may read `/api/health/detailed` (issue #14), over HTTP against the server process on
//! both engines: the liveness check answers anyone; the detail (build, integrations, internal
//! error strings) answers a client on the server's own machine, or one holding
//! `METRICS_TOKEN`, and anyone else gets 401 with a JSON error. The tests run on loopback,
//! so a client elsewhere is played through a trusted proxy (`TRUSTED_PROXIES=127.0.0.1` and
//! `X-Forwarded-For`), as docs/operations.md ("Health") describes.

use std::time::Duration;

use serde_json::Value;
use tests::{Engine, ServerProcess, TestDb};

const METRICS_TOKEN: &str = "metrics-token-for-the-health-detail-2f9c";
/// A client beyond the server's machine, as the trusted proxy reports it.
const REMOTE: &str = "203.0.113.7";

async fn start(db: &TestDb, envs: &[(&str, &str)]) -> ServerProcess {
    let mut all = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("DEMO_SEED", "off"),
        ("RUST_LOG", "warn"),
    ];
    all.extend_from_slice(envs);
    ServerProcess::start_hermetic(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &all,
        Duration::from_secs(120),
    )
    .await
}

/// `GET {path}` with the given headers: (status, `WWW-Authenticate`, JSON body).
async fn get(s: &ServerProcess, path: &str, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", s.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("send");
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("GET {path} answered {status} without JSON: {text}"));
    (status, challenge, body)
}

/// A 401 that tells nothing of the server but how to get in.
fn assert_refused(answer: &(u16, String, Value), what: &str) {
    let (status, challenge, body) = answer;
    assert_eq!(*status, 401, "{what}: {body}");
    assert_eq!(challenge, "Bearer", "{what}");
    assert_eq!(body["error"]["code"], "UNAUTHENTICATED", "{what}: {body}");
    let text = body.to_string();
    for detail in [
        "integrations",
        "build",
        "projections",
        "database",
        "version",
    ] {
        assert!(!text.contains(&format!("\"{detail}\"")), "{what}: {body}");
    }
}

/// The full detail.
fn assert_detail(answer: &(u16, String, Value), what: &str) {
    let (status, _, body) = answer;
    assert_eq!(*status, 200, "{what}: {body}");
    for detail in ["integrations", "build", "projections", "eventStore"] {
        assert!(!body[detail].is_null(), "{what}: no {detail} in {body}");
    }
}

async fn the_health_detail_answers_this_machine_or_the_metrics_token_only(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(
        &db,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("METRICS_TOKEN", METRICS_TOKEN),
        ],
    )
    .await;
    let remote = ("x-forwarded-for", REMOTE);
    let bearer = format!("Bearer {METRICS_TOKEN}");

    // Liveness stays open to anyone.
    let (status, _, body) = get(&s, "/api/health", &[remote]).await;
    assert_eq!((status, &body["status"]), (200, &Value::from("ok")));

    // A client elsewhere: refused without the token, or with a wrong one.
    assert_refused(
        &get(&s, "/api/health/detailed", &[remote]).await,
        "no token",
    );
    let wrong = format!("Bearer {}x", &METRICS_TOKEN[..METRICS_TOKEN.len() - 1]);
    assert_refused(
        &get(
            &s,
            "/api/health/detailed",
            &[remote, ("authorization", &wrong)],
        )
        .await,
        "a wrong token",
    );
    // Claiming to be local through the proxy does not help: the proxy appends the real one.
    assert_refused(
        &get(
            &s,
            "/api/health/detailed",
            &[("x-forwarded-for", "127.0.0.1, 203.0.113.7")],
        )
        .await,
        "a forged loopback entry",
    );
    // The token opens it from anywhere.
    assert_detail(
        &get(
            &s,
            "/api/health/detailed",
            &[remote, ("authorization", &bearer)],
        )
        .await,
        "the metrics token",
    );
    // The proxy's own machine (no one forwarded for): this machine.
    assert_detail(&get(&s, "/api/health/detailed", &[]).await, "loopback");
    tests::health::assert_no_failures(&s.base).await;
}

async fn a_proxy_on_this_machine_that_is_not_trusted_does_not_make_its_clients_local(
    engine: Engine,
) {
    let db = TestDb::new(engine).await;
    // No TRUSTED_PROXIES and no METRICS_TOKEN: only this machine itself reads the detail.
    let s = start(&db, &[]).await;
    for header in ["x-forwarded-for", "forwarded", "x-real-ip"] {
        let value = if header == "forwarded" {
            "for=203.0.113.7"
        } else {
            REMOTE
        };
        assert_refused(
            &get(&s, "/api/health/detailed", &[(header, value)]).await,
            header,
        );
    }
    // Without a token configured, no bearer opens it.
    let bearer = format!("Bearer {METRICS_TOKEN}");
    assert_refused(
        &get(
            &s,
            "/api/health/detailed",
            &[("x-forwarded-for", REMOTE), ("authorization", &bearer)],
        )
        .await,
        "a token when none is configured",
    );
    assert_detail(&get(&s, "/api/health/detailed", &[]).await, "loopback");
    tests::health::assert_no_failures(&s.base).await;
}

tests::on_both_engines!(
    the_health_detail_answers_this_machine_or_the_metrics_token_only,
    a_proxy_on_this_machine_that_is_not_trusted_does_not_make_its_clients_local,
);
