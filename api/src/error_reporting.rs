//! The server's side of error reporting (the client, and its scrubbing of personal data,
//! are [`worker::error_reporting`]'s): the release name, the tracing layer that turns
//! error events into Sentry events, and the per-request hub that tags them with the
//! request id.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use sentry::SentryFutureExt as _;

use crate::config::Config;

/// Starts the Sentry client when `SENTRY_DSN` is set (see [`worker::error_reporting::init`]).
///
/// # Errors
/// A DSN that does not parse, named without its key.
pub fn init(config: &Config) -> anyhow::Result<Option<sentry::ClientInitGuard>> {
    let dsn = config.sentry_dsn.as_ref().map(|d| d.expose());
    worker::error_reporting::init(dsn, release(), config.app_env_name()).map_err(anyhow::Error::msg)
}

/// `dirtfree-crm@<version>+<build>`: the same as `GET /api/version`.
pub fn release() -> String {
    format!(
        "dirtfree-crm@{}+{}",
        crate::state::VERSION,
        crate::state::BUILD
    )
}

/// The tracing layer: error events become Sentry events, warnings breadcrumbs.
pub fn tracing_layer<S>() -> sentry::integrations::tracing::SentryLayer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use sentry::integrations::tracing::EventFilter;
    sentry::integrations::tracing::layer().event_filter(|md| match *md.level() {
        tracing::Level::ERROR => EventFilter::Event,
        tracing::Level::WARN => EventFilter::Breadcrumb,
        _ => EventFilter::Ignore,
    })
}

/// Runs each request on its own hub tagged with the server's request id, so that a panic
/// or an error event during it names the request (and nothing of another one).
pub async fn per_request(req: Request, next: Next) -> Response {
    if !worker::error_reporting::active() {
        return next.run(req).await;
    }
    let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::current()));
    if let Some(id) = req
        .headers()
        .get(crate::http::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
    {
        hub.configure_scope(|scope| scope.set_tag("request_id", id));
    }
    next.run(req).bind_hub(hub).await
}
