//! The scheduler's run log, read from the `job_runs` read model (one row per
//! `JobRun` stream; see projections::crm::JobRuns).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use commands::StoreError;
use domain::job_run::{JobRunCounts, JobRunTrigger};
use projections::{JsonRow, ProjectionRunner};
use serde::{Deserialize, Serialize};

/// How a run ended (or not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

fn time(r: &JsonRow, column: &str) -> Option<DateTime<Utc>> {
    r.get(column)
        .and_then(|v| v.as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn json_column<T: serde::de::DeserializeOwned>(r: &JsonRow, column: &str) -> Option<T> {
    r.get(column)
        .and_then(|v| v.as_str())
        .and_then(|t| serde_json::from_str(t).ok())
}

fn record(r: &JsonRow) -> Option<RunRecord> {
    let text = |c: &str| r.get(c).and_then(|v| v.as_str()).map(str::to_string);
    Some(RunRecord {
        run_id: text("run_id")?,
        job: text("job")?,
        slot: time(r, "slot")?,
        trigger: serde_json::from_value(text("trigger")?.into()).ok()?,
        started_at: time(r, "started_at")?,
        ended_at: time(r, "ended_at"),
        outcome: serde_json::from_value(text("outcome")?.into()).ok()?,
        failed_attempts: r
            .get("failed_attempts")
            .and_then(|v| v.as_i64())
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        last_error: text("last_error"),
        counts: json_column(r, "counts"),
        figures: json_column(r, "figures").unwrap_or_default(),
        note: text("note"),
    })
}

/// Every recorded run (of runs started at or after `started_since`), oldest slot first. The
/// read model is caught up first for up to `catch_up_within`, so a run that just ended is
/// in the list — but not longer: a transaction held open elsewhere holds catching up back
/// indefinitely, and the list as it stands is better than no answer.
///
/// # Errors
/// [`StoreError`].
pub async fn list_runs(
    projections: &ProjectionRunner,
    started_since: Option<DateTime<Utc>>,
    catch_up_within: std::time::Duration,
) -> Result<Vec<RunRecord>, StoreError> {
    let db = |e: &dyn std::fmt::Display| StoreError::Database(e.to_string());
    if !catch_up_within.is_zero() {
        if let Ok(caught_up) =
            tokio::time::timeout(catch_up_within, projections.catch_up("job_runs")).await
        {
            caught_up.map_err(|e| db(&e))?;
        }
    }
    let since = started_since
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let rows = projections
        .query(
            "SELECT * FROM rm_job_runs WHERE started_at >= $1 ORDER BY slot, job, run_id",
            &[since.into()],
        )
        .await
        .map_err(|e| db(&e))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let run = record(r);
            if run.is_none() {
                tracing::warn!(row = ?r.get("run_id"), "unreadable job-run row skipped");
            }
            run
        })
        .collect())
}
