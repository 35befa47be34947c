//! Loyalty accounts, points and referral codes.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use domain::ids::LoyaltyAccountId;
use domain::loyalty::LoyaltyCommand;
use domain::ports::Role;
use projections::crm::loyalty::LoyaltyAccountRow;

use super::auth::check_len;
use super::command::{self, settle};
use super::context::{self, parts, Allow};
use super::customers::{customer_id, may_read_customer};
use super::errors;
use crate::state::AppState;

/// A customer's loyalty account.
#[derive(Debug, Clone, SimpleObject)]
pub struct LoyaltyAccount {
    /// The customer.
    pub customer_id: ID,
    /// Points available.
    pub balance: i64,
    /// Points ever earned.
    pub earned: i64,
    /// Points redeemed.
    pub redeemed: i64,
    /// Points expired.
    pub expired: i64,
    /// Tier.
    pub tier: String,
    /// Enrolled at.
    pub enrolled_at: String,
}

fn from_row(r: &LoyaltyAccountRow) -> LoyaltyAccount {
    LoyaltyAccount {
        customer_id: ID(r.customer_id.clone()),
        balance: r.balance,
        earned: r.earned,
        redeemed: r.redeemed,
        expired: r.expired,
        tier: r.tier.clone(),
        enrolled_at: r.enrolled_at.clone(),
    }
}

async fn load(state: &AppState, customer: &str) -> Option<LoyaltyAccount> {
    projections::crm::loyalty::account(state.projections.db(), customer)
        .await
        .ok()?
        .as_ref()
        .map(from_row)
}

/// Loyalty queries.
#[derive(Debug, Default)]
pub struct LoyaltyQuery;

#[Object]
impl LoyaltyQuery {
    /// A customer's account (staff; a portal customer only their own).
    #[graphql(guard = "Allow::StaffOrCustomer(Role::Staff)")]
    async fn loyalty_account(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
    ) -> async_graphql::Result<Option<LoyaltyAccount>> {
        let (state, rc) = parts(ctx)?;
        may_read_customer(rc, &customer_id)?;
        Ok(load(state, &customer_id).await)
    }
}

/// Points for a customer.
#[derive(InputObject, Debug)]
pub struct AwardLoyaltyPointsInput {
    /// The customer.
    pub customer_id: ID,
    /// Points (> 0).
    pub points: i64,
    /// Why (required).
    pub reason: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A redemption.
#[derive(InputObject, Debug)]
pub struct RedeemLoyaltyPointsInput {
    /// The customer (staff only; the portal redeems for the signed-in customer).
    pub customer_id: Option<ID>,
    /// Points (> 0, at most the balance).
    pub points: i64,
    /// The reward.
    pub reward: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// The account after a change.
#[derive(SimpleObject, Debug)]
pub struct LoyaltyPayload {
    /// The account as the read model now shows it.
    pub account: Option<LoyaltyAccount>,
    /// Log position (for `sync`).
    pub position: String,
}

/// A referral code.
#[derive(SimpleObject, Debug)]
pub struct ReferralCodePayload {
    /// The code to share.
    pub code: Option<String>,
    /// Log position.
    pub position: String,
}

/// Loyalty mutations.
#[derive(Debug, Default)]
pub struct LoyaltyMutation;

#[Object]
impl LoyaltyMutation {
    /// Awards points by hand, with a reason (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn award_loyalty_points(
        &self,
        ctx: &Context<'_>,
        input: AwardLoyaltyPointsInput,
    ) -> async_graphql::Result<LoyaltyPayload> {
        check_len("reason", &input.reason)?;
        let (state, rc) = parts(ctx)?;
        let by = context::staff_actor(rc)?;
        let customer = customer_id("customerId", &input.customer_id)?;
        let account = LoyaltyAccountId::for_customer(customer);
        // Enrol first if needed (the domain treats a repeat as done), without the key: it is
        // the award's.
        let enrol = LoyaltyCommand::Enrol {
            customer_id: customer,
        };
        let on = state.crm.loyalty_accounts();
        let _ = on.execute(account, by.0, enrol, &by.1).await;
        let award = LoyaltyCommand::Award {
            points: input.points,
            reason: input.reason,
        };
        let key = input.idempotency_key.as_ref();
        let on = state.crm.loyalty_accounts();
        let done = command::execute(state, rc, on, account, by, key, award).await?;
        Ok(LoyaltyPayload {
            account: load(state, &customer.to_string()).await,
            position: done.position,
        })
    }

    /// Redeems points for a reward: staff for any customer, a portal customer for themselves.
    #[graphql(guard = "Allow::StaffOrCustomer(Role::Staff)")]
    async fn redeem_loyalty_points(
        &self,
        ctx: &Context<'_>,
        input: RedeemLoyaltyPointsInput,
    ) -> async_graphql::Result<LoyaltyPayload> {
        check_len("reward", &input.reward)?;
        let (state, rc) = parts(ctx)?;
        let (customer, by) = match &rc.principal {
            Some(context::Principal::Customer { .. }) => {
                let (id, actor, meta) = context::customer(rc)?;
                if input
                    .customer_id
                    .as_ref()
                    .is_some_and(|c| c.as_str() != id.to_string())
                {
                    return Err(errors::forbidden("redeem another customer's points"));
                }
                (id, (actor, meta))
            }
            // Staff (the guard admitted no one else) redeem for the customer they name.
            _ => {
                let by = context::staff_actor(rc)?;
                let c = input
                    .customer_id
                    .as_ref()
                    .ok_or_else(|| errors::invalid("customerId", "required for staff"))?;
                (customer_id("customerId", c)?, by)
            }
        };
        let redeem = LoyaltyCommand::Redeem {
            points: input.points,
            reward: input.reward,
        };
        let account = LoyaltyAccountId::for_customer(customer);
        let key = input.idempotency_key.as_ref();
        let on = state.crm.loyalty_accounts();
        let done = command::execute(state, rc, on, account, by, key, redeem).await?;
        Ok(LoyaltyPayload {
            account: load(state, &customer.to_string()).await,
            position: done.position,
        })
    }

    /// Issues (or returns) the signed-in portal customer's referral code.
    #[graphql(guard = "Allow::Customer")]
    async fn my_referral_code(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ReferralCodePayload> {
        let (state, rc) = parts(ctx)?;
        let (id, actor, meta) = context::customer(rc)?;
        let out = state
            .crm
            .issue_referral_code(id, actor, &meta)
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        let position = settle(state, &out).await;
        let code = state
            .crm
            .customers()
            .load(id)
            .await
            .ok()
            .and_then(|l| l.aggregate.referral_code().map(|c| c.to_string()));
        Ok(ReferralCodePayload { code, position })
    }
}
