//! The seed's clock: each planned command is decided at its own instant, so
//! commands of different customers can run concurrently without sharing a clock.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::ports::{Clock, FixedClock};

tokio::task_local! {
    /// The instant commands of the current seeding task are decided at.
    static NOW: DateTime<Utc>;
}

/// The task-local instant when set, else the base clock (policies).
pub(crate) struct DemoClock {
    base: Arc<FixedClock>,
}

impl DemoClock {
    pub(crate) fn new(base: Arc<FixedClock>) -> Self {
        DemoClock { base }
    }
}

impl Clock for DemoClock {
    fn now(&self) -> DateTime<Utc> {
        NOW.try_with(|t| *t).unwrap_or_else(|_| self.base.now())
    }
}

/// Runs `f` with the clock at `t`.
pub(crate) async fn at<F: Future>(t: DateTime<Utc>, f: F) -> F::Output {
    NOW.scope(t, f).await
}
