//! What every request handler can reach.

use std::sync::Arc;

use commands::app::Crm;
use commands::policies::PolicyRunner;
use commands::EventLog;
use projections::ProjectionRunner;

use crate::config::Config;

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
    /// Sign-in attempts per client address.
    pub login_limiter: Arc<LoginLimiter>,
}

/// A keyed rate limiter (client address → attempts).
pub type LoginLimiter = governor::DefaultKeyedRateLimiter<String>;

/// Ten sign-in attempts a minute per client address, with a burst of ten.
pub fn login_limiter() -> LoginLimiter {
    governor::RateLimiter::keyed(governor::Quota::per_minute(
        std::num::NonZeroU32::new(10).unwrap_or(std::num::NonZeroU32::MIN),
    ))
}

/// The running version and the build it came from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git commit of the build (`unknown` outside a checkout).
pub const BUILD: &str = env!("DIRTFREE_BUILD");
