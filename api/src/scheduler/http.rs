//! `POST /api/cron/execute/{jobName}`: run one job now (`Authorization: Bearer $CRON_SECRET`).
//!
//! 404 when CRON_SECRET is unset (the endpoint is off) or the job is unknown, 401 for a
//! missing or wrong secret (compared in constant time), 409 while the job runs, 200 with the
//! run's summary.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{JobName, Scheduler, SchedulerError};
use crate::state::AppState;

#[derive(Clone)]
struct CronState {
    app: AppState,
    scheduler: Scheduler,
}

/// The cron trigger's routes, to merge into the server's router.
pub fn routes(state: AppState) -> Router {
    // The same as the timer's (the manual run of sync-google-reviews used to miss Google).
    let scheduler = crate::server_scheduler(&state).unwrap_or_else(|error| {
        tracing::error!(%error, "manual job runs go without Google reviews");
        Scheduler::from_state(&state)
    });
    Router::new()
        .route("/api/cron/execute/{job}", post(execute))
        .with_state(CronState {
            app: state,
            scheduler,
        })
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// Whether the request carries the secret. Hashing both sides first keeps the comparison's
/// time independent of the secret's length as well as its content.
fn authorised(headers: &HeaderMap, secret: &str) -> bool {
    use sha2::{Digest, Sha256};
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(secret.as_bytes());
    !presented.is_empty() && bool::from(a.ct_eq(&b))
}

async fn execute(
    State(s): State<CronState>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(secret) = s.app.config.cron_secret.as_ref() else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "not found");
    };
    // Authenticate before looking at the job name, so names cannot be probed without the secret.
    if !authorised(&headers, secret.expose()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": { "code": "UNAUTHENTICATED", "message": "a valid CRON_SECRET bearer token is required" } })),
        )
            .into_response();
    }
    let Ok(job) = job.parse::<JobName>() else {
        return error(StatusCode::NOT_FOUND, "UNKNOWN_JOB", "no such job");
    };
    match s.scheduler.trigger(job).await {
        Ok(summary) => (StatusCode::OK, Json(summary)).into_response(),
        Err(e @ (SchedulerError::Busy(_) | SchedulerError::AlreadyRan { .. })) => {
            error(StatusCode::CONFLICT, "JOB_RUNNING", &e.to_string())
        }
        Err(e) => {
            tracing::error!(job = %job, error = %e, "manual job run failed to record");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "the run could not be recorded",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_secret_is_authorised() {
        let secret = "s".repeat(40);
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().expect("header"));
            h
        };
        assert!(authorised(&with(&format!("Bearer {secret}")), &secret));
        assert!(!authorised(&with(&format!("Bearer {secret}x")), &secret));
        assert!(!authorised(&with(&format!("Basic {secret}")), &secret));
        assert!(!authorised(&with("Bearer "), &secret));
        assert!(!authorised(&HeaderMap::new(), &secret));
    }
}
