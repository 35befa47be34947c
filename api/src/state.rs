//! What every request handler can reach.

use std::sync::Arc;

use commands::app::Crm;
use commands::policies::PolicyRunner;
use commands::EventLog;
use projections::ProjectionRunner;

use crate::config::Config;
use worker::sign_in_limits::SignInLimits;

/// Shared server state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The event log.
    pub log: EventLog,
    /// The configuration read at start.
    pub config: Arc<Config>,
    /// When the server started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The application layer: every command goes through it.
    pub crm: Crm,
    /// The read models (queries, status, read-your-writes).
    pub projections: ProjectionRunner,
    /// The policies (their status for health checks).
    pub policies: PolicyRunner,
    /// Sign-in and sign-up limits per network, per account and in total.
    pub sign_in_limits: Arc<SignInLimits>,
}

/// The running version and the build it came from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git commit of the build (`unknown` outside a checkout).
pub const BUILD: &str = env!("DIRTFREE_BUILD");
