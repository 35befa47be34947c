//! Jobs of the sales pipeline and campaigns: offers, stale and old opportunities, promotion
//! deliveries and occasion (birthday, anniversary) campaigns.

// The jobs share their parent's imports and helpers.
use super::*;

pub(super) async fn opportunity_offers(ctx: &JobContext<'_>) -> JobResult {
    let mut t = Tally::default();
    let rows = ctx
        .rows(
            "SELECT opportunity_id, customer_id, offer_status, offer_expires_at FROM rm_opportunities
              WHERE status = 'open' AND archived = 0 AND offer_status IN ('configured', 'sent', 'viewed')
              ORDER BY opportunity_id",
            &[],
        )
        .await?;
    let opps = ctx.inner.crm.opportunities();
    for r in rows {
        let (Some(opp), Some(customer)) = (
            id(&r, "opportunity_id", OpportunityId::parse),
            id(&r, "customer_id", CustomerId::parse),
        ) else {
            t.skip();
            continue;
        };
        let expired = time(&r, "offer_expires_at").is_some_and(|e| e <= ctx.now);
        let cmd = if expired {
            OpportunityCommand::ExpireOffer
        } else if text(&r, "offer_status").as_deref() == Some("configured") {
            match ctx.preferred_channel(customer).await? {
                Some((channel, eligibility)) => OpportunityCommand::SendOffer {
                    channel,
                    eligibility,
                },
                None => {
                    t.skip(); // nobody to send it to; it will expire
                    continue;
                }
            }
        } else {
            t.skip(); // sent, still valid
            continue;
        };
        let kind = if expired { "expire" } else { "send" };
        t.command(
            opps.execute(
                opp,
                DomainActor::System,
                cmd,
                &ctx.meta(format!("{kind}:{opp}")),
            )
            .await,
        )?;
    }
    Ok(t)
}

pub(super) async fn stale_opportunities(ctx: &JobContext<'_>) -> JobResult {
    let days = ctx.inner.options.stale_after_days;
    let cutoff = ctx.now - Duration::days(i64::from(days));
    let rows = ctx
        .rows(
            "SELECT opportunity_id FROM rm_opportunities
              WHERE status = 'open' AND archived = 0 AND stale = 0 AND last_activity_at <= $1
              ORDER BY opportunity_id",
            &[rfc(cutoff).into()],
        )
        .await?;
    let mut t = Tally::default();
    for r in rows {
        let Some(opp) = id(&r, "opportunity_id", OpportunityId::parse) else {
            t.skip();
            continue;
        };
        let cmd = OpportunityCommand::FlagStale {
            inactive_days: days,
        };
        t.command(
            ctx.inner
                .crm
                .opportunities()
                .execute(opp, DomainActor::System, cmd, &ctx.meta(opp))
                .await,
        )?;
    }
    Ok(t)
}

pub(super) async fn archive_opportunities(ctx: &JobContext<'_>) -> JobResult {
    let cutoff = ctx.now - Duration::days(i64::from(ctx.inner.options.archive_after_days));
    let rows = ctx
        .rows(
            "SELECT opportunity_id FROM rm_opportunities
              WHERE status IN ('won', 'lost') AND archived = 0 AND closed_at <= $1
              ORDER BY opportunity_id",
            &[rfc(cutoff).into()],
        )
        .await?;
    let mut t = Tally::default();
    for r in rows {
        let Some(opp) = id(&r, "opportunity_id", OpportunityId::parse) else {
            t.skip();
            continue;
        };
        t.command(
            ctx.inner
                .crm
                .opportunities()
                .execute(
                    opp,
                    DomainActor::System,
                    OpportunityCommand::Archive,
                    &ctx.meta(opp),
                )
                .await,
        )?;
    }
    Ok(t)
}

/// A promotion that may deliver now.
pub(super) struct LivePromotion {
    id: PromotionId,
    channel: Channel,
    audience: Option<AudienceSegment>,
    /// When it was scheduled to go out (a birthday-week audience is that day's week).
    send_at: Option<DateTime<Utc>>,
}

pub(super) async fn live_promotions(
    ctx: &JobContext<'_>,
    kind: &str,
) -> Result<Vec<LivePromotion>, JobFailure> {
    let rows = ctx
        .rows(
            "SELECT promotion_id, channel, audience, send_at, starts_at, ends_at FROM rm_promotions
              WHERE kind = $1 AND status IN ('scheduled', 'delivering') ORDER BY promotion_id",
            &[kind.into()],
        )
        .await?;
    Ok(rows
        .iter()
        .filter(|r| {
            let due = |k: &str| time(r, k).is_some_and(|t| t <= ctx.now);
            due("send_at") && due("starts_at") && time(r, "ends_at").is_some_and(|e| ctx.now < e)
        })
        .filter_map(|r| {
            let channel =
                serde_json::from_value(serde_json::Value::String(text(r, "channel")?)).ok()?;
            Some(LivePromotion {
                id: id(r, "promotion_id", PromotionId::parse)?,
                channel,
                audience: text(r, "audience").and_then(|a| serde_json::from_str(&a).ok()),
                send_at: time(r, "send_at"),
            })
        })
        .collect())
}

pub(super) async fn deliver(
    ctx: &JobContext<'_>,
    t: &mut Tally,
    promotion: &LivePromotion,
    customer: CustomerId,
) -> Result<(), JobFailure> {
    let eligibility = ctx
        .customer(customer)
        .await?
        .marketing_eligibility(promotion.channel);
    let cmd = PromotionCommand::RecordDelivery {
        customer_id: customer,
        eligibility,
    };
    t.command(
        ctx.inner
            .crm
            .promotions()
            .execute(
                promotion.id,
                DomainActor::System,
                cmd,
                &ctx.meta(format!("{}:{customer}", promotion.id)),
            )
            .await,
    )
}

pub(super) async fn promotion_deliveries(ctx: &JobContext<'_>) -> JobResult {
    let mut t = Tally::default();
    let batch = i64::from(ctx.inner.options.promotion_batch_size);
    for p in live_promotions(ctx, "campaign").await? {
        // Customers already attempted are in the recipients table; the aggregate refuses a
        // second attempt anyway, so a lagging read model costs a skip, not a double send.
        let base = "SELECT customer_id FROM rm_customers c
                     WHERE erased = 0 AND merged_into IS NULL
                       AND NOT EXISTS (SELECT 1 FROM rm_promotion_recipients r
                                        WHERE r.promotion_id = $1 AND r.customer_id = c.customer_id)";
        let (filter, extra): (String, Vec<Param>) = match &p.audience {
            Some(AudienceSegment::AllCustomers) => (String::new(), vec![]),
            Some(AudienceSegment::Tagged { tag }) => (
                " AND tags LIKE $3".into(),
                vec![format!("%{}%", serde_json::to_string(tag)?).into()],
            ),
            Some(AudienceSegment::LoyaltyTier { tier }) => (
                " AND tier = $3 AND customer_id IN (SELECT customer_id FROM rm_loyalty_accounts)"
                    .into(),
                serde_json::to_value(tier)?
                    .as_str()
                    .map(Param::from)
                    .into_iter()
                    .collect(),
            ),
            Some(AudienceSegment::Inactive { days }) => (
                " AND (last_job_at IS NULL OR last_job_at <= $3)".into(),
                vec![rfc(ctx.now - Duration::days(i64::from(*days))).into()],
            ),
            Some(AudienceSegment::BirthdayIn { window }) => {
                // The week or month of the day it was scheduled for, in the business's zone:
                // batches that run past Sunday or the month's end keep the same audience.
                let day = p
                    .send_at
                    .map_or(ctx.today(), |t| t.with_timezone(&ctx.inner.tz).date_naive());
                let days = window.month_days(day);
                let slots: Vec<String> = (0..days.len()).map(|i| format!("${}", i + 3)).collect();
                (
                    format!(
                        " AND birthday IS NOT NULL AND substr(birthday, 6, 5) IN ({})",
                        slots.join(", ")
                    ),
                    days.into_iter().map(Param::from).collect(),
                )
            }
            // Occasion audiences belong to the occasion jobs; an unreadable one is skipped.
            Some(AudienceSegment::BirthdayToday | AudienceSegment::AnniversaryToday) | None => {
                continue
            }
        };
        let sql = format!("{base}{filter} ORDER BY customer_id LIMIT $2");
        let mut params = vec![p.id.to_string().into(), Param::Int(batch)];
        params.extend(extra);
        for r in ctx.rows(&sql, &params).await? {
            match id(&r, "customer_id", CustomerId::parse) {
                Some(c) => deliver(ctx, &mut t, &p, c).await?,
                None => t.skip(),
            }
        }
    }
    Ok(t)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Occasion {
    Birthday,
    Anniversary,
}

/// Customers whose birthday (or customer-since anniversary) is `today`, with that date.
/// 29 February counts on 28 February in common years (the domain's `is_annual_day`).
pub(super) async fn customers_with_occasion(
    ctx: &JobContext<'_>,
    occasion: Occasion,
    enrolled_only: bool,
) -> Result<Vec<(CustomerId, NaiveDate)>, JobFailure> {
    let today = ctx.today();
    let column = match occasion {
        Occasion::Birthday => "birthday",
        Occasion::Anniversary => "customer_since",
    };
    let month_day = today.format("%m-%d").to_string();
    let leap_day = if today.month() == 2 && today.day() == 28 && !is_leap_year(today.year()) {
        "02-29".to_string()
    } else {
        month_day.clone()
    };
    let join = if enrolled_only {
        " JOIN rm_loyalty_accounts l ON l.customer_id = c.customer_id"
    } else {
        ""
    };
    let sql = format!(
        "SELECT c.customer_id, c.{column} AS day FROM rm_customers c{join}
          WHERE c.erased = 0 AND c.merged_into IS NULL AND c.{column} IS NOT NULL
            AND (substr(c.{column}, 6, 5) = $1 OR substr(c.{column}, 6, 5) = $2)
          ORDER BY c.customer_id"
    );
    let rows = ctx.rows(&sql, &[month_day.into(), leap_day.into()]).await?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((id(r, "customer_id", CustomerId::parse)?, date(r, "day")?)))
        .filter(|(_, d)| {
            is_annual_day(*d, today) && (occasion == Occasion::Birthday || d.year() < today.year())
        })
        .collect())
}

pub(super) async fn occasion_promotions(ctx: &JobContext<'_>, occasion: Occasion) -> JobResult {
    let kind = match occasion {
        Occasion::Birthday => "birthday",
        Occasion::Anniversary => "anniversary",
    };
    let promotions = live_promotions(ctx, kind).await?;
    let mut t = Tally::default();
    if promotions.is_empty() {
        return Ok(t.noted(format!("no live {kind} promotion")));
    }
    let customers = customers_with_occasion(ctx, occasion, false).await?;
    for p in &promotions {
        for (c, _) in &customers {
            deliver(ctx, &mut t, p, *c).await?;
        }
    }
    Ok(t)
}
