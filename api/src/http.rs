//! The HTTP surface: routes and the middleware every request passes.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method, Request};
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::graphql;
use crate::health;
use crate::state::AppState;

/// The request id header: always set by the server (and echoed in the answer).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Where a client's own request id is kept (logged beside the server's).
pub const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-client-request-id");

/// Builds the application router with its middleware.
pub fn router(state: AppState) -> Router {
    let schema = graphql::schema(state.clone());
    let graphql_routes = Router::new()
        .route("/graphql", get(graphql::graphiql).post(graphql::execute))
        .route("/graphql/ws", get(graphql::websocket))
        .with_state((schema, state.clone()));
    let mut api = Router::new()
        .route("/api/health", get(health::health))
        .route("/api/health/ready", get(health::ready))
        .route("/api/health/detailed", get(health::detailed))
        .route("/api/version", get(health::version));
    // Without METRICS_TOKEN there is no /metrics on this port (404), only on METRICS_ADDR's.
    if state.config.metrics_token.is_some() {
        api = api.route("/metrics", get(crate::metrics::scrape_with_token));
    }
    let api = api.with_state(state.clone());

    let mut app = api
        .merge(graphql_routes)
        .merge(crate::webhooks::routes(state.clone()))
        .merge(crate::scheduler::routes(state.clone()))
        .merge(crate::unsubscribe::routes(state.clone()))
        .merge(graphql::proofs::test_send_routes(state.clone()))
        .merge(graphql::reports::download_routes(state.clone()));

    if let Some(origin) = state
        .config
        .admin_ui_origin
        .as_deref()
        .and_then(|o| o.parse::<HeaderValue>().ok())
    {
        app = app.layer(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("idempotency-key"),
                ])
                .max_age(Duration::from_secs(600)),
        );
    }

    // Innermost: a panic in a handler answers 500 INTERNAL (and is reported) instead of
    // dropping the connection.
    app.layer(CatchPanicLayer::custom(panicked))
        .layer(RequestBodyLimitLayer::new(state.config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .layer(security_header("x-frame-options", "DENY"))
        .layer(security_header("x-content-type-options", "nosniff"))
        .layer(security_header("referrer-policy", "strict-origin-when-cross-origin"))
        .layer(security_header("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"))
        // Browsers honour it only over https (behind the TLS proxy); harmless on http.
        .layer(security_header("strict-transport-security", "max-age=31536000; includeSubDomains"))
        // The API answers JSON: nothing in it may load or run anything. GraphiQL's
        // page sets its own, wider policy (graphql::graphiql).
        .layer(security_header("content-security-policy", API_CSP))
        // Counts, times and logs each request under its route template; inside the
        // request-id layers (it logs the server's id), outside the timeout (it sees the 408).
        .layer(axum::middleware::from_fn(crate::metrics::observe))
        .layer(
            TraceLayer::new_for_http()
            // A 5xx is a warning here: a panic or an internal error is reported where it
            // happens (once), and a 503 from health is no error of the server's.
            .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN))
            .make_span_with(|req: &Request<_>| {
                let header = |h: &HeaderName| {
                    req.headers()
                        .get(h)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string()
                };
                tracing::info_span!("request", method = %req.method(), path = %loggable_path(req.uri().path()), request_id = %header(&REQUEST_ID), client_request_id = %header(&CLIENT_REQUEST_ID))
            }),
        )
        // Inside the request id layers: a report made during the request carries its id.
        .layer(axum::middleware::from_fn(crate::error_reporting::per_request))
        // tower-http answers an announced oversized body (Content-Length) with
        // plain text; clients get the same JSON error as for a chunked one.
        .layer(axum::middleware::map_response(json_payload_too_large))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // Outermost: the request id is always the server's own (audit entries and
        // log lines correlate on it, so a client must not choose it); the
        // client's, if any, is kept as `x-client-request-id` and logged.
        .layer(axum::middleware::map_request(server_request_id))
}

/// The path as logs may show it: an unsubscribe link's token is a credential.
fn loggable_path(path: &str) -> &str {
    if path.starts_with(crate::unsubscribe::PATH) {
        crate::unsubscribe::PATH
    } else {
        path
    }
}

/// The answer to a request whose handler panicked (the panic hook has reported it).
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({
        "errors": [{"message": "internal error", "extensions": {"code": "INTERNAL"}}]
    });
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(body),
    )
        .into_response()
}

/// A 413 without a JSON body gets `{"errors": [{"extensions": {"code": "PAYLOAD_TOO_LARGE"}}]}`.
async fn json_payload_too_large(res: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if res.status() != axum::http::StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return res;
    }
    let body = serde_json::json!({
        "data": null,
        "errors": [{ "message": "the request body is too large", "extensions": { "code": "PAYLOAD_TOO_LARGE" } }],
    });
    (axum::http::StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
}

/// Moves a client-sent `x-request-id` to `x-client-request-id` (the server sets its own).
async fn server_request_id(mut req: Request<axum::body::Body>) -> Request<axum::body::Body> {
    if let Some(client) = req.headers_mut().remove(&REQUEST_ID) {
        req.headers_mut().insert(CLIENT_REQUEST_ID, client);
    }
    req
}

/// The Content-Security-Policy of every answer but GraphiQL's page.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

fn security_header(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}
