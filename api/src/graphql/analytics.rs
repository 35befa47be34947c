//! Analytics in the business's time zone (managers and admins).

use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::{Datelike, NaiveDate};
use domain::ports::Role;
use domain::report::spreadsheet_safe;
use projections::crm::analytics::{self, RevenueKey};
use projections::crm::{customers, kpis};

use super::context::{parts, Allow};
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

/// How many loyalty accounts hold a tier.
#[derive(Debug, SimpleObject)]
pub struct TierCount {
    /// `bronze`, `silver`, `gold` or `platinum`.
    pub tier: String,
    /// Accounts.
    pub accounts: i64,
}

impl From<kpis::Kpis> for Kpis {
    fn from(k: kpis::Kpis) -> Self {
        Self {
            revenue: Money::usd(k.revenue_cents()),
            new_customer_revenue: Money::usd(k.new_customer_revenue_cents),
            returning_customer_revenue: Money::usd(k.returning_customer_revenue_cents),
            promotion_attributed_revenue: Money::usd(k.promotion_attributed_revenue_cents),
            tier_distribution: kpis::TIERS
                .iter()
                .zip(k.tier_accounts)
                .map(|(tier, accounts)| TierCount {
                    tier: (*tier).to_string(),
                    accounts,
                })
                .collect(),
            new_customers: k.new_customers,
            jobs_completed: k.jobs_completed,
            opportunity_conversion_bp: k.opportunity_conversion_bp,
            promotion_conversion_bp: k.promotion_conversion_bp,
            reviews_received: k.reviews_received,
            review_response_rate_bp: k.review_response_rate_bp,
            loyalty_enrolments: k.loyalty_enrolments,
            points_issued: k.points_issued,
            points_redeemed: k.points_redeemed,
            portal_logins: k.portal_logins,
            online_bookings: k.online_bookings,
            review_average_centi: k.review_average_centi,
            review_distribution: k.review_distribution,
            active_customers: k.active_customers,
            lapsed_customers: k.lapsed_customers,
        }
    }
}

/// Analytics queries.
#[derive(Debug, Default)]
pub struct AnalyticsQuery;

#[Object]
impl AnalyticsQuery {
    /// Revenue of completed jobs dated in the business's time zone, from..=to.
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn revenue(
        &self,
        ctx: &Context<'_>,
        from: NaiveDate,
        to: NaiveDate,
        group_by: RevenueGrouping,
    ) -> async_graphql::Result<Vec<RevenueBucket>> {
        let (state, rc) = parts(ctx)?;
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
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn kpis(
        &self,
        ctx: &Context<'_>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> async_graphql::Result<Kpis> {
        let (state, rc) = parts(ctx)?;
        kpis::kpis(
            state.projections.db(),
            state.config.business_timezone,
            from,
            to,
        )
        .await
        .map(Kpis::from)
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
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn export_csv(
        &self,
        ctx: &Context<'_>,
        report: CsvReport,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> async_graphql::Result<String> {
        let (state, rc) = parts(ctx)?;
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
