//! A scheduled report's runs as managers receive them. The email (text, HTML, CSV
//! attachment) and the later CSV download are both made from the figures the run recorded,
//! read here, so they are the same bytes.

use chrono::NaiveDate;
use domain::ids::ScheduledReportId;
use domain::report::ReportRun;
use domain::scheduled_report::{ScheduledReportEvent, AGGREGATE_TYPE};

use crate::app::{AppError, Crm};

/// Which run of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The run recorded at this stream sequence (what a report email was queued for).
    AtSequence(u64),
    /// The latest run for the period starting on this day (the download).
    ForPeriod(NaiveDate),
}

/// The report and stream sequence a report email's cause (`ScheduledReport:{id}:{sequence}:{n}`)
/// names.
pub fn of_message_cause(cause: &str) -> Option<(ScheduledReportId, u64)> {
    let mut parts = cause.split(':');
    if parts.next() != Some(AGGREGATE_TYPE) {
        return None;
    }
    let report = ScheduledReportId::parse(parts.next()?).ok()?;
    let sequence = parts.next()?.parse().ok()?;
    Some((report, sequence))
}

/// The run of `report` selected by `which`, with the figures it recorded; `None` when the
/// report or the run is unknown, or the run was recorded before runs carried figures.
///
/// # Errors
/// [`AppError::Store`] when the stream cannot be read.
pub async fn find(
    crm: &Crm,
    report: ScheduledReportId,
    which: Which,
) -> Result<Option<ReportRun>, AppError> {
    let store = crm.scheduled_reports();
    let mut name = None;
    let mut found = None;
    for e in crm
        .log()
        .load_stream(AGGREGATE_TYPE, &report.to_string(), 0)
        .await?
    {
        let sequence = e.sequence;
        match store.store().decode(e)? {
            ScheduledReportEvent::ScheduledReportDefined { name: n, .. } => {
                name = Some(n.to_string());
            }
            ScheduledReportEvent::ScheduledReportGenerated {
                period_start,
                period_end,
                figures,
                ..
            } => {
                let chosen = match which {
                    Which::AtSequence(s) => s == sequence,
                    Which::ForPeriod(d) => d == period_start,
                };
                if chosen {
                    found = figures.map(|figures| (period_start, period_end, figures));
                }
            }
            _ => {}
        }
    }
    Ok(match (name, found) {
        (Some(name), Some((period_start, period_end, figures))) => Some(ReportRun {
            name,
            period_start,
            period_end,
            figures,
        }),
        _ => None,
    })
}

/// Where managers download a run's CSV again (a path under the public URL).
pub fn download_path(report: ScheduledReportId, period_start: NaiveDate) -> String {
    format!("/api/reports/{report}/runs/{period_start}.csv")
}
