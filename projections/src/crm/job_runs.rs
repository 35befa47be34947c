//! The job runs read model.

use chrono::{DateTime, Utc};
use domain::job_run::JobRunEvent;

use super::prelude::*;

/// The scheduler's run log: one row per `JobRun` stream.
#[derive(Debug)]
pub struct JobRuns;

const JOB_RUNS: &[&str] = &["job_runs"];

/// RFC 3339 with milliseconds, UTC: run times are finer than a second.
fn rfc3339_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[domain::job_run::AGGREGATE_TYPE];

impl Projection for JobRuns {
    fn name(&self) -> &'static str {
        "job_runs"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        JOB_RUNS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {job_runs} (
                run_id TEXT PRIMARY KEY, job TEXT NOT NULL, slot TEXT NOT NULL, trigger TEXT NOT NULL,
                started_at TEXT NOT NULL, ended_at TEXT, outcome TEXT NOT NULL,
                failed_attempts BIGINT NOT NULL DEFAULT 0, last_error TEXT,
                counts TEXT, figures TEXT NOT NULL DEFAULT '{}', note TEXT)",
            "CREATE INDEX {job_runs}_started_{gen} ON {job_runs} (started_at)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(Event::JobRun(event)) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let t = JOB_RUNS;
            let id = e.aggregate_id.clone();
            match event {
                JobRunEvent::JobRunStarted {
                    job,
                    slot,
                    trigger,
                    at,
                } => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "INSERT INTO {job_runs} (run_id, job, slot, trigger, started_at, outcome)
                        VALUES ($1, $2, $3, $4, $5, 'running') ON CONFLICT (run_id) DO NOTHING",
                        &[
                            id.into(),
                            text(job).into(),
                            rfc3339_millis(*slot).into(),
                            text(trigger).into(),
                            rfc3339_millis(*at).into(),
                        ],
                    )
                    .await?;
                }
                JobRunEvent::JobRunFinished {
                    counts,
                    figures,
                    note,
                    at,
                } => {
                    exec(tx, ctx, t, "UPDATE {job_runs} SET outcome = 'finished', ended_at = $2, counts = $3, figures = $4, note = $5 WHERE run_id = $1",
                        &[id.into(), rfc3339_millis(*at).into(), json(counts).into(),
                          json(figures).into(), text(note).into()]).await?;
                }
                JobRunEvent::JobRunFailed {
                    error,
                    will_retry,
                    at,
                    ..
                } => {
                    let last = !*will_retry;
                    exec(tx, ctx, t, "UPDATE {job_runs} SET failed_attempts = failed_attempts + 1, last_error = $2,
                        outcome = CASE WHEN $3 = 1 THEN 'failed' ELSE outcome END,
                        ended_at = CASE WHEN $3 = 1 THEN $4 ELSE ended_at END WHERE run_id = $1",
                        &[id.into(), text(error).into(), i64::from(last).into(), rfc3339_millis(*at).into()]).await?;
                }
            }
            Ok(())
        })
    }
}
