//! The HTTP surface: routes and the middleware every request passes.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method, Request};
use axum::routing::get;
use axum::Router;
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::graphql;
use crate::health;
use crate::state::AppState;

/// The request id header, set when the client did not send one.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the application router with its middleware.
pub fn router(state: AppState) -> Router {
    let schema = graphql::schema(state.clone());
    let graphql_routes = Router::new()
        .route("/graphql", get(graphql::graphiql).post(graphql::execute))
        .route("/graphql/ws", get(graphql::websocket))
        .with_state((schema, state.clone()));
    let api = Router::new()
        .route("/api/health", get(health::health))
        .route("/api/health/detailed", get(health::detailed))
        .route("/api/version", get(health::version))
        .with_state(state.clone());

    let mut app = api
        .merge(graphql_routes)
        .merge(crate::webhooks::routes(state.clone()))
        .merge(crate::scheduler::routes(state.clone()));

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

    app.layer(RequestBodyLimitLayer::new(state.config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .layer(security_header("x-frame-options", "DENY"))
        .layer(security_header("x-content-type-options", "nosniff"))
        .layer(security_header("referrer-policy", "strict-origin-when-cross-origin"))
        .layer(security_header("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %request_id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

fn security_header(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}
