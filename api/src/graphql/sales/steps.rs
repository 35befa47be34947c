//! One command of the pipeline or a campaign as the signed-in user, then the payload as the
//! read model shows it. The operation's guard checked the caller's role.

// The parts share their parent's imports.
use super::*;

pub(super) fn opp_id(id: &ID) -> async_graphql::Result<OpportunityId> {
    OpportunityId::parse(id).map_err(|_| errors::invalid("id", "not an opportunity id"))
}

/// Runs one opportunity command as the signed-in staff user.
pub(super) async fn run_opp(
    ctx: &Context<'_>,
    id: OpportunityId,
    key: Option<&String>,
    cmd: OpportunityCommand,
) -> async_graphql::Result<OpportunityPayload> {
    let (state, rc) = parts(ctx)?;
    let by = context::staff_actor(rc)?;
    opp_command(state, rc, id, by, key, cmd).await
}

/// Runs `cmd` on opportunity `id` as `by`; the opportunity as the read model then shows it.
async fn opp_command(
    state: &AppState,
    rc: &context::RequestCtx,
    id: OpportunityId,
    by: (domain::Actor, commands::EventMetadata),
    key: Option<&String>,
    cmd: OpportunityCommand,
) -> async_graphql::Result<OpportunityPayload> {
    let done = command::execute(state, rc, state.crm.opportunities(), id, by, key, cmd).await?;
    Ok(OpportunityPayload {
        opportunity: load_opportunity(state, &id.to_string()).await,
        position: done.position,
    })
}

pub(super) fn promotion_id(id: &ID) -> async_graphql::Result<PromotionId> {
    PromotionId::parse(id).map_err(|_| errors::invalid("id", "not a promotion id"))
}

/// Runs one campaign command as the signed-in staff user.
pub(super) async fn run_promotion(
    ctx: &Context<'_>,
    id: PromotionId,
    key: Option<&String>,
    cmd: PromotionCommand,
) -> async_graphql::Result<PromotionPayload> {
    let (state, rc) = parts(ctx)?;
    let by = context::staff_actor(rc)?;
    let done = command::execute(state, rc, state.crm.promotions(), id, by, key, cmd).await?;
    Ok(PromotionPayload {
        promotion_id: ID(id.to_string()),
        position: done.position,
    })
}

/// A customer's step on their offer: in the portal only on their own opportunity; staff on
/// anyone's.
pub(super) async fn offer_step(
    ctx: &Context<'_>,
    input: &OpportunityRefInput,
    cmd: OpportunityCommand,
) -> async_graphql::Result<OpportunityPayload> {
    let (state, rc) = parts(ctx)?;
    let id = opp_id(&input.id)?;
    if let Some(context::Principal::Customer { id: me }) = &rc.principal {
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
    }
    let by = context::actor(rc)?;
    opp_command(state, rc, id, by, input.idempotency_key.as_ref(), cmd).await
}
