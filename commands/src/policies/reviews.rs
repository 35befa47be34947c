//! The review-requests policy: ask after a completed job; a review fulfils the ask.

use super::*;

impl Trigger<'_> {
    /// A review left for a job (portal) fulfils the job's review request: no more reminders.
    pub(super) async fn fulfil_review_request(&self) -> Result<(), AppError> {
        let (crm, e, cx) = (self.crm, self.event, self);
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

    /// A completed job asks its customer for a review, unless they cannot be messaged.
    pub(super) async fn request_review(&self) -> Result<(), AppError> {
        let (crm, e, cx) = (self.crm, self.event, self);
        let JobEvent::JobCompleted { customer_id, .. } = crm.jobs().store().decode(e.clone())?
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
}
