//! The live runners, their status, and waiting for them to reach a position.

use super::*;

impl ProjectionRunner {
    /// Runs every projection in the background until `shutdown` turns true:
    /// the healthy ones together ([`Self::step_group`]), each failing one on
    /// its own, retrying with back-off (it resumes once the cause is fixed)
    /// while the others carry on.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let runner = Arc::new(self);
        let group_runner = Arc::clone(&runner);
        let mut shutdown_group = shutdown.clone();
        let (failed_tx, mut failed_rx) =
            tokio::sync::mpsc::unbounded_channel::<Arc<dyn Projection>>();
        let group = tokio::spawn(async move {
            let runner = group_runner;
            let mut members: Vec<Arc<dyn Projection>> = runner.projections.clone();
            let mut commits = runner.log.commits();
            let mut backoff = Duration::from_millis(500);
            loop {
                if *shutdown_group.borrow() {
                    return;
                }
                commits.borrow_and_update();
                let wait = match runner.step_group(&members).await {
                    Ok((n, failures)) => {
                        for (p, e) in failures {
                            tracing::warn!(projection = p.name(), error = %e, "projection failed; it retries on its own");
                            members.retain(|m| m.name() != p.name());
                            let _ = failed_tx.send(p);
                        }
                        backoff = Duration::from_millis(500);
                        if n > 0 {
                            continue;
                        }
                        let held = runner
                            .log
                            .has_held_back_events(LogPosition::START)
                            .await
                            .unwrap_or(false);
                        if held {
                            Duration::from_millis(20)
                        } else {
                            Duration::from_secs(2)
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "projections failed to step");
                        let b = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        b
                    }
                };
                tokio::select! {
                    _ = commits.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown_group.changed() => {}
                }
            }
        });
        let solo_runner = Arc::clone(&runner);
        let solo = tokio::spawn(async move {
            let runner = solo_runner;
            let mut tasks = Vec::new();
            let mut shutdown_solo = shutdown.clone();
            loop {
                tokio::select! {
                    p = failed_rx.recv() => {
                        let Some(p) = p else { break };
                        tasks.push(tokio::spawn(Self::run_alone(Arc::clone(&runner), p, shutdown.clone())));
                    }
                    _ = shutdown_solo.changed() => {
                        if *shutdown_solo.borrow() { break; }
                    }
                }
            }
            for t in tasks {
                let _ = t.await;
            }
        });
        vec![group, solo]
    }

    /// One projection on its own (after it failed in the group): steps with
    /// back-off until shutdown.
    pub(super) async fn run_alone(
        runner: Arc<Self>,
        p: Arc<dyn Projection>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut commits = runner.log.commits();
        let mut backoff = Duration::from_millis(500);
        // It just failed: wait before the first retry.
        let mut wait = backoff;
        loop {
            tokio::select! {
                _ = commits.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            commits.borrow_and_update();
            wait = match runner.step(p.as_ref(), Slot::Live).await {
                Ok(0) => {
                    backoff = Duration::from_millis(500);
                    let held = runner
                        .log
                        .has_held_back_events(LogPosition::START)
                        .await
                        .unwrap_or(false);
                    if held {
                        Duration::from_millis(20)
                    } else {
                        Duration::from_secs(2)
                    }
                }
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::warn!(projection = p.name(), error = %e, retry_in = ?backoff, "projection failed");
                    let b = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    b
                }
            };
        }
    }

    /// Every projection's checkpoint and state.
    ///
    /// # Errors
    /// [`RunError`].
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, RunError> {
        let head = self.log.head().await?;
        let rows = self
            .db
            .query("SELECT name, version, tx, seq, events_applied, state, last_error, error_position FROM projection_checkpoints ORDER BY name", &[])
            .await?;
        let mut parked = parked::summaries(&self.db).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let pos = LogPosition {
                    tx: int(r, "tx") as u64,
                    seq: int(r, "seq") as u64,
                };
                let s = |k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_string);
                let name = s("name").unwrap_or_default();
                let parked = parked.remove(&name).unwrap_or_default();
                let mut state = s("state").unwrap_or_default();
                if state == "running" && parked.count > 0 {
                    state = "degraded".into();
                }
                ProjectionStatus {
                    name,
                    version: int(r, "version"),
                    position: pos.to_string(),
                    events_applied: int(r, "events_applied"),
                    state,
                    last_error: s("last_error"),
                    error_position: s("error_position"),
                    caught_up: pos >= head,
                    parked: parked.count,
                    parked_position: parked.first_position,
                    parked_error: parked.first_error,
                }
            })
            .collect())
    }

    /// Read-your-writes: waits (at most `timeout`) until every live projection
    /// has applied `position`. Returns whether they did.
    ///
    /// # Errors
    /// [`RunError`].
    pub async fn wait_for(
        &self,
        position: LogPosition,
        timeout: Duration,
    ) -> Result<bool, RunError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let names: Vec<String> = self.names().into_iter().map(str::to_string).collect();
        loop {
            let rows = self
                .db
                .query("SELECT name, tx, seq FROM projection_checkpoints", &[])
                .await?;
            let done = names.iter().all(|n| {
                rows.iter().any(|r| {
                    r.get("name").and_then(|v| v.as_str()) == Some(n.as_str())
                        && LogPosition {
                            tx: int(r, "tx") as u64,
                            seq: int(r, "seq") as u64,
                        } >= position
                })
            });
            if done {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (at most `timeout`) until projection `name` has applied
    /// `position`, without doing its work: the running runner does. Returns
    /// whether it did.
    ///
    /// # Errors
    /// [`RunError`].
    pub async fn wait_for_projection(
        &self,
        name: &str,
        position: LogPosition,
        timeout: Duration,
    ) -> Result<bool, RunError> {
        let p = self.find(name)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.checkpoint(p.as_ref()).await? >= position {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
