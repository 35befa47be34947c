//! Asking for a review by hand (`requestReview`): the first ask for a job is its request,
//! on the channel the policy would choose; a later ask is a reminder on the same channel,
//! so the domain's limits (one request per job, two reminders) hold however it is asked.

use domain::consent::MarketingEligibility;
use domain::ids::{JobId, ReviewId, ReviewRequestId};
use domain::job::JobStatus;
use domain::ports::Actor as DomainActor;
use domain::review::{request_channel, ReviewRequestCommand};

use crate::app::{AppError, Crm};
use crate::metadata::EventMetadata;
use crate::CommandOutcome;

/// What asking did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The job's review request.
    pub review_request_id: ReviewRequestId,
    /// The events (a keyed retry: the first ask's).
    pub outcome: CommandOutcome,
}

impl Crm {
    /// Asks the customer of completed job `job_id` for a review (see the module).
    ///
    /// # Errors
    /// `NOT_FOUND` for an unknown job; `RULE_VIOLATION` `JOB_NOT_COMPLETED`,
    /// `ALREADY_FULFILLED` (reviewed), `NO_REMINDERS_LEFT`, `CUSTOMER_NOT_REACHABLE`
    /// (and, on a first ask, `CUSTOMER_MERGED`/`CUSTOMER_ERASED`);
    /// `IDEMPOTENCY_KEY_REUSED`; the store's errors.
    pub async fn ask_for_review(
        &self,
        job_id: JobId,
        actor: DomainActor,
        meta: &EventMetadata,
    ) -> Result<Asked, AppError> {
        let id = ReviewRequestId::for_job(job_id);
        // A retry answers with the first ask's outcome whatever happened since (reviewed,
        // reminded): the store replays it, or refuses a key used for another job.
        if let Some(key) = &meta.idempotency_key {
            if self.log().find_idempotent(key).await?.is_some() {
                let replay = ReviewRequestCommand::SendReminder {
                    eligibility: MarketingEligibility::Eligible,
                };
                let outcome = self
                    .review_requests()
                    .execute(id, actor, replay, meta)
                    .await?;
                return Ok(Asked {
                    review_request_id: id,
                    outcome,
                });
            }
        }
        // The policies write the same request (asking after the job, fulfilling it after a
        // review): on a conflict, decide again on what they wrote.
        let mut attempt = 1;
        loop {
            match self.ask_once(job_id, actor, meta).await {
                Err(AppError::Conflict { .. }) if attempt < 3 => attempt += 1,
                asked => return asked,
            }
        }
    }

    async fn ask_once(
        &self,
        job_id: JobId,
        actor: DomainActor,
        meta: &EventMetadata,
    ) -> Result<Asked, AppError> {
        let id = ReviewRequestId::for_job(job_id);
        let job = self.jobs().load_existing(job_id).await?.aggregate;
        let (Some(customer_id), JobStatus::Completed) = (job.customer_id(), job.status()) else {
            return Err(AppError::Rule {
                code: "JOB_NOT_COMPLETED",
                message: "a review can be asked for once the job is completed".into(),
            });
        };
        // Reviewed (through the portal, by the request's link or not): nothing to ask for,
        // whether or not the policy has marked the request fulfilled yet.
        if self
            .reviews()
            .load(ReviewId::for_portal_job(job_id))
            .await?
            .sequence
            > 0
        {
            return Err(AppError::Rule {
                code: "ALREADY_FULFILLED",
                message: "the job was already reviewed".into(),
            });
        }
        let request = self.review_requests().load(id).await?.aggregate;
        let customer = self.customers().load_existing(customer_id).await?.aggregate;
        let command = match request.channel() {
            Some(channel) if request.is_requested() => ReviewRequestCommand::SendReminder {
                eligibility: customer.marketing_eligibility(channel),
            },
            _ => {
                let (channel, eligibility) = request_channel(|c| customer.marketing_eligibility(c));
                ReviewRequestCommand::Request {
                    job_id,
                    customer_id,
                    channel,
                    eligibility,
                }
            }
        };
        let outcome = self
            .review_requests()
            .execute(id, actor, command, meta)
            .await?;
        Ok(Asked {
            review_request_id: id,
            outcome,
        })
    }
}
