//! Analytics in the business's time zone (managers and admins).

use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::{Datelike, NaiveDate};
use domain::ports::Role;
use domain::report::{spreadsheet_safe, ReportFigure};
use domain::scheduled_report::ReportMetric;
use projections::crm::analytics::{self, RevenueKey};
use projections::crm::customers;

use super::context::{self, parts};
use super::customers::Money;
use super::errors;

/// How to group revenue.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum RevenueGrouping {
    /// Per calendar day.
    Day,
    /// Per ISO week (Monday start), labelled `YYYY-Www`.
    Week,
    /// Per calendar month, `YYYY-MM`.
    Month,
    /// Per service (a job's amount split evenly over its services).
    Service,
    /// Per technician.
    Technician,
}

/// One bucket of revenue.
#[derive(Debug, SimpleObject)]
pub struct RevenueBucket {
    /// The day, week, month, service or technician.
    pub key: String,
    /// Revenue.
    pub revenue: Money,
    /// Jobs counted.
    pub jobs: i64,
}

/// Headline numbers for a date range.
#[derive(Debug, SimpleObject)]
pub struct Kpis {
    /// New customers.
    pub new_customers: i64,
    /// Completed jobs.
    pub jobs_completed: i64,
    /// Revenue.
    pub revenue: Money,
    /// Revenue from customers' first jobs.
    pub new_customer_revenue: Money,
    /// Revenue from returning customers.
    pub returning_customer_revenue: Money,
    /// Opportunities won / (won + lost), in basis points (1/100 of a percent).
    pub opportunity_conversion_bp: Option<i64>,
    /// Promotion redemptions / deliveries, basis points.
    pub promotion_conversion_bp: Option<i64>,
    /// Reviews received.
    pub reviews_received: i64,
    /// Staff responses / reviews received, basis points.
    pub review_response_rate_bp: Option<i64>,
    /// Loyalty enrolments.
    pub loyalty_enrolments: i64,
    /// Points issued.
    pub points_issued: i64,
    /// Points redeemed.
    pub points_redeemed: i64,
    /// Portal logins.
    pub portal_logins: i64,
    /// Online bookings.
    pub online_bookings: i64,
    /// Revenue of jobs a promotion was redeemed on (completed in the range).
    pub promotion_attributed_revenue: Money,
    /// Average rating of reviews received in the range, × 100 (366 = 3.66 stars).
    pub review_average_centi: Option<i64>,
    /// Reviews received in the range by stars: 1★ first, 5★ last.
    pub review_distribution: Vec<i64>,
    /// Customers whose last completed job is within the 365 days up to the end of `to`.
    pub active_customers: i64,
    /// Customers whose last completed job is older than that (churned), up to the end of `to`.
    pub lapsed_customers: i64,
    /// Loyalty accounts per tier now, lowest tier first.
    pub tier_distribution: Vec<TierCount>,
}

impl Kpis {
    /// The figures of `metrics`, in the order the metrics are listed, named as the fields
    /// here are (money in cents): what a scheduled report records and sends.
    pub fn figures(&self, metrics: &[ReportMetric]) -> Vec<ReportFigure> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for &metric in metrics {
            // A metric listed twice is reported once.
            if seen.contains(&metric) {
                continue;
            }
            seen.push(metric);
            let mut f = |name: &str, value: Option<i64>| {
                out.push(ReportFigure::new(metric, name, value));
            };
            match metric {
                ReportMetric::Revenue => {
                    f("revenue_cents", Some(self.revenue.amount_cents));
                    f("jobs_completed", Some(self.jobs_completed));
                    f(
                        "new_customer_revenue_cents",
                        Some(self.new_customer_revenue.amount_cents),
                    );
                    f(
                        "returning_customer_revenue_cents",
                        Some(self.returning_customer_revenue.amount_cents),
                    );
                }
                ReportMetric::Customers => {
                    f("new_customers", Some(self.new_customers));
                    f("active_customers", Some(self.active_customers));
                    f("lapsed_customers", Some(self.lapsed_customers));
                }
                ReportMetric::OpportunityConversion => {
                    f("opportunity_conversion_bp", self.opportunity_conversion_bp);
                }
                ReportMetric::PromotionEffectiveness => {
                    f("promotion_conversion_bp", self.promotion_conversion_bp);
                    f(
                        "promotion_attributed_revenue_cents",
                        Some(self.promotion_attributed_revenue.amount_cents),
                    );
                }
                ReportMetric::Reviews => {
                    f("reviews_received", Some(self.reviews_received));
                    f("review_average_centi", self.review_average_centi);
                    f("review_response_rate_bp", self.review_response_rate_bp);
                    for (i, n) in self.review_distribution.iter().enumerate() {
                        f(&format!("reviews_{}_stars", i + 1), Some(*n));
                    }
                }
                ReportMetric::Loyalty => {
                    f("loyalty_enrolments", Some(self.loyalty_enrolments));
                    f("points_issued", Some(self.points_issued));
                    f("points_redeemed", Some(self.points_redeemed));
                    for t in &self.tier_distribution {
                        f(&format!("{}_accounts", t.tier), Some(t.accounts));
                    }
                }
                ReportMetric::PortalUsage => {
                    f("portal_logins", Some(self.portal_logins));
                    f("online_bookings", Some(self.online_bookings));
                }
            }
        }
        out
    }
}

/// How many loyalty accounts hold a tier.
#[derive(Debug, SimpleObject)]
pub struct TierCount {
    /// `bronze`, `silver`, `gold` or `platinum`.
    pub tier: String,
    /// Accounts.
    pub accounts: i64,
}

/// The UTC instant a local date starts at in `tz` (the earlier one on a DST fold).
fn local_midnight_utc(tz: chrono_tz::Tz, d: NaiveDate) -> String {
    use chrono::TimeZone;
    let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    let at = tz
        .from_local_datetime(&midnight)
        .earliest()
        // A zone whose clocks skip midnight: the first instant after it.
        .or_else(|| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    projections::projection::rfc3339(at)
}

fn ratio(a: i64, b: i64) -> Option<i64> {
    (b > 0).then(|| a * 10_000 / b)
}

/// The headline figures of from..=to in the business's time zone `tz`, from the read
/// models: what `kpis` answers and what a scheduled report sends.
///
/// # Errors
/// When a read model cannot be read.
pub async fn kpis(
    projections: &projections::ProjectionRunner,
    tz: chrono_tz::Tz,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Kpis, projections::DbError> {
    use projections::crm::{loyalty, reviews};
    let db = projections.db();
    let counters = analytics::counter_totals(db, from, to).await?;
    let m = |name: &str| counters.get(name).copied().unwrap_or(0);
    let split = analytics::revenue_split(db, from, to).await?;
    let start = local_midnight_utc(tz, from);
    let end = local_midnight_utc(tz, to.succ_opt().unwrap_or(to));
    let attributed = analytics::promotion_attributed_cents(db, from, to).await?;
    let review_distribution = reviews::ratings_received(db, &start, &end).await?.to_vec();
    let reviews: i64 = review_distribution.iter().sum();
    let star_total: i64 = review_distribution
        .iter()
        .enumerate()
        .map(|(i, n)| (i as i64 + 1) * n)
        .sum();
    let year_before = projections::projection::rfc3339(
        chrono::DateTime::parse_from_rfc3339(&end)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default()
            - chrono::Duration::days(365),
    );
    let activity = customers::activity(db, &year_before, &end).await?;
    let tiers = loyalty::accounts_by_tier(db).await?;
    let tier_distribution = ["bronze", "silver", "gold", "platinum"]
        .iter()
        .map(|t| TierCount {
            tier: (*t).to_string(),
            accounts: tiers.get(*t).copied().unwrap_or(0),
        })
        .collect();
    Ok(Kpis {
        promotion_attributed_revenue: Money::usd(attributed),
        review_average_centi: (reviews > 0).then(|| star_total * 100 / reviews),
        review_distribution,
        active_customers: activity.active,
        lapsed_customers: activity.lapsed,
        tier_distribution,
        new_customers: m("new_customers"),
        jobs_completed: m("jobs_completed"),
        revenue: Money::usd(split.first_job_cents + split.returning_cents),
        new_customer_revenue: Money::usd(split.first_job_cents),
        returning_customer_revenue: Money::usd(split.returning_cents),
        opportunity_conversion_bp: ratio(
            m("opportunities_won"),
            m("opportunities_won") + m("opportunities_lost"),
        ),
        promotion_conversion_bp: ratio(m("promotion_redemptions"), m("promotion_deliveries")),
        reviews_received: m("reviews_received"),
        review_response_rate_bp: ratio(m("reviews_responded"), m("reviews_received")),
        loyalty_enrolments: m("loyalty_enrolments"),
        points_issued: m("points_issued"),
        points_redeemed: m("points_redeemed"),
        portal_logins: m("portal_logins"),
        online_bookings: m("online_bookings"),
    })
}

/// Analytics queries.
#[derive(Debug, Default)]
pub struct AnalyticsQuery;

#[Object]
impl AnalyticsQuery {
    /// Revenue of completed jobs dated in the business's time zone, from..=to.
    async fn revenue(
        &self,
        ctx: &Context<'_>,
        from: NaiveDate,
        to: NaiveDate,
        group_by: RevenueGrouping,
    ) -> async_graphql::Result<Vec<RevenueBucket>> {
        let (state, rc) = parts(ctx)?;
        context::staff(rc, Role::Manager, "read analytics")?;
        if to < from || (to - from).num_days() > 3_660 {
            return Err(errors::invalid(
                "to",
                "must be on or after from, within ten years",
            ));
        }
        let key = match group_by {
            RevenueGrouping::Service => RevenueKey::Service,
            RevenueGrouping::Technician => RevenueKey::Technician,
            RevenueGrouping::Day | RevenueGrouping::Week | RevenueGrouping::Month => {
                RevenueKey::Day
            }
        };
        let rows = analytics::revenue_by(state.projections.db(), key, from, to)
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        let mut buckets: Vec<RevenueBucket> = Vec::new();
        for r in rows {
            let key = match (group_by, NaiveDate::parse_from_str(&r.key, "%Y-%m-%d")) {
                (RevenueGrouping::Week, Ok(d)) => {
                    let w = d.iso_week();
                    format!("{}-W{:02}", w.year(), w.week())
                }
                (RevenueGrouping::Month, Ok(d)) => format!("{}-{:02}", d.year(), d.month()),
                _ => r.key,
            };
            match buckets.last_mut() {
                Some(b) if b.key == key => {
                    b.revenue.amount_cents += r.cents;
                    b.jobs += r.jobs;
                }
                _ => buckets.push(RevenueBucket {
                    key,
                    revenue: Money::usd(r.cents),
                    jobs: r.jobs,
                }),
            }
        }
        Ok(buckets)
    }

    /// Headline business metrics for from..=to (business time zone).
    async fn kpis(
        &self,
        ctx: &Context<'_>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> async_graphql::Result<Kpis> {
        let (state, rc) = parts(ctx)?;
        context::staff(rc, Role::Manager, "read analytics")?;
        kpis(&state.projections, state.config.business_timezone, from, to)
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))
    }
}

/// Reports that export as CSV.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum CsvReport {
    /// `date,jobs,revenue_cents` per day in the business's time zone.
    RevenueDaily,
    /// `service,jobs,revenue_cents`.
    RevenueByService,
    /// `technician_id,jobs,revenue_cents`.
    RevenueByTechnician,
    /// `date,metric,value`: the daily counters behind the KPIs.
    DailyMetrics,
    /// `customer_id,name,email,phone,tier,loyalty_points,jobs_completed,total_spent_cents`
    /// (erased and merged customers left out).
    Customers,
}

/// CSV export.
#[derive(Debug, Default)]
pub struct ExportQuery;

#[Object]
impl ExportQuery {
    /// A report as CSV text (header row first), for from..=to where dated (managers).
    async fn export_csv(
        &self,
        ctx: &Context<'_>,
        report: CsvReport,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> async_graphql::Result<String> {
        let (state, rc) = parts(ctx)?;
        context::staff(rc, Role::Manager, "export reports")?;
        let from = from.unwrap_or(NaiveDate::from_ymd_opt(0, 1, 1).unwrap_or(NaiveDate::MIN));
        let to = to.unwrap_or(NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX));
        if to < from {
            return Err(errors::invalid("to", "must be on or after from"));
        }
        let db = state.projections.db();
        let internal = |e: projections::DbError| errors::internal(&rc.request_id, &e);
        let int = |n: i64| n.to_string();
        let text = |s: Option<String>| s.as_deref().map(spreadsheet_safe).unwrap_or_default();
        let (columns, records): (&[&str], Vec<Vec<String>>) = match report {
            CsvReport::RevenueDaily
            | CsvReport::RevenueByService
            | CsvReport::RevenueByTechnician => {
                let (key, columns): (RevenueKey, &[&str]) = match report {
                    CsvReport::RevenueDaily => {
                        (RevenueKey::Day, &["date", "jobs", "revenue_cents"])
                    }
                    CsvReport::RevenueByService => {
                        (RevenueKey::Service, &["service", "jobs", "revenue_cents"])
                    }
                    _ => (
                        RevenueKey::Technician,
                        &["technician_id", "jobs", "revenue_cents"],
                    ),
                };
                let rows = analytics::revenue_by(db, key, from, to)
                    .await
                    .map_err(internal)?;
                (
                    columns,
                    rows.into_iter()
                        .map(|r| vec![text(Some(r.key)), int(r.jobs), int(r.cents)])
                        .collect(),
                )
            }
            CsvReport::DailyMetrics => {
                let rows = analytics::daily_counts(db, from, to)
                    .await
                    .map_err(internal)?;
                (
                    &["date", "metric", "value"],
                    rows.into_iter()
                        .map(|r| vec![text(Some(r.date)), text(Some(r.metric)), int(r.value)])
                        .collect(),
                )
            }
            CsvReport::Customers => {
                let rows = customers::export_rows(db).await.map_err(internal)?;
                (
                    &[
                        "customer_id",
                        "name",
                        "email",
                        "phone",
                        "tier",
                        "loyalty_points",
                        "jobs_completed",
                        "total_spent_cents",
                    ],
                    rows.into_iter()
                        .map(|r| {
                            vec![
                                text(Some(r.customer_id)),
                                text(r.name),
                                text(r.email),
                                text(r.phone),
                                text(Some(r.tier)),
                                int(r.loyalty_points),
                                int(r.jobs_completed),
                                int(r.total_spent_cents),
                            ]
                        })
                        .collect(),
                )
            }
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(columns)
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        for record in records {
            w.write_record(&record)
                .map_err(|e| errors::internal(&rc.request_id, &e))?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        // Customers' personal data leaves the system here: who took it, and when, is kept.
        if report == CsvReport::Customers {
            super::reports::audit_export(state, rc, "customers CSV".into())
                .await
                .map_err(|e| errors::app(&rc.request_id, e))?;
        }
        String::from_utf8(bytes).map_err(|e| errors::internal(&rc.request_id, &e))
    }
}
