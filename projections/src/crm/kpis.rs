//! The headline figures of a date range in the business's time zone, gathered from several
//! read models: what the `kpis` query answers and what a scheduled report records and sends.

use chrono::NaiveDate;
use domain::report::ReportFigure;
use domain::scheduled_report::ReportMetric;

use super::{analytics, customers, loyalty, reviews};
use crate::{DbError, ReadDb};

/// The loyalty tiers, lowest first, as the read model names them.
pub const TIERS: [&str; 4] = ["bronze", "silver", "gold", "platinum"];

/// Headline numbers for a date range (money in cents, rates in basis points).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kpis {
    /// New customers.
    pub new_customers: i64,
    /// Completed jobs.
    pub jobs_completed: i64,
    /// Revenue from customers' first jobs.
    pub new_customer_revenue_cents: i64,
    /// Revenue from returning customers.
    pub returning_customer_revenue_cents: i64,
    /// Opportunities won / (won + lost).
    pub opportunity_conversion_bp: Option<i64>,
    /// Promotion redemptions / deliveries.
    pub promotion_conversion_bp: Option<i64>,
    /// Reviews received.
    pub reviews_received: i64,
    /// Staff responses / reviews received.
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
    pub promotion_attributed_revenue_cents: i64,
    /// Average rating of reviews received in the range, × 100 (366 = 3.66 stars).
    pub review_average_centi: Option<i64>,
    /// Reviews received in the range by stars: 1★ first, 5★ last.
    pub review_distribution: Vec<i64>,
    /// Customers whose last completed job is within the 365 days up to the end of `to`.
    pub active_customers: i64,
    /// Customers whose last completed job is older than that, up to the end of `to`.
    pub lapsed_customers: i64,
    /// Loyalty accounts per tier now, in [`TIERS`] order.
    pub tier_accounts: [i64; 4],
}

impl Kpis {
    /// Revenue (first jobs and returning customers').
    pub fn revenue_cents(&self) -> i64 {
        self.new_customer_revenue_cents + self.returning_customer_revenue_cents
    }

    /// The figures of `metrics`, in the order the metrics are listed, named as the GraphQL
    /// fields are (money in cents): what a scheduled report records and sends.
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
                    f("revenue_cents", Some(self.revenue_cents()));
                    f("jobs_completed", Some(self.jobs_completed));
                    f(
                        "new_customer_revenue_cents",
                        Some(self.new_customer_revenue_cents),
                    );
                    f(
                        "returning_customer_revenue_cents",
                        Some(self.returning_customer_revenue_cents),
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
                        Some(self.promotion_attributed_revenue_cents),
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
                    for (tier, n) in TIERS.iter().zip(self.tier_accounts) {
                        f(&format!("{tier}_accounts"), Some(n));
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

/// The UTC instant a local date starts at in `tz` (the earlier one on a DST fold).
fn local_midnight_utc(tz: chrono_tz::Tz, d: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&midnight)
        .earliest()
        // A zone whose clocks skip midnight: the first instant after it.
        .or_else(|| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default()
}

fn ratio(a: i64, b: i64) -> Option<i64> {
    (b > 0).then(|| a * 10_000 / b)
}

/// The headline figures of from..=to in the business's time zone `tz`.
///
/// # Errors
/// When a read model cannot be read.
pub async fn kpis(
    db: &ReadDb,
    tz: chrono_tz::Tz,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Kpis, DbError> {
    let counters = analytics::counter_totals(db, from, to).await?;
    let m = |name: &str| counters.get(name).copied().unwrap_or(0);
    let split = analytics::revenue_split(db, from, to).await?;
    let start = local_midnight_utc(tz, from);
    let end = local_midnight_utc(tz, to.succ_opt().unwrap_or(to));
    let attributed = analytics::promotion_attributed_cents(db, from, to).await?;
    let (start, year_before, end) = (
        crate::projection::rfc3339(start),
        crate::projection::rfc3339(end - chrono::Duration::days(365)),
        crate::projection::rfc3339(end),
    );
    let review_distribution = reviews::ratings_received(db, &start, &end).await?.to_vec();
    let reviews: i64 = review_distribution.iter().sum();
    let star_total: i64 = review_distribution
        .iter()
        .enumerate()
        .map(|(i, n)| (i as i64 + 1) * n)
        .sum();
    let activity = customers::activity(db, &year_before, &end).await?;
    let tiers = loyalty::accounts_by_tier(db).await?;
    Ok(Kpis {
        promotion_attributed_revenue_cents: attributed,
        review_average_centi: (reviews > 0).then(|| star_total * 100 / reviews),
        review_distribution,
        active_customers: activity.active,
        lapsed_customers: activity.lapsed,
        tier_accounts: TIERS.map(|t| tiers.get(t).copied().unwrap_or(0)),
        new_customers: m("new_customers"),
        jobs_completed: m("jobs_completed"),
        new_customer_revenue_cents: split.first_job_cents,
        returning_customer_revenue_cents: split.returning_cents,
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
