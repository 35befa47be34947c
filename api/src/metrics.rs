//! `GET /metrics` in the Prometheus text format, and the access log.
//!
//! Instrumentation anywhere is a `metrics` macro call (`commands` counts commands and appended
//! events, the scheduler cron runs, the webhooks deliveries); this module installs the
//! Prometheus recorder behind those macros, renders it on `/metrics`, refreshes at scrape time
//! the gauges the health detail computes (lag, outbox, pool), and times every HTTP request.
//!
//! Where it is served: with `METRICS_TOKEN` on the main port behind that bearer token; with
//! `METRICS_ADDR` on a listener of its own without one; with neither, nowhere (404), and no
//! recorder is installed, so every macro call is a no-op.
//!
//! No label carries personal data, an id, an email or a token: labels are route templates,
//! methods, status codes, aggregate types, GraphQL root field names from the schema, job and
//! vendor names, projection and policy names, outbox statuses and pool names.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use commands::LogPosition;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};

use crate::config::Config;
use crate::state::AppState;

/// Latency buckets (seconds) of the request, operation and command histograms.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Cron runs last from milliseconds to many minutes (retries back off).
const CRON_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0];
/// Most events a lag gauge counts per scrape: reading further would make a scrape of a
/// rebuilding instance slow. A gauge at this value means "at least this many".
pub const LAG_SCAN: u32 = 1_000;
/// How often histogram samples are folded in when nobody scrapes (they are buffered until then).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's recorder: installed once, by the first state built with metrics on.
static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder behind the `metrics` macros (once per process; later calls
/// return the same handle). `None` when another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("dirtfree_cron_run_duration_seconds".into()),
                        &CRON_BUCKETS,
                    )
                })
                .map_err(|e| e.to_string())
                .and_then(|b| b.install_recorder().map_err(|e| e.to_string()));
            match built {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// HELP lines of every metric.
fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "dirtfree_http_requests_total",
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        "dirtfree_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method, route template and status"
    );
    describe_counter!(
        "dirtfree_graphql_operations_total",
        "GraphQL root fields executed, by schema field name and outcome"
    );
    describe_histogram!(
        "dirtfree_graphql_operation_duration_seconds",
        Unit::Seconds,
        "GraphQL root field latency (its whole selection), by field and outcome"
    );
    describe_counter!(
        "dirtfree_commands_total",
        "Command attempts by aggregate type and outcome (ok, rejected, conflict, error)"
    );
    describe_histogram!(
        "dirtfree_command_duration_seconds",
        Unit::Seconds,
        "Command latency (load, decide, append) by aggregate type and outcome"
    );
    describe_counter!(
        "dirtfree_events_appended_total",
        "Events appended to the log by aggregate type"
    );
    describe_gauge!(
        "dirtfree_projection_lag_events",
        "Readable events a projection has not applied yet (counted up to 1000)"
    );
    describe_gauge!(
        "dirtfree_projection_lag_seconds",
        Unit::Seconds,
        "Age of the oldest event a projection has not applied yet (0 when caught up)"
    );
    describe_gauge!(
        "dirtfree_policy_lag_events",
        "Readable events a policy has not handled yet (counted up to 1000)"
    );
    describe_gauge!(
        "dirtfree_policy_lag_seconds",
        Unit::Seconds,
        "Age of the oldest event a policy has not handled yet (0 when caught up)"
    );
    describe_gauge!("dirtfree_outbox_messages", "Outbound messages by status");
    describe_gauge!(
        "dirtfree_outbox_oldest_due_seconds",
        Unit::Seconds,
        "How late the oldest due outbound message is (0 when none is due)"
    );
    describe_counter!(
        "dirtfree_webhook_deliveries_total",
        "Webhook requests by vendor and result"
    );
    describe_counter!(
        "dirtfree_cron_runs_total",
        "Job runs by job, trigger and status"
    );
    describe_histogram!(
        "dirtfree_cron_run_duration_seconds",
        Unit::Seconds,
        "Job run duration, retries included, by job, trigger and status"
    );
    describe_gauge!(
        "dirtfree_db_pool_connections_in_use",
        "Database connections checked out, by pool"
    );
    describe_gauge!(
        "dirtfree_db_pool_connections_open",
        "Database connections open (in use or idle), by pool"
    );
    describe_gauge!(
        "dirtfree_db_oldest_writing_transaction_seconds",
        Unit::Seconds,
        "Age of the oldest open transaction that wrote, cluster-wide (PostgreSQL; 0 when none)"
    );
}

/// Folds buffered histogram samples in every few seconds until `stop` (the recorder keeps
/// them until a scrape otherwise, and an instance nobody scrapes would grow).
pub fn spawn_upkeep(
    stop: tokio_util::sync::CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let handle = RECORDER.get().and_then(Option::as_ref)?;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => handle.run_upkeep(),
            }
        }
    }))
}

/// What the health detail says of metrics.
pub fn summary(config: &Config) -> Value {
    if !config.metrics_on() {
        return json!({ "status": "off", "reason": "neither METRICS_TOKEN nor METRICS_ADDR is set: GET /metrics is 404" });
    }
    json!({
        "status": "on",
        "mainPort": config.metrics_token.is_some(),
        "addr": config.metrics_addr.map(|a| a.to_string()),
    })
}

/// `GET /metrics` on the main port: the `METRICS_TOKEN` bearer, compared in constant time
/// (the route exists only when the token is set).
pub async fn scrape_with_token(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = state.config.metrics_token.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !crate::health::bearer_matches(&headers, token.expose()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": {
                "code": "UNAUTHENTICATED",
                "message": "GET /metrics needs Authorization: Bearer <METRICS_TOKEN>",
            } })),
        )
            .into_response();
    }
    render(&state).await
}

/// `GET /metrics` on the `METRICS_ADDR` listener: no token (the address is the protection).
async fn scrape(State(state): State<AppState>) -> Response {
    render(&state).await
}

/// The router of the `METRICS_ADDR` listener: `/metrics` and nothing else.
pub fn separate_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

async fn render(state: &AppState) -> Response {
    let Some(handle) = RECORDER.get().and_then(Option::as_ref) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the metrics recorder is not installed (see the server's log)\n",
        )
            .into_response();
    };
    refresh_gauges(state).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// Sets the gauges read at scrape time from what the health detail computes. A figure that
/// cannot be read keeps its last value (and the failure is logged at debug).
async fn refresh_gauges(state: &AppState) {
    use ::metrics::gauge;
    for (pool, in_use, open) in state.log.pool_usage() {
        gauge!("dirtfree_db_pool_connections_in_use", "pool" => pool).set(f64::from(in_use));
        gauge!("dirtfree_db_pool_connections_open", "pool" => pool).set(f64::from(open));
    }
    if let Ok(secs) = state.log.oldest_writing_transaction_secs().await {
        gauge!("dirtfree_db_oldest_writing_transaction_seconds").set(secs.unwrap_or(0.0));
    }
    refresh_lag(state).await;
    match crate::health::outbox_counts(state).await {
        Ok((counts, overdue_ms)) => {
            // A status whose messages are all gone must read 0, not its last count.
            static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
            let now: BTreeMap<String, i64> = counts.into_iter().collect();
            let mut seen = SEEN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            seen.extend(now.keys().cloned());
            for status in seen.iter() {
                let n = now.get(status).copied().unwrap_or(0);
                gauge!("dirtfree_outbox_messages", "status" => status.clone()).set(n as f64);
            }
            let overdue = overdue_ms.unwrap_or(0) as f64 / 1000.0;
            gauge!("dirtfree_outbox_oldest_due_seconds").set(overdue);
        }
        Err(e) => tracing::debug!(error = %e, "metrics: outbox counts unreadable"),
    }
}

/// Lag of each projection and policy behind the log's head, in events and seconds.
async fn refresh_lag(state: &AppState) {
    use ::metrics::gauge;
    let Ok(head) = state.log.head().await else {
        return;
    };
    let mut checkpoints: Vec<(&'static str, String, LogPosition)> = Vec::new();
    match state.projections.status().await {
        Ok(list) => {
            for p in list {
                if let Ok(at) = p.position.parse::<LogPosition>() {
                    checkpoints.push(("projection", p.name, at));
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "metrics: projection status unreadable"),
    }
    for p in state.policies.status() {
        checkpoints.push(("policy", p.name.to_string(), p.checkpoint));
    }
    // Most checkpoints are at the head, and the rest mostly share a few positions.
    let mut lag: BTreeMap<LogPosition, Option<(usize, f64)>> = BTreeMap::new();
    for (_, _, at) in &checkpoints {
        if *at >= head || lag.contains_key(at) {
            continue;
        }
        let behind = match state.log.read_all_stored(*at, LAG_SCAN).await {
            Ok(events) => Some((
                events.len(),
                events.first().map_or(0.0, |e| {
                    (chrono::Utc::now() - e.recorded_at)
                        .num_milliseconds()
                        .max(0) as f64
                        / 1000.0
                }),
            )),
            Err(e) => {
                tracing::debug!(error = %e, "metrics: lag unreadable");
                None
            }
        };
        lag.insert(*at, behind);
    }
    for (kind, name, at) in checkpoints {
        let (events, secs) = if at >= head {
            (0, 0.0)
        } else {
            match lag.get(&at).copied().flatten() {
                Some(v) => v,
                None => continue,
            }
        };
        let (events_gauge, secs_gauge) = if kind == "projection" {
            (
                "dirtfree_projection_lag_events",
                "dirtfree_projection_lag_seconds",
            )
        } else {
            ("dirtfree_policy_lag_events", "dirtfree_policy_lag_seconds")
        };
        gauge!(events_gauge, kind => name.clone()).set(events as f64);
        gauge!(secs_gauge, kind => name).set(secs);
    }
}

/// The method as a label: the standard ones by name, anything else `other` (a client may
/// send any token as a method).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A route template as a label, its parameters written `:job` rather than axum's `{job}`:
/// Prometheus reads braces in a label value, but common text-format parsers (regular
/// expressions such as `\{[^}]+\}`) drop the whole line.
fn route_label(template: &str) -> String {
    template
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(param) => format!(":{param}"),
                None => segment.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// Middleware on every route: counts and times the request under its route template (never
/// the raw path: `unmatched` when no route matched) and writes the access-log line — method,
/// route, status, latency, the server's request id and, on `/graphql`, the root fields. No
/// query string (a token could be in it), no header, no body.
pub async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| route_label(p.as_str()));
    let request_id = req
        .headers()
        .get(crate::http::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let res = next.run(req).await;
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    let labels = [
        ("method", method.to_string()),
        ("route", route.clone()),
        ("status", status.to_string()),
    ];
    ::metrics::counter!("dirtfree_http_requests_total", &labels).increment(1);
    ::metrics::histogram!("dirtfree_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    let graphql = res
        .extensions()
        .get::<crate::graphql::RootFields>()
        .map(crate::graphql::RootFields::joined);
    let latency_ms = (elapsed.as_secs_f64() * 10_000.0).round() / 10.0;
    tracing::info!(
        target: "access",
        method,
        route = %route,
        status,
        latency_ms,
        request_id = %request_id,
        graphql = graphql.as_deref(),
        "request"
    );
    res
}

/// Counts one webhook request for `vendor` with `result` (a fixed word: `processed`,
/// `duplicate`, `invalid_signature`, …).
pub fn webhook_delivery(vendor: &'static str, result: &'static str) {
    ::metrics::counter!("dirtfree_webhook_deliveries_total", "vendor" => vendor, "result" => result)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn route_parameters_are_written_with_a_colon() {
        assert_eq!(
            route_label("/api/cron/execute/{job}"),
            "/api/cron/execute/:job"
        );
        assert_eq!(route_label("/graphql"), "/graphql");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let odd = Method::from_bytes(b"BREW").expect("a method token");
        assert_eq!(method_label(&odd), "other");
    }

    #[test]
    fn health_says_metrics_are_off_without_a_token_or_an_address() {
        assert_eq!(summary(&Config::defaults())["status"], "off");
        let c = Config::parse_from(["api", "--metrics-addr", "127.0.0.1:9090"]);
        let s = summary(&c);
        assert_eq!(
            (&s["status"], &s["mainPort"]),
            (&json!("on"), &json!(false))
        );
    }
}
