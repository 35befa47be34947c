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

// ------------------------------------------------------------ opportunities

async fn opportunity_offers(ctx: &JobContext<'_>) -> JobResult {
    let mut t = Tally::default();
    let rows = ctx
        .rows(
            "SELECT opportunity_id, customer_id, offer_status, offer_expires_at FROM rm_opportunities
              WHERE status = 'open' AND archived = 0 AND offer_status IN ('configured', 'sent', 'viewed')
              ORDER BY opportunity_id",
            &[],
        )
        .await?;
    let opps = ctx.inner.crm.opportunities();
    for r in rows {
        let (Some(opp), Some(customer)) = (
            id(&r, "opportunity_id", OpportunityId::parse),
            id(&r, "customer_id", CustomerId::parse),
        ) else {
            t.skip();
            continue;
        };
        let expired = time(&r, "offer_expires_at").is_some_and(|e| e <= ctx.now);
        let cmd = if expired {
            OpportunityCommand::ExpireOffer
        } else if text(&r, "offer_status").as_deref() == Some("configured") {
            match ctx.preferred_channel(customer).await? {
                Some((channel, eligibility)) => OpportunityCommand::SendOffer {
                    channel,
                    eligibility,
                },
                None => {
                    t.skip(); // nobody to send it to; it will expire
                    continue;
                }
            }
        } else {
            t.skip(); // sent, still valid
            continue;
        };
        let kind = if expired { "expire" } else { "send" };
        t.command(
            opps.execute(
                opp,
                DomainActor::System,
                cmd,
                &ctx.meta(format!("{kind}:{opp}")),
            )
            .await,
        )?;
    }
    Ok(t)
}

async fn stale_opportunities(ctx: &JobContext<'_>) -> JobResult {
    let days = ctx.inner.options.stale_after_days;
    let cutoff = ctx.now - Duration::days(i64::from(days));
    let rows = ctx
        .rows(
            "SELECT opportunity_id FROM rm_opportunities
              WHERE status = 'open' AND archived = 0 AND stale = 0 AND last_activity_at <= $1
              ORDER BY opportunity_id",
            &[rfc(cutoff).into()],
        )
        .await?;
    let mut t = Tally::default();
    for r in rows {
        let Some(opp) = id(&r, "opportunity_id", OpportunityId::parse) else {
            t.skip();
            continue;
        };
        let cmd = OpportunityCommand::FlagStale {
            inactive_days: days,
        };
        t.command(
            ctx.inner
                .crm
                .opportunities()
                .execute(opp, DomainActor::System, cmd, &ctx.meta(opp))
                .await,
        )?;
    }
    Ok(t)
}

async fn archive_opportunities(ctx: &JobContext<'_>) -> JobResult {
    let cutoff = ctx.now - Duration::days(i64::from(ctx.inner.options.archive_after_days));
    let rows = ctx
        .rows(
            "SELECT opportunity_id FROM rm_opportunities
              WHERE status IN ('won', 'lost') AND archived = 0 AND closed_at <= $1
              ORDER BY opportunity_id",
            &[rfc(cutoff).into()],
        )
        .await?;
    let mut t = Tally::default();
    for r in rows {
        let Some(opp) = id(&r, "opportunity_id", OpportunityId::parse) else {
            t.skip();
            continue;
        };
        t.command(
            ctx.inner
                .crm
                .opportunities()
                .execute(
                    opp,
                    DomainActor::System,
                    OpportunityCommand::Archive,
                    &ctx.meta(opp),
                )
                .await,
        )?;
    }
    Ok(t)
}

// ------------------------------------------------------------ promotions

/// A promotion that may deliver now.
struct LivePromotion {
    id: PromotionId,
    channel: Channel,
    audience: Option<AudienceSegment>,
    /// When it was scheduled to go out (a birthday-week audience is that day's week).
    send_at: Option<DateTime<Utc>>,
}

async fn live_promotions(
    ctx: &JobContext<'_>,
    kind: &str,
) -> Result<Vec<LivePromotion>, JobFailure> {
    let rows = ctx
        .rows(
            "SELECT promotion_id, channel, audience, send_at, starts_at, ends_at FROM rm_promotions
              WHERE kind = $1 AND status IN ('scheduled', 'delivering') ORDER BY promotion_id",
            &[kind.into()],
        )
        .await?;
    Ok(rows
        .iter()
        .filter(|r| {
            let due = |k: &str| time(r, k).is_some_and(|t| t <= ctx.now);
            due("send_at") && due("starts_at") && time(r, "ends_at").is_some_and(|e| ctx.now < e)
        })
        .filter_map(|r| {
            let channel =
                serde_json::from_value(serde_json::Value::String(text(r, "channel")?)).ok()?;
            Some(LivePromotion {
                id: id(r, "promotion_id", PromotionId::parse)?,
                channel,
                audience: text(r, "audience").and_then(|a| serde_json::from_str(&a).ok()),
                send_at: time(r, "send_at"),
            })
        })
        .collect())
}

async fn deliver(
    ctx: &JobContext<'_>,
    t: &mut Tally,
    promotion: &LivePromotion,
    customer: CustomerId,
) -> Result<(), JobFailure> {
    let eligibility = ctx
        .customer(customer)
        .await?
        .marketing_eligibility(promotion.channel);
    let cmd = PromotionCommand::RecordDelivery {
        customer_id: customer,
        eligibility,
    };
    t.command(
        ctx.inner
            .crm
            .promotions()
            .execute(
                promotion.id,
                DomainActor::System,
                cmd,
                &ctx.meta(format!("{}:{customer}", promotion.id)),
            )
            .await,
    )
}

async fn promotion_deliveries(ctx: &JobContext<'_>) -> JobResult {
    let mut t = Tally::default();
    let batch = i64::from(ctx.inner.options.promotion_batch_size);
    for p in live_promotions(ctx, "campaign").await? {
        // Customers already attempted are in the recipients table; the aggregate refuses a
        // second attempt anyway, so a lagging read model costs a skip, not a double send.
        let base = "SELECT customer_id FROM rm_customers c
                     WHERE erased = 0 AND merged_into IS NULL
                       AND NOT EXISTS (SELECT 1 FROM rm_promotion_recipients r
                                        WHERE r.promotion_id = $1 AND r.customer_id = c.customer_id)";
        let (filter, extra): (String, Vec<Param>) = match &p.audience {
            Some(AudienceSegment::AllCustomers) => (String::new(), vec![]),
            Some(AudienceSegment::Tagged { tag }) => (
                " AND tags LIKE $3".into(),
                vec![format!("%{}%", serde_json::to_string(tag)?).into()],
            ),
            Some(AudienceSegment::LoyaltyTier { tier }) => (
                " AND tier = $3 AND customer_id IN (SELECT customer_id FROM rm_loyalty_accounts)"
                    .into(),
                serde_json::to_value(tier)?
                    .as_str()
                    .map(Param::from)
                    .into_iter()
                    .collect(),
            ),
            Some(AudienceSegment::Inactive { days }) => (
                " AND (last_job_at IS NULL OR last_job_at <= $3)".into(),
                vec![rfc(ctx.now - Duration::days(i64::from(*days))).into()],
            ),
            Some(AudienceSegment::BirthdayIn { window }) => {
                // The week or month of the day it was scheduled for, in the business's zone:
                // batches that run past Sunday or the month's end keep the same audience.
                let day = p
                    .send_at
                    .map_or(ctx.today(), |t| t.with_timezone(&ctx.inner.tz).date_naive());
                let days = window.month_days(day);
                let slots: Vec<String> = (0..days.len()).map(|i| format!("${}", i + 3)).collect();
                (
                    format!(
                        " AND birthday IS NOT NULL AND substr(birthday, 6, 5) IN ({})",
                        slots.join(", ")
                    ),
                    days.into_iter().map(Param::from).collect(),
                )
            }
            // Occasion audiences belong to the occasion jobs; an unreadable one is skipped.
            Some(AudienceSegment::BirthdayToday | AudienceSegment::AnniversaryToday) | None => {
                continue
            }
        };
        let sql = format!("{base}{filter} ORDER BY customer_id LIMIT $2");
        let mut params = vec![p.id.to_string().into(), Param::Int(batch)];
        params.extend(extra);
        for r in ctx.rows(&sql, &params).await? {
            match id(&r, "customer_id", CustomerId::parse) {
                Some(c) => deliver(ctx, &mut t, &p, c).await?,
                None => t.skip(),
            }
        }
    }
    Ok(t)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occasion {
    Birthday,
    Anniversary,
}

/// Customers whose birthday (or customer-since anniversary) is `today`, with that date.
/// 29 February counts on 28 February in common years (the domain's `is_annual_day`).
async fn customers_with_occasion(
    ctx: &JobContext<'_>,
    occasion: Occasion,
    enrolled_only: bool,
) -> Result<Vec<(CustomerId, NaiveDate)>, JobFailure> {
    let today = ctx.today();
    let column = match occasion {
        Occasion::Birthday => "birthday",
        Occasion::Anniversary => "customer_since",
    };
    let month_day = today.format("%m-%d").to_string();
    let leap_day = if today.month() == 2 && today.day() == 28 && !is_leap_year(today.year()) {
        "02-29".to_string()
    } else {
        month_day.clone()
    };
    let join = if enrolled_only {
        " JOIN rm_loyalty_accounts l ON l.customer_id = c.customer_id"
    } else {
        ""
    };
    let sql = format!(
        "SELECT c.customer_id, c.{column} AS day FROM rm_customers c{join}
          WHERE c.erased = 0 AND c.merged_into IS NULL AND c.{column} IS NOT NULL
            AND (substr(c.{column}, 6, 5) = $1 OR substr(c.{column}, 6, 5) = $2)
          ORDER BY c.customer_id"
    );
    let rows = ctx.rows(&sql, &[month_day.into(), leap_day.into()]).await?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((id(r, "customer_id", CustomerId::parse)?, date(r, "day")?)))
        .filter(|(_, d)| {
            is_annual_day(*d, today) && (occasion == Occasion::Birthday || d.year() < today.year())
        })
        .collect())
}

async fn occasion_promotions(ctx: &JobContext<'_>, occasion: Occasion) -> JobResult {
    let kind = match occasion {
        Occasion::Birthday => "birthday",
        Occasion::Anniversary => "anniversary",
    };
    let promotions = live_promotions(ctx, kind).await?;
    let mut t = Tally::default();
    if promotions.is_empty() {
        return Ok(t.noted(format!("no live {kind} promotion")));
    }
    let customers = customers_with_occasion(ctx, occasion, false).await?;
    for p in &promotions {
        for (c, _) in &customers {
            deliver(ctx, &mut t, p, *c).await?;
        }
    }
    Ok(t)
}

// ------------------------------------------------------------ reviews

async fn review_requests(ctx: &JobContext<'_>) -> JobResult {
    let mut t = Tally::default();
    let since = ctx.now - Duration::days(i64::from(ctx.inner.options.review_request_window_days));
    // The review-requests policy asks on JobCompleted; this catches what it could not (the
    // policy was down, or the job was completed before the customer consented). A job the
    // customer already reviewed is not asked about.
    let rows = ctx
        .rows(
            "SELECT j.job_id, j.customer_id FROM rm_jobs j
              WHERE j.status = 'completed' AND j.completed_at >= $1
                AND NOT EXISTS (SELECT 1 FROM rm_review_requests r WHERE r.job_id = j.job_id)
                AND NOT EXISTS (SELECT 1 FROM rm_reviews v WHERE v.job_id = j.job_id)
              ORDER BY j.job_id",
            &[rfc(since).into()],
        )
        .await?;
    let requests = ctx.inner.crm.review_requests();
    for r in rows {
        let (Some(job), Some(customer)) = (
            id(&r, "job_id", JobId::parse),
            id(&r, "customer_id", CustomerId::parse),
        ) else {
            t.skip();
            continue;
        };
        let Some((channel, eligibility)) = ctx.preferred_channel(customer).await? else {
            t.skip();
            continue;
        };
        let cmd = ReviewRequestCommand::Request {
            job_id: job,
            customer_id: customer,
            channel,
            eligibility,
        };
        let rid = ReviewRequestId::for_job(job);
        t.command(
            requests
                .execute(
                    rid,
                    DomainActor::System,
                    cmd,
                    &ctx.meta(format!("request:{rid}")),
                )
                .await,
        )?;
    }
    // Reminder n is due n × interval days after the request, while unfulfilled.
    let every = i64::from(ctx.inner.options.review_reminder_every_days);
    let open = ctx
        .rows(
            "SELECT review_request_id, customer_id, channel, reminders, requested_at FROM rm_review_requests
              WHERE status = 'requested' AND reminders < $1 ORDER BY review_request_id",
            &[Param::Int(i64::from(MAX_REMINDERS))],
        )
        .await?;
    for r in open {
        let n = int(&r, "reminders") + 1;
        let due =
            time(&r, "requested_at").is_some_and(|at| at + Duration::days(every * n) <= ctx.now);
        let (Some(rid), Some(customer)) = (
            id(&r, "review_request_id", ReviewRequestId::parse),
            id(&r, "customer_id", CustomerId::parse),
        ) else {
            continue;
        };
        if !due {
            continue;
        }
        let channel = match text(&r, "channel").as_deref() {
            Some("email") => Channel::Email,
            _ => Channel::Sms,
        };
        let eligibility = ctx.customer(customer).await?.marketing_eligibility(channel);
        t.command(
            requests
                .execute(
                    rid,
                    DomainActor::System,
                    ReviewRequestCommand::SendReminder { eligibility },
                    &ctx.meta(format!("reminder-{n}:{rid}")),
                )
                .await,
        )?;
    }
    Ok(t)
}

async fn google_reviews(ctx: &JobContext<'_>) -> JobResult {
    let Some(reviews) = ctx
        .inner
        .google
        .recent_reviews()
        .await
        .map_err(JobFailure)?
    else {
        return Ok(Tally::default().noted("no Google Business Profile account configured"));
    };
    let mut t = Tally::default();
    for g in reviews {
        // The id is derived from Google's, so a review seen again is refused as existing.
        let review_id = google_review_id(&g.external_id);
        let cmd = ReviewCommand::Receive {
            review_id,
            source: ReviewSource::Google {
                external_id: g.external_id.clone(),
            },
            customer_id: g.customer_id,
            rating: g.rating,
            comment: g.comment,
        };
        t.command(
            ctx.inner
                .crm
                .reviews()
                .execute(review_id, DomainActor::System, cmd, &ctx.meta(review_id))
                .await,
        )?;
    }
    Ok(t)
}

// ------------------------------------------------------------ loyalty

async fn loyalty_tiers(ctx: &JobContext<'_>) -> JobResult {
    let rows = ctx
        .rows(
            "SELECT account_id FROM rm_loyalty_accounts ORDER BY account_id",
            &[],
        )
        .await?;
    let accounts = ctx.inner.crm.loyalty_accounts();
    let mut t = Tally::default();
    let mut expired = Tally::default();
    for r in rows {
        let Some(acc) = id(&r, "account_id", LoyaltyAccountId::parse) else {
            t.skip();
            continue;
        };
        // Expiry first: the balance is tidy before the tier is looked at. Points leaving the
        // tier window (not expiry) are what moves tiers between point changes.
        expired.command(
            accounts
                .execute(
                    acc,
                    DomainActor::System,
                    LoyaltyCommand::ExpirePoints,
                    &ctx.meta(format!("expire:{acc}")),
                )
                .await,
        )?;
        t.command(
            accounts
                .execute(
                    acc,
                    DomainActor::System,
                    LoyaltyCommand::EvaluateTier,
                    &ctx.meta(format!("tier:{acc}")),
                )
                .await,
        )?;
    }
    t.figures.insert(
        "accounts_with_points_expired".into(),
        expired.counts.changed as i64,
    );
    Ok(t)
}

async fn occasion_points(ctx: &JobContext<'_>, occasion: Occasion) -> JobResult {
    let mut t = Tally::default();
    for (customer, day) in customers_with_occasion(ctx, occasion, true).await? {
        let cmd = match occasion {
            Occasion::Birthday => LoyaltyCommand::AwardBirthdayBonus { birthday: day },
            Occasion::Anniversary => LoyaltyCommand::AwardAnniversaryBonus {
                customer_since: day,
            },
        };
        let acc = LoyaltyAccountId::for_customer(customer);
        t.command(
            ctx.inner
                .crm
                .loyalty_accounts()
                .execute(acc, DomainActor::System, cmd, &ctx.meta(acc))
                .await,
        )?;
    }
    Ok(t)
}

// ------------------------------------------------------------ analytics

async fn figures_between(
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

async fn daily_metrics(ctx: &JobContext<'_>) -> JobResult {
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

fn previous_week(today: NaiveDate) -> (NaiveDate, NaiveDate) {
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    (monday - Duration::days(7), monday - Duration::days(1))
}

/// The built-in weekly report: defined on the first run (every metric, last week), sent to
/// the active managers and admins of each run, and generated like any scheduled report. A
/// manager who deletes it stops it.
async fn weekly_report(ctx: &JobContext<'_>) -> JobResult {
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

async fn scheduled_reports(ctx: &JobContext<'_>) -> JobResult {
    let mut t = Tally::default();
    generate_reports(ctx, &mut t, None, false).await?;
    Ok(t.noted("each due report's figures are recorded; the outbox emails them with the CSV"))
}

/// Generates due reports (only `only` when given; the weekly report is its own job's),
/// once per period: computes the chosen metrics' figures ([`kpis`]) for the period in the
/// business's zone and records them. `always_due`: the calling job is the schedule.
async fn generate_reports(
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

// ------------------------------------------------------------ operations

async fn system_health(ctx: &JobContext<'_>) -> JobResult {
    let mut problems = Vec::new();
    let mut t = Tally::default();
    t.counts.processed += 1;
    if let Err(e) = ctx.inner.crm.log().ping().await {
        problems.push(format!("database: {e}"));
    }
    let projections = ctx.inner.projections.status().await?;
    let failed: Vec<&str> = projections
        .iter()
        .filter(|p| p.state == "failed")
        .map(|p| p.name.as_str())
        .collect();
    t.counts.processed += projections.len() as u64;
    t.figures
        .insert("projections".into(), projections.len() as i64);
    t.figures
        .insert("projections_failed".into(), failed.len() as i64);
    t.figures.insert(
        "projections_behind".into(),
        projections.iter().filter(|p| !p.caught_up).count() as i64,
    );
    if !failed.is_empty() {
        problems.push(format!("projections failed: {}", failed.join(", ")));
    }
    // A parked event is one a read model could not apply: it stays missing from that read
    // model until an operator retries or discards it (docs/operations.md), as health says.
    let parked: Vec<String> = projections
        .iter()
        .filter(|p| p.parked > 0)
        .map(|p| format!("{} ({})", p.name, p.parked))
        .collect();
    t.figures.insert(
        "events_parked".into(),
        projections.iter().map(|p| p.parked).sum(),
    );
    if !parked.is_empty() {
        problems.push(format!("events parked in: {}", parked.join(", ")));
    }
    if let Some(policies) = &ctx.inner.policies {
        let status = policies.status();
        let failed: Vec<&str> = status
            .iter()
            .filter(|p| p.last_error.is_some())
            .map(|p| p.name)
            .collect();
        t.counts.processed += status.len() as u64;
        t.figures
            .insert("policies_failed".into(), failed.len() as i64);
        if !failed.is_empty() {
            problems.push(format!("policies failed: {}", failed.join(", ")));
        }
    }
    t.figures.insert(
        "events".into(),
        i64::try_from(ctx.inner.crm.log().count().await?).unwrap_or(i64::MAX),
    );
    // Not a failure of the system, but someone must look: see the message log
    // (`outboundMessages(status: "not_sent")`) and the vendor's own log.
    let unknown = crate::outbox::uncertain_sends(&ctx.inner.projections).await?;
    t.figures.insert("messages_outcome_unknown".into(), unknown);
    if unknown > 0 {
        tracing::warn!(
            messages = unknown,
            "outbound messages whose sending is uncertain: check the vendor's log"
        );
    }
    if problems.is_empty() {
        // Only what was checked is called healthy (a scheduler without policies checks none).
        let healthy = if ctx.inner.policies.is_some() {
            "database, projections and policies healthy"
        } else {
            "database and projections healthy (policies not checked here)"
        };
        t.note = Some(if unknown > 0 {
            format!("{healthy}; {unknown} outbound message(s) may or may not have been sent: check the vendor's log")
        } else {
            healthy.into()
        });
        Ok(t)
    } else {
        // A failed run is what `/api/health/detailed` and the operators look at.
        Err(JobFailure(problems.join("; ")))
    }
}

async fn old_logs(ctx: &JobContext<'_>) -> JobResult {
    let cutoff = ctx.now - Duration::days(i64::from(ctx.inner.options.run_log_retention_days));
    let runs = list_runs(
        &ctx.inner.projections,
        None,
        std::time::Duration::from_secs(10),
    )
    .await?;
    let old = runs.iter().filter(|r| r.started_at < cutoff).count() as u64;
    // Processed vendor webhook deliveries are an operational log holding PII
    // (phone numbers, SMS text); past retention — far beyond any vendor's
    // retry window — they go. Unprocessed ones stay for a redelivery to finish.
    let dropped = ctx
        .inner
        .projections
        .db()
        .execute(
            "DELETE FROM webhook_deliveries WHERE processed_at IS NOT NULL AND processed_at < $1",
            &[cutoff.into()],
        )
        .await?;
    let mut t = Tally::default();
    t.counts.processed = runs.len() as u64;
    t.counts.skipped = old;
    t.counts.changed = dropped;
    t.figures.insert("runs_past_retention".into(), old as i64);
    t.figures
        .insert("webhook_deliveries_dropped".into(), dropped as i64);
    Ok(t.noted(
        "job runs are events and stay in the log (their read model is rebuilt from it); processed webhook deliveries past retention were dropped",
    ))
}

/// One-time secrets waiting for their message (reset links, contact codes: kept out of the
/// log, see `outbox::reset_tokens`) that expired unsent are dropped, and so are expired
/// sign-up and email-change codes (`address_codes`), and unsubscribe links older than 400 days.
/// The messages themselves are events and stay, for the audit trail.
async fn expired_message_secrets(ctx: &JobContext<'_>) -> JobResult {
    let db = ctx.inner.projections.db();
    // Unsubscribe links must work long after the email (30 days at least, by law in the US).
    let dropped = crate::outbox::reset_tokens::purge_expired(db, ctx.now).await?
        + crate::address_codes::purge_expired(db, ctx.now).await?
        + crate::unsubscribe::purge_older_than(db, ctx.now, 400).await?;
    let mut t = Tally::default();
    t.counts.processed = dropped;
    t.counts.changed = dropped;
    t.figures.insert(
        "expired_secrets_dropped".into(),
        i64::try_from(dropped).unwrap_or(i64::MAX),
    );
    Ok(t.noted("outbound messages are events and are kept; expired one-time secrets dropped"))
}

async fn expired_sessions(ctx: &JobContext<'_>) -> JobResult {
    // Sessions are operational rows (the logins themselves are events): ended
    // sessions — expired or revoked — are deleted; nothing in the log changes.
    let now = rfc(ctx.now);
    let ended = crate::sessions::purge_ended(ctx.inner.projections.db(), ctx.now).await?;
    let rows = ctx
        .rows(
            "SELECT COUNT(*) AS n FROM rm_staff_users WHERE reset_expires_at IS NOT NULL AND reset_expires_at <= $1",
            &[now.into()],
        )
        .await?;
    let tokens = rows.first().map_or(0, |r| int(r, "n"));
    let mut t = Tally::default();
    t.counts.processed = ended;
    t.counts.changed = ended;
    t.figures.insert(
        "sessions_ended".into(),
        i64::try_from(ended).unwrap_or(i64::MAX),
    );
    t.figures
        .insert("expired_password_reset_tokens".into(), tokens);
    Ok(t.noted(format!(
        "deleted {ended} ended session(s); the logins stay in the log as events"
    )))
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
