//! Scheduled reports: the two a manager would define on day one.

use chrono::{DateTime, Utc};
use commands::app::AppError;
use domain::ids::ScheduledReportId;
use domain::scheduled_report::{ReportMetric, ReportPeriod, ScheduledReportCommand};

use crate::plan::{uuid, Planner, Step, Timed};
use crate::run::{meta, Ctx};
use crate::DEMO_LOGINS;

/// A scheduled report to define.
#[derive(Debug, Clone)]
pub(crate) struct NewReport {
    id: ScheduledReportId,
    name: String,
    metrics: Vec<ReportMetric>,
    period: ReportPeriod,
    cron: String,
}

/// A weekly and a monthly report, at minutes 60 and 61.
pub(crate) fn plan(p: &mut Planner) {
    for (i, (name, metrics, period, cron)) in [
        (
            "Weekly revenue",
            vec![ReportMetric::Revenue, ReportMetric::Customers],
            ReportPeriod::Weekly,
            "0 7 * * 1",
        ),
        (
            "Monthly marketing",
            vec![
                ReportMetric::PromotionEffectiveness,
                ReportMetric::Reviews,
                ReportMetric::Loyalty,
            ],
            ReportPeriod::Monthly,
            "0 7 1 * *",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let id = ScheduledReportId(uuid(&mut p.rng));
        let step = Step::DefineReport(NewReport {
            id,
            name: name.into(),
            metrics,
            period,
            cron: cron.into(),
        });
        p.setup.push(Timed {
            at: p.setup_at(60 + i as i64),
            lane: 0,
            step,
        });
    }
}

/// Defined by the manager, sent to the manager and the admin.
pub(crate) async fn define(ctx: &Ctx, t: DateTime<Utc>, r: &NewReport) -> Result<(), AppError> {
    let cmd = ScheduledReportCommand::Define {
        report_id: r.id,
        name: r.name.clone(),
        metrics: r.metrics.clone(),
        period: r.period,
        recipients: vec![DEMO_LOGINS[1].0.into(), DEMO_LOGINS[0].0.into()],
        cron: r.cron.clone(),
    };
    ctx.crm
        .scheduled_reports()
        .execute(r.id, ctx.manager(), cmd, &meta(t))
        .await?;
    Ok(())
}
