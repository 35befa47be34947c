//! The loyalty-points policy: points for completed jobs, referral bonuses.

use super::*;

impl Trigger<'_> {
    /// A completed job enrols its customer if needed and earns points.
    pub(super) async fn earn_for_job(&self) -> Result<(), AppError> {
        let (crm, e, cx) = (self.crm, self.event, self);
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

    /// A rewarded referral awards the bonus to both sides.
    pub(super) async fn award_referral_bonus(&self) -> Result<(), AppError> {
        let (crm, e, cx) = (self.crm, self.event, self);
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

    /// Enrols the customer in the loyalty programme unless they are; false
    /// when the customer can no longer be enrolled (merged or erased).
    pub(super) async fn ensure_enrolled(
        &self,
        customer: CustomerId,
        step: &str,
    ) -> Result<bool, AppError> {
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

    pub(super) async fn loyalty(
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
