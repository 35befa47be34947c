//! The analytics read model.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use domain::customer::CustomerEvent;
use domain::job::{BookingSource, JobEvent};
use domain::loyalty::LoyaltyEvent;
use domain::opportunity::OpportunityEvent;
use domain::portal::PortalAccountEvent;
use domain::promotion::PromotionEvent;
use domain::referral::ReferralEvent;
use domain::review::{ReviewEvent, ReviewRequestEvent};

use super::prelude::*;
use crate::db::{DbError, Param, ReadDb};
use crate::row;

/// Facts for analytics, dated in the business's time zone.
#[derive(Debug)]
pub struct Analytics;

const ANALYTICS: &[&str] = &[
    "revenue",
    "revenue_by_service",
    "customer_firsts",
    "daily_counts",
];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[
    domain::customer::AGGREGATE_TYPE,
    domain::job::AGGREGATE_TYPE,
    domain::opportunity::AGGREGATE_TYPE,
    domain::promotion::AGGREGATE_TYPE,
    domain::review::REVIEW_REQUEST_TYPE,
    domain::review::REVIEW_TYPE,
    domain::loyalty::AGGREGATE_TYPE,
    domain::referral::AGGREGATE_TYPE,
    domain::portal::AGGREGATE_TYPE,
];

impl Projection for Analytics {
    fn name(&self) -> &'static str {
        "analytics"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        ANALYTICS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {revenue} (
                job_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, technician_id TEXT, local_date TEXT NOT NULL,
                amount_cents BIGINT NOT NULL, returning_customer BIGINT NOT NULL)",
            "CREATE INDEX {revenue}_date_{gen} ON {revenue} (local_date)",
            "CREATE TABLE {revenue_by_service} (
                job_id TEXT NOT NULL, service TEXT NOT NULL, local_date TEXT NOT NULL, amount_cents BIGINT NOT NULL,
                PRIMARY KEY (job_id, service))",
            "CREATE TABLE {customer_firsts} (
                customer_id TEXT PRIMARY KEY, created_date TEXT, first_job_date TEXT, last_job_date TEXT, jobs BIGINT NOT NULL DEFAULT 0)",
            "CREATE TABLE {daily_counts} (
                local_date TEXT NOT NULL, metric TEXT NOT NULL, value BIGINT NOT NULL, PRIMARY KEY (local_date, metric))",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(event) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let t = ANALYTICS;
            let bump = "INSERT INTO {daily_counts} (local_date, metric, value) VALUES ($1, $2, $3)
                ON CONFLICT (local_date, metric) DO UPDATE SET value = {daily_counts}.value + excluded.value";
            if let Some((name, value, at)) = metric(event) {
                let date = ctx.local_date(at).to_string();
                exec(tx, ctx, t, bump, &[date.into(), name.into(), value.into()]).await?;
            }
            match event {
                Event::Customer(CustomerEvent::CustomerCreated { at, .. }) => {
                    let date = ctx.local_date(*at).to_string();
                    exec(tx, ctx, t, "INSERT INTO {customer_firsts} (customer_id, created_date) VALUES ($1, $2)
                        ON CONFLICT (customer_id) DO UPDATE SET created_date = excluded.created_date",
                        &[e.aggregate_id.clone().into(), date.into()]).await?;
                }
                Event::Job(JobEvent::JobCompleted {
                    customer_id,
                    amount,
                    services,
                    technician_id,
                    at,
                    ..
                }) => {
                    let date = ctx.local_date(*at).to_string();
                    let customer = customer_id.to_string();
                    let prior = tx
                        .query(
                            &ctx.slot.sql(
                                t,
                                "SELECT jobs FROM {customer_firsts} WHERE customer_id = $1",
                            ),
                            &[customer.clone().into()],
                        )
                        .await?;
                    let returning = prior
                        .first()
                        .and_then(|r| r.get("jobs"))
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(0)
                        > 0;
                    exec(tx, ctx, t, "INSERT INTO {customer_firsts} (customer_id, first_job_date, last_job_date, jobs) VALUES ($1, $2, $2, 1)
                        ON CONFLICT (customer_id) DO UPDATE SET first_job_date = COALESCE({customer_firsts}.first_job_date, excluded.first_job_date),
                        last_job_date = excluded.last_job_date, jobs = {customer_firsts}.jobs + 1",
                        &[customer.clone().into(), date.clone().into()]).await?;
                    let amount = amount.cents();
                    exec(tx, ctx, t, "INSERT INTO {revenue} (job_id, customer_id, technician_id, local_date, amount_cents, returning_customer)
                        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id) DO NOTHING",
                        &[e.aggregate_id.clone().into(), customer.into(), technician_id.to_string().into(), date.clone().into(), amount.into(), returning.into()]).await?;
                    // A job's amount is split evenly over its services, remainder to the first,
                    // so that revenue by service adds up to revenue.
                    let mut services: Vec<String> = services
                        .iter()
                        .map(|s| s.as_str().to_owned())
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    if services.is_empty() {
                        services.push("unspecified".into());
                    }
                    let n = services.len() as i64;
                    for (i, s) in services.iter().enumerate() {
                        let share = amount / n + if i == 0 { amount % n } else { 0 };
                        exec(tx, ctx, t, "INSERT INTO {revenue_by_service} (job_id, service, local_date, amount_cents) VALUES ($1, $2, $3, $4)
                            ON CONFLICT (job_id, service) DO NOTHING",
                            &[e.aggregate_id.clone().into(), s.clone().into(), date.clone().into(), share.into()]).await?;
                    }
                }
                _ => {}
            }
            Ok(())
        })
    }
}

/// The daily count an event adds to (metric, amount), and when it happened.
fn metric(event: &Event) -> Option<(&'static str, i64, DateTime<Utc>)> {
    let (name, value, at) = match event {
        Event::Customer(CustomerEvent::CustomerCreated { at, .. }) => ("new_customers", 1, at),
        Event::Job(JobEvent::JobBooked { source, at, .. }) => {
            let name = match source {
                BookingSource::Online => "online_bookings",
                BookingSource::Staff => "staff_bookings",
            };
            (name, 1, at)
        }
        Event::Job(JobEvent::JobCompleted { at, .. }) => ("jobs_completed", 1, at),
        Event::Job(JobEvent::JobCancelled { at, .. }) => ("jobs_cancelled", 1, at),
        Event::Opportunity(OpportunityEvent::OpportunityCreated { at, .. }) => {
            ("opportunities_created", 1, at)
        }
        Event::Opportunity(OpportunityEvent::OpportunityWon { at, .. }) => {
            ("opportunities_won", 1, at)
        }
        Event::Opportunity(OpportunityEvent::OpportunityLost { at, .. }) => {
            ("opportunities_lost", 1, at)
        }
        Event::Opportunity(OpportunityEvent::OfferSent { at, .. }) => ("offers_sent", 1, at),
        Event::Opportunity(OpportunityEvent::OfferAccepted { at, .. }) => {
            ("offers_accepted", 1, at)
        }
        Event::Promotion(PromotionEvent::PromotionDelivered { at, .. }) => {
            ("promotion_deliveries", 1, at)
        }
        Event::Promotion(PromotionEvent::PromotionRedeemed { at, .. }) => {
            ("promotion_redemptions", 1, at)
        }
        Event::ReviewRequest(ReviewRequestEvent::ReviewRequested { at, .. }) => {
            ("review_requests", 1, at)
        }
        Event::Review(event) => match event {
            ReviewEvent::ReviewReceived { at, .. } => ("reviews_received", 1, at),
            ReviewEvent::ReviewResponded { at, .. } => ("reviews_responded", 1, at),
        },
        // Every loyalty event that moves points is counted: a new one must be placed here.
        Event::Loyalty(event) => match event {
            LoyaltyEvent::LoyaltyAccountEnrolled { at, .. } => ("loyalty_enrolments", 1, at),
            LoyaltyEvent::PointsEarned { points, at, .. }
            | LoyaltyEvent::PointsAwarded { points, at, .. }
            | LoyaltyEvent::BirthdayBonusAwarded { points, at, .. }
            | LoyaltyEvent::AnniversaryBonusAwarded { points, at, .. }
            | LoyaltyEvent::ReferralBonusAwarded { points, at, .. } => {
                ("points_issued", *points, at)
            }
            LoyaltyEvent::PointsRedeemed { points, at, .. } => ("points_redeemed", *points, at),
            LoyaltyEvent::PointsExpired { points, at, .. } => ("points_expired", *points, at),
            LoyaltyEvent::TierChanged { .. } => return None,
        },
        Event::Referral(ReferralEvent::ReferralRecorded { at, .. }) => ("referrals", 1, at),
        Event::PortalAccount(PortalAccountEvent::PortalLoginRecorded { at, .. }) => {
            ("portal_logins", 1, at)
        }
        Event::PortalAccount(PortalAccountEvent::PortalAccountRegistered { at, .. }) => {
            ("portal_registrations", 1, at)
        }
        _ => return None,
    };
    Some((name, value, *at))
}

// ---------------------------------------------------------------- queries

/// How revenue is bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevenueKey {
    /// By service (a job's amount split evenly over its services).
    Service,
    /// By technician (`unassigned` when none).
    Technician,
    /// By local date (`YYYY-MM-DD`).
    Day,
}

/// Revenue of one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevenueRow {
    /// The service, technician id or local date.
    pub key: String,
    /// Jobs completed (jobs with several services count once per service).
    pub jobs: i64,
    /// Revenue in cents.
    pub cents: i64,
}

/// Revenue of the jobs completed on local dates from..=to, by `key`, in key order.
///
/// # Errors
/// When the read model cannot be read.
pub async fn revenue_by(
    db: &ReadDb,
    key: RevenueKey,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<RevenueRow>, DbError> {
    let sql = match key {
        RevenueKey::Service => "SELECT service AS k, CAST(SUM(amount_cents) AS BIGINT) AS cents, COUNT(*) AS jobs FROM rm_revenue_by_service WHERE local_date >= $1 AND local_date <= $2 GROUP BY service ORDER BY service",
        RevenueKey::Technician => "SELECT COALESCE(technician_id, 'unassigned') AS k, CAST(SUM(amount_cents) AS BIGINT) AS cents, COUNT(*) AS jobs FROM rm_revenue WHERE local_date >= $1 AND local_date <= $2 GROUP BY COALESCE(technician_id, 'unassigned') ORDER BY 1",
        RevenueKey::Day => "SELECT local_date AS k, CAST(SUM(amount_cents) AS BIGINT) AS cents, COUNT(*) AS jobs FROM rm_revenue WHERE local_date >= $1 AND local_date <= $2 GROUP BY local_date ORDER BY local_date",
    };
    db.query(sql, &range(from, to))
        .await?
        .iter()
        .map(|r| {
            Ok(RevenueRow {
                key: row::text(r, "k")?,
                jobs: row::int(r, "jobs")?,
                cents: row::int(r, "cents")?,
            })
        })
        .collect()
}

/// Each daily counter summed over local dates from..=to (counters with no count absent).
///
/// # Errors
/// When the read model cannot be read.
pub async fn counter_totals(
    db: &ReadDb,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<BTreeMap<String, i64>, DbError> {
    db.query("SELECT metric, CAST(SUM(value) AS BIGINT) AS v FROM rm_daily_counts WHERE local_date >= $1 AND local_date <= $2 GROUP BY metric", &range(from, to))
        .await?
        .iter()
        .map(|r| Ok((row::text(r, "metric")?, row::int(r, "v")?)))
        .collect()
}

/// One daily counter of one local date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyCount {
    /// Local date, `YYYY-MM-DD`.
    pub date: String,
    /// The counter (`jobs_completed`, `points_issued`...).
    pub metric: String,
    /// Its value that day.
    pub value: i64,
}

/// The daily counters of local dates from..=to, by date then counter.
///
/// # Errors
/// When the read model cannot be read.
pub async fn daily_counts(
    db: &ReadDb,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DailyCount>, DbError> {
    db.query("SELECT local_date AS date, metric, value FROM rm_daily_counts WHERE local_date >= $1 AND local_date <= $2 ORDER BY local_date, metric", &range(from, to))
        .await?
        .iter()
        .map(|r| {
            Ok(DailyCount {
                date: row::text(r, "date")?,
                metric: row::text(r, "metric")?,
                value: row::int(r, "value")?,
            })
        })
        .collect()
}

/// Revenue of local dates from..=to, split by whether the customer had completed a job before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevenueSplit {
    /// From customers' first jobs.
    pub first_job_cents: i64,
    /// From returning customers.
    pub returning_cents: i64,
}

/// The revenue of local dates from..=to, new against returning customers.
///
/// # Errors
/// When the read model cannot be read.
pub async fn revenue_split(
    db: &ReadDb,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<RevenueSplit, DbError> {
    let mut split = RevenueSplit::default();
    for r in db.query("SELECT returning_customer AS r, CAST(SUM(amount_cents) AS BIGINT) AS cents FROM rm_revenue WHERE local_date >= $1 AND local_date <= $2 GROUP BY returning_customer", &range(from, to)).await? {
        let cents = row::int(&r, "cents")?;
        if row::int(&r, "r")? == 0 {
            split.first_job_cents += cents;
        } else {
            split.returning_cents += cents;
        }
    }
    Ok(split)
}

/// Revenue of local dates from..=to from jobs a promotion was redeemed on (read across the
/// promotions read model's recipients).
///
/// # Errors
/// When the read models cannot be read.
pub async fn promotion_attributed_cents(
    db: &ReadDb,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<i64, DbError> {
    let rows = db
        .query(
            "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) AS cents FROM rm_revenue
              WHERE local_date >= $1 AND local_date <= $2 AND job_id IN
                (SELECT redeemed_job_id FROM rm_promotion_recipients WHERE redeemed_job_id IS NOT NULL)",
            &range(from, to),
        )
        .await?;
    rows.first().map_or(Ok(0), |r| row::int(r, "cents"))
}

fn range(from: NaiveDate, to: NaiveDate) -> [Param; 2] {
    [Param::from(from.to_string()), Param::from(to.to_string())]
}
