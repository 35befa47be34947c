//! The Dirt Free CRM server: configuration, the HTTP surface (GraphQL,
//! health, webhooks, the cron trigger, metrics) and its lifecycle.

pub mod config;
pub mod demo;
pub mod error_reporting;
pub mod graphql;
pub mod health;
pub mod http;
pub mod metrics;
pub mod scheduler;
pub mod state;
pub mod unsubscribe;
pub mod webhooks;
mod wiring;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use commands::{DatabaseUrl, EventLog, LogOptions};
use tokio::net::TcpListener;

pub use config::Config;
pub use state::AppState;

/// Opens the event log the configuration names (migrating it).
///
/// # Errors
/// A clear message naming the problem: bad `DATABASE_URL`, database down,
/// failed migration.
pub async fn open_log(config: &Config) -> anyhow::Result<EventLog> {
    let url = DatabaseUrl::parse(config.database_url.as_deref()).context("DATABASE_URL")?;
    let log = EventLog::connect(
        &url,
        &LogOptions {
            max_connections: config.database_max_connections,
            ..LogOptions::default()
        },
    )
    .await?;
    Ok(log)
}

/// Builds the shared state: the application layer, read models and policies.
///
/// # Errors
/// When the read-model tables cannot be prepared.
pub async fn build_state(config: Config, log: EventLog) -> anyhow::Result<AppState> {
    build_state_with(config, log, projections::crm::all).await
}

/// The read models a server runs: [`projections::crm::all`] (a test binary may run another
/// version of one, as the next release would during a rolling deploy).
pub type ReadModels = fn() -> Vec<Arc<dyn projections::Projection>>;

/// [`build_state`] with a chosen set of read models.
///
/// # Errors
/// When the read-model tables cannot be prepared.
pub async fn build_state_with(
    config: Config,
    log: EventLog,
    read_models: ReadModels,
) -> anyhow::Result<AppState> {
    if config.metrics_on() {
        // Before any command runs, so that the start-up's commands are counted too.
        metrics::install();
    }
    let tz = config.business_timezone;
    let services = domain::ports::DomainServices::new(tz, domain::loyalty::LoyaltyRules::default());
    let crm = commands::app::Crm::new(log.clone(), services);
    let projections =
        projections::ProjectionRunner::with_projections(log.clone(), tz, read_models());
    projections
        .prepare()
        .await
        .context("preparing read models")?;
    let policies = commands::policies::PolicyRunner::new(crm.clone());
    Ok(AppState {
        log,
        config: Arc::new(config),
        started_at: chrono::Utc::now(),
        crm,
        projections,
        policies,
        sign_in_limits: Arc::new(worker::sign_in_limits::SignInLimits::default()),
    })
}

/// Serves until `shutdown` resolves; in-flight requests finish first, then
/// the projection and policy workers stop.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(config, projections::crm::all, listener, shutdown).await
}

/// [`serve`] with a chosen set of read models.
///
/// # Errors
/// When the listener fails.
pub async fn serve_with(
    config: Config,
    read_models: ReadModels,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // METRICS_ADDR is bound before anything else happens: a taken port is one error line.
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on METRICS_ADDR {addr}"))?,
        ),
        None => None,
    };
    // The port answers at once: liveness 200, everything else 503 `starting` until the
    // steps below are done; then the application takes over the same listener.
    let (app, started) = while_starting();
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(std::future::IntoFuture::into_future(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown => {},
                _ = stopped => {},
            }
        }),
    ));
    let state = match start_up(config, read_models).await {
        Ok(state) => state,
        Err(e) => {
            let _ = stop_http.send(());
            let _ = http.await;
            return Err(e);
        }
    };
    let (stop_projections, stop_rx) = tokio::sync::watch::channel(false);
    let projection_tasks = state.projections.clone().spawn(stop_rx);
    let stop_policies = tokio_util::sync::CancellationToken::new();
    let policy_task = state.policies.clone().spawn(stop_policies.clone());
    // The scheduler stops with the policies (same token); it catches up missed slots first.
    let scheduler_task = scheduler::server_scheduler(&state)?.spawn(stop_policies.clone());
    // The outbox sends what the policies queue; without vendor keys it records "not sent".
    let outbox_task = state
        .config
        .outbox_worker(state.crm.clone())
        .context("outbox HTTP client")?
        .spawn(stop_policies.clone());
    let upkeep_task = metrics::spawn_upkeep(stop_policies.clone());
    // Served from here on: its gauges read the state. A scrape that came earlier waits in
    // the listener's backlog.
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    let metrics_task = metrics_listener.map(|listener| {
        let app = metrics::separate_router(state.clone());
        let stop = stop_metrics.clone();
        tracing::info!(addr = ?listener.local_addr().ok(), "metrics listening");
        tokio::spawn(std::future::IntoFuture::into_future(
            axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()),
        ))
    });
    let alerts_task = worker::alerts::Alerts::new(
        state.crm.clone(),
        state.projections.clone(),
        state.policies.clone(),
        state.config.alert_settings(),
    )
    .spawn(stop_policies.clone());
    let log = state.log.clone();
    let _ = started.set(http::router(state));
    let served = http.await.context("HTTP server task")?;
    drop(stop_http);
    stop_metrics.cancel();
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    served.context("HTTP server")?;
    let _ = stop_projections.send(true);
    stop_policies.cancel();
    if let Some(t) = upkeep_task {
        let _ = t.await;
    }
    for t in projection_tasks {
        let _ = t.await;
    }
    let _ = policy_task.await;
    let _ = scheduler_task.await;
    let _ = outbox_task.await;
    let _ = alerts_task.await;
    log.close().await;
    Ok(())
}

/// Opens the store (migrations), builds the state and brings the store to what serving
/// needs: the demo (on an empty store only, and first: the first admin would not leave one
/// empty), the first admin, then every read model caught up, and those whose version
/// changed rebuilt in shadow tables and swapped in (the old tables serve the instances
/// still running the old version meanwhile; this one is not ready until it is done).
async fn start_up(config: Config, read_models: ReadModels) -> anyhow::Result<AppState> {
    let log = open_log(&config).await?;
    let state = build_state_with(config, log, read_models).await?;
    demo::maybe_seed(&state).await?;
    graphql::bootstrap_admin(&state).await?;
    match tokio::time::timeout(CATCH_UP_BEFORE_READY, state.projections.catch_up_all()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "read models not caught up at start"),
        Err(_) => tracing::warn!(
            "read models still catching up after {CATCH_UP_BEFORE_READY:?}: ready anyway"
        ),
    }
    let upgraded = state
        .projections
        .upgrade(&|_| {})
        .await
        .context("rebuilding the read models whose version changed")?;
    if !upgraded.is_empty() {
        tracing::info!(projections = ?upgraded, "read models rebuilt and swapped in");
    }
    tracing::info!(engine = state.log.engine(), "ready");
    Ok(state)
}

/// The longest start-up waits for the read models before the instance says it is ready.
const CATCH_UP_BEFORE_READY: std::time::Duration = std::time::Duration::from_secs(300);

/// The service the listener serves from the first moment: the application once it is set
/// in the returned cell, until then liveness and a 503 `starting` for everything else.
fn while_starting() -> (Router, Arc<std::sync::OnceLock<Router>>) {
    let started: Arc<std::sync::OnceLock<Router>> = Arc::default();
    let starting = Router::new()
        .route("/api/health", axum::routing::get(health::health))
        .fallback(health::starting);
    let cell = Arc::clone(&started);
    let app = Router::new().fallback_service(tower::service_fn(
        move |request: axum::extract::Request| {
            let router = cell.get().cloned().unwrap_or_else(|| starting.clone());
            async move { tower::ServiceExt::oneshot(router, request).await }
        },
    ));
    (app, started)
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM arriving while the
/// server is still starting (after the port is open) is then a graceful stop,
/// not the default action that kills the process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    }
}

fn init_tracing(format: &str) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{fmt, EnvFilter, Layer as _};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let lines = if format == "pretty" {
        fmt::layer().with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed()
    };
    // RUST_LOG filters the log lines only: error reporting keeps its own levels.
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        // Warnings and errors only: a layer without a level would switch on every debug
        // and trace event of every crate.
        .with(
            error_reporting::tracing_layer()
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .try_init();
}

/// The server binary's whole life: parse config, open the store, serve.
/// Returns the process exit code; every failure is one clear line.
pub async fn main_entry() -> i32 {
    main_entry_with(projections::crm::all).await
}

/// [`main_entry`] with a chosen set of read models.
pub async fn main_entry_with(read_models: ReadModels) -> i32 {
    let config = <Config as clap::Parser>::parse();
    // Before tracing: the tracing layer reports to the client installed here.
    let reporting = error_reporting::init(&config);
    init_tracing(&config.log_format);
    let _reporting = match reporting {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 1;
        }
    };
    match run(config, read_models).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            tracing::error!(error = %format!("{e:#}"), "server stopped");
            1
        }
    }
}

async fn run(config: Config, read_models: ReadModels) -> anyhow::Result<()> {
    config.validate()?;
    let shutdown = shutdown_signal();
    // The port first: liveness answers while migrations run (a long one must not look dead).
    let listener = TcpListener::bind(config.bind_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind_addr))?;
    tracing::info!(addr = %config.bind_addr, "Dirt Free CRM listening (starting)");
    serve_with(config, read_models, listener, shutdown).await
}
