//! One command of the pipeline or a campaign as the signed-in user, then the payload as the
//! read model shows it.

// The parts share their parent's imports.
use super::*;

pub(super) fn opp_id(id: &ID) -> async_graphql::Result<OpportunityId> {
    OpportunityId::parse(id).map_err(|_| errors::invalid("id", "not an opportunity id"))
}

pub(super) async fn run_opp(
    ctx: &Context<'_>,
    id: OpportunityId,
    min: Role,
    what: &str,
    key: Option<&String>,
    cmd: OpportunityCommand,
) -> async_graphql::Result<OpportunityPayload> {
    let (state, rc) = parts(ctx)?;
    let (actor, meta) = context::staff(rc, min, what)?;
    let out = state
        .crm
        .opportunities()
        .execute(id, actor, cmd, &context::with_key(meta, key))
        .await
        .map_err(|e| errors::app(&rc.request_id, e))?;
    let position = settle(state, &out).await;
    Ok(OpportunityPayload {
        opportunity: load_opportunity(state, &id.to_string()).await,
        position,
    })
}

pub(super) fn promotion_id(id: &ID) -> async_graphql::Result<PromotionId> {
    PromotionId::parse(id).map_err(|_| errors::invalid("id", "not a promotion id"))
}

/// Runs one campaign command as the signed-in staff user.
pub(super) async fn run_promotion(
    ctx: &Context<'_>,
    id: PromotionId,
    min: Role,
    what: &str,
    key: Option<&String>,
    cmd: PromotionCommand,
) -> async_graphql::Result<PromotionPayload> {
    let (state, rc) = parts(ctx)?;
    let (actor, meta) = context::staff(rc, min, what)?;
    let out = state
        .crm
        .promotions()
        .execute(id, actor, cmd, &context::with_key(meta, key))
        .await
        .map_err(|e| errors::app(&rc.request_id, e))?;
    Ok(PromotionPayload {
        promotion_id: ID(id.to_string()),
        position: settle(state, &out).await,
    })
}

/// A customer's step on their offer: in the portal only on their own opportunity; staff on
/// anyone's.
pub(super) async fn offer_step(
    ctx: &Context<'_>,
    input: &OpportunityRefInput,
    what: &str,
    cmd: OpportunityCommand,
) -> async_graphql::Result<OpportunityPayload> {
    let (state, rc) = parts(ctx)?;
    let id = opp_id(&input.id)?;
    let Some(context::Principal::Customer { id: me }) = &rc.principal else {
        return run_opp(
            ctx,
            id,
            Role::Staff,
            what,
            input.idempotency_key.as_ref(),
            cmd,
        )
        .await;
    };
    // Unknown and someone else's answer alike: a customer learns nothing about other ids.
    let opp = state
        .crm
        .opportunities()
        .load(id)
        .await
        .map_err(|e| errors::app(&rc.request_id, e))?;
    if opp.aggregate.customer_id() != Some(*me) {
        return Err(errors::forbidden("act on another customer's offer"));
    }
    let (_, actor, meta) = context::customer(rc)?;
    let out = state
        .crm
        .opportunities()
        .execute(
            id,
            actor,
            cmd,
            &context::with_key(meta, input.idempotency_key.as_ref()),
        )
        .await
        .map_err(|e| errors::app(&rc.request_id, e))?;
    let position = settle(state, &out).await;
    Ok(OpportunityPayload {
        opportunity: load_opportunity(state, &id.to_string()).await,
        position,
    })
}
