//! The outbox policy's commands: queue messages for what happened, record what came back.

use super::*;

impl Trigger<'_> {
    /// A report email sent, or a promotion message not sent or opened, is recorded where it came from.
    pub(super) async fn record_feedback(&self) -> Result<(), AppError> {
        let (crm, e, cx) = (self.crm, self.event, self);
        if let Some((report, period_start)) = outbox::report_sent(crm, e).await? {
            // Once per generated period, however many recipients were sent it.
            let meta = cx
                .meta("report-sent")
                .with_idempotency_key(format!("policy:outbox:report-sent:{report}:{period_start}"));
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

    /// Offers, promotions, review requests and reports become outbound messages.
    pub(super) async fn queue_messages(&self) -> Result<(), AppError> {
        let (crm, e, cx) = (self.crm, self.event, self);
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
}
