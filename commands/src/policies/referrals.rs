//! The referral-rewards policy: the referee's first completed job rewards the referral.

use super::*;

impl Trigger<'_> {
    /// A referee's completed job tells their referral; only the first rewards.
    pub(super) async fn reward_referral(&self) -> Result<(), AppError> {
        let (crm, e, cx) = (self.crm, self.event, self);
        let JobEvent::JobCompleted { customer_id, .. } = crm.jobs().store().decode(e.clone())?
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
}
