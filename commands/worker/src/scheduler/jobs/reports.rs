//! Jobs of analytics: daily metrics, the weekly report, scheduled reports.

// The jobs share their parent's imports and helpers.
use super::*;

pub(super) async fn figures_between(
    ctx: &JobContext<'_>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(BTreeMap<String, i64>, u64), JobFailure> {
    let (from, to) = (from.to_string(), to.to_string());
    let mut figures = BTreeMap::new();
    let rows = ctx
        .rows(
            "SELECT metric, CAST(SUM(value) AS BIGINT) AS total, COUNT(*) AS days FROM rm_daily_counts
              WHERE local_date >= $1 AND local_date <= $2 GROUP BY metric ORDER BY metric",
            &[from.clone().into(), to.clone().into()],
        )
        .await?;
    let n = rows.len() as u64;
    for r in &rows {
        if let Some(m) = text(r, "metric") {
            figures.insert(m, int(r, "total"));
        }
    }
    let revenue = ctx
        .rows(
            "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) AS cents, COUNT(*) AS jobs FROM rm_revenue
              WHERE local_date >= $1 AND local_date <= $2",
            &[from.into(), to.into()],
        )
        .await?;
    if let Some(r) = revenue.first() {
        figures.insert("revenue_cents".into(), int(r, "cents"));
        figures.insert("jobs_completed".into(), int(r, "jobs"));
    }
    Ok((figures, n))
}

pub(super) async fn daily_metrics(ctx: &JobContext<'_>) -> JobResult {
    let day = ctx.today().pred_opt().unwrap_or(ctx.today());
    let (figures, n) = figures_between(ctx, day, day).await?;
    Ok(Tally {
        counts: JobRunCounts {
            processed: n,
            changed: 0,
            skipped: 0,
        },
        figures,
        note: Some(format!("metrics of {day} (business time zone)")),
    })
}

pub(super) fn previous_week(today: NaiveDate) -> (NaiveDate, NaiveDate) {
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    (monday - Duration::days(7), monday - Duration::days(1))
}

/// The built-in weekly report: defined on the first run (every metric, last week), sent to
/// the active managers and admins of each run, and generated like any scheduled report. A
/// manager who deletes it stops it.
pub(super) async fn weekly_report(ctx: &JobContext<'_>) -> JobResult {
    const EVERY_METRIC: [ReportMetric; 7] = [
        ReportMetric::Revenue,
        ReportMetric::Customers,
        ReportMetric::OpportunityConversion,
        ReportMetric::PromotionEffectiveness,
        ReportMetric::Reviews,
        ReportMetric::Loyalty,
        ReportMetric::PortalUsage,
    ];
    let id = ScheduledReportId::weekly_report();
    let projections = &ctx.inner.projections;
    let (from, to) = previous_week(ctx.today());
    let mut t = Tally::default();
    // The week's figures stay in the run log too, whether or not anyone receives them.
    for f in kpis(projections.db(), ctx.inner.tz, from, to)
        .await?
        .figures(&EVERY_METRIC)
    {
        if let Some(v) = f.value {
            t.figures.insert(f.name, v);
        }
    }
    // A week that ended before the business's first recorded event is not reported: a new
    // install (or a store started on a Monday) would mail a week of zeros it never saw.
    let first = ctx
        .inner
        .crm
        .log()
        .read_all(commands::LogPosition::START, 1)
        .await?
        .first()
        .map(commands::RecordedEvent::occurred_at);
    match first {
        // This run's own start is in the log: nothing readable means older transactions
        // still hold it back (PostgreSQL's gap-safe order). Not known yet: try again.
        None => {
            return Err(JobFailure(
                "the event log's start is not readable yet; retrying".into(),
            ))
        }
        Some(at) if at.with_timezone(&ctx.inner.tz).date_naive() > to => {
            return Ok(t.noted(format!(
                "week {from}..{to} ended before the first recorded event: not reported"
            )));
        }
        Some(_) => {}
    }
    projections.catch_up("scheduled_reports").await?;
    projections.catch_up("accounts").await?;
    // It goes to whoever is an active manager or admin when it is generated: someone
    // deactivated or demoted stops receiving the business's figures.
    let mut recipients: Vec<String> = ctx
        .rows(
            "SELECT email FROM rm_staff_users WHERE active = 1 AND role IN ('admin', 'manager')",
            &[],
        )
        .await?
        .iter()
        .filter_map(|r| text(r, "email"))
        .collect();
    recipients.sort();
    if recipients.is_empty() {
        return Ok(t.noted(format!(
            "week {from}..{to}; figures recorded here, not emailed: no active manager or admin"
        )));
    }
    let known = ctx
        .rows(
            "SELECT recipients, deleted FROM rm_scheduled_reports WHERE report_id = $1",
            &[id.to_string().into()],
        )
        .await?;
    let cmd = match known.first() {
        None => Some(ScheduledReportCommand::Define {
            report_id: id,
            name: "Weekly report".into(),
            metrics: EVERY_METRIC.to_vec(),
            period: ReportPeriod::Weekly,
            recipients: recipients.clone(),
            cron: "0 4 * * 1".into(),
        }),
        Some(r) if int(r, "deleted") == 0 => {
            let mut current: Vec<String> = text(r, "recipients")
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default();
            current.sort();
            (current != recipients)
                .then_some(ScheduledReportCommand::ChangeRecipients { recipients })
        }
        Some(_) => None,
    };
    if let Some(cmd) = cmd {
        let step = match cmd {
            ScheduledReportCommand::Define { .. } => "define".to_string(),
            _ => format!("recipients:{}", ctx.today()),
        };
        t.command(
            ctx.inner
                .crm
                .scheduled_reports()
                .execute(
                    id,
                    DomainActor::System,
                    cmd,
                    &ctx.meta(format!("{id}:{step}")),
                )
                .await,
        )?;
        projections.catch_up("scheduled_reports").await?;
    }
    let changed = t.counts.changed;
    generate_reports(ctx, &mut t, Some(id), true).await?;
    let what = if t.counts.changed > changed {
        "generated; the outbox emails it with its figures"
    } else {
        "nothing new (already generated, or the report was deleted)"
    };
    Ok(t.noted(format!("week {from}..{to}: {what} (scheduled report {id})")))
}

pub(super) async fn scheduled_reports(ctx: &JobContext<'_>) -> JobResult {
    let mut t = Tally::default();
    generate_reports(ctx, &mut t, None, false).await?;
    Ok(t.noted("each due report's figures are recorded; the outbox emails them with the CSV"))
}

/// Generates due reports (only `only` when given; the weekly report is its own job's),
/// once per period: computes the chosen metrics' figures ([`kpis`]) for the period in the
/// business's zone and records them. `always_due`: the calling job is the schedule.
pub(super) async fn generate_reports(
    ctx: &JobContext<'_>,
    t: &mut Tally,
    only: Option<ScheduledReportId>,
    always_due: bool,
) -> Result<(), JobFailure> {
    struct Def {
        metrics: Vec<ReportMetric>,
        period: ReportPeriod,
        cron: String,
        generated: BTreeSet<NaiveDate>,
        deleted: bool,
    }
    let projections = &ctx.inner.projections;
    projections.catch_up("scheduled_reports").await?;
    let mut defs: BTreeMap<String, Def> = BTreeMap::new();
    for r in projections
        .query(
            "SELECT report_id, metrics, period, cron, deleted FROM rm_scheduled_reports",
            &[],
        )
        .await?
    {
        let text = |c: &str| r.get(c).and_then(|v| v.as_str()).unwrap_or_default();
        let Ok(period) = serde_json::from_value::<ReportPeriod>(text("period").into()) else {
            continue;
        };
        let Ok(metrics) = serde_json::from_str::<Vec<ReportMetric>>(text("metrics")) else {
            continue;
        };
        defs.insert(
            text("report_id").to_string(),
            Def {
                metrics,
                period,
                cron: text("cron").to_string(),
                generated: BTreeSet::new(),
                deleted: r.get("deleted").and_then(|v| v.as_i64()) == Some(1),
            },
        );
    }
    for r in projections
        .query(
            "SELECT report_id, period_start FROM rm_scheduled_report_periods WHERE status <> 'failed'",
            &[],
        )
        .await?
    {
        let text = |c: &str| r.get(c).and_then(|v| v.as_str()).unwrap_or_default();
        if let (Some(d), Ok(start)) = (defs.get_mut(text("report_id")), text("period_start").parse()) {
            d.generated.insert(start);
        }
    }
    let today = ctx.today();
    let weekly = ScheduledReportId::weekly_report().to_string();
    for (report, def) in defs.iter().filter(|(_, d)| !d.deleted) {
        let wanted = match only {
            Some(id) => *report == id.to_string(),
            None => *report != weekly,
        };
        if !wanted {
            continue;
        }
        // Due when the report's own schedule had a slot in the day up to this run.
        let due = always_due
            || Schedule::parse(&def.cron, ctx.inner.tz)
                .and_then(|s| s.slots_between(ctx.slot - Duration::days(1), ctx.now, 1))
                .map(|s| !s.is_empty())
                .unwrap_or(false);
        let Ok(report_id) = ScheduledReportId::parse(report) else {
            t.skip();
            continue;
        };
        let (from, to) = match def.period {
            ReportPeriod::Daily => {
                let d = today.pred_opt().unwrap_or(today);
                (d, d)
            }
            ReportPeriod::Weekly => previous_week(today),
            ReportPeriod::Monthly => {
                let first = today.with_day(1).unwrap_or(today);
                let last = first.pred_opt().unwrap_or(first);
                (last.with_day(1).unwrap_or(last), last)
            }
        };
        if !due || def.generated.contains(&from) {
            t.skip();
            continue;
        }
        let figures = kpis(projections.db(), ctx.inner.tz, from, to)
            .await?
            .figures(&def.metrics);
        let cmd = ScheduledReportCommand::RecordGenerated {
            period_start: from,
            period_end: to,
            row_count: u32::try_from(figures.len()).unwrap_or(u32::MAX),
            figures,
        };
        t.command(
            ctx.inner
                .crm
                .scheduled_reports()
                .execute(
                    report_id,
                    DomainActor::System,
                    cmd,
                    &ctx.meta(format!("{report_id}:{from}")),
                )
                .await,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_week_runs_monday_to_sunday() {
        let monday = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
        assert_eq!(
            previous_week(monday),
            (
                NaiveDate::from_ymd_opt(2026, 11, 16).expect("date"),
                NaiveDate::from_ymd_opt(2026, 11, 22).expect("date")
            )
        );
        let wednesday = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
        assert_eq!(previous_week(wednesday), previous_week(monday));
    }
}
