//! Health and version endpoints for load balancers, monitoring and rollback checks.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::{AppState, BUILD, VERSION};

/// `GET /api/health`: the process is up and serving.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /api/version`.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": VERSION, "build": BUILD }))
}

/// `GET /api/health/detailed`: each dependency's state. 503 when the
/// database does not answer, so a load balancer takes the instance out.
pub async fn detailed(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = state.log.ping().await;
    let head = state.log.head().await;
    let projections = state.projections.status().await;
    let policies = state.policies.status();
    let scheduler = crate::scheduler::status(&state).await;
    let healthy = db.is_ok()
        && head.is_ok()
        && projections
            .as_ref()
            .is_ok_and(|p| p.iter().all(|s| s.state != "failed"))
        && policies.iter().all(|p| p.last_error.is_none());
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
        "version": VERSION,
        "build": BUILD,
        "startedAt": state.started_at.to_rfc3339(),
        "database": {
            "engine": state.log.engine(),
            "status": match &db { Ok(()) => "ok".to_string(), Err(e) => format!("error: {e}") },
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
        "integrations": {
            "stripe": integration(c.stripe_secret_key.is_some() && c.stripe_webhook_secret.is_some(), "STRIPE_SECRET_KEY/STRIPE_WEBHOOK_SECRET"),
            "twilio": integration(c.twilio_account_sid.is_some() && c.twilio_auth_token.is_some() && c.twilio_phone_number.is_some(), "TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN/TWILIO_PHONE_NUMBER"),
            "resend": integration(c.resend_api_key.is_some() && c.resend_from_email.is_some(), "RESEND_API_KEY/RESEND_FROM_EMAIL"),
            "sentry": integration(c.sentry_dsn.is_some(), "SENTRY_DSN"),
            "cron": integration(c.cron_secret.is_some(), "CRON_SECRET"),
        },
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
