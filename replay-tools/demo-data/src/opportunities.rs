//! Sales opportunities: created for a customer, moved along the pipeline,
//! some with an automatic discount offer; about a third won (the job they
//! convert into is booked by [`crate::jobs`]), others lost or left to expire.

use chrono::{DateTime, Duration, Utc};
use commands::app::AppError;
use domain::consent::Channel;
use domain::ids::{CustomerId, OpportunityId, StaffUserId};
use domain::opportunity::{OfferStatus, OpportunityCommand, OpportunityStatus, PipelineStage};
use domain::values::Discount;
use domain::Actor as DomainActor;
use rand::Rng;

use crate::names::OPPORTUNITY_TITLES;
use crate::plan::{between, uuid, Planner, Step, Timed};
use crate::run::{meta, Ctx};

/// An opportunity to create; `offer` is its automatic discount, in percent.
#[derive(Debug, Clone)]
pub(crate) struct NewOpportunity {
    id: OpportunityId,
    customer: CustomerId,
    title: &'static str,
    value_cents: i64,
    owner: StaffUserId,
    quoted: bool,
    offer: Option<u8>,
}

/// What the customer did with a sent offer.
#[derive(Debug, Clone)]
pub(crate) struct OfferFollowUp {
    opportunity: OpportunityId,
    viewed: bool,
    accepted: bool,
}

/// A won opportunity: the customer, when it was won, and which one.
pub(crate) type Won = (CustomerId, DateTime<Utc>, OpportunityId);

/// The opportunities; the won ones are returned for their jobs to be booked.
pub(crate) fn plan(p: &mut Planner) -> Vec<Won> {
    let mut won = Vec::new();
    for _ in 0..p.sizes.opportunities {
        won.extend(plan_one(p));
    }
    p.summary.opportunities = p.sizes.opportunities;
    won
}

fn plan_one(p: &mut Planner) -> Option<Won> {
    let (cid, joined, _) = p.customers[p.rng.gen_range(0..p.customers.len())];
    let t = between(
        &mut p.rng,
        joined + Duration::days(1),
        p.end - Duration::days(1),
    );
    let id = OpportunityId(uuid(&mut p.rng));
    let lane = p.lane_of(cid);
    let rng = &mut p.rng;
    let offer = rng
        .gen_bool(0.4)
        .then(|| [10u8, 15, 20][rng.gen_range(0..3)]);
    let new = NewOpportunity {
        id,
        customer: cid,
        title: OPPORTUNITY_TITLES[rng.gen_range(0..OPPORTUNITY_TITLES.len())],
        value_cents: rng.gen_range(50..500) * 100,
        owner: if rng.gen_bool(0.5) {
            p.staff[1]
        } else {
            p.staff[2]
        },
        quoted: rng.gen_bool(0.6),
        offer,
    };
    p.customer_steps.push(Timed {
        at: t,
        lane,
        step: Step::Opportunity(Box::new(new)),
    });
    if offer.is_some() {
        let step = Step::OfferFollowUp(OfferFollowUp {
            opportunity: id,
            viewed: p.rng.gen_bool(0.6),
            accepted: p.rng.gen_bool(0.3),
        });
        p.customer_steps.push(Timed {
            at: t + Duration::days(4),
            lane,
            step,
        });
    }
    plan_outcome(p, (cid, t, id), lane, offer.is_some())
}

/// Ten days on: won (returned), lost, or its offer expiring at fourteen days.
fn plan_outcome(p: &mut Planner, (cid, t, id): Won, lane: usize, offered: bool) -> Option<Won> {
    let close = t + Duration::days(10);
    let r: f64 = p.rng.gen();
    if close < p.end && r < 0.3 {
        return Some((cid, close, id));
    }
    if close < p.end && r < 0.65 {
        let reason = [
            "price too high",
            "went with a competitor",
            "no longer needed",
        ][p.rng.gen_range(0..3)];
        let step = Step::CloseOpportunity {
            opportunity: id,
            lost: Some(reason),
        };
        p.customer_steps.push(Timed {
            at: close,
            lane,
            step,
        });
    } else if offered && t + Duration::days(14) < p.end {
        p.customer_steps.push(Timed {
            at: t + Duration::days(14),
            lane,
            step: Step::ExpireOffer { opportunity: id },
        });
    }
    None
}

/// Creates it, contacts the customer the next day, quotes, and configures and
/// sends the offer when the customer can be reached.
pub(crate) async fn create(
    ctx: &Ctx,
    t: DateTime<Utc>,
    o: &NewOpportunity,
) -> Result<(), AppError> {
    let crm = &ctx.crm;
    let (m, actor) = (meta(t), ctx.manager());
    let cmd = OpportunityCommand::Create {
        opportunity_id: o.id,
        customer_id: o.customer,
        title: o.title.into(),
        value_cents: o.value_cents,
        owner: o.owner,
    };
    crm.opportunities().execute(o.id, actor, cmd, &m).await?;
    let contacted = OpportunityCommand::MoveStage {
        stage: PipelineStage::Contacted,
    };
    ctx.later(
        t + Duration::days(1),
        crm.opportunities().execute(o.id, actor, contacted, &m),
    )
    .await?;
    if o.quoted {
        let quoted = OpportunityCommand::MoveStage {
            stage: PipelineStage::Quoted,
        };
        ctx.later(
            t + Duration::days(2),
            crm.opportunities().execute(o.id, actor, quoted, &m),
        )
        .await?;
    }
    if let Some(percent) = o.offer {
        offer(ctx, t, o, percent).await?;
    }
    Ok(())
}

/// Configures the automatic offer, and sends it on the first channel the customer allows.
async fn offer(
    ctx: &Ctx,
    t: DateTime<Utc>,
    o: &NewOpportunity,
    percent: u8,
) -> Result<(), AppError> {
    let crm = &ctx.crm;
    let (m, actor) = (meta(t), ctx.manager());
    let configure = OpportunityCommand::ConfigureAutoOffer {
        discount: Discount::Percent(percent),
        expires_at: t + Duration::days(14),
    };
    ctx.later(
        t + Duration::days(2),
        crm.opportunities().execute(o.id, actor, configure, &m),
    )
    .await?;
    let customer = crm.customers().load(o.customer).await?.aggregate;
    let reachable = [Channel::Sms, Channel::Email]
        .into_iter()
        .map(|c| (c, customer.marketing_eligibility(c)))
        .find(|(_, e)| e.is_eligible());
    if let Some((channel, eligibility)) = reachable {
        let send = OpportunityCommand::SendOffer {
            channel,
            eligibility,
        };
        let at_send = t + Duration::days(2) + Duration::hours(1);
        ctx.later(
            at_send,
            crm.opportunities()
                .execute(o.id, DomainActor::System, send, &m),
        )
        .await?;
    }
    Ok(())
}

/// The customer views a sent offer, and maybe accepts it two hours later.
pub(crate) async fn follow_up(
    ctx: &Ctx,
    t: DateTime<Utc>,
    f: &OfferFollowUp,
) -> Result<(), AppError> {
    let opportunities = ctx.crm.opportunities();
    let opp = opportunities.load(f.opportunity).await?.aggregate;
    if opp.offer() != OfferStatus::Sent || opp.status() != OpportunityStatus::Open {
        return Ok(());
    }
    let (m, actor) = (meta(t), ctx.manager());
    if f.viewed || f.accepted {
        let viewed = OpportunityCommand::RecordOfferViewed;
        opportunities
            .execute(f.opportunity, actor, viewed, &m)
            .await?;
    }
    if f.accepted {
        let accept =
            opportunities.execute(f.opportunity, actor, OpportunityCommand::AcceptOffer, &m);
        ctx.later(t + Duration::hours(2), accept).await?;
    }
    Ok(())
}

/// Marks it lost, with the reason.
pub(crate) async fn close(
    ctx: &Ctx,
    t: DateTime<Utc>,
    opportunity: OpportunityId,
    lost: Option<&str>,
) -> Result<(), AppError> {
    if let Some(reason) = lost {
        let cmd = OpportunityCommand::Lose {
            reason: reason.into(),
        };
        ctx.crm
            .opportunities()
            .execute(opportunity, ctx.manager(), cmd, &meta(t))
            .await?;
    }
    Ok(())
}

/// Expires an offer nobody took up (configured or sent).
pub(crate) async fn expire(
    ctx: &Ctx,
    t: DateTime<Utc>,
    opportunity: OpportunityId,
) -> Result<(), AppError> {
    let opportunities = ctx.crm.opportunities();
    let opp = opportunities.load(opportunity).await?.aggregate;
    if matches!(opp.offer(), OfferStatus::Configured | OfferStatus::Sent) {
        let cmd = OpportunityCommand::ExpireOffer;
        opportunities
            .execute(opportunity, DomainActor::System, cmd, &meta(t))
            .await?;
    }
    Ok(())
}
