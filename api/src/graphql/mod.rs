//! The GraphQL API (`/graphql`): GraphiQL on GET, operations on POST,
//! subscriptions over WebSocket at `/graphql/ws`.
//!
//! Conventions (docs/api.md): Relay connections for lists, verb-noun
//! mutations taking one `input` and returning a payload with the event
//! `position`, errors with `extensions.code` (and `field` where it applies),
//! money as integer cents with a currency, timestamps RFC 3339 UTC, dates in
//! the business's time zone.

pub mod analytics;
mod auth;
mod command;
mod contacts;
mod context;
mod customers;
mod dispatch;
mod errors;
mod introspection;
mod jobs;
mod limits;
mod loaders;
mod loyalty;
mod messaging;
mod observe;
mod paging;
pub mod proofs;
pub mod reports;
mod review_requests;
mod sales;
mod sign_up;
mod staff;
mod subscriptions;
mod system;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql::{MergedObject, Schema};
use async_graphql_axum::GraphQLResponse;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

pub use auth::bootstrap_admin;
pub use context::{client_ip, Principal, RequestCtx};
pub use observe::RootFields;
pub use subscriptions::{websocket, SubscriptionRoot};

use crate::state::AppState;

/// Root of all queries.
#[derive(MergedObject, Default, Debug)]
pub struct QueryRoot(
    system::SystemQuery,
    auth::AuthQuery,
    customers::CustomerQuery,
    jobs::JobQuery,
    loyalty::LoyaltyQuery,
    analytics::AnalyticsQuery,
    sales::SalesQuery,
    analytics::ExportQuery,
    system::JobRunQuery,
    reports::ReportQuery,
    messaging::MessagingQuery,
    proofs::ProofQuery,
    dispatch::DispatchQuery,
    review_requests::ReviewRequestQuery,
);

/// Root of all mutations.
#[derive(MergedObject, Default, Debug)]
pub struct MutationRoot(
    auth::AuthMutation,
    staff::StaffMutation,
    customers::CustomerMutation,
    contacts::ContactMutation,
    sign_up::SignUpMutation,
    proofs::ProofMutation,
    jobs::JobMutation,
    loyalty::LoyaltyMutation,
    sales::SalesMutation,
    reports::ReportMutation,
    messaging::MessagingMutation,
    system::ErrorReportingMutation,
    review_requests::ReviewRequestMutation,
);

/// The schema served at `/graphql`.
pub type CrmSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

pub use limits::{MAX_COST, MAX_DEPTH, MAX_IDEMPOTENCY_KEY};

/// Largest number of fields in one request, aliases and fragments expanded
/// (a 1,000-alias query is refused; the standard introspection query has ~200).
pub const MAX_COMPLEXITY: usize = 500;

/// Builds the schema with its limits.
pub fn schema(state: AppState) -> CrmSchema {
    let mut builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot,
    )
    // First, so that it also counts a request the limits refuse.
    .extension(observe::ObserveOperations)
    // Depth and cost are `limits`' own: async-graphql's depth counts the
    // introspection schema too and refused GraphiQL's standard query.
    .extension(limits::RequestLimits)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_recursive_depth(32)
    .limit_directives(20);
    if !state.config.introspection() {
        builder = builder
            .disable_introspection()
            .extension(introspection::RefuseIntrospection);
    }
    builder.data(state).finish()
}

/// The SDL, as exported to `docs/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot,
    )
    .finish()
    .sdl()
}

/// `GET /graphql`: the GraphiQL IDE; 404 when introspection is off (it needs it).
pub async fn graphiql(State((_, state)): State<(CrmSchema, AppState)>) -> Response {
    if !state.config.introspection() {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        // GraphiQL is loaded from unpkg and starts with inline script and style;
        // everything else stays closed (the API's own policy is `http::API_CSP`).
        [(
            axum::http::header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self' 'unsafe-inline' https://unpkg.com; \
             style-src 'self' 'unsafe-inline' https://unpkg.com; font-src 'self' data: https://unpkg.com; \
             img-src 'self' data: https://graphql.org; connect-src 'self' ws: wss:; \
             frame-ancestors 'none'; base-uri 'none'",
        )],
        Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql/ws")
                .finish(),
        ),
    )
        .into_response()
}

/// `POST /graphql`: authenticates the bearer token (if any) and runs the operation.
///
/// The body is read whole first, so a body over `MAX_BODY_BYTES` is 413 however
/// it is framed (with `Content-Length` or chunked), and one that is not a
/// GraphQL request in JSON is 400 with a coded error.
pub async fn execute(
    State((schema, state)): State<(CrmSchema, AppState)>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => {
            return http_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!(
                    "the request body is larger than {} bytes",
                    state.config.max_body_bytes
                ),
            )
        }
        Err(e) => return http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.body_text()),
    };
    let req: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("the body is not a GraphQL request in JSON: {e}"),
            )
        }
    };
    let ctx = context::from_headers(&state, &headers, addr).await;
    // Read-model statements this request runs, its loaders' batches included:
    // reported as `extensions.cost.statements` (as Shopify reports a query's cost).
    let statements = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&statements);
    let loader = loaders::for_request(&state, move |batch| {
        tokio::spawn(projections::db::STATEMENTS.scope(Arc::clone(&counted), batch))
    });
    let fields = RootFields::default();
    let mut response = projections::db::STATEMENTS
        .scope(
            Arc::clone(&statements),
            schema.execute(req.data(ctx).data(loader).data(fields.clone())),
        )
        .await;
    response.extensions.insert(
        "cost".to_string(),
        async_graphql::Value::from_json(serde_json::json!({
            "statements": statements.load(Ordering::Relaxed),
        }))
        .unwrap_or_default(),
    );
    let mut answer = GraphQLResponse::from(response).into_response();
    // For the access-log line (`metrics::observe`).
    answer.extensions_mut().insert(fields);
    answer
}

/// A resolver's error as a plain HTTP answer (for the REST routes): the GraphQL error
/// shape, with the status its code means.
fn http_graphql_error(e: &async_graphql::Error) -> Response {
    let ext = |k: &str| {
        e.extensions
            .as_ref()
            .and_then(|x| x.get(k))
            .map(|v| v.to_string().trim_matches('"').to_string())
    };
    let code = ext("code").unwrap_or_else(|| "INTERNAL".into());
    let status = match code.as_str() {
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "VALIDATION" | "BAD_REQUEST" => StatusCode::BAD_REQUEST,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "CONFLICT" | "IDEMPOTENCY_KEY_REUSED" => StatusCode::CONFLICT,
        "RULE_VIOLATION" => StatusCode::UNPROCESSABLE_ENTITY,
        "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
        "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = serde_json::json!({
        "data": null,
        "errors": [{ "message": e.message, "extensions": { "code": code, "field": ext("field"), "rule": ext("rule") } }],
    });
    (status, axum::Json(body)).into_response()
}

/// A GraphQL-shaped error for a request that never reached GraphQL.
fn http_error(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::json!({
        "data": null,
        "errors": [{ "message": message, "extensions": { "code": code } }],
    });
    (status, axum::Json(body)).into_response()
}
