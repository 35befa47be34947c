//! GraphQL operations in the metrics and the access log, named by their root fields as the
//! schema names them (`bookJob`, `customers`): never the client's `operationName` nor an
//! alias, which a client chooses freely and would make the label set unbounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextRequest, NextResolve, ResolveInfo,
};
use async_graphql::{Response, ServerResult, Value};

/// The label of a request refused before any root field ran (a parse or validation error,
/// a limit). Not a GraphQL name (those cannot hold parentheses), so it cannot collide.
const INVALID: &str = "(invalid)";

/// The root fields one request ran, in order: put in the request's data by `graphql::execute`,
/// filled by [`ObserveOperations`], and handed to the access log in the response's extensions.
#[derive(Debug, Default, Clone)]
pub struct RootFields(Arc<Mutex<Vec<String>>>);

impl RootFields {
    fn push(&self, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name.to_string());
    }

    /// The names, comma-separated (`-` when none ran).
    pub fn joined(&self) -> String {
        let names = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(",")
        }
    }
}

/// Counts and times each root field: `dirtfree_graphql_operations_total{field, outcome}` and
/// `dirtfree_graphql_operation_duration_seconds` (installed by `graphql::schema`).
#[derive(Debug, Default)]
pub struct ObserveOperations;

impl ExtensionFactory for ObserveOperations {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ObserveExtension::default())
    }
}

/// One per request (async-graphql creates extensions per request).
#[derive(Default)]
struct ObserveExtension {
    any_root_field: AtomicBool,
}

fn record(field: &str, ok: bool, took: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    let labels = [
        ("field", field.to_string()),
        ("outcome", outcome.to_string()),
    ];
    ::metrics::counter!("dirtfree_graphql_operations_total", &labels).increment(1);
    ::metrics::histogram!("dirtfree_graphql_operation_duration_seconds", &labels)
        .record(took.as_secs_f64());
}

#[async_trait::async_trait]
impl Extension for ObserveExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        if !self.any_root_field.load(Ordering::Relaxed) && response.is_err() {
            record(INVALID, false, started.elapsed());
        }
        response
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.path_node.parent.is_some() {
            return next.run(ctx, info).await;
        }
        // Validation has passed: the name is one of the schema's root fields.
        let name = info.name.to_string();
        self.any_root_field.store(true, Ordering::Relaxed);
        if let Some(fields) = ctx.data_opt::<RootFields>() {
            fields.push(&name);
        }
        let started = Instant::now();
        let result = next.run(ctx, info).await;
        record(&name, result.is_ok(), started.elapsed());
        result
    }
}
