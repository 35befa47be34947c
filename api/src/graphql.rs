//! The GraphQL endpoint (`/graphql`): GraphiQL on GET, operations on POST.

use async_graphql::http::GraphiQLSource;
use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::response::{Html, IntoResponse};

use crate::state::{AppState, BUILD, VERSION};

/// The schema served at `/graphql`.
pub type CrmSchema = Schema<QueryRoot, EmptyMutation, EmptySubscription>;

/// Largest query nesting accepted.
pub const MAX_DEPTH: usize = 12;
/// Largest query complexity accepted (1 per field by default).
pub const MAX_COMPLEXITY: usize = 2_000;

/// Builds the schema with its limits.
pub fn schema(state: AppState) -> CrmSchema {
    let mut builder = Schema::build(QueryRoot, EmptyMutation, EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(32)
        .limit_directives(20);
    if !state.config.graphql_introspection {
        builder = builder.disable_introspection();
    }
    builder.data(state).finish()
}

/// Root of all queries.
#[derive(Debug, Default)]
pub struct QueryRoot;

/// The server's health as GraphQL sees it.
#[derive(Debug, SimpleObject)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    /// Event store engine (`postgresql`, `sqlite`).
    pub engine: String,
    /// Position of the last event in the global log (opaque).
    pub head_position: Option<String>,
}

/// The running version.
#[derive(Debug, SimpleObject)]
pub struct VersionInfo {
    /// Semantic version of the server.
    pub version: String,
    /// Git commit it was built from.
    pub build: String,
}

#[Object]
impl QueryRoot {
    /// Health of the server and its event store.
    async fn health(&self, ctx: &Context<'_>) -> async_graphql::Result<Health> {
        let state = ctx.data::<AppState>()?;
        let head = state.log.head().await.ok();
        Ok(Health {
            status: if head.is_some() {
                "ok".into()
            } else {
                "degraded".into()
            },
            engine: state.log.engine().into(),
            head_position: head.map(|p| p.to_string()),
        })
    }

    /// The running version and build.
    async fn version(&self) -> VersionInfo {
        VersionInfo {
            version: VERSION.into(),
            build: BUILD.into(),
        }
    }
}

/// `GET /graphql`: the GraphiQL IDE.
pub async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

/// `POST /graphql`.
pub async fn execute(State(schema): State<CrmSchema>, req: GraphQLRequest) -> GraphQLResponse {
    schema.execute(req.into_inner()).await.into()
}
