//! Jobs of loyalty: tier upgrades, occasion points.

// The jobs share their parent's imports and helpers.
use super::*;

pub(super) async fn loyalty_tiers(ctx: &JobContext<'_>) -> JobResult {
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

pub(super) async fn occasion_points(ctx: &JobContext<'_>, occasion: Occasion) -> JobResult {
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
