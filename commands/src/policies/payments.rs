//! The job-payments policy: a payment's outcome lands on its job.

use super::*;

impl Trigger<'_> {
    /// A payment's outcome is recorded on its job.
    pub(super) async fn record_payment_on_job(&self) -> Result<(), AppError> {
        let (crm, e, cx) = (self.crm, self.event, self);
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
}
