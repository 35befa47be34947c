//! Running the policies: each follows the log from its own durable checkpoint.

use event_log::row;
use event_log::sql::{DbError, ReadDb};

use super::*;

/// The position a policy has handled up to (START when it never ran).
///
/// # Errors
/// [`StoreError`] from the database.
pub async fn load_checkpoint(log: &EventLog, name: &str) -> Result<LogPosition, StoreError> {
    let rows = ReadDb::of(log)
        .query(
            "SELECT tx, seq FROM policy_checkpoints WHERE name = $1",
            &[name.into()],
        )
        .await
        .map_err(sql_error)?;
    let Some(r) = rows.first() else {
        return Ok(LogPosition::START);
    };
    // Positions are stored as bigint: xid8 values stay far below 2^63.
    Ok(LogPosition {
        tx: row::int(r, "tx").map_err(sql_error)? as u64,
        seq: row::int(r, "seq").map_err(sql_error)? as u64,
    })
}

/// Stores a policy's position (also used to rewind one, e.g. to START).
///
/// # Errors
/// [`StoreError`] from the database.
pub async fn save_checkpoint(
    log: &EventLog,
    name: &str,
    at: LogPosition,
) -> Result<(), StoreError> {
    ReadDb::of(log)
        .execute(
            // `updated_at` is the database's own clock (the column default, which `excluded`
            // carries on both engines).
            "INSERT INTO policy_checkpoints (name, tx, seq) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, seq = excluded.seq,
               updated_at = excluded.updated_at",
            &[name.into(), (at.tx as i64).into(), (at.seq as i64).into()],
        )
        .await
        .map_err(sql_error)?;
    Ok(())
}

fn sql_error(e: DbError) -> StoreError {
    StoreError::Database(e.to_string())
}

// ------------------------------------------------------------------ runner

/// Why a policy stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyFailure {
    /// The event it could not handle.
    pub position: LogPosition,
    /// Its aggregate type.
    pub aggregate_type: String,
    /// Its aggregate id.
    pub aggregate_id: String,
    /// Its sequence.
    pub sequence: u64,
    /// Its event type.
    pub event_type: String,
    /// [`AppError::code`] of the error.
    pub code: String,
    /// The error, for operators.
    pub message: String,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// False when the policy keeps retrying (the store was unavailable).
    pub stopped: bool,
}

/// Where a policy stands, for `/api/health/detailed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyStatus {
    /// The policy's name.
    pub name: &'static str,
    /// Everything up to here is handled (as far as this process knows).
    pub checkpoint: LogPosition,
    /// Events read since the runner was created.
    pub events_read: u64,
    /// The last error, if the policy failed.
    pub last_error: Option<PolicyFailure>,
}

/// A policy stopped on an event.
#[derive(Debug, thiserror::Error)]
#[error("policy {policy} stopped at {position} ({event_type} of {aggregate_type} {aggregate_id}): {error}")]
pub struct PolicyError {
    /// The policy.
    pub policy: &'static str,
    /// The event it stopped at.
    pub position: LogPosition,
    /// Its aggregate type.
    pub aggregate_type: String,
    /// Its aggregate id.
    pub aggregate_id: String,
    /// Its event type.
    pub event_type: String,
    /// The cause.
    #[source]
    pub error: AppError,
}

/// Runs the policies against a [`Crm`]. Cheap to clone; clones share status.
#[derive(Debug, Clone)]
pub struct PolicyRunner {
    crm: Crm,
    policies: Vec<Policy>,
    batch: u32,
    status: Arc<Mutex<BTreeMap<Policy, PolicyStatus>>>,
}

impl PolicyRunner {
    /// Every built-in policy.
    pub fn new(crm: Crm) -> Self {
        Self::with_policies(crm, Policy::ALL.to_vec())
    }

    /// Only the given policies.
    pub fn with_policies(crm: Crm, policies: Vec<Policy>) -> Self {
        let status = policies
            .iter()
            .map(|p| {
                let s = PolicyStatus {
                    name: p.name(),
                    checkpoint: LogPosition::START,
                    events_read: 0,
                    last_error: None,
                };
                (*p, s)
            })
            .collect();
        Self {
            crm,
            policies,
            batch: DEFAULT_BATCH,
            status: Arc::new(Mutex::new(status)),
        }
    }

    /// Events read per batch (and per checkpoint write).
    #[must_use]
    pub fn with_batch(mut self, batch: u32) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Each policy's checkpoint and last error.
    pub fn status(&self) -> Vec<PolicyStatus> {
        self.lock().values().cloned().collect()
    }

    /// Forgets a policy's failure so that it runs again (after the cause was fixed).
    pub fn clear_failure(&self, policy: Policy) {
        if let Some(s) = self.lock().get_mut(&policy) {
            s.last_error = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Policy, PolicyStatus>> {
        // The map stays consistent even if a holder panicked: every update is one assignment.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self, policy: Policy) -> Option<PolicyFailure> {
        self.lock()
            .get(&policy)
            .and_then(|s| s.last_error.clone())
            .filter(|f| f.stopped)
    }

    /// Runs every policy until none has anything left to handle (policies
    /// feed each other: a rewarded referral earns points).
    ///
    /// # Errors
    /// The first [`PolicyError`]; the other policies still ran their batches.
    pub async fn run_until_caught_up(&self) -> Result<(), PolicyError> {
        loop {
            let rounds =
                futures::future::join_all(self.policies.iter().map(|p| self.catch_up(*p))).await;
            let mut read = 0;
            for r in rounds {
                read += r?;
            }
            if read == 0 {
                return Ok(());
            }
        }
    }

    /// Reads and handles one policy's events up to the head; returns how many it read.
    async fn catch_up(&self, policy: Policy) -> Result<u64, PolicyError> {
        if let Some(f) = self.stopped(policy) {
            return Err(self.error_from(
                policy,
                &f,
                AppError::Rule {
                    code: "POLICY_STOPPED",
                    message: f.message.clone(),
                },
            ));
        }
        let log = self.crm.log();
        let mut position = load_checkpoint(log, policy.name())
            .await
            .map_err(|e| self.store_error(policy, e))?;
        let mut read = 0;
        let mut backoff = Duration::from_millis(2);
        loop {
            let events = log
                .read_all(position, self.batch)
                .await
                .map_err(|e| self.store_error(policy, e))?;
            if events.is_empty() {
                // Committed events behind a still-open older transaction are
                // not "caught up": wait for them, or a later round would
                // handle them at another time.
                if log
                    .has_held_back_events(position)
                    .await
                    .map_err(|e| self.store_error(policy, e))?
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                    continue;
                }
                self.set_checkpoint(policy, position, 0);
                return Ok(read);
            }
            read += events.len() as u64;
            position = self.handle_batch(policy, position, &events, true).await?;
        }
    }

    /// Handles a batch and checkpoints it; on failure checkpoints the events
    /// before the failing one and records the failure.
    async fn handle_batch(
        &self,
        policy: Policy,
        mut position: LogPosition,
        events: &[RecordedEvent],
        stop_on_transient: bool,
    ) -> Result<LogPosition, PolicyError> {
        let log = self.crm.log();
        for e in events {
            if policy.interested(e) {
                if let Err(error) = policy.handle(&self.crm, e).await {
                    save_checkpoint(log, policy.name(), position)
                        .await
                        .map_err(|s| self.store_error(policy, s))?;
                    let transient = matches!(
                        error,
                        AppError::Conflict { .. } | AppError::Store(StoreError::Unavailable(_))
                    );
                    let failure = PolicyFailure {
                        position: e.position,
                        aggregate_type: e.aggregate_type.clone(),
                        aggregate_id: e.aggregate_id.clone(),
                        sequence: e.sequence,
                        event_type: e.event_type.clone(),
                        code: error.code().to_string(),
                        message: error.to_string(),
                        at: Utc::now(),
                        stopped: stop_on_transient || !transient,
                    };
                    tracing::error!(policy = policy.name(), position = %e.position, error = %error, "policy failed");
                    if let Some(s) = self.lock().get_mut(&policy) {
                        s.checkpoint = position;
                        s.last_error = Some(failure.clone());
                    }
                    return Err(self.error_from(policy, &failure, error));
                }
            }
            position = e.position;
        }
        save_checkpoint(log, policy.name(), position)
            .await
            .map_err(|e| self.store_error(policy, e))?;
        self.set_checkpoint(policy, position, events.len() as u64);
        Ok(position)
    }

    fn set_checkpoint(&self, policy: Policy, position: LogPosition, read: u64) {
        if let Some(s) = self.lock().get_mut(&policy) {
            s.checkpoint = position;
            s.events_read += read;
            // A retried transient failure is over once a batch got through.
            if s.last_error.as_ref().is_some_and(|f| !f.stopped) && read > 0 {
                s.last_error = None;
            }
        }
    }

    fn error_from(&self, policy: Policy, f: &PolicyFailure, error: AppError) -> PolicyError {
        PolicyError {
            policy: policy.name(),
            position: f.position,
            aggregate_type: f.aggregate_type.clone(),
            aggregate_id: f.aggregate_id.clone(),
            event_type: f.event_type.clone(),
            error,
        }
    }

    fn store_error(&self, policy: Policy, e: StoreError) -> PolicyError {
        let position = self
            .lock()
            .get(&policy)
            .map_or(LogPosition::START, |s| s.checkpoint);
        PolicyError {
            policy: policy.name(),
            position,
            aggregate_type: String::new(),
            aggregate_id: String::new(),
            event_type: String::new(),
            error: AppError::Store(e),
        }
    }

    /// Runs every policy in the background until `shutdown` is cancelled,
    /// waking on new commits. A policy that fails on an event stops (see
    /// [`Self::status`]); one that meets an unavailable store retries with back-off.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let tasks: Vec<_> = self
                .policies
                .iter()
                .map(|p| tokio::spawn(self.clone().follow(*p, shutdown.clone())))
                .collect();
            for t in tasks {
                if let Err(e) = t.await {
                    tracing::error!(error = %e, "policy task panicked");
                }
            }
        })
    }

    async fn follow(self, policy: Policy, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let start = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = load_checkpoint(self.crm.log(), policy.name()) => p,
            };
            let mut position = match start {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(policy = policy.name(), error = %e, "cannot read the policy checkpoint; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            self.set_checkpoint(policy, position, 0);
            let mut tail = LogTail::new(self.crm.log().clone(), position, self.batch);
            loop {
                let batch = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    b = tail.next_batch() => b,
                };
                let result = match batch {
                    Ok(events) => self.handle_batch(policy, position, &events, false).await,
                    Err(e) => Err(self.store_error(policy, e)),
                };
                match result {
                    Ok(p) => {
                        position = p;
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        if self.stopped(policy).is_some() {
                            tracing::error!(policy = policy.name(), error = %e, "policy stopped");
                            return;
                        }
                        tracing::warn!(policy = policy.name(), error = %e, "policy will retry");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        break; // re-read the checkpoint and start a fresh tail
                    }
                }
            }
        }
    }
}
