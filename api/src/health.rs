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

/// Outbound messages by status, and how late the oldest due one is.
async fn outbox_summary(state: &AppState) -> Result<Value, projections::DbError> {
    let db = state.projections.db();
    let rows = db
        .query(
            "SELECT status, count(*) AS n FROM outbox_messages GROUP BY status ORDER BY status",
            &[],
        )
        .await?;
    let by_status: serde_json::Map<String, Value> = rows
        .iter()
        .filter_map(|r| {
            let status = r.get("status")?.as_str()?.to_string();
            Some((status, r.get("n").cloned().unwrap_or(Value::Null)))
        })
        .collect();
    let oldest = db
        .query(
            "SELECT min(due_at_ms) AS due FROM outbox_messages WHERE due_at_ms IS NOT NULL",
            &[],
        )
        .await?;
    let overdue_ms = oldest
        .first()
        .and_then(|r| r.get("due"))
        .and_then(Value::as_i64)
        .map(|due| (chrono::Utc::now().timestamp_millis() - due).max(0));
    let unknown = crate::outbox::uncertain_sends(&state.projections).await?;
    Ok(
        json!({ "messages": by_status, "oldestDueOverdueMs": overdue_ms, "outcomeUnknown": unknown }),
    )
}

/// `GET /api/health/detailed`: each dependency's state. `"status"` is `ok`,
/// or `degraded` with `reasons` when a projection failed or parked events, or
/// a policy failed: the instance still serves (200), so one bad event never
/// takes every instance out of a load balancer. 503 only when the database
/// does not answer.
pub async fn detailed(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
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
        "outbox": match &outbox {
            Ok(o) => o.clone(),
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
    let code = if reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
