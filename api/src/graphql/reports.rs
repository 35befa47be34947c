//! Scheduled reports (definitions, the periods generated and sent) and the
//! referral listing.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use domain::ids::{CustomerId, ScheduledReportId};
use domain::ports::Role;
use domain::scheduled_report::{ReportMetric, ReportPeriod, ScheduledReportCommand};
use projections::crm::scheduled_reports;
use projections::JsonRow;

use super::auth::check_len;
use super::command;
use super::context::{self, parts, Allow};
use super::errors;
use super::paging::{self, Page, PageArgs};
use crate::state::AppState;

fn s(r: &JsonRow, k: &str) -> Option<String> {
    r.get(k).and_then(|v| v.as_str()).map(str::to_string)
}

fn i(r: &JsonRow, k: &str) -> Option<i64> {
    r.get(k).and_then(serde_json::Value::as_i64)
}

/// What a report contains.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Revenue by day/week/month, service and technician.
    Revenue,
    /// New, returning and churned customers.
    Customers,
    /// Opportunity conversion.
    OpportunityConversion,
    /// Promotion effectiveness.
    PromotionEffectiveness,
    /// Review average, distribution, response rate.
    Reviews,
    /// Loyalty programme.
    Loyalty,
    /// Portal logins and online bookings.
    PortalUsage,
}

impl From<Metric> for ReportMetric {
    fn from(m: Metric) -> Self {
        match m {
            Metric::Revenue => ReportMetric::Revenue,
            Metric::Customers => ReportMetric::Customers,
            Metric::OpportunityConversion => ReportMetric::OpportunityConversion,
            Metric::PromotionEffectiveness => ReportMetric::PromotionEffectiveness,
            Metric::Reviews => ReportMetric::Reviews,
            Metric::Loyalty => ReportMetric::Loyalty,
            Metric::PortalUsage => ReportMetric::PortalUsage,
        }
    }
}

/// The period a report covers.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Period {
    /// The previous day.
    Daily,
    /// The previous week (Monday–Sunday).
    Weekly,
    /// The previous month.
    Monthly,
}

impl From<Period> for ReportPeriod {
    fn from(p: Period) -> Self {
        match p {
            Period::Daily => ReportPeriod::Daily,
            Period::Weekly => ReportPeriod::Weekly,
            Period::Monthly => ReportPeriod::Monthly,
        }
    }
}

/// One period a report was generated (and perhaps sent) for.
#[derive(Debug, SimpleObject)]
pub struct ReportRun {
    /// First day covered (business time zone).
    pub period_start: String,
    /// Last day covered.
    pub period_end: Option<String>,
    /// `generated`, `sent` or `failed`.
    pub status: String,
    /// Rows in the report.
    pub row_count: Option<i64>,
    /// Recipients it was emailed to.
    pub recipient_count: Option<i64>,
    /// Why generation failed.
    pub failure_reason: Option<String>,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Where a manager downloads the run's CSV (`GET`, bearer token), unless it failed
    /// (runs recorded before runs carried their figures answer 404 there).
    pub csv_path: Option<String>,
}

/// A scheduled report's definition and its runs.
#[derive(Debug, SimpleObject)]
pub struct ScheduledReport {
    /// The report.
    pub id: ID,
    /// Name.
    pub name: String,
    /// Metrics (`revenue`, `customers`, …).
    pub metrics: Vec<String>,
    /// `daily`, `weekly` or `monthly`.
    pub period: String,
    /// Staff email addresses.
    pub recipients: Vec<String>,
    /// 5-field cron, business time zone.
    pub cron: String,
    /// When it was defined (RFC 3339, UTC).
    pub defined_at: String,
    /// Deleted reports stay listed, marked.
    pub deleted: bool,
    /// Periods generated, newest first.
    pub runs: Vec<ReportRun>,
}

/// A referral: who referred whom, and whether both were rewarded.
#[derive(Debug, SimpleObject)]
pub struct Referral {
    /// The referral.
    pub id: ID,
    /// The customer whose code was used.
    pub referrer_id: ID,
    /// The new customer.
    pub referee_id: ID,
    /// The code.
    pub code: String,
    /// When it was recorded (RFC 3339, UTC).
    pub recorded_at: String,
    /// When both sides were rewarded (the referee's first completed job).
    pub rewarded_at: Option<String>,
    /// Points to the referrer.
    pub referrer_points: Option<i64>,
    /// Points to the referee.
    pub referee_points: Option<i64>,
}

/// Scheduled reports with their runs, in definition order; only `id` when given.
async fn load_reports(
    state: &AppState,
    include_deleted: bool,
    id: Option<&str>,
) -> Result<Vec<ScheduledReport>, projections::DbError> {
    let db = state.projections.db();
    let id = id.unwrap_or_default();
    let defs = scheduled_reports::definitions(db, include_deleted, id).await?;
    let runs = scheduled_reports::periods(db, id).await?;
    let list = |r: &JsonRow, k: &str| -> Vec<String> {
        s(r, k)
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    };
    Ok(defs
        .iter()
        .map(|d| {
            let id = s(d, "report_id").unwrap_or_default();
            ScheduledReport {
                name: s(d, "name").unwrap_or_default(),
                metrics: list(d, "metrics"),
                period: s(d, "period").unwrap_or_default(),
                recipients: list(d, "recipients"),
                cron: s(d, "cron").unwrap_or_default(),
                defined_at: s(d, "defined_at").unwrap_or_default(),
                deleted: i(d, "deleted") == Some(1),
                runs: runs
                    .iter()
                    .filter(|r| s(r, "report_id").as_deref() == Some(id.as_str()))
                    .map(|r| ReportRun {
                        csv_path: match (
                            s(r, "status").as_deref(),
                            ScheduledReportId::parse(&id),
                            s(r, "period_start").and_then(|d| d.parse().ok()),
                        ) {
                            (Some("generated" | "sent"), Ok(report), Some(start)) => {
                                Some(commands::report_runs::download_path(report, start))
                            }
                            _ => None,
                        },
                        period_start: s(r, "period_start").unwrap_or_default(),
                        period_end: s(r, "period_end"),
                        status: s(r, "status").unwrap_or_default(),
                        row_count: i(r, "row_count"),
                        recipient_count: i(r, "recipient_count"),
                        failure_reason: s(r, "failure_reason"),
                        at: s(r, "at").unwrap_or_default(),
                    })
                    .collect(),
                id: ID(id),
            }
        })
        .collect())
}

/// Report and referral queries.
#[derive(Debug, Default)]
pub struct ReportQuery;

#[Object]
impl ReportQuery {
    /// Scheduled reports with their runs (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn scheduled_reports(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_deleted: bool,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<ScheduledReport>> {
        let (state, rc) = parts(ctx)?;
        let reports = load_reports(state, include_deleted, None)
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        paging::of_vec(reports, PageArgs::new(after, before, first, last)).await
    }

    /// Referrals, newest first; only one referrer's when `referrerId` is given (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn referrals(
        &self,
        ctx: &Context<'_>,
        referrer_id: Option<ID>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Referral>> {
        let (state, rc) = parts(ctx)?;
        let referrer = match referrer_id {
            Some(id) => CustomerId::parse(&id)
                .map_err(|_| errors::invalid("referrerId", "not a customer id"))?
                .to_string(),
            None => String::new(),
        };
        paging::of_listing(
            state,
            rc,
            projections::crm::loyalty::referrals(&referrer),
            PageArgs::new(after, before, first, last),
            |r| Referral {
                id: ID(s(r, "referral_id").unwrap_or_default()),
                referrer_id: ID(s(r, "referrer_customer_id").unwrap_or_default()),
                referee_id: ID(s(r, "referee_customer_id").unwrap_or_default()),
                code: s(r, "code").unwrap_or_default(),
                recorded_at: s(r, "recorded_at").unwrap_or_default(),
                rewarded_at: s(r, "rewarded_at"),
                referrer_points: i(r, "referrer_points"),
                referee_points: i(r, "referee_points"),
            },
        )
        .await
    }
}

/// Input of `defineScheduledReport`.
#[derive(Debug, InputObject)]
pub struct DefineScheduledReportInput {
    /// Name.
    pub name: String,
    /// What it contains.
    pub metrics: Vec<Metric>,
    /// The period each run covers.
    pub period: Period,
    /// Staff email addresses to send it to.
    pub recipients: Vec<String>,
    /// When to run: 5-field cron in the business's time zone (`0 7 * * 1`: Mondays 07:00).
    pub cron: String,
    /// Makes a retried request safe.
    pub idempotency_key: Option<String>,
}

/// Input of `deleteScheduledReport`.
#[derive(Debug, InputObject)]
pub struct DeleteScheduledReportInput {
    /// The report.
    pub id: ID,
    /// Makes a retried request safe.
    pub idempotency_key: Option<String>,
}

/// What a report mutation did.
#[derive(Debug, SimpleObject)]
#[graphql(complex)]
pub struct ScheduledReportPayload {
    /// The report.
    pub report_id: ID,
    /// Position of the last event (for `sync`).
    pub position: String,
}

#[async_graphql::ComplexObject]
impl ScheduledReportPayload {
    /// The report as the read model now shows it.
    async fn report(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ScheduledReport>> {
        let (state, rc) = parts(ctx)?;
        Ok(load_reports(state, true, Some(&self.report_id))
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?
            .pop())
    }
}

/// Report mutations.
#[derive(Debug, Default)]
pub struct ReportMutation;

#[Object]
impl ReportMutation {
    /// Defines a report the scheduler generates and emails on its schedule (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn define_scheduled_report(
        &self,
        ctx: &Context<'_>,
        input: DefineScheduledReportInput,
    ) -> async_graphql::Result<ScheduledReportPayload> {
        check_len("name", &input.name)?;
        if input.recipients.len() > 50 {
            return Err(errors::invalid("recipients", "at most 50"));
        }
        let (state, rc) = parts(ctx)?;
        // Read as the scheduler will read it: `99 * * * *` would be accepted and never run.
        worker::scheduler::schedule::Schedule::parse(&input.cron, state.config.business_timezone)
            .map_err(|e| errors::invalid("cron", e.to_string()))?;
        let key = input.idempotency_key.as_ref();
        let id = ScheduledReportId::from_uuid(context::id_for_create(state, rc, key).await);
        let define = ScheduledReportCommand::Define {
            report_id: id,
            name: input.name,
            metrics: input.metrics.into_iter().map(Into::into).collect(),
            period: input.period.into(),
            recipients: input.recipients,
            cron: input.cron,
        };
        let (by, on) = (context::staff_actor(rc)?, state.crm.scheduled_reports());
        let done = command::execute(state, rc, on, id, by, key, define).await?;
        Ok(ScheduledReportPayload {
            report_id: ID(id.to_string()),
            position: done.position,
        })
    }

    /// Deletes a scheduled report; its past runs stay listed (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn delete_scheduled_report(
        &self,
        ctx: &Context<'_>,
        input: DeleteScheduledReportInput,
    ) -> async_graphql::Result<ScheduledReportPayload> {
        let id = input.id;
        let report = ScheduledReportId::parse(&id)
            .map_err(|_| errors::invalid("id", "not a scheduled report id"))?;
        let (state, rc) = parts(ctx)?;
        let (by, on) = (context::staff_actor(rc)?, state.crm.scheduled_reports());
        let key = input.idempotency_key.as_ref();
        let delete = ScheduledReportCommand::Delete;
        let done = command::execute(state, rc, on, report, by, key, delete).await?;
        Ok(ScheduledReportPayload {
            report_id: id,
            position: done.position,
        })
    }
}

/// Records in the staff user's stream that they exported `what` (the audit of exports:
/// who, when, what). Refused for anyone but staff.
///
/// # Errors
/// The store's error; the export is not given out then.
pub async fn audit_export(
    state: &AppState,
    rc: &context::RequestCtx,
    what: String,
) -> Result<(), commands::AppError> {
    let Some(context::Principal::Staff { id, role }) = &rc.principal else {
        return Err(commands::AppError::Forbidden {
            message: "only staff export data".into(),
        });
    };
    let meta = context::meta(rc, commands::Actor::Staff(id.to_string()));
    state
        .crm
        .staff_users()
        .execute(
            *id,
            domain::Actor::Staff {
                id: *id,
                role: *role,
            },
            domain::staff::StaffUserCommand::RecordExport { what },
            &meta,
        )
        .await
        .map(|_| ())
}

/// `GET /api/reports/{id}/runs/{period_start}.csv`: a run's CSV, the same bytes as the
/// email's attachment (a manager's or admin's bearer token; each download is audited).
pub fn download_routes(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/reports/{id}/runs/{file}",
            axum::routing::get(download),
        )
        .with_state(state)
}

async fn download(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::ConnectInfo(addr): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    axum::extract::Path((id, file)): axum::extract::Path<(String, String)>,
) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let rc = context::from_headers(&state, &headers, addr).await;
    if let Err(e) = Allow::Staff(Role::Manager).admits(&rc, "download reports") {
        return super::http_graphql_error(&e);
    }
    let not_found = || {
        super::http_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no run of this report for that period".into(),
        )
    };
    let (Ok(report), Some(Ok(period))) = (
        ScheduledReportId::parse(&id),
        file.strip_suffix(".csv")
            .map(str::parse::<chrono::NaiveDate>),
    ) else {
        return not_found();
    };
    let which = commands::report_runs::Which::ForPeriod(period);
    let run = match commands::report_runs::find(&state.crm, report, which).await {
        Ok(Some(run)) => run,
        Ok(None) => return not_found(),
        Err(e) => return super::http_graphql_error(&errors::app(&rc.request_id, e)),
    };
    if let Err(e) = audit_export(&state, &rc, format!("report {report} run {period} (CSV)")).await {
        return super::http_graphql_error(&errors::app(&rc.request_id, e));
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", run.file_name()),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        run.csv(),
    )
        .into_response()
}
