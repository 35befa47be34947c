//! The consent policy: opt-outs survive a merge of duplicates.

use super::*;

impl Trigger<'_> {
    /// A merged duplicate's opt-outs hold on the survivor.
    pub(super) async fn carry_opt_outs(&self) -> Result<(), AppError> {
        let (crm, e, cx) = (self.crm, self.event, self);
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
