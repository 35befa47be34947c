//! The server's scheduler (`worker::scheduler` built from the server's state): its timer, its
//! health, and `POST /api/cron/execute/{jobName}`, which runs one job now
//! (`Authorization: Bearer $CRON_SECRET`).
//!
//! 404 when CRON_SECRET is unset (the endpoint is off) or the job is unknown, 401 for a
//! missing or wrong secret (compared in constant time), 409 while the job runs, 200 with the
//! run's summary.

use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use commands::StoreError;
use serde_json::json;
use subtle::ConstantTimeEq;
use worker::outbox::google_reviews::GoogleBusinessReviews;
use worker::scheduler::{
    list_runs, status_of, JobName, Scheduler, SchedulerError, SchedulerStatus,
};

use crate::state::AppState;

/// The server's scheduler, for its timer and for `POST /api/cron/execute/{job}` alike:
/// reading Google Business Profile reviews when the Google settings are complete (else
/// sync-google-reviews records that no account is configured).
///
/// # Errors
/// When the Google HTTP client cannot be built.
pub fn server_scheduler(state: &AppState) -> anyhow::Result<Scheduler> {
    let scheduler = without_google(state);
    let config = &state.config;
    let Some(google) = config.google_reviews() else {
        return Ok(scheduler);
    };
    let timeout = std::time::Duration::from_millis(config.outbox_http_timeout_ms);
    let adapter =
        GoogleBusinessReviews::new(google, timeout).context("Google reviews HTTP client")?;
    Ok(scheduler.with_google_reviews(Arc::new(adapter)))
}

fn without_google(state: &AppState) -> Scheduler {
    Scheduler::for_server(
        state.crm.clone(),
        state.projections.clone(),
        state.policies.clone(),
    )
}

/// Last success and recent failures per job, over runs started in the last 15 days.
///
/// # Errors
/// [`StoreError`] when the log cannot be read.
pub async fn status(state: &AppState) -> Result<SchedulerStatus, StoreError> {
    let since = Utc::now() - chrono::Duration::days(15);
    // Health reads the runs as they stand: it must answer even while readers are held back.
    let runs = list_runs(&state.projections, Some(since), std::time::Duration::ZERO).await?;
    let mut s = status_of(runs, state.config.business_timezone, Utc::now());
    s.manual_trigger_enabled = state.config.cron_secret.is_some();
    Ok(s)
}

#[derive(Clone)]
struct CronState {
    app: AppState,
    scheduler: Scheduler,
}

/// The cron trigger's routes, to merge into the server's router.
pub fn routes(state: AppState) -> Router {
    // The same as the timer's (the manual run of sync-google-reviews used to miss Google).
    let scheduler = server_scheduler(&state).unwrap_or_else(|error| {
        tracing::error!(%error, "manual job runs go without Google reviews");
        without_google(&state)
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
