//! What every request handler can reach.

use std::sync::Arc;

use commands::EventLog;

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
}

/// The running version and the build it came from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git commit of the build (`unknown` outside a checkout).
pub const BUILD: &str = env!("DIRTFREE_BUILD");
