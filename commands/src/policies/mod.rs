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

mod consent;
mod fleet;
mod loyalty;
pub mod outbox;
mod outbox_feedback;
mod payments;
mod referrals;
mod reviews;
mod runner;

pub use runner::*;

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
            Policy::LoyaltyPoints if e.aggregate_type == "Job" => cx.earn_for_job().await,
            Policy::LoyaltyPoints => cx.award_referral_bonus().await,
            Policy::ReviewRequests if e.aggregate_type == "Review" => {
                cx.fulfil_review_request().await
            }
            Policy::ReviewRequests => cx.request_review().await,
            Policy::ReferralRewards => cx.reward_referral().await,
            Policy::JobPayments => cx.record_payment_on_job().await,
            Policy::Fleet => cx.fleet().await,
            Policy::Outbox if outbox::reports_back(e) => cx.record_feedback().await,
            Policy::Outbox => cx.queue_messages().await,
            Policy::Consent => cx.carry_opt_outs().await,
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
}
