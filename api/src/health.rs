//! Health and version endpoints for load balancers, monitoring and rollback checks.
//!
//! `/api/health` (liveness) and `/api/version` answer anyone. `/api/health/detailed` names
//! the build, the configured integrations and internal error strings, so it answers in full
//! only to a client holding `METRICS_TOKEN` or one on this machine ([`may_read_detail`]);
//! anyone else gets 401.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::state::{AppState, BUILD, VERSION};

/// Headers with which a reverse proxy tells whom it forwards for.
const FORWARDING: [&str; 3] = ["x-forwarded-for", "forwarded", "x-real-ip"];

/// Whether a request may read the health detail: it carries `Authorization: Bearer
/// <METRICS_TOKEN>` (when one is configured), or its client is this machine.
///
/// The client is the request's address after the `TRUSTED_PROXIES` rule (as for sign-in
/// limits and the audit trail), and it is this machine when that address is loopback. A
/// loopback peer that is *not* a trusted proxy but forwards for someone is a proxy nobody
/// listed, on this machine: every client behind it would look local, so it does not count.
pub fn may_read_detail(config: &Config, peer: IpAddr, headers: &HeaderMap) -> bool {
    if let Some(token) = &config.metrics_token {
        if bearer_matches(headers, token.expose()) {
            return true;
        }
    }
    let trusted = &config.trusted_proxies;
    if !trusted.contains(&peer) && FORWARDING.iter().any(|h| headers.contains_key(*h)) {
        return false;
    }
    let forwarded_for = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    crate::graphql::client_ip(peer, forwarded_for, trusted)
        .to_canonical()
        .is_loopback()
}

/// The bearer token equals `secret`. Both are hashed first, so the comparison takes the same
/// time whatever the secret's length and content.
pub(crate) fn bearer_matches(headers: &HeaderMap, secret: &str) -> bool {
    use sha2::{Digest, Sha256};
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(secret.as_bytes());
    !presented.is_empty() && bool::from(a.ct_eq(&b))
}

/// 401 for a client that may not read the health detail (the liveness check stays open).
fn detail_refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({ "error": {
            "code": "UNAUTHENTICATED",
            "message": "the health detail needs Authorization: Bearer <METRICS_TOKEN>, or a client on the server's own machine; GET /api/health is open",
        } })),
    )
        .into_response()
}

/// `GET /api/health`: the process is up and serving.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /api/health/ready` once started: 200 while the store answers (migrations ran,
/// the first admin and the demo are in place, the workers run), 503 when it does not. A
/// load balancer sends traffic only to a ready instance.
pub async fn ready(State(state): State<AppState>) -> Response {
    match state.log.ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "reason": "the database does not answer" })),
            )
                .into_response()
        }
    }
}

/// Every route but liveness while the server starts (migrations, first admin, demo): 503
/// `starting`, so a load balancer or client waits rather than meeting a half-made server.
pub async fn starting() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(json!({ "status": "starting",
            "error": { "code": "STARTING", "message": "the server is starting; try again in a moment" } })),
    )
        .into_response()
}

/// `GET /api/version`.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": VERSION, "build": BUILD }))
}

/// Outbound messages by status, and how late (ms) the oldest due one is: the figures of the
/// health detail and of the metrics scrape.
pub(crate) async fn outbox_counts(
    state: &AppState,
) -> Result<(Vec<(String, i64)>, Option<i64>), commands::StoreError> {
    worker::outbox::index::counts(&state.log, chrono::Utc::now()).await
}

/// Outbound messages by status, and how late the oldest due one is.
async fn outbox_summary(state: &AppState) -> Result<Value, String> {
    let (counts, overdue_ms) = outbox_counts(state).await.map_err(|e| e.to_string())?;
    let by_status: serde_json::Map<String, Value> =
        counts.into_iter().map(|(s, n)| (s, json!(n))).collect();
    let unknown = worker::outbox::uncertain_sends(&state.projections)
        .await
        .map_err(|e| e.to_string())?;
    Ok(
        json!({ "messages": by_status, "oldestDueOverdueMs": overdue_ms, "outcomeUnknown": unknown }),
    )
}

/// `GET /api/health/detailed`: each dependency's state. `"status"` is `ok`,
/// or `degraded` with `reasons` when a projection failed or parked events, or
/// a policy failed: the instance still serves (200), so one bad event never
/// takes every instance out of a load balancer. 503 only when the database
/// does not answer. 401 for a client [`may_read_detail`] refuses.
pub async fn detailed(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !may_read_detail(&state.config, peer.ip(), &headers) {
        return detail_refused();
    }
    let db = state.log.ping().await;
    let head = state.log.head().await;
    let projections = state.projections.status().await;
    let policies = state.policies.status();
    let scheduler = crate::scheduler::status(&state).await;
    let outbox = outbox_summary(&state).await;
    let reachable = db.is_ok() && head.is_ok();
    let mut reasons: Vec<String> = Vec::new();
    match &projections {
        Ok(list) => {
            for s in list {
                if s.state == "failed" {
                    reasons.push(format!(
                        "projection {} failed at {}",
                        s.name,
                        s.error_position.as_deref().unwrap_or("?")
                    ));
                }
                if s.parked > 0 {
                    reasons.push(format!(
                        "projection {} parked {} events from {}",
                        s.name,
                        s.parked,
                        s.parked_position.as_deref().unwrap_or("?")
                    ));
                }
            }
        }
        Err(_) => reasons.push("projection status unreadable".into()),
    }
    for p in policies.iter().filter(|p| p.last_error.is_some()) {
        reasons.push(format!("policy {} failed", p.name));
    }
    let healthy = reachable && reasons.is_empty();
    let c = &state.config;
    let integration = |configured: bool, missing: &str| {
        if configured {
            json!({ "status": "configured" })
        } else {
            json!({ "status": "disabled", "reason": format!("{missing} not set") })
        }
    };
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "reasons": reasons,
        "version": VERSION,
        "build": BUILD,
        "startedAt": state.started_at.to_rfc3339(),
        "database": {
            "engine": state.log.engine(),
            "status": match &db { Ok(()) => "ok".to_string(), Err(e) => format!("error: {e}") },
            // One forgotten transaction holds every reader back (docs/operations.md).
            "oldestWritingTransactionSecs": state.log.oldest_writing_transaction_secs().await.ok().flatten(),
        },
        "eventStore": match &head {
            Ok(p) => json!({ "status": "ok", "headPosition": p.to_string() }),
            Err(e) => json!({ "status": "error", "error": e.to_string() }),
        },
        "projections": match &projections {
            Ok(list) => json!(list),
            Err(e) => json!({ "status": "error", "error": e.to_string() }),
        },
        "policies": policies,
        "scheduler": match &scheduler {
            Ok(s) => json!(s),
            Err(e) => json!({ "status": "error", "error": e.to_string() }),
        },
        "metrics": crate::metrics::summary(c),
        "outbox": match &outbox {
            Ok(o) => o.clone(),
            Err(e) => json!({ "status": "error", "error": e.to_string() }),
        },
        "integrations": {
            "stripe": integration(c.stripe_secret_key.is_some() && c.stripe_webhook_secret.is_some(), "STRIPE_SECRET_KEY/STRIPE_WEBHOOK_SECRET"),
            "twilio": integration(c.twilio_account_sid.is_some() && c.twilio_auth_token.is_some() && c.twilio_phone_number.is_some(), "TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN/TWILIO_PHONE_NUMBER"),
            "resend": integration(c.resend_api_key.is_some() && c.resend_from_email.is_some(), "RESEND_API_KEY/RESEND_FROM_EMAIL"),
            // "configured" only when a client is installed and sending.
            "sentry": integration(worker::error_reporting::active(), "SENTRY_DSN"),
            "cron": integration(c.cron_secret.is_some(), "CRON_SECRET"),
        },
    });
    let code = if reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    const TOKEN: &str = "metrics-token-of-at-least-32-characters";

    #[test]
    fn a_client_on_this_machine_reads_the_detail_and_a_remote_one_does_not() {
        let c = Config::parse_from(["api"]);
        assert!(may_read_detail(&c, ip("127.0.0.1"), &headers(&[])));
        assert!(may_read_detail(&c, ip("::1"), &headers(&[])));
        assert!(may_read_detail(&c, ip("::ffff:127.0.0.1"), &headers(&[])));
        assert!(!may_read_detail(&c, ip("203.0.113.7"), &headers(&[])));
        // Without a token configured, no bearer opens it.
        let bearer = format!("Bearer {TOKEN}");
        assert!(!may_read_detail(
            &c,
            ip("203.0.113.7"),
            &headers(&[("authorization", &bearer)])
        ));
    }

    #[test]
    fn the_metrics_token_opens_the_detail_from_anywhere_and_only_the_right_one() {
        let c = Config::parse_from(["api", "--metrics-token", TOKEN]);
        let remote = ip("203.0.113.7");
        let right = format!("Bearer {TOKEN}");
        assert!(may_read_detail(
            &c,
            remote,
            &headers(&[("authorization", &right)])
        ));
        for wrong in [
            "Bearer metrics-token-of-at-least-32-characterz",
            "Bearer ",
            TOKEN,
            "Basic bWV0cmljczp4",
        ] {
            assert!(
                !may_read_detail(&c, remote, &headers(&[("authorization", wrong)])),
                "{wrong}"
            );
        }
    }

    #[test]
    fn behind_a_proxy_the_forwarded_client_counts() {
        // A trusted proxy on this machine: the client is the one it forwards for.
        let c = Config::parse_from(["api", "--trusted-proxies", "127.0.0.1"]);
        let local = ip("127.0.0.1");
        assert!(!may_read_detail(
            &c,
            local,
            &headers(&[("x-forwarded-for", "203.0.113.7")])
        ));
        assert!(may_read_detail(&c, local, &headers(&[])));
        // A client cannot claim to be local through the proxy: the proxy appends the real one.
        assert!(!may_read_detail(
            &c,
            local,
            &headers(&[("x-forwarded-for", "127.0.0.1, 203.0.113.7")])
        ));
        // A proxy on this machine that nobody listed: whoever it forwards for is not local.
        let unlisted = Config::parse_from(["api"]);
        for h in FORWARDING {
            assert!(
                !may_read_detail(&unlisted, local, &headers(&[(h, "203.0.113.7")])),
                "{h}"
            );
        }
    }
}
