//! Job runs as the log tells them, without a read model (one may replace this later): the
//! `JobRun` streams are read with one indexed query (the events' primary key starts with
//! `aggregate_type`) and folded here.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use commands::{EventLog, StoreError};
use domain::job_run::{JobRunCounts, JobRunEvent, JobRunTrigger, AGGREGATE_TYPE};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

/// One stored event of some aggregate type, undecoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Aggregate id.
    pub aggregate_id: String,
    /// Sequence in the stream.
    pub sequence: i64,
    /// Event type.
    pub event_type: String,
    /// Payload (externally tagged JSON).
    pub payload: Value,
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// Every event of `aggregate_type` (of streams started at or after `started_since`, by the
/// database's clock), ordered by stream and sequence.
///
/// # Errors
/// [`StoreError::Database`].
pub async fn events_of_type(
    log: &EventLog,
    aggregate_type: &str,
    started_since: Option<DateTime<Utc>>,
) -> Result<Vec<StoredEvent>, StoreError> {
    // The filter is on the stream's first event so a run is never cut in half.
    match log {
        EventLog::Postgres(pg) => {
            let rows = sqlx::query(
                "SELECT aggregate_id, sequence, event_type, payload FROM events
                  WHERE aggregate_type = $1
                    AND ($2::timestamptz IS NULL OR aggregate_id IN (
                        SELECT aggregate_id FROM events
                         WHERE aggregate_type = $1 AND sequence = 1 AND recorded_at >= $2))
                  ORDER BY aggregate_id, sequence",
            )
            .bind(aggregate_type)
            .bind(started_since)
            .fetch_all(pg.pool())
            .await
            .map_err(db)?;
            rows.iter()
                .map(|r| {
                    Ok(StoredEvent {
                        aggregate_id: r.try_get("aggregate_id").map_err(db)?,
                        sequence: r.try_get("sequence").map_err(db)?,
                        event_type: r.try_get("event_type").map_err(db)?,
                        payload: r.try_get("payload").map_err(db)?,
                    })
                })
                .collect()
        }
        EventLog::Sqlite(s) => {
            let since = started_since.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            let rows = sqlx::query(
                "SELECT aggregate_id, sequence, event_type, payload FROM events
                  WHERE aggregate_type = ?1
                    AND (?2 IS NULL OR aggregate_id IN (
                        SELECT aggregate_id FROM events
                         WHERE aggregate_type = ?1 AND sequence = 1 AND recorded_at >= ?2))
                  ORDER BY aggregate_id, sequence",
            )
            .bind(aggregate_type)
            .bind(since)
            .fetch_all(s.reader())
            .await
            .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let payload: String = r.try_get("payload").map_err(db)?;
                    Ok(StoredEvent {
                        aggregate_id: r.try_get("aggregate_id").map_err(db)?,
                        sequence: r.try_get("sequence").map_err(db)?,
                        event_type: r.try_get("event_type").map_err(db)?,
                        payload: serde_json::from_str(&payload).map_err(|e| {
                            StoreError::Database(format!("unreadable payload: {e}"))
                        })?,
                    })
                })
                .collect()
        }
    }
}

/// How a run ended (or not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Started, not ended: running now, or its instance stopped mid-run.
    Running,
    /// Finished.
    Finished,
    /// Failed after its last attempt.
    Failed,
}

/// One run, folded from its events.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The `JobRun` aggregate id.
    pub run_id: String,
    /// The job.
    pub job: String,
    /// The slot.
    pub slot: DateTime<Utc>,
    /// What started it.
    pub trigger: JobRunTrigger,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Attempts that failed.
    pub failed_attempts: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// Counts, when finished.
    pub counts: Option<JobRunCounts>,
    /// Figures, when finished.
    pub figures: BTreeMap<String, i64>,
    /// Note, when finished.
    pub note: Option<String>,
}

/// Folds `JobRun` events into runs, oldest slot first. Undecodable events are skipped with a
/// warning (they cannot come from this build).
pub fn fold_runs(events: Vec<StoredEvent>) -> Vec<RunRecord> {
    let mut runs: HashMap<String, RunRecord> = HashMap::new();
    for e in events {
        let event: JobRunEvent = match serde_json::from_value(e.payload) {
            Ok(ev) => ev,
            Err(err) => {
                tracing::warn!(run = %e.aggregate_id, error = %err, "unreadable JobRun event");
                continue;
            }
        };
        match event {
            JobRunEvent::JobRunStarted {
                job,
                slot,
                trigger,
                at,
            } => {
                runs.insert(
                    e.aggregate_id.clone(),
                    RunRecord {
                        run_id: e.aggregate_id,
                        job,
                        slot,
                        trigger,
                        started_at: at,
                        ended_at: None,
                        outcome: RunOutcome::Running,
                        failed_attempts: 0,
                        last_error: None,
                        counts: None,
                        figures: BTreeMap::new(),
                        note: None,
                    },
                );
            }
            JobRunEvent::JobRunFinished {
                counts,
                figures,
                note,
                at,
            } => {
                if let Some(r) = runs.get_mut(&e.aggregate_id) {
                    r.outcome = RunOutcome::Finished;
                    r.ended_at = Some(at);
                    r.counts = Some(counts);
                    r.figures = figures;
                    r.note = note;
                }
            }
            JobRunEvent::JobRunFailed {
                error,
                will_retry,
                at,
                ..
            } => {
                if let Some(r) = runs.get_mut(&e.aggregate_id) {
                    r.failed_attempts += 1;
                    r.last_error = Some(error);
                    if !will_retry {
                        r.outcome = RunOutcome::Failed;
                        r.ended_at = Some(at);
                    }
                }
            }
        }
    }
    let mut out: Vec<RunRecord> = runs.into_values().collect();
    out.sort_by(|a, b| (a.slot, &a.job).cmp(&(b.slot, &b.job)));
    out
}

/// Every recorded run (of runs started at or after `started_since`, by the database's clock).
///
/// # Errors
/// [`StoreError`].
pub async fn list_runs(
    log: &EventLog,
    started_since: Option<DateTime<Utc>>,
) -> Result<Vec<RunRecord>, StoreError> {
    Ok(fold_runs(
        events_of_type(log, AGGREGATE_TYPE, started_since).await?,
    ))
}
