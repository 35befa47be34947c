//! The analytics read model.

use chrono::{DateTime, Utc};
use domain::customer::CustomerEvent;
use domain::job::{BookingSource, JobEvent};
use domain::loyalty::LoyaltyEvent;
use domain::opportunity::OpportunityEvent;
use domain::portal::PortalAccountEvent;
use domain::promotion::PromotionEvent;
use domain::referral::ReferralEvent;
use domain::review::{ReviewEvent, ReviewRequestEvent};

use super::prelude::*;

/// Facts for analytics, dated in the business's time zone.
#[derive(Debug)]
pub struct Analytics;

const ANALYTICS: &[&str] = &[
    "revenue",
    "revenue_by_service",
    "customer_firsts",
    "daily_counts",
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
            let Some(event) = e.event()? else {
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
