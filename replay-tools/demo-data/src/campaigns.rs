//! Marketing campaigns (promotions): each sent to about half the customers
//! there at the time, by SMS or email; some recipients open it, a few redeem.

use chrono::{DateTime, Duration, Utc};
use commands::app::AppError;
use commands::EventMetadata;
use domain::consent::Channel;
use domain::ids::{CustomerId, PromotionId};
use domain::promotion::{AudienceSegment, PromotionCommand, PromotionDraft, PromotionKind};
use domain::Actor as DomainActor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::plan::{between, uuid, Planner, Step, Timed};
use crate::run::{meta, Ctx};

/// A campaign to create, schedule and deliver; `seed` draws who opens and redeems it.
#[derive(Debug, Clone)]
pub(crate) struct NewCampaign {
    id: PromotionId,
    name: String,
    channel: Channel,
    template: &'static str,
    code: String,
    audience: Vec<CustomerId>,
    seed: u64,
}

/// The campaigns, each in a lane of its own.
pub(crate) fn plan(p: &mut Planner) {
    for k in 0..p.sizes.campaigns {
        let t = between(
            &mut p.rng,
            p.start + Duration::days(20),
            p.end - Duration::days(3),
        );
        let present = p.customers.partition_point(|c| c.1 < t - Duration::days(1));
        let rng = &mut p.rng;
        let audience: Vec<CustomerId> = p.customers[..present]
            .iter()
            .filter(|_| rng.gen_bool(0.5))
            .map(|c| c.0)
            .collect();
        let sms = rng.gen_bool(0.5);
        let new = NewCampaign {
            id: PromotionId(uuid(rng)),
            name: ["Spring refresh", "Holiday ready", "Pet season", "Back to school", "Summer sale"][k % 5].to_string()
                + &format!(" {}", t.with_timezone(&p.tz).format("%Y")),
            channel: if sms { Channel::Sms } else { Channel::Email },
            template: "Hi {{ first_name }}, get {{ discount }} off your next cleaning with code {{ code }}.",
            code: format!("DEMO{}", rng.gen_range(10..99)),
            audience,
            // Who opens and redeems is drawn while it runs, from a stream of its own.
            seed: rng.gen(),
        };
        p.campaign_steps.push(Timed {
            at: t,
            lane: k,
            step: Step::Campaign(Box::new(new)),
        });
    }
    p.summary.promotions = p.sizes.campaigns;
}

/// Created and scheduled by the manager, then delivered to each of the audience
/// a second apart (skipped, with the reason, for those who may not be contacted).
pub(crate) async fn run(ctx: &Ctx, t: DateTime<Utc>, c: &NewCampaign) -> Result<(), AppError> {
    let (m, promotions) = (meta(t), ctx.crm.promotions());
    let draft = PromotionDraft {
        name: c.name.clone(),
        kind: PromotionKind::Campaign,
        audience: AudienceSegment::AllCustomers,
        channel: c.channel,
        template: c.template.into(),
        discount_code: Some(c.code.clone()),
        discount: Some("15%".into()),
        starts_at: t,
        ends_at: t + Duration::days(21),
    };
    let create = PromotionCommand::Create {
        promotion_id: c.id,
        draft,
    };
    promotions.execute(c.id, ctx.manager(), create, &m).await?;
    let send_at = t + Duration::hours(1);
    let schedule = PromotionCommand::Schedule { send_at };
    promotions
        .execute(c.id, ctx.manager(), schedule, &m)
        .await?;
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    for (i, customer) in c.audience.iter().enumerate() {
        let when = send_at + Duration::seconds(i as i64);
        deliver(ctx, c, *customer, when, &m, &mut rng).await?;
    }
    Ok(())
}

/// One delivery, and whether the customer opens it (three hours on) and redeems
/// it (two days on). Both draws are made even for a refused delivery.
async fn deliver(
    ctx: &Ctx,
    c: &NewCampaign,
    customer: CustomerId,
    when: DateTime<Utc>,
    m: &EventMetadata,
    rng: &mut ChaCha8Rng,
) -> Result<(), AppError> {
    let (crm, sys, promotions) = (&ctx.crm, DomainActor::System, ctx.crm.promotions());
    let eligibility = crm
        .customers()
        .load(customer)
        .await?
        .aggregate
        .marketing_eligibility(c.channel);
    let cmd = PromotionCommand::RecordDelivery {
        customer_id: customer,
        eligibility,
    };
    ctx.later(when, promotions.execute(c.id, sys, cmd, m))
        .await?;
    let (opened, redeemed) = (rng.gen_bool(0.35), rng.gen_bool(0.1));
    if !eligibility.is_eligible() {
        return Ok(());
    }
    if opened || redeemed {
        let cmd = PromotionCommand::RecordOpened {
            customer_id: customer,
        };
        ctx.later(
            when + Duration::hours(3),
            promotions.execute(c.id, sys, cmd, m),
        )
        .await?;
    }
    if redeemed {
        let cmd = PromotionCommand::RecordRedeemed {
            customer_id: customer,
            job_id: None,
        };
        ctx.later(
            when + Duration::days(2),
            promotions.execute(c.id, sys, cmd, m),
        )
        .await?;
    }
    Ok(())
}
