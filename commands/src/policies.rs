//! Policies (process managers): rules that react to events by issuing
//! commands to other aggregates.
//!
//! | policy | on | does |
//! |---|---|---|
//! | `loyalty-points` | `JobCompleted` | enrols the customer if needed and earns points for the job |
//! | `loyalty-points` | `ReferralRewarded` | awards the referral bonus to both sides |
//! | `review-requests` | `JobCompleted` | requests a review (SMS, else email) unless the customer cannot be messaged |
//! | `review-requests` | `ReviewReceived` for a job (portal) | marks the job's review request fulfilled: no more reminders |
//! | `referral-rewards` | `JobCompleted` | tells the referee's referral; only the first job rewards |
//! | `job-payments` | `PaymentSucceeded` / `PaymentFailed` | records the payment on the job |
//! | `consent` | `CustomerMergedInto` | carries the duplicate's opt-outs over to the survivor |
//! | `outbox` | `OfferSent`, `PromotionDelivered`, `ReviewRequested`, `ReviewReminderSent`, `ScheduledReportGenerated` | queues the outbound message(s) (see [`outbox`]) |
//! | `outbox` | `MessageNotSent`, `MessageDeliveryStatusChanged` of a promotion's message | records the promotion's delivery failure or opening |
//! | `outbox` | `MessageSent` of a report email | records `ScheduledReportSent` once per period |
//!
//! Each policy follows the global log from its own durable checkpoint
//! (`policy_checkpoints`), written after each batch. Every command it issues
//! carries an idempotency key derived from the triggering event, stored in the
//! same transaction as the command's events: re-handling events after a crash
//! (between the commands and the checkpoint) changes nothing. A handler error
//! stops that policy only; [`PolicyRunner::status`] shows where and why.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::consent::{Channel, ConsentSource};
use domain::customer::{ConsentState, CustomerCommand, CustomerEvent};
use domain::ids::{
    CustomerId, JobId, LoyaltyAccountId, PaymentId, ReferralId, ReviewId, ReviewRequestId,
};
use domain::job::{JobCommand, JobEvent, PaymentOutcome};
use domain::loyalty::LoyaltyCommand;
use domain::payment::PaymentEvent;
use domain::referral::{ReferralCommand, ReferralEvent};
use domain::review::{ReviewEvent, ReviewRequestCommand, ReviewSource};
use domain::scheduled_report::ScheduledReportCommand;
use domain::vehicle::VehicleCommand;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{AppError, Crm};
use crate::metadata::{Actor, EventMetadata};
use crate::store::{EventLog, LogPosition, RecordedEvent, StoreError};
use crate::tail::LogTail;

pub mod outbox;

/// Events read per batch; the checkpoint is written after each.
pub const DEFAULT_BATCH: u32 = 200;

/// The built-in policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Policy {
    /// Points for completed jobs and referral bonuses.
    LoyaltyPoints,
    /// A review request after each completed job; a review left for the job fulfils it
    /// (so no reminder follows).
    ReviewRequests,
    /// The referee's first completed job rewards the referral.
    ReferralRewards,
    /// Payments mark their job paid (or failed).
    JobPayments,
    /// Opt-outs survive a merge of duplicates.
    Consent,
    /// Offers, promotions, review requests and reports become outbound messages.
    Outbox,
    /// A started job's van goes out on the board; it comes back when the job ends.
    Fleet,
}

impl Policy {
    /// Every policy.
    pub const ALL: [Policy; 7] = [
        Policy::LoyaltyPoints,
        Policy::ReviewRequests,
        Policy::ReferralRewards,
        Policy::JobPayments,
        Policy::Consent,
        Policy::Outbox,
        Policy::Fleet,
    ];

    /// The checkpoint name (stable: renaming it re-handles the whole log).
    pub fn name(self) -> &'static str {
        match self {
            Policy::LoyaltyPoints => "loyalty-points",
            Policy::ReviewRequests => "review-requests",
            Policy::ReferralRewards => "referral-rewards",
            Policy::JobPayments => "job-payments",
            Policy::Consent => "consent",
            Policy::Outbox => "outbox",
            Policy::Fleet => "fleet",
        }
    }

    fn interested(self, e: &RecordedEvent) -> bool {
        let t = (e.aggregate_type.as_str(), e.event_type.as_str());
        match self {
            Policy::LoyaltyPoints => matches!(
                t,
                ("Job", "JobCompleted") | ("Referral", "ReferralRewarded")
            ),
            Policy::ReviewRequests => {
                matches!(t, ("Job", "JobCompleted") | ("Review", "ReviewReceived"))
            }
            Policy::ReferralRewards => t == ("Job", "JobCompleted"),
            Policy::JobPayments => matches!(
                t,
                (
                    "Payment",
                    "PaymentSucceeded" | "PaymentFailed" | "PaymentReceived"
                )
            ),
            Policy::Consent => t == ("Customer", "CustomerMergedInto"),
            Policy::Outbox => outbox::triggers(e) || outbox::reports_back(e),
            Policy::Fleet => matches!(
                t,
                (
                    "Job",
                    "JobStarted" | "VehicleAssigned" | "JobCompleted" | "JobCancelled"
                )
            ),
        }
    }

    /// Reacts to one event the policy is interested in.
    async fn handle(self, crm: &Crm, e: &RecordedEvent) -> Result<(), AppError> {
        let cx = Trigger {
            policy: self,
            crm,
            event: e,
        };
        match self {
            Policy::LoyaltyPoints => match e.aggregate_type.as_str() {
                "Job" => {
                    let JobEvent::JobCompleted {
                        customer_id,
                        amount,
                        ..
                    } = crm.jobs().store().decode(e.clone())?
                    else {
                        return Ok(());
                    };
                    let job_id = parse_id(&e.aggregate_id, JobId::parse)?;
                    if !cx.ensure_enrolled(customer_id, "enrol").await? {
                        return Ok(());
                    }
                    let cmd = LoyaltyCommand::EarnForJob {
                        job_id,
                        amount_cents: amount.cents(),
                    };
                    cx.loyalty(customer_id, cmd, "earn").await
                }
                _ => {
                    let ReferralEvent::ReferralRewarded {
                        referrer_customer_id,
                        referee_customer_id,
                        referrer_points,
                        referee_points,
                        ..
                    } = crm.referrals().store().decode(e.clone())?
                    else {
                        return Ok(());
                    };
                    let referral_id = parse_id(&e.aggregate_id, ReferralId::parse)?;
                    for (side, customer, points) in [
                        ("referrer", referrer_customer_id, referrer_points),
                        ("referee", referee_customer_id, referee_points),
                    ] {
                        // A programme configured without a bonus awards nothing.
                        if points <= 0
                            || !cx
                                .ensure_enrolled(customer, &format!("enrol-{side}"))
                                .await?
                        {
                            continue;
                        }
                        let cmd = LoyaltyCommand::AwardReferralBonus {
                            referral_id,
                            points,
                        };
                        cx.loyalty(customer, cmd, &format!("bonus-{side}")).await?;
                    }
                    Ok(())
                }
            },
            Policy::ReviewRequests if e.aggregate_type == "Review" => {
                let ReviewEvent::ReviewReceived {
                    review_id,
                    source: ReviewSource::Portal { job_id: Some(job) },
                    ..
                } = crm.reviews().store().decode(e.clone())?
                else {
                    return Ok(());
                };
                let result = crm
                    .review_requests()
                    .execute(
                        ReviewRequestId::for_job(job),
                        cx.actor(),
                        ReviewRequestCommand::MarkFulfilled { review_id },
                        &cx.meta("fulfil"),
                    )
                    .await;
                match result {
                    // The job's customer was never asked (no consent): nothing to fulfil.
                    Err(AppError::NotFound { .. }) => Ok(()),
                    other => other.map(|_| ()),
                }
            }
            Policy::ReviewRequests => {
                let JobEvent::JobCompleted { customer_id, .. } =
                    crm.jobs().store().decode(e.clone())?
                else {
                    return Ok(());
                };
                let job_id = parse_id(&e.aggregate_id, JobId::parse)?;
                // Reviewed already (this policy was behind): nothing to ask for.
                if crm
                    .reviews()
                    .load(ReviewId::for_portal_job(job_id))
                    .await?
                    .sequence
                    > 0
                {
                    return Ok(());
                }
                let customer = crm.customers().load(customer_id).await?.aggregate;
                // Nobody who opted out, never consented or cannot be reached is asked.
                let (channel, eligibility) =
                    domain::review::request_channel(|c| customer.marketing_eligibility(c));
                if !eligibility.is_eligible() {
                    return Ok(());
                }
                let cmd = ReviewRequestCommand::Request {
                    job_id,
                    customer_id,
                    channel,
                    eligibility,
                };
                let meta = cx.meta("request");
                let mut attempt = 1;
                let result = loop {
                    let result = crm
                        .review_requests()
                        .execute(
                            ReviewRequestId::for_job(job_id),
                            cx.actor(),
                            cmd.clone(),
                            &meta,
                        )
                        .await;
                    // Staff asked by hand (`requestReview`) at the same moment: decided
                    // again, it is ALREADY_REQUESTED.
                    match result {
                        Err(AppError::Conflict { .. }) if attempt < 2 => attempt += 1,
                        result => break result,
                    }
                };
                ignore_rules(
                    result,
                    &["ALREADY_REQUESTED", "CUSTOMER_MERGED", "CUSTOMER_ERASED"],
                )
            }
            Policy::ReferralRewards => {
                let JobEvent::JobCompleted { customer_id, .. } =
                    crm.jobs().store().decode(e.clone())?
                else {
                    return Ok(());
                };
                let referral = ReferralId::for_referee(customer_id);
                if crm.referrals().load(referral).await?.sequence == 0 {
                    return Ok(()); // the customer was not referred
                }
                let rules = crm.services().loyalty;
                let cmd = ReferralCommand::RecordCompletedJob {
                    job_id: parse_id(&e.aggregate_id, JobId::parse)?,
                    referrer_points: rules.referrer_bonus,
                    referee_points: rules.referee_bonus,
                };
                crm.referrals()
                    .execute(referral, cx.actor(), cmd, &cx.meta("reward"))
                    .await
                    .map(|_| ())
            }
            Policy::JobPayments => {
                let payment_id = parse_id(&e.aggregate_id, PaymentId::parse)?;
                let (job_id, amount, outcome) = match crm.payments().store().decode(e.clone())? {
                    PaymentEvent::PaymentSucceeded { job_id, amount, .. }
                    | PaymentEvent::PaymentReceived { job_id, amount, .. } => {
                        (job_id, amount, PaymentOutcome::Paid)
                    }
                    PaymentEvent::PaymentFailed {
                        job_id,
                        amount,
                        reason,
                        ..
                    } => (job_id, amount, PaymentOutcome::Failed { reason }),
                    PaymentEvent::PaymentIntentCreated { .. } => return Ok(()),
                };
                let cmd = JobCommand::RecordPayment {
                    payment_id,
                    amount_cents: amount.cents(),
                    outcome,
                };
                let result = crm
                    .jobs()
                    .execute(job_id, cx.actor(), cmd, &cx.meta("record"))
                    .await;
                if let Err(AppError::Rule {
                    code: "JOB_ALREADY_PAID",
                    ..
                }) = &result
                {
                    // Money already moved for this job; the payment stream keeps the record.
                    tracing::warn!(%job_id, %payment_id, "payment outcome for a job that is already paid");
                }
                ignore_rules(result, &["JOB_ALREADY_PAID"])
            }
            Policy::Fleet => cx.fleet().await,
            Policy::Outbox if outbox::reports_back(e) => {
                if let Some((report, period_start)) = outbox::report_sent(crm, e).await? {
                    // Once per generated period, however many recipients were sent it.
                    let meta = cx.meta("report-sent").with_idempotency_key(format!(
                        "policy:outbox:report-sent:{report}:{period_start}"
                    ));
                    let cmd = ScheduledReportCommand::RecordSent { period_start };
                    let result = crm
                        .scheduled_reports()
                        .execute(report, cx.actor(), cmd, &meta)
                        .await;
                    return ignore_rules(result, &["REPORT_NOT_GENERATED"]);
                }
                let Some((promotion, cmd)) = outbox::promotion_feedback(crm, e).await? else {
                    return Ok(());
                };
                let result = crm
                    .promotions()
                    .execute(promotion, cx.actor(), cmd, &cx.meta("promotion"))
                    .await;
                ignore_rules(result, &["NOT_DELIVERED"])
            }
            Policy::Outbox => {
                for (i, q) in outbox::messages_for(crm, e).await?.into_iter().enumerate() {
                    let id = domain::ids::OutboundMessageId::for_cause(&q.cause);
                    let result = crm
                        .messages()
                        .execute(id, cx.actor(), q.command(), &cx.meta(&format!("queue-{i}")))
                        .await;
                    ignore_rules(
                        result,
                        &["ALREADY_QUEUED", "CUSTOMER_MERGED", "CUSTOMER_ERASED"],
                    )?;
                }
                Ok(())
            }
            Policy::Consent => {
                let CustomerEvent::CustomerMergedInto {
                    target_customer_id, ..
                } = crm.customers().store().decode(e.clone())?
                else {
                    return Ok(());
                };
                let source = parse_id(&e.aggregate_id, CustomerId::parse)?;
                let duplicate = crm.customers().load(source).await?.aggregate;
                for channel in [Channel::Sms, Channel::Email] {
                    if duplicate.consent(channel) != ConsentState::Revoked {
                        continue;
                    }
                    // An opt-out is the person's, not the record's: it must hold on the survivor.
                    let cmd = CustomerCommand::RevokeMarketingConsent {
                        channel,
                        source: ConsentSource::Import,
                    };
                    let step = format!("revoke-{channel:?}");
                    let result = crm
                        .customers()
                        .execute(target_customer_id, cx.actor(), cmd, &cx.meta(&step))
                        .await;
                    ignore_rules(result, &["CUSTOMER_MERGED", "CUSTOMER_ERASED"])?;
                }
                Ok(())
            }
        }
    }
}

fn parse_id<T>(
    raw: &str,
    parse: impl Fn(&str) -> Result<T, domain::ValidationError>,
) -> Result<T, AppError> {
    parse(raw).map_err(|e| AppError::Store(StoreError::Database(format!("stream id {raw:?}: {e}"))))
}

/// Treats the listed business-rule refusals as "nothing to do".
fn ignore_rules<T>(result: Result<T, AppError>, codes: &[&str]) -> Result<(), AppError> {
    match result {
        Ok(_) => Ok(()),
        Err(AppError::Rule { code, .. }) if codes.contains(&code) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One event being handled by one policy.
struct Trigger<'a> {
    policy: Policy,
    crm: &'a Crm,
    event: &'a RecordedEvent,
}

impl Trigger<'_> {
    fn actor(&self) -> domain::Actor {
        domain::Actor::System
    }

    /// `aggregate_type:aggregate_id:sequence` of the triggering event.
    fn cause(&self) -> String {
        format!(
            "{}:{}:{}",
            self.event.aggregate_type, self.event.aggregate_id, self.event.sequence
        )
    }

    /// Metadata for the command `step` of this trigger: same correlation as
    /// the trigger, caused by it, keyed so that it takes effect once.
    fn meta(&self, step: &str) -> EventMetadata {
        let now = self.crm.services().clock.now();
        let actor = Actor::System(format!("policy:{}", self.policy.name()));
        let trigger =
            serde_json::from_value::<HashMap<String, String>>(self.event.metadata.clone())
                .ok()
                .and_then(|m| EventMetadata::from_map(&m))
                .unwrap_or_else(|| EventMetadata::new(actor.clone(), now));
        trigger
            .caused_by(actor, self.cause(), now)
            .with_idempotency_key(format!(
                "policy:{}:{}:{step}",
                self.policy.name(),
                self.cause()
            ))
    }

    /// Enrols the customer in the loyalty programme unless they are; false
    /// when the customer can no longer be enrolled (merged or erased).
    async fn ensure_enrolled(&self, customer: CustomerId, step: &str) -> Result<bool, AppError> {
        let account = LoyaltyAccountId::for_customer(customer);
        if self
            .crm
            .loyalty_accounts()
            .load(account)
            .await?
            .aggregate
            .customer_id()
            .is_some()
        {
            return Ok(true);
        }
        let cmd = LoyaltyCommand::Enrol {
            customer_id: customer,
        };
        match self
            .crm
            .loyalty_accounts()
            .execute(account, self.actor(), cmd, &self.meta(step))
            .await
        {
            Ok(_)
            | Err(AppError::Rule {
                code: "ALREADY_ENROLLED",
                ..
            }) => Ok(true),
            Err(AppError::Rule {
                code: "CUSTOMER_MERGED" | "CUSTOMER_ERASED",
                ..
            }) => {
                tracing::info!(%customer, "not enrolling a merged or erased customer");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Moves the van with the job: out when a job starts (or gets a van while under way),
    /// back when it ends. The job is read as of the triggering event, so a later
    /// reassignment does not confuse an earlier step. A van already out on another job or in
    /// the workshop stays where it is (logged): the board shows the conflict to dispatch.
    async fn fleet(&self) -> Result<(), AppError> {
        let job_id = parse_id(&self.event.aggregate_id, JobId::parse)?;
        let stream = self
            .crm
            .log()
            .load_stream("Job", &self.event.aggregate_id, 0)
            .await?;
        let mut job = domain::job::Job::default();
        let mut before = None;
        for e in stream
            .into_iter()
            .filter(|e| e.sequence <= self.event.sequence)
        {
            before = job.vehicle_id();
            job.apply_event(self.crm.jobs().store().decode(e)?);
        }
        let dispatch = |van| async move {
            let result = self
                .crm
                .vehicles()
                .execute(
                    van,
                    self.actor(),
                    VehicleCommand::Dispatch { job_id },
                    &self.meta(&format!("dispatch:{van}")),
                )
                .await;
            if let Err(AppError::Rule {
                code: "VEHICLE_WRONG_STATUS",
                message,
            }) = &result
            {
                tracing::warn!(%job_id, %van, %message, "the job's van is not available");
            }
            ignore_rules(result, &["VEHICLE_WRONG_STATUS"])
        };
        let release = |van| async move {
            self.crm
                .vehicles()
                .execute(
                    van,
                    self.actor(),
                    VehicleCommand::Release { job_id },
                    &self.meta(&format!("release:{van}")),
                )
                .await
                .map(|_| ())
        };
        match self.event.event_type.as_str() {
            "JobStarted" => match job.vehicle_id() {
                Some(van) => dispatch(van).await,
                None => Ok(()),
            },
            "VehicleAssigned" if job.status() == domain::job::JobStatus::InProgress => {
                if let Some(old) = before.filter(|old| Some(*old) != job.vehicle_id()) {
                    release(old).await?;
                }
                match job.vehicle_id() {
                    Some(van) => dispatch(van).await,
                    None => Ok(()),
                }
            }
            "JobCompleted" | "JobCancelled" => match job.vehicle_id() {
                Some(van) => release(van).await,
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    async fn loyalty(
        &self,
        customer: CustomerId,
        cmd: LoyaltyCommand,
        step: &str,
    ) -> Result<(), AppError> {
        let account = LoyaltyAccountId::for_customer(customer);
        self.crm
            .loyalty_accounts()
            .execute(account, self.actor(), cmd, &self.meta(step))
            .await
            .map(|_| ())
    }
}

// ------------------------------------------------------------------ checkpoints

/// The position a policy has handled up to (START when it never ran).
///
/// # Errors
/// [`StoreError`] from the database.
pub async fn load_checkpoint(log: &EventLog, name: &str) -> Result<LogPosition, StoreError> {
    let row: Option<(i64, i64)> = match log.read_model() {
        EventLog::Postgres(pg) => {
            sqlx::query_as("SELECT tx, seq FROM policy_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(pg.pool())
                .await
                .map_err(StoreError::from_sqlx)?
        }
        EventLog::Sqlite(s) => {
            sqlx::query_as("SELECT tx, seq FROM policy_checkpoints WHERE name = ?")
                .bind(name)
                .fetch_optional(s.writer())
                .await
                .map_err(StoreError::from_sqlx)?
        }
        // EventStoreDB (whichever crate enabled it): read models are never there.
        #[allow(unreachable_patterns)]
        _ => return Err(crate::store::esdb::read_model_is_not_esdb()),
    };
    // Positions are stored as bigint: xid8 values stay far below 2^63.
    Ok(row.map_or(LogPosition::START, |(tx, seq)| LogPosition {
        tx: tx as u64,
        seq: seq as u64,
    }))
}

/// Stores a policy's position (also used to rewind one, e.g. to START).
///
/// # Errors
/// [`StoreError`] from the database.
pub async fn save_checkpoint(
    log: &EventLog,
    name: &str,
    at: LogPosition,
) -> Result<(), StoreError> {
    let (tx, seq) = (at.tx as i64, at.seq as i64);
    match log.read_model() {
        EventLog::Postgres(pg) => {
            sqlx::query(
                "INSERT INTO policy_checkpoints (name, tx, seq) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, seq = excluded.seq, updated_at = now()",
            )
            .bind(name)
            .bind(tx)
            .bind(seq)
            .execute(pg.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        EventLog::Sqlite(s) => {
            sqlx::query(
                "INSERT INTO policy_checkpoints (name, tx, seq) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, seq = excluded.seq, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            )
            .bind(name)
            .bind(tx)
            .bind(seq)
            .execute(s.writer())
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        // EventStoreDB (whichever crate enabled it): read models are never there.
        #[allow(unreachable_patterns)]
        _ => return Err(crate::store::esdb::read_model_is_not_esdb()),
    }
    Ok(())
}

// ------------------------------------------------------------------ runner

/// Why a policy stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyFailure {
    /// The event it could not handle.
    pub position: LogPosition,
    /// Its aggregate type.
    pub aggregate_type: String,
    /// Its aggregate id.
    pub aggregate_id: String,
    /// Its sequence.
    pub sequence: u64,
    /// Its event type.
    pub event_type: String,
    /// [`AppError::code`] of the error.
    pub code: String,
    /// The error, for operators.
    pub message: String,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// False when the policy keeps retrying (the store was unavailable).
    pub stopped: bool,
}

/// Where a policy stands, for `/api/health/detailed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyStatus {
    /// The policy's name.
    pub name: &'static str,
    /// Everything up to here is handled (as far as this process knows).
    pub checkpoint: LogPosition,
    /// Events read since the runner was created.
    pub events_read: u64,
    /// The last error, if the policy failed.
    pub last_error: Option<PolicyFailure>,
}

/// A policy stopped on an event.
#[derive(Debug, thiserror::Error)]
#[error("policy {policy} stopped at {position} ({event_type} of {aggregate_type} {aggregate_id}): {error}")]
pub struct PolicyError {
    /// The policy.
    pub policy: &'static str,
    /// The event it stopped at.
    pub position: LogPosition,
    /// Its aggregate type.
    pub aggregate_type: String,
    /// Its aggregate id.
    pub aggregate_id: String,
    /// Its event type.
    pub event_type: String,
    /// The cause.
    #[source]
    pub error: AppError,
}

/// Runs the policies against a [`Crm`]. Cheap to clone; clones share status.
#[derive(Debug, Clone)]
pub struct PolicyRunner {
    crm: Crm,
    policies: Vec<Policy>,
    batch: u32,
    status: Arc<Mutex<BTreeMap<Policy, PolicyStatus>>>,
}

impl PolicyRunner {
    /// Every built-in policy.
    pub fn new(crm: Crm) -> Self {
        Self::with_policies(crm, Policy::ALL.to_vec())
    }

    /// Only the given policies.
    pub fn with_policies(crm: Crm, policies: Vec<Policy>) -> Self {
        let status = policies
            .iter()
            .map(|p| {
                let s = PolicyStatus {
                    name: p.name(),
                    checkpoint: LogPosition::START,
                    events_read: 0,
                    last_error: None,
                };
                (*p, s)
            })
            .collect();
        Self {
            crm,
            policies,
            batch: DEFAULT_BATCH,
            status: Arc::new(Mutex::new(status)),
        }
    }

    /// Events read per batch (and per checkpoint write).
    #[must_use]
    pub fn with_batch(mut self, batch: u32) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Each policy's checkpoint and last error.
    pub fn status(&self) -> Vec<PolicyStatus> {
        self.lock().values().cloned().collect()
    }

    /// Forgets a policy's failure so that it runs again (after the cause was fixed).
    pub fn clear_failure(&self, policy: Policy) {
        if let Some(s) = self.lock().get_mut(&policy) {
            s.last_error = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Policy, PolicyStatus>> {
        // The map stays consistent even if a holder panicked: every update is one assignment.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self, policy: Policy) -> Option<PolicyFailure> {
        self.lock()
            .get(&policy)
            .and_then(|s| s.last_error.clone())
            .filter(|f| f.stopped)
    }

    /// Runs every policy until none has anything left to handle (policies
    /// feed each other: a rewarded referral earns points).
    ///
    /// # Errors
    /// The first [`PolicyError`]; the other policies still ran their batches.
    pub async fn run_until_caught_up(&self) -> Result<(), PolicyError> {
        loop {
            let rounds =
                futures::future::join_all(self.policies.iter().map(|p| self.catch_up(*p))).await;
            let mut read = 0;
            for r in rounds {
                read += r?;
            }
            if read == 0 {
                return Ok(());
            }
        }
    }

    /// Reads and handles one policy's events up to the head; returns how many it read.
    async fn catch_up(&self, policy: Policy) -> Result<u64, PolicyError> {
        if let Some(f) = self.stopped(policy) {
            return Err(self.error_from(
                policy,
                &f,
                AppError::Rule {
                    code: "POLICY_STOPPED",
                    message: f.message.clone(),
                },
            ));
        }
        let log = self.crm.log();
        let mut position = load_checkpoint(log, policy.name())
            .await
            .map_err(|e| self.store_error(policy, e))?;
        let mut read = 0;
        let mut backoff = Duration::from_millis(2);
        loop {
            let events = log
                .read_all(position, self.batch)
                .await
                .map_err(|e| self.store_error(policy, e))?;
            if events.is_empty() {
                // Committed events behind a still-open older transaction are
                // not "caught up": wait for them, or a later round would
                // handle them at another time.
                if log
                    .has_held_back_events(position)
                    .await
                    .map_err(|e| self.store_error(policy, e))?
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                    continue;
                }
                self.set_checkpoint(policy, position, 0);
                return Ok(read);
            }
            read += events.len() as u64;
            position = self.handle_batch(policy, position, &events, true).await?;
        }
    }

    /// Handles a batch and checkpoints it; on failure checkpoints the events
    /// before the failing one and records the failure.
    async fn handle_batch(
        &self,
        policy: Policy,
        mut position: LogPosition,
        events: &[RecordedEvent],
        stop_on_transient: bool,
    ) -> Result<LogPosition, PolicyError> {
        let log = self.crm.log();
        for e in events {
            if policy.interested(e) {
                if let Err(error) = policy.handle(&self.crm, e).await {
                    save_checkpoint(log, policy.name(), position)
                        .await
                        .map_err(|s| self.store_error(policy, s))?;
                    let transient = matches!(
                        error,
                        AppError::Conflict { .. } | AppError::Store(StoreError::Unavailable(_))
                    );
                    let failure = PolicyFailure {
                        position: e.position,
                        aggregate_type: e.aggregate_type.clone(),
                        aggregate_id: e.aggregate_id.clone(),
                        sequence: e.sequence,
                        event_type: e.event_type.clone(),
                        code: error.code().to_string(),
                        message: error.to_string(),
                        at: Utc::now(),
                        stopped: stop_on_transient || !transient,
                    };
                    tracing::error!(policy = policy.name(), position = %e.position, error = %error, "policy failed");
                    if let Some(s) = self.lock().get_mut(&policy) {
                        s.checkpoint = position;
                        s.last_error = Some(failure.clone());
                    }
                    return Err(self.error_from(policy, &failure, error));
                }
            }
            position = e.position;
        }
        save_checkpoint(log, policy.name(), position)
            .await
            .map_err(|e| self.store_error(policy, e))?;
        self.set_checkpoint(policy, position, events.len() as u64);
        Ok(position)
    }

    fn set_checkpoint(&self, policy: Policy, position: LogPosition, read: u64) {
        if let Some(s) = self.lock().get_mut(&policy) {
            s.checkpoint = position;
            s.events_read += read;
            // A retried transient failure is over once a batch got through.
            if s.last_error.as_ref().is_some_and(|f| !f.stopped) && read > 0 {
                s.last_error = None;
            }
        }
    }

    fn error_from(&self, policy: Policy, f: &PolicyFailure, error: AppError) -> PolicyError {
        PolicyError {
            policy: policy.name(),
            position: f.position,
            aggregate_type: f.aggregate_type.clone(),
            aggregate_id: f.aggregate_id.clone(),
            event_type: f.event_type.clone(),
            error,
        }
    }

    fn store_error(&self, policy: Policy, e: StoreError) -> PolicyError {
        let position = self
            .lock()
            .get(&policy)
            .map_or(LogPosition::START, |s| s.checkpoint);
        PolicyError {
            policy: policy.name(),
            position,
            aggregate_type: String::new(),
            aggregate_id: String::new(),
            event_type: String::new(),
            error: AppError::Store(e),
        }
    }

    /// Runs every policy in the background until `shutdown` is cancelled,
    /// waking on new commits. A policy that fails on an event stops (see
    /// [`Self::status`]); one that meets an unavailable store retries with back-off.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let tasks: Vec<_> = self
                .policies
                .iter()
                .map(|p| tokio::spawn(self.clone().follow(*p, shutdown.clone())))
                .collect();
            for t in tasks {
                if let Err(e) = t.await {
                    tracing::error!(error = %e, "policy task panicked");
                }
            }
        })
    }

    async fn follow(self, policy: Policy, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let start = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = load_checkpoint(self.crm.log(), policy.name()) => p,
            };
            let mut position = match start {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(policy = policy.name(), error = %e, "cannot read the policy checkpoint; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            self.set_checkpoint(policy, position, 0);
            let mut tail = LogTail::new(self.crm.log().clone(), position, self.batch);
            loop {
                let batch = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    b = tail.next_batch() => b,
                };
                let result = match batch {
                    Ok(events) => self.handle_batch(policy, position, &events, false).await,
                    Err(e) => Err(self.store_error(policy, e)),
                };
                match result {
                    Ok(p) => {
                        position = p;
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        if self.stopped(policy).is_some() {
                            tracing::error!(policy = policy.name(), error = %e, "policy stopped");
                            return;
                        }
                        tracing::warn!(policy = policy.name(), error = %e, "policy will retry");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        break; // re-read the checkpoint and start a fresh tail
                    }
                }
            }
        }
    }
}
