//! The scheduled reports read model.

use domain::scheduled_report::ScheduledReportEvent;

use super::prelude::*;

/// Scheduled-report definitions and the periods each one was generated or sent for.
#[derive(Debug)]
pub struct ScheduledReports;

const SCHEDULED_REPORTS: &[&str] = &["scheduled_reports", "scheduled_report_periods"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[domain::scheduled_report::AGGREGATE_TYPE];

impl Projection for ScheduledReports {
    fn name(&self) -> &'static str {
        "scheduled_reports"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        SCHEDULED_REPORTS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {scheduled_reports} (
                report_id TEXT PRIMARY KEY, name TEXT NOT NULL, metrics TEXT NOT NULL, period TEXT NOT NULL,
                recipients TEXT NOT NULL, cron TEXT NOT NULL, defined_by TEXT, defined_at TEXT NOT NULL,
                deleted BIGINT NOT NULL DEFAULT 0, last_generated_at TEXT, last_period_start TEXT)",
            "CREATE TABLE {scheduled_report_periods} (
                report_id TEXT NOT NULL, period_start TEXT NOT NULL, period_end TEXT, row_count BIGINT,
                status TEXT NOT NULL, failure_reason TEXT, recipient_count BIGINT, at TEXT NOT NULL,
                PRIMARY KEY (report_id, period_start))",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(Event::ScheduledReport(event)) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let t = SCHEDULED_REPORTS;
            let id = e.aggregate_id.clone();
            match event {
                ScheduledReportEvent::ScheduledReportDefined {
                    name,
                    metrics,
                    period,
                    recipients,
                    cron,
                    defined_by,
                    at,
                    ..
                } => {
                    exec(tx, ctx, t, "INSERT INTO {scheduled_reports} (report_id, name, metrics, period, recipients, cron, defined_by, defined_at)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (report_id) DO NOTHING",
                        &[id.into(), text(name).into(), json(metrics).into(), text(period).into(),
                          json(recipients).into(), text(cron).into(),
                          Some(json(defined_by)).into(), rfc3339(*at).into()]).await?;
                }
                ScheduledReportEvent::ScheduledReportGenerated {
                    period_start,
                    period_end,
                    row_count,
                    at,
                    ..
                } => {
                    exec(tx, ctx, t, "INSERT INTO {scheduled_report_periods} (report_id, period_start, period_end, row_count, status, at)
                        VALUES ($1, $2, $3, $4, 'generated', $5)
                        ON CONFLICT (report_id, period_start) DO UPDATE SET period_end = $3, row_count = $4, status = 'generated', failure_reason = NULL, at = $5",
                        &[id.clone().into(), text(period_start).into(), text(period_end).into(), i64::from(*row_count).into(), rfc3339(*at).into()]).await?;
                    exec(tx, ctx, t, "UPDATE {scheduled_reports} SET last_generated_at = $2, last_period_start = $3 WHERE report_id = $1",
                        &[id.into(), rfc3339(*at).into(), text(period_start).into()]).await?;
                }
                ScheduledReportEvent::ScheduledReportGenerationFailed {
                    period_start,
                    reason,
                    at,
                } => {
                    exec(tx, ctx, t, "INSERT INTO {scheduled_report_periods} (report_id, period_start, status, failure_reason, at)
                        VALUES ($1, $2, 'failed', $3, $4)
                        ON CONFLICT (report_id, period_start) DO UPDATE SET failure_reason = $3, at = $4",
                        &[id.into(), text(period_start).into(), text(reason).into(), rfc3339(*at).into()]).await?;
                }
                ScheduledReportEvent::ScheduledReportSent {
                    period_start,
                    recipient_count,
                    at,
                } => {
                    exec(tx, ctx, t, "UPDATE {scheduled_report_periods} SET status = 'sent', recipient_count = $3, at = $4
                        WHERE report_id = $1 AND period_start = $2",
                        &[id.into(), text(period_start).into(), i64::from(*recipient_count).into(), rfc3339(*at).into()]).await?;
                }
                ScheduledReportEvent::ScheduledReportRecipientsChanged { recipients, .. } => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {scheduled_reports} SET recipients = $2 WHERE report_id = $1",
                        &[id.into(), json(recipients).into()],
                    )
                    .await?;
                }
                ScheduledReportEvent::ScheduledReportDeleted { .. } => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {scheduled_reports} SET deleted = 1 WHERE report_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- queries

/// Report definitions in definition order (deleted ones when `include_deleted`), only
/// `id` when not empty.
///
/// # Errors
/// [`crate::DbError`].
pub async fn definitions(
    db: &crate::ReadDb,
    include_deleted: bool,
    id: &str,
) -> Result<Vec<crate::JsonRow>, crate::DbError> {
    db.query(
        "SELECT * FROM rm_scheduled_reports WHERE (deleted = 0 OR $1 = 1) AND ($2 = '' OR report_id = $2)
         ORDER BY defined_at, report_id",
        &[include_deleted.into(), id.into()],
    )
    .await
}

/// The generated periods of report `id` (empty: every report), newest first.
///
/// # Errors
/// [`crate::DbError`].
pub async fn periods(db: &crate::ReadDb, id: &str) -> Result<Vec<crate::JsonRow>, crate::DbError> {
    db.query(
        "SELECT * FROM rm_scheduled_report_periods WHERE ($1 = '' OR report_id = $1) ORDER BY period_start DESC",
        &[id.into()],
    )
    .await
}
