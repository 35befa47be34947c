//! What each job does. Jobs read read models (caught up first) to decide what is due and act
//! only through domain commands, each with the idempotency key `cron:{job}:{slot}:{target}`:
//! a retried attempt replays what an earlier one did instead of doing it again. A business
//! rule refusing a command (already done, not eligible, not the customer's day) counts as
//! skipped; a store error or a conflict fails the attempt, which is retried.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Datelike, Duration, NaiveDate, SecondsFormat, Utc};
use commands::{AppError, CommandOutcome, EventMetadata};
use domain::consent::{Channel, MarketingEligibility};
use domain::customer::Customer;
use domain::ids::{
    CustomerId, JobId, LoyaltyAccountId, OpportunityId, PromotionId, ReviewRequestId,
    ScheduledReportId,
};
use domain::job_run::JobRunCounts;
use domain::loyalty::LoyaltyCommand;
use domain::opportunity::OpportunityCommand;
use domain::promotion::{AudienceSegment, PromotionCommand};
use domain::review::{
    google_review_id, ReviewCommand, ReviewRequestCommand, ReviewSource, MAX_REMINDERS,
};
use domain::scheduled_report::{ReportMetric, ReportPeriod, ScheduledReportCommand};
use domain::values::{is_annual_day, is_leap_year};
use domain::Actor as DomainActor;
use projections::{JsonRow, Param};

use super::runs::list_runs;
use super::schedule::{JobName, Schedule};
use super::Inner;
use projections::crm::kpis::kpis;

mod loyalty;
mod operations;
mod reports;
mod reviews;
mod sales;

use loyalty::*;
use operations::*;
use reports::*;
use reviews::*;
use sales::*;

/// One review fetched from Google Business Profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleReview {
    /// Google's review id.
    pub external_id: String,
    /// 1 to 5 stars.
    pub rating: i64,
    /// The text, if any.
    pub comment: Option<String>,
    /// The customer, when the reviewer could be matched.
    pub customer_id: Option<CustomerId>,
}

/// What a [`GoogleReviews`] source answers: `Ok(None)` when no Google account is configured.
pub type GoogleReviewsResult = Result<Option<Vec<GoogleReview>>, String>;

/// Where sync-google-reviews gets reviews from.
pub trait GoogleReviews: Send + Sync {
    /// Recent reviews; `Ok(None)` when no Google account is configured; `Err` with a message
    /// for the run record when the provider fails (the run is retried).
    fn recent_reviews(&self) -> Pin<Box<dyn Future<Output = GoogleReviewsResult> + Send + '_>>;
}

/// No Google account configured: the job records that and does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGoogleReviews;

impl GoogleReviews for NoGoogleReviews {
    fn recent_reviews(&self) -> Pin<Box<dyn Future<Output = GoogleReviewsResult> + Send + '_>> {
        Box::pin(async { Ok(None) })
    }
}

/// Everything a job run sees.
pub(crate) struct JobContext<'a> {
    pub(crate) inner: &'a Inner,
    pub(crate) job: JobName,
    pub(crate) slot: DateTime<Utc>,
    pub(crate) now: DateTime<Utc>,
    pub(crate) run_id: &'a str,
}

/// What an attempt did.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) counts: JobRunCounts,
    pub(crate) figures: BTreeMap<String, i64>,
    pub(crate) note: Option<String>,
}

/// Why an attempt failed (for `JobRunFailed.error`; no personal data).
#[derive(Debug)]
pub(crate) struct JobFailure(pub(crate) String);

impl<E: Display> From<E> for JobFailure {
    fn from(e: E) -> Self {
        JobFailure(e.to_string())
    }
}

type JobResult = Result<Tally, JobFailure>;

impl Tally {
    /// Counts one command's result; business refusals are skips, everything else fails.
    fn command(&mut self, result: Result<CommandOutcome, AppError>) -> Result<(), JobFailure> {
        self.counts.processed += 1;
        match result {
            Ok(o) if !o.events.is_empty() => self.counts.changed += 1,
            Ok(_) => self.counts.skipped += 1,
            Err(AppError::Rule { code, .. }) => {
                tracing::debug!(code, "scheduled command refused by a rule");
                self.counts.skipped += 1;
            }
            Err(AppError::NotFound { .. } | AppError::Validation { .. }) => {
                self.counts.skipped += 1;
            }
            Err(e) => return Err(JobFailure(e.to_string())),
        }
        Ok(())
    }

    fn skip(&mut self) {
        self.counts.processed += 1;
        self.counts.skipped += 1;
    }

    fn noted(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

impl JobContext<'_> {
    fn meta(&self, target: impl Display) -> EventMetadata {
        let slot = self.slot.to_rfc3339_opts(SecondsFormat::Secs, true);
        EventMetadata::new(
            commands::Actor::System(format!("cron:{}", self.job)),
            self.now,
        )
        .with_request_id(self.run_id)
        .with_idempotency_key(format!("cron:{}:{slot}:{target}", self.job))
    }

    fn today(&self) -> NaiveDate {
        self.now.with_timezone(&self.inner.tz).date_naive()
    }

    async fn rows(&self, sql: &str, params: &[Param]) -> Result<Vec<JsonRow>, JobFailure> {
        Ok(self.inner.projections.query(sql, params).await?)
    }

    async fn customer(&self, id: CustomerId) -> Result<Customer, JobFailure> {
        Ok(self.inner.crm.customers().load(id).await?.aggregate)
    }

    /// SMS first (better response), else email; `None` when neither may be used (the
    /// choice the review-requests policy and `requestReview` make).
    async fn preferred_channel(
        &self,
        id: CustomerId,
    ) -> Result<Option<(Channel, MarketingEligibility)>, JobFailure> {
        let c = self.customer(id).await?;
        let (channel, eligibility) =
            domain::review::request_channel(|ch| c.marketing_eligibility(ch));
        Ok(eligibility.is_eligible().then_some((channel, eligibility)))
    }
}

fn text(r: &JsonRow, k: &str) -> Option<String> {
    r.get(k).and_then(|v| v.as_str()).map(str::to_string)
}

fn int(r: &JsonRow, k: &str) -> i64 {
    r.get(k)
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0)
}

fn time(r: &JsonRow, k: &str) -> Option<DateTime<Utc>> {
    text(r, k)
        .and_then(|s| DateTime::parse_from_rfc3339(s.trim_matches('"')).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn date(r: &JsonRow, k: &str) -> Option<NaiveDate> {
    text(r, k).and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
}

fn id<T>(r: &JsonRow, k: &str, parse: fn(&str) -> Result<T, domain::ValidationError>) -> Option<T> {
    text(r, k).and_then(|s| parse(&s).ok())
}

fn rfc(t: DateTime<Utc>) -> String {
    projections::projection::rfc3339(t)
}

/// Runs one attempt of `ctx.job`.
pub(crate) async fn run(ctx: &JobContext<'_>) -> JobResult {
    // Decisions are taken on read models: bring them up to everything committed before the
    // run (catch-up also waits for events an open transaction still holds back). Bounded, so
    // a stuck transaction delays a run rather than stopping it; a failing projection does not
    // stop the job either (check-system-health reports it).
    match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        ctx.inner.projections.catch_up_all(),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(job = %ctx.job, error = %e, "read models not caught up"),
        Err(_) => {
            tracing::warn!(job = %ctx.job, "read models still behind; deciding on what they hold")
        }
    }
    match ctx.job {
        JobName::ProcessOpportunityOffers => opportunity_offers(ctx).await,
        JobName::CheckStaleOpportunities => stale_opportunities(ctx).await,
        JobName::ProcessPromotionDeliveries => promotion_deliveries(ctx).await,
        JobName::ScheduleBirthdayPromotions => occasion_promotions(ctx, Occasion::Birthday).await,
        JobName::ScheduleAnniversaryPromotions => {
            occasion_promotions(ctx, Occasion::Anniversary).await
        }
        JobName::SendReviewRequests => review_requests(ctx).await,
        JobName::SyncGoogleReviews => google_reviews(ctx).await,
        JobName::ProcessLoyaltyTierUpgrades => loyalty_tiers(ctx).await,
        JobName::AwardBirthdayPoints => occasion_points(ctx, Occasion::Birthday).await,
        JobName::AwardAnniversaryPoints => occasion_points(ctx, Occasion::Anniversary).await,
        JobName::CalculateDailyMetrics => daily_metrics(ctx).await,
        JobName::GenerateWeeklyReport => weekly_report(ctx).await,
        JobName::CheckSystemHealth => system_health(ctx).await,
        JobName::CleanupOldNotifications => expired_message_secrets(ctx).await,
        JobName::CleanupOldLogs => old_logs(ctx).await,
        JobName::CleanupExpiredSessions => expired_sessions(ctx).await,
        JobName::ArchiveOldOpportunities => archive_opportunities(ctx).await,
        JobName::GenerateScheduledReports => scheduled_reports(ctx).await,
    }
}
