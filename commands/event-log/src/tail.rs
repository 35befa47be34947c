//! Following the global log: the building block of projectors and policies.

use std::time::Duration;

use tokio::sync::watch;

use crate::store::{EventLog, LogPosition, RecordedEvent, StoreError};

/// Reads the global log from a position onwards, waiting for new commits
/// instead of polling. Each event is handed out once, in log order.
#[derive(Debug)]
pub struct LogTail {
    log: EventLog,
    after: LogPosition,
    batch: u32,
    commits: watch::Receiver<u64>,
    /// Safety net for a lost notification (e.g. a dropped LISTEN connection).
    idle_recheck: Duration,
    /// Hand out events as stored (personal fields encrypted).
    stored: bool,
}

impl LogTail {
    /// Starts after `after` (use [`LogPosition::START`] for the beginning).
    pub fn new(log: EventLog, after: LogPosition, batch: u32) -> Self {
        let commits = log.commits();
        Self {
            log,
            after,
            batch: batch.max(1),
            commits,
            idle_recheck: Duration::from_secs(2),
            stored: false,
        }
    }

    /// Hands out events as stored, personal fields still encrypted
    /// ([`EventLog::read_all_stored`]).
    pub fn stored(mut self) -> Self {
        self.stored = true;
        self
    }

    /// The position of the last event handed out.
    pub fn position(&self) -> LogPosition {
        self.after
    }

    /// The next events, without waiting (empty when caught up).
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    pub async fn poll(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = if self.stored {
            self.log.read_all_stored(self.after, self.batch).await?
        } else {
            self.log.read_all(self.after, self.batch).await?
        };
        if let Some(last) = events.last() {
            self.after = last.position;
        }
        Ok(events)
    }

    /// The next events, waiting until at least one is available.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut backoff = Duration::from_millis(2);
        loop {
            // Mark the current commit count as seen *before* reading, so a
            // commit landing between the read and the wait still wakes us.
            self.commits.borrow_and_update();
            let events = self.poll().await?;
            if !events.is_empty() {
                return Ok(events);
            }
            if self.log.has_held_back_events(self.after).await? {
                // Committed, but an older transaction is still open: its end
                // may not be announced, so look again shortly.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(100));
                continue;
            }
            backoff = Duration::from_millis(2);
            let _ = tokio::time::timeout(self.idle_recheck, self.commits.changed()).await;
        }
    }
}
