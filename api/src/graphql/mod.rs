//! The GraphQL API (`/graphql`): GraphiQL on GET, operations on POST,
//! subscriptions over WebSocket at `/graphql/ws`.
//!
//! Conventions (docs/api.md): Relay connections for lists, verb-noun
//! mutations taking one `input` and returning a payload with the event
//! `position`, errors with `extensions.code` (and `field` where it applies),
//! money as integer cents with a currency, timestamps RFC 3339 UTC, dates in
//! the business's time zone.

mod analytics;
mod auth;
mod context;
mod customers;
mod errors;
mod jobs;
mod loyalty;
mod messaging;
mod paging;
mod reports;
mod sales;
mod staff;
mod subscriptions;
mod system;

use async_graphql::http::GraphiQLSource;
use async_graphql::{MergedObject, Schema};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse};

pub use auth::{bootstrap_admin, hash_password};
pub use context::{Principal, RequestCtx};
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
);

/// Root of all mutations.
#[derive(MergedObject, Default, Debug)]
pub struct MutationRoot(
    auth::AuthMutation,
    staff::StaffMutation,
    customers::CustomerMutation,
    jobs::JobMutation,
    loyalty::LoyaltyMutation,
    sales::SalesMutation,
    reports::ReportMutation,
    messaging::MessagingMutation,
);

/// The schema served at `/graphql`.
pub type CrmSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Largest query nesting accepted.
pub const MAX_DEPTH: usize = 12;
/// Largest query complexity accepted (1 per field by default; a 1,000-alias query is refused).
pub const MAX_COMPLEXITY: usize = 500;

/// Builds the schema with its limits.
pub fn schema(state: AppState) -> CrmSchema {
    let mut builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot,
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_recursive_depth(32)
    .limit_directives(20);
    if !state.config.graphql_introspection {
        builder = builder.disable_introspection();
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

/// `GET /graphql`: the GraphiQL IDE.
pub async fn graphiql() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
}

/// `POST /graphql`: authenticates the bearer token (if any) and runs the operation.
pub async fn execute(
    State((schema, state)): State<(CrmSchema, AppState)>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    req: GraphQLRequest,
) -> GraphQLResponse {
    let ctx = context::from_headers(&state, &headers, addr).await;
    schema.execute(req.into_inner().data(ctx)).await.into()
}
