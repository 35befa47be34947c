//! The sales pipeline (opportunities and auto-offers), promotion campaigns
//! and reviews.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::consent::Channel;
use domain::ids::{JobId, OpportunityId, PromotionId, ReviewId, StaffUserId};
use domain::job::{BookingSource, JobCommand, ScheduleWindow};
use domain::opportunity::{OpportunityCommand, PipelineStage};
use domain::ports::Role;
use domain::promotion::{
    AudienceSegment, BirthdayWindow, PromotionCommand, PromotionDraft, PromotionKind,
};
use domain::review::{ReviewCommand, ReviewSource};
use domain::values::{Discount, Money as DomainMoney};
use projections::crm::{campaigns, pipeline, reviews};
use projections::JsonRow;

use super::auth::{check_len, settle};
use super::context::Allow;
use super::context::{self, parts};
use super::customers::{customer_id, MarketingChannel, Money, StaffOnly};
use super::errors;
use super::paging::{self, Page, PageArgs};
use crate::state::AppState;

fn s(r: &JsonRow, k: &str) -> Option<String> {
    r.get(k).and_then(|v| v.as_str()).map(str::to_string)
}
fn i(r: &JsonRow, k: &str) -> i64 {
    r.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0)
}

/// A pipeline stage.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::opportunity::PipelineStage")]
pub enum Stage {
    /// Just identified.
    New,
    /// The customer was contacted.
    Contacted,
    /// A quote was given.
    Quoted,
    /// Terms under discussion.
    Negotiating,
}

/// A sales opportunity. Its customer, on the portal's offer page (`recordOfferViewed`,
/// `acceptOffer`), sees the offer: the pipeline's fields are staff only.
#[derive(Debug, Clone, SimpleObject)]
pub struct Opportunity {
    /// Id.
    pub id: ID,
    /// The customer.
    pub customer_id: ID,
    /// What it is, as the customer reads it on their offer page ("Pet-odour treatment").
    pub title: String,
    /// Expected value (staff only).
    #[graphql(guard = "StaffOnly")]
    pub value: Money,
    /// Responsible staff user (staff only).
    #[graphql(guard = "StaffOnly")]
    pub owner_id: Option<ID>,
    /// `new`, `contacted`, `quoted`, `negotiating` (staff only).
    #[graphql(guard = "StaffOnly")]
    pub stage: String,
    /// `open`, `won` or `lost` (staff only).
    #[graphql(guard = "StaffOnly")]
    pub status: String,
    /// Why it was lost (staff only).
    #[graphql(guard = "StaffOnly")]
    pub lost_reason: Option<String>,
    /// The job it became.
    pub won_job_id: Option<ID>,
    /// Auto-offer: `configured`, `sent`, `viewed`, `accepted`, `expired`.
    pub offer_status: Option<String>,
    /// Offer expiry.
    pub offer_expires_at: Option<String>,
    /// Flagged for no activity (staff only).
    #[graphql(guard = "StaffOnly")]
    pub stale: bool,
    /// Archived (staff only).
    #[graphql(guard = "StaffOnly")]
    pub archived: bool,
    /// Created.
    pub created_at: String,
}

fn opportunity(r: &JsonRow) -> Opportunity {
    Opportunity {
        id: ID(s(r, "opportunity_id").unwrap_or_default()),
        customer_id: ID(s(r, "customer_id").unwrap_or_default()),
        title: s(r, "title").unwrap_or_default(),
        value: Money::usd(i(r, "value_cents")),
        owner_id: s(r, "owner_id").map(ID),
        stage: s(r, "stage").unwrap_or_default(),
        status: s(r, "status").unwrap_or_default(),
        lost_reason: s(r, "lost_reason"),
        won_job_id: s(r, "won_job_id").map(ID),
        offer_status: s(r, "offer_status"),
        offer_expires_at: s(r, "offer_expires_at"),
        stale: i(r, "stale") == 1,
        archived: i(r, "archived") == 1,
        created_at: s(r, "created_at").unwrap_or_default(),
    }
}

async fn load_opportunity(state: &AppState, id: &str) -> Option<Opportunity> {
    pipeline::get(state.projections.db(), id)
        .await
        .ok()?
        .as_ref()
        .map(opportunity)
}

/// A campaign and its statistics.
#[derive(Debug, Clone, SimpleObject)]
pub struct Promotion {
    /// Id.
    pub id: ID,
    /// Name.
    pub name: String,
    /// `campaign`, `birthday` or `anniversary`.
    pub kind: Option<String>,
    /// `sms` or `email`.
    pub channel: Option<String>,
    /// `draft`, `scheduled`, `delivering`, `paused` or `cancelled`.
    pub status: String,
    /// Discount code.
    pub discount_code: Option<String>,
    /// Delivered messages.
    pub delivered: i64,
    /// Customers skipped (no consent, opted out, suppressed).
    pub skipped: i64,
    /// Failed deliveries.
    pub failed: i64,
    /// Opened.
    pub opened: i64,
    /// Redeemed.
    pub redeemed: i64,
    /// Redeemed / delivered, basis points.
    pub conversion_bp: Option<i64>,
}

fn promotion(r: &JsonRow) -> Promotion {
    Promotion {
        id: ID(s(r, "promotion_id").unwrap_or_default()),
        name: s(r, "name").unwrap_or_default(),
        kind: s(r, "kind"),
        channel: s(r, "channel"),
        status: s(r, "status").unwrap_or_default(),
        discount_code: s(r, "discount_code"),
        delivered: i(r, "delivered"),
        skipped: i(r, "skipped"),
        failed: i(r, "failed"),
        opened: i(r, "opened"),
        redeemed: i(r, "redeemed"),
        conversion_bp: (i(r, "delivered") > 0)
            .then(|| i(r, "redeemed") * 10_000 / i(r, "delivered")),
    }
}

/// A review.
#[derive(Debug, Clone, SimpleObject)]
pub struct Review {
    /// Id.
    pub id: ID,
    /// `portal` or `google`.
    pub source: String,
    /// The customer, when known.
    pub customer_id: Option<ID>,
    /// 1–5 stars.
    pub rating: i64,
    /// The text.
    pub comment: Option<String>,
    /// Staff response.
    pub response: Option<String>,
    /// Received.
    pub received_at: String,
}

fn review(r: &JsonRow) -> Review {
    Review {
        id: ID(s(r, "review_id").unwrap_or_default()),
        source: s(r, "source").unwrap_or_default(),
        customer_id: s(r, "customer_id").map(ID),
        rating: i(r, "rating"),
        comment: s(r, "comment"),
        response: s(r, "response"),
        received_at: s(r, "received_at").unwrap_or_default(),
    }
}

/// Queries of the pipeline, campaigns and reviews.
#[derive(Debug, Default)]
pub struct SalesQuery;

#[Object]
impl SalesQuery {
    /// Opportunities, newest first, optionally by status (`open`, `won`, `lost`) or
    /// customer; archived ones only when asked.
    #[expect(
        clippy::too_many_arguments,
        reason = "Relay's four paging arguments plus filters"
    )]
    async fn opportunities(
        &self,
        ctx: &Context<'_>,
        status: Option<String>,
        customer_id: Option<ID>,
        #[graphql(default = false)] include_archived: bool,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Opportunity>> {
        let (state, rc) = parts(ctx)?;
        context::staff(rc, Role::Staff, "read the pipeline")?;
        paging::of_listing(
            state,
            rc,
            pipeline::list(
                &status.unwrap_or_default(),
                &customer_id.map(|c| c.0).unwrap_or_default(),
                include_archived,
            ),
            PageArgs::new(after, before, first, last),
            opportunity,
        )
        .await
    }

    /// Campaigns with delivery statistics, newest first (managers).
    async fn promotions(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Promotion>> {
        let (state, rc) = parts(ctx)?;
        context::staff(rc, Role::Manager, "read campaigns")?;
        paging::of_listing(
            state,
            rc,
            campaigns::list(),
            PageArgs::new(after, before, first, last),
            promotion,
        )
        .await
    }

    /// Reviews, newest first, optionally only those without a response.
    async fn reviews(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] unanswered: bool,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Review>> {
        let (state, rc) = parts(ctx)?;
        context::staff(rc, Role::Staff, "read reviews")?;
        paging::of_listing(
            state,
            rc,
            reviews::list(unanswered),
            PageArgs::new(after, before, first, last),
            review,
        )
        .await
    }
}

/// A new opportunity.
#[derive(InputObject, Debug)]
pub struct CreateOpportunityInput {
    /// The customer.
    pub customer_id: ID,
    /// What it is.
    pub title: String,
    /// Expected value, cents.
    pub value_cents: i64,
    /// Responsible staff user (default: you).
    pub owner_id: Option<ID>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Moving an opportunity.
#[derive(InputObject, Debug)]
pub struct MoveOpportunityStageInput {
    /// Opportunity.
    pub id: ID,
    /// New stage.
    pub stage: Stage,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// An automatic offer.
#[derive(InputObject, Debug)]
pub struct ConfigureAutoOfferInput {
    /// Opportunity.
    pub id: ID,
    /// Percent off (1–100); or give `amountOffCents`.
    pub percent_off: Option<i32>,
    /// Fixed amount off, cents.
    pub amount_off_cents: Option<i64>,
    /// Valid until.
    pub expires_at: DateTime<Utc>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Sending the offer now.
#[derive(InputObject, Debug)]
pub struct SendOfferInput {
    /// Opportunity.
    pub id: ID,
    /// Channel.
    pub channel: MarketingChannel,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// An opportunity, by id (accept, view, archive).
#[derive(InputObject, Debug)]
pub struct OpportunityRefInput {
    /// Opportunity.
    pub id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Winning: books the job it becomes.
#[derive(InputObject, Debug)]
pub struct WinOpportunityInput {
    /// Opportunity.
    pub id: ID,
    /// Services of the job.
    pub services: Vec<String>,
    /// Window start.
    pub start: Option<DateTime<Utc>>,
    /// Window end.
    pub end: Option<DateTime<Utc>>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Losing, with a reason.
#[derive(InputObject, Debug)]
pub struct LoseOpportunityInput {
    /// Opportunity.
    pub id: ID,
    /// Why (required).
    pub reason: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// The opportunity after a change.
#[derive(SimpleObject, Debug)]
pub struct OpportunityPayload {
    /// As the read model shows it now.
    pub opportunity: Option<Opportunity>,
    /// Log position (for `sync`).
    pub position: String,
}

/// A campaign.
#[derive(InputObject, Debug)]
pub struct CreatePromotionInput {
    /// Name.
    pub name: String,
    /// Channel.
    pub channel: MarketingChannel,
    /// Message template, MiniJinja syntax (`Hi {{ first_name }}`): variables `first_name`,
    /// `name`, `code`, `discount`, `ends_on`, `booking_link`, `points_balance`, `tier`,
    /// `unsubscribe_link` (email). An unknown variable, or `code`/`discount` without one, is
    /// `VALIDATION` on `template`.
    pub template: String,
    /// Discount code.
    pub discount_code: Option<String>,
    /// The discount as customers read it (`20%`, `$25 off`), for `{{ discount }}`.
    pub discount: Option<String>,
    /// Campaign (default), or a standing birthday or anniversary promotion that the daily
    /// jobs send to each customer on their day.
    pub kind: Option<PromotionKindInput>,
    /// Only customers with this tag (default: all who consented). At most one of `tag`,
    /// `tier`, `lapsedDays`, `birthdayIn`; none for birthday and anniversary promotions.
    pub tag: Option<String>,
    /// Only loyalty members at this tier.
    pub tier: Option<PromotionTier>,
    /// Only customers without a completed job for this many days (1 to 3650).
    pub lapsed_days: Option<i32>,
    /// Only customers whose birthday falls in the week (Monday–Sunday) or month of the day
    /// the campaign is sent, in the business's time zone.
    pub birthday_in: Option<BirthdayWindowInput>,
    /// Starts.
    pub starts_at: DateTime<Utc>,
    /// Ends.
    pub ends_at: DateTime<Utc>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A customer using a campaign.
#[derive(InputObject, Debug)]
pub struct RedeemPromotionInput {
    /// The campaign; or give `discountCode`.
    pub promotion_id: Option<ID>,
    /// The code the customer quoted (any case).
    pub discount_code: Option<String>,
    /// Who used it.
    pub customer_id: ID,
    /// The job it was used on, for attributed revenue.
    pub job_id: Option<ID>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A campaign's content.
#[derive(InputObject, Debug)]
pub struct PromotionContentInput {
    /// Name.
    pub name: String,
    /// Channel.
    pub channel: MarketingChannel,
    /// Message template, MiniJinja syntax (`Hi {{ first_name }}`): variables `first_name`,
    /// `name`, `code`, `discount`, `ends_on`, `booking_link`, `points_balance`, `tier`,
    /// `unsubscribe_link` (email). An unknown variable, or `code`/`discount` without one, is
    /// `VALIDATION` on `template`.
    pub template: String,
    /// Discount code.
    pub discount_code: Option<String>,
    /// The discount as customers read it (`20%`, `$25 off`), for `{{ discount }}`.
    pub discount: Option<String>,
    /// Campaign (default), or a standing birthday or anniversary promotion that the daily
    /// jobs send to each customer on their day.
    pub kind: Option<PromotionKindInput>,
    /// Only customers with this tag (default: all who consented). At most one of `tag`,
    /// `tier`, `lapsedDays`, `birthdayIn`; none for birthday and anniversary promotions.
    pub tag: Option<String>,
    /// Only loyalty members at this tier.
    pub tier: Option<PromotionTier>,
    /// Only customers without a completed job for this many days (1 to 3650).
    pub lapsed_days: Option<i32>,
    /// Only customers whose birthday falls in the week (Monday–Sunday) or month of the day
    /// the campaign is sent, in the business's time zone.
    pub birthday_in: Option<BirthdayWindowInput>,
    /// Starts.
    pub starts_at: DateTime<Utc>,
    /// Ends.
    pub ends_at: DateTime<Utc>,
}

/// New content for a campaign not yet delivering.
#[derive(InputObject, Debug)]
pub struct UpdatePromotionInput {
    /// Campaign.
    pub id: ID,
    /// The content that replaces the current one.
    pub content: PromotionContentInput,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// What a promotion is.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum PromotionKindInput {
    /// A one-off campaign: each customer gets it at most once.
    Campaign,
    /// Sent on each customer's birthday (business time zone), once a year.
    Birthday,
    /// Sent on each customer's customer-since anniversary, once a year.
    Anniversary,
}

/// Which birthdays a campaign goes to.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum BirthdayWindowInput {
    /// Birthdays Monday to Sunday of the sending day's week.
    ThisWeek,
    /// Birthdays in the sending day's month.
    ThisMonth,
}

/// A loyalty tier, as an audience.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum PromotionTier {
    /// Bronze.
    Bronze,
    /// Silver.
    Silver,
    /// Gold.
    Gold,
    /// Platinum.
    Platinum,
}

impl From<PromotionTier> for domain::loyalty::Tier {
    fn from(t: PromotionTier) -> Self {
        match t {
            PromotionTier::Bronze => Self::Bronze,
            PromotionTier::Silver => Self::Silver,
            PromotionTier::Gold => Self::Gold,
            PromotionTier::Platinum => Self::Platinum,
        }
    }
}

/// One promotion, for pausing, resuming or cancelling it.
#[derive(InputObject, Debug)]
pub struct PromotionRefInput {
    /// The promotion.
    pub id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Scheduling a campaign.
#[derive(InputObject, Debug)]
pub struct SchedulePromotionInput {
    /// Campaign.
    pub id: ID,
    /// When delivery may begin (not in the past).
    pub send_at: DateTime<Utc>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A campaign after a change.
#[derive(SimpleObject, Debug)]
#[graphql(complex)]
pub struct PromotionPayload {
    /// Its id.
    pub promotion_id: ID,
    /// Log position.
    pub position: String,
}

#[async_graphql::ComplexObject]
impl PromotionPayload {
    /// The campaign as the read model now shows it.
    async fn promotion(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Promotion>> {
        let (state, rc) = parts(ctx)?;
        Ok(
            campaigns::get(state.projections.db(), self.promotion_id.as_ref())
                .await
                .map_err(|e| errors::internal(&rc.request_id, &e))?
                .as_ref()
                .map(promotion),
        )
    }
}

/// A staff response to a review.
#[derive(InputObject, Debug)]
pub struct RespondToReviewInput {
    /// Review.
    pub review_id: ID,
    /// The response.
    pub text: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A review left in the portal.
#[derive(InputObject, Debug)]
pub struct SubmitReviewInput {
    /// The job reviewed.
    pub job_id: Option<ID>,
    /// 1–5.
    pub rating: i64,
    /// Text.
    pub comment: Option<String>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A review after a change.
#[derive(SimpleObject, Debug)]
pub struct ReviewPayload {
    /// Its id.
    pub review_id: ID,
    /// Log position.
    pub position: String,
}

fn opp_id(id: &ID) -> async_graphql::Result<OpportunityId> {
    OpportunityId::parse(id).map_err(|_| errors::invalid("id", "not an opportunity id"))
}

async fn run_opp(
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

fn promotion_id(id: &ID) -> async_graphql::Result<PromotionId> {
    PromotionId::parse(id).map_err(|_| errors::invalid("id", "not a promotion id"))
}

impl CreatePromotionInput {
    /// The content, and the idempotency key.
    fn split(self) -> (PromotionContentInput, Option<String>) {
        (
            PromotionContentInput {
                name: self.name,
                channel: self.channel,
                template: self.template,
                discount_code: self.discount_code,
                discount: self.discount,
                kind: self.kind,
                tag: self.tag,
                tier: self.tier,
                lapsed_days: self.lapsed_days,
                birthday_in: self.birthday_in,
                starts_at: self.starts_at,
                ends_at: self.ends_at,
            },
            self.idempotency_key,
        )
    }
}

impl PromotionContentInput {
    /// The campaign draft, with the input's limits checked.
    fn draft(self, current: Option<PromotionKind>) -> async_graphql::Result<PromotionDraft> {
        check_len("name", &self.name)?;
        if self.template.chars().count() > 1_600 {
            return Err(errors::invalid("template", "at most 1,600 characters"));
        }
        let chosen = [
            self.tag.is_some(),
            self.tier.is_some(),
            self.lapsed_days.is_some(),
            self.birthday_in.is_some(),
        ]
        .into_iter()
        .filter(|c| *c)
        .count();
        // Left out: what it is (an edit does not turn a birthday promotion into a campaign).
        let kind = self.kind.unwrap_or(match current {
            Some(PromotionKind::Birthday) => PromotionKindInput::Birthday,
            Some(PromotionKind::Anniversary) => PromotionKindInput::Anniversary,
            _ => PromotionKindInput::Campaign,
        });
        if chosen > 1 {
            return Err(errors::invalid(
                "audience",
                "choose at most one of tag, tier, lapsedDays and birthdayIn",
            ));
        }
        let audience = match kind {
            PromotionKindInput::Birthday | PromotionKindInput::Anniversary if chosen > 0 => {
                return Err(errors::invalid(
                    "audience",
                    "birthday and anniversary promotions go to every customer on their day",
                ))
            }
            PromotionKindInput::Birthday => AudienceSegment::BirthdayToday,
            PromotionKindInput::Anniversary => AudienceSegment::AnniversaryToday,
            PromotionKindInput::Campaign => match (self.tag, self.tier, self.lapsed_days) {
                _ if self.birthday_in.is_some() => AudienceSegment::BirthdayIn {
                    window: match self.birthday_in {
                        Some(BirthdayWindowInput::ThisMonth) => BirthdayWindow::ThisMonth,
                        _ => BirthdayWindow::ThisWeek,
                    },
                },
                (Some(t), _, _) => AudienceSegment::Tagged {
                    tag: domain::values::Tag::parse(&t)
                        .map_err(|v| errors::invalid("tag", v.message))?,
                },
                (_, Some(tier), _) => AudienceSegment::LoyaltyTier { tier: tier.into() },
                (_, _, Some(days)) => AudienceSegment::Inactive {
                    days: u32::try_from(days)
                        .ok()
                        .filter(|d| (1..=3650).contains(d))
                        .ok_or_else(|| errors::invalid("lapsedDays", "1 to 3650 days"))?,
                },
                (None, None, None) => AudienceSegment::AllCustomers,
            },
        };
        Ok(PromotionDraft {
            name: self.name,
            kind: match kind {
                PromotionKindInput::Campaign => PromotionKind::Campaign,
                PromotionKindInput::Birthday => PromotionKind::Birthday,
                PromotionKindInput::Anniversary => PromotionKind::Anniversary,
            },
            audience,
            channel: Channel::from(self.channel),
            template: self.template,
            discount_code: self.discount_code,
            discount: self.discount,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
        })
    }
}

/// Runs one campaign command as the signed-in staff user.
async fn run_promotion(
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
async fn offer_step(
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

/// Mutations of the pipeline, campaigns and reviews.
#[derive(Debug, Default)]
pub struct SalesMutation;

#[Object]
impl SalesMutation {
    /// Opens an opportunity (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn create_opportunity(
        &self,
        ctx: &Context<'_>,
        input: CreateOpportunityInput,
    ) -> async_graphql::Result<OpportunityPayload> {
        check_len("title", &input.title)?;
        let (state, rc) = parts(ctx)?;
        let customer = customer_id("customerId", &input.customer_id)?;
        let me = match &rc.principal {
            Some(context::Principal::Staff { id, .. }) => Some(*id),
            _ => None,
        };
        let owner = match &input.owner_id {
            Some(o) => StaffUserId::parse(o)
                .map_err(|_| errors::invalid("ownerId", "not a staff user id"))?,
            None => me.ok_or_else(errors::unauthenticated)?,
        };
        let id = OpportunityId::from_uuid(
            context::id_for_create(state, rc, input.idempotency_key.as_ref()).await,
        );
        run_opp(
            ctx,
            id,
            Role::Manager,
            "manage the pipeline",
            input.idempotency_key.as_ref(),
            OpportunityCommand::Create {
                opportunity_id: id,
                customer_id: customer,
                title: input.title,
                value_cents: input.value_cents,
                owner,
            },
        )
        .await
    }

    /// Moves an opportunity to another stage (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn move_opportunity_stage(
        &self,
        ctx: &Context<'_>,
        input: MoveOpportunityStageInput,
    ) -> async_graphql::Result<OpportunityPayload> {
        let stage: PipelineStage = input.stage.into();
        run_opp(
            ctx,
            opp_id(&input.id)?,
            Role::Manager,
            "manage the pipeline",
            input.idempotency_key.as_ref(),
            OpportunityCommand::MoveStage { stage },
        )
        .await
    }

    /// Configures the automatic offer (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn configure_auto_offer(
        &self,
        ctx: &Context<'_>,
        input: ConfigureAutoOfferInput,
    ) -> async_graphql::Result<OpportunityPayload> {
        let discount = match (input.percent_off, input.amount_off_cents) {
            (Some(p), None) if (1..=100).contains(&p) => Discount::Percent(p as u8),
            (Some(_), None) => return Err(errors::invalid("percentOff", "must be 1 to 100")),
            (None, Some(c)) => Discount::Amount(
                DomainMoney::from_cents(c)
                    .map_err(|v| errors::invalid("amountOffCents", v.message))?,
            ),
            _ => {
                return Err(errors::invalid(
                    "percentOff",
                    "give percentOff or amountOffCents",
                ))
            }
        };
        run_opp(
            ctx,
            opp_id(&input.id)?,
            Role::Manager,
            "configure offers",
            input.idempotency_key.as_ref(),
            OpportunityCommand::ConfigureAutoOffer {
                discount,
                expires_at: input.expires_at,
            },
        )
        .await
    }

    /// Sends the offer now, respecting the customer's consent (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn send_offer(
        &self,
        ctx: &Context<'_>,
        input: SendOfferInput,
    ) -> async_graphql::Result<OpportunityPayload> {
        let (state, rc) = parts(ctx)?;
        let id = opp_id(&input.id)?;
        let opp = state
            .crm
            .opportunities()
            .load_existing(id)
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        let customer = opp
            .aggregate
            .customer_id()
            .ok_or_else(|| errors::not_found("opportunity", &id.to_string()))?;
        let c = state
            .crm
            .customers()
            .load_existing(customer)
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        let ch = Channel::from(input.channel);
        let eligibility = c.aggregate.marketing_eligibility(ch);
        run_opp(
            ctx,
            id,
            Role::Manager,
            "send offers",
            input.idempotency_key.as_ref(),
            OpportunityCommand::SendOffer {
                channel: ch,
                eligibility,
            },
        )
        .await
    }

    /// Accepts the offer: the customer in the portal, or staff on their behalf.
    #[graphql(guard = "Allow::StaffOrCustomer(Role::Staff)")]
    async fn accept_offer(
        &self,
        ctx: &Context<'_>,
        input: OpportunityRefInput,
    ) -> async_graphql::Result<OpportunityPayload> {
        offer_step(
            ctx,
            &input,
            "accept offers",
            OpportunityCommand::AcceptOffer,
        )
        .await
    }

    /// Records that the customer opened the offer: the portal's offer page calls it as the
    /// customer (or staff on their behalf), so the pipeline shows sent → viewed → accepted.
    #[graphql(guard = "Allow::StaffOrCustomer(Role::Staff)")]
    async fn record_offer_viewed(
        &self,
        ctx: &Context<'_>,
        input: OpportunityRefInput,
    ) -> async_graphql::Result<OpportunityPayload> {
        offer_step(
            ctx,
            &input,
            "record offer views",
            OpportunityCommand::RecordOfferViewed,
        )
        .await
    }

    /// Archives a won or lost opportunity (managers); it leaves the open pipeline views.
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn archive_opportunity(
        &self,
        ctx: &Context<'_>,
        input: OpportunityRefInput,
    ) -> async_graphql::Result<OpportunityPayload> {
        run_opp(
            ctx,
            opp_id(&input.id)?,
            Role::Manager,
            "archive opportunities",
            input.idempotency_key.as_ref(),
            OpportunityCommand::Archive,
        )
        .await
    }

    /// Wins the opportunity: books its job, then records the win (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn win_opportunity(
        &self,
        ctx: &Context<'_>,
        input: WinOpportunityInput,
    ) -> async_graphql::Result<OpportunityPayload> {
        let (state, rc) = parts(ctx)?;
        let (actor, meta) = context::staff(rc, Role::Manager, "win opportunities")?;
        let id = opp_id(&input.id)?;
        let opp = state
            .crm
            .opportunities()
            .load_existing(id)
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        let customer = opp
            .aggregate
            .customer_id()
            .ok_or_else(|| errors::not_found("opportunity", &id.to_string()))?;
        let window = match (input.start, input.end) {
            (Some(s), Some(e)) => {
                Some(ScheduleWindow::new(s, e).map_err(|v| errors::invalid("end", v.message))?)
            }
            (None, None) => None,
            _ => {
                return Err(errors::invalid(
                    "end",
                    "give both start and end, or neither",
                ))
            }
        };
        // The job id is derived from the opportunity, so a retried win books one job.
        let job = JobId::from_uuid(uuid::Uuid::new_v5(&id.as_uuid(), b"won-job"));
        let meta = context::with_key(meta, input.idempotency_key.as_ref());
        let plain = commands::EventMetadata {
            idempotency_key: None,
            ..meta.clone()
        };
        let booked = state
            .crm
            .jobs()
            .load(job)
            .await
            .map(|l| l.sequence > 0)
            .unwrap_or(false);
        if !booked {
            state
                .crm
                .jobs()
                .execute(
                    job,
                    actor,
                    JobCommand::Book {
                        job_id: job,
                        customer_id: customer,
                        source: BookingSource::Staff,
                        services: input.services,
                        window,
                    },
                    &plain,
                )
                .await
                .map_err(|e| errors::app(&rc.request_id, e))?;
        }
        let out = state
            .crm
            .opportunities()
            .execute(id, actor, OpportunityCommand::Win { job_id: job }, &meta)
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        let position = settle(state, &out).await;
        Ok(OpportunityPayload {
            opportunity: load_opportunity(state, &id.to_string()).await,
            position,
        })
    }

    /// Loses the opportunity with a reason (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn lose_opportunity(
        &self,
        ctx: &Context<'_>,
        input: LoseOpportunityInput,
    ) -> async_graphql::Result<OpportunityPayload> {
        check_len("reason", &input.reason)?;
        run_opp(
            ctx,
            opp_id(&input.id)?,
            Role::Manager,
            "lose opportunities",
            input.idempotency_key.as_ref(),
            OpportunityCommand::Lose {
                reason: input.reason,
            },
        )
        .await
    }

    /// Creates a campaign (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn create_promotion(
        &self,
        ctx: &Context<'_>,
        input: CreatePromotionInput,
    ) -> async_graphql::Result<PromotionPayload> {
        let (content, key) = input.split();
        let draft = content.draft(None)?;
        let (state, rc) = parts(ctx)?;
        let id = PromotionId::from_uuid(context::id_for_create(state, rc, key.as_ref()).await);
        run_promotion(
            ctx,
            id,
            Role::Manager,
            "create campaigns",
            key.as_ref(),
            PromotionCommand::Create {
                promotion_id: id,
                draft,
            },
        )
        .await
    }

    /// Replaces a campaign's content before delivery starts (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn update_promotion(
        &self,
        ctx: &Context<'_>,
        input: UpdatePromotionInput,
    ) -> async_graphql::Result<PromotionPayload> {
        let id = promotion_id(&input.id)?;
        let (state, rc) = parts(ctx)?;
        let current = state
            .crm
            .promotions()
            .load(id)
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?
            .aggregate
            .content()
            .map(|c| c.kind);
        let draft = input.content.draft(current)?;
        run_promotion(
            ctx,
            id,
            Role::Manager,
            "edit campaigns",
            input.idempotency_key.as_ref(),
            PromotionCommand::Update { draft },
        )
        .await
    }

    /// Records that a customer used a campaign (staff, at booking or checkout), by the
    /// campaign's id or its discount code. Only customers it was delivered to can redeem it
    /// (`RULE_VIOLATION` `NOT_DELIVERED`); a second redemption by the same customer records
    /// nothing. Promotion conversion and attributed revenue count these.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn redeem_promotion(
        &self,
        ctx: &Context<'_>,
        input: RedeemPromotionInput,
    ) -> async_graphql::Result<PromotionPayload> {
        let (state, rc) = parts(ctx)?;
        let customer = customer_id("customerId", &input.customer_id)?;
        let job = input
            .job_id
            .as_ref()
            .map(|j| JobId::parse(j).map_err(|_| errors::invalid("jobId", "not a job id")))
            .transpose()?;
        let id = match (&input.promotion_id, &input.discount_code) {
            (Some(p), None) => PromotionId::parse(p)
                .map_err(|_| errors::invalid("promotionId", "not a promotion id"))?,
            (None, Some(code)) => {
                check_len("discountCode", code)?;
                let found = campaigns::with_discount_code(state.projections.db(), code)
                    .await
                    .map_err(|e| errors::internal(&rc.request_id, &e))?
                    .and_then(|p| PromotionId::parse(&p).ok());
                found.ok_or_else(|| {
                    errors::coded(
                        "NOT_FOUND",
                        "no campaign has this discount code",
                        Some("discountCode"),
                    )
                })?
            }
            _ => {
                return Err(errors::invalid(
                    "promotionId",
                    "give the campaign's id or its discount code, not both",
                ))
            }
        };
        run_promotion(
            ctx,
            id,
            Role::Staff,
            "redeem promotions",
            input.idempotency_key.as_ref(),
            PromotionCommand::RecordRedeemed {
                customer_id: customer,
                job_id: job,
            },
        )
        .await
    }

    /// Schedules a campaign's delivery (managers). Batches go out every 30 minutes.
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn schedule_promotion(
        &self,
        ctx: &Context<'_>,
        input: SchedulePromotionInput,
    ) -> async_graphql::Result<PromotionPayload> {
        run_promotion(
            ctx,
            promotion_id(&input.id)?,
            Role::Manager,
            "schedule campaigns",
            input.idempotency_key.as_ref(),
            PromotionCommand::Schedule {
                send_at: input.send_at,
            },
        )
        .await
    }

    /// Stops a promotion's deliveries until resumed (managers); messages already queued
    /// still go. Pausing a paused one changes nothing.
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn pause_promotion(
        &self,
        ctx: &Context<'_>,
        input: PromotionRefInput,
    ) -> async_graphql::Result<PromotionPayload> {
        run_promotion(
            ctx,
            promotion_id(&input.id)?,
            Role::Manager,
            "pause campaigns",
            input.idempotency_key.as_ref(),
            PromotionCommand::Pause,
        )
        .await
    }

    /// Delivers a paused promotion again (managers); `RULE_VIOLATION`
    /// (`PROMOTION_NOT_PAUSED`) when it is not paused.
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn resume_promotion(
        &self,
        ctx: &Context<'_>,
        input: PromotionRefInput,
    ) -> async_graphql::Result<PromotionPayload> {
        run_promotion(
            ctx,
            promotion_id(&input.id)?,
            Role::Manager,
            "resume campaigns",
            input.idempotency_key.as_ref(),
            PromotionCommand::Resume,
        )
        .await
    }

    /// Cancels a promotion for good (managers): nothing more is delivered, and its messages
    /// not yet sent are not sent; what was sent stays counted. Then only tracking (opens,
    /// redemptions) changes it; anything else is `RULE_VIOLATION` (`PROMOTION_CANCELLED`).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn cancel_promotion(
        &self,
        ctx: &Context<'_>,
        input: PromotionRefInput,
    ) -> async_graphql::Result<PromotionPayload> {
        run_promotion(
            ctx,
            promotion_id(&input.id)?,
            Role::Manager,
            "cancel campaigns",
            input.idempotency_key.as_ref(),
            PromotionCommand::Cancel,
        )
        .await
    }

    /// Responds to a review (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn respond_to_review(
        &self,
        ctx: &Context<'_>,
        input: RespondToReviewInput,
    ) -> async_graphql::Result<ReviewPayload> {
        if input.text.chars().count() > 2_000 {
            return Err(errors::invalid("text", "at most 2,000 characters"));
        }
        let (state, rc) = parts(ctx)?;
        let (actor, meta) = context::staff(rc, Role::Staff, "respond to reviews")?;
        let id = ReviewId::parse(&input.review_id)
            .map_err(|_| errors::invalid("reviewId", "not a review id"))?;
        let out = state
            .crm
            .reviews()
            .execute(
                id,
                actor,
                ReviewCommand::Respond { text: input.text },
                &context::with_key(meta, input.idempotency_key.as_ref()),
            )
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        Ok(ReviewPayload {
            review_id: input.review_id,
            position: settle(state, &out).await,
        })
    }

    /// Leaves a review as the signed-in portal customer.
    #[graphql(guard = "Allow::Customer")]
    async fn submit_review(
        &self,
        ctx: &Context<'_>,
        input: SubmitReviewInput,
    ) -> async_graphql::Result<ReviewPayload> {
        if input
            .comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > 2_000)
        {
            return Err(errors::invalid("comment", "at most 2,000 characters"));
        }
        let (state, rc) = parts(ctx)?;
        let (customer, actor, meta) = context::customer(rc)?;
        let job = input
            .job_id
            .as_ref()
            .map(|j| JobId::parse(j).map_err(|_| errors::invalid("jobId", "not a job id")))
            .transpose()?;
        let key = input.idempotency_key.as_ref();
        // A review is of one's own completed job, once per job (or one general
        // review per customer): its id derives from what it reviews, so a
        // second one is ALREADY_EXISTS. A retry with the key replays the first.
        let id = if context::key_was_used(state, rc, key).await {
            ReviewId::from_uuid(context::id_for_create(state, rc, key).await)
        } else {
            if let Some(job) = job {
                let loaded = state
                    .crm
                    .jobs()
                    .load(job)
                    .await
                    .map_err(|e| errors::app(&rc.request_id, e))?;
                // Someone else's job reads like an unknown one: nothing is learnt.
                if loaded.aggregate.customer_id() != Some(customer) {
                    return Err(errors::forbidden("review this job"));
                }
                if loaded.aggregate.status() != domain::job::JobStatus::Completed {
                    return Err(errors::rule(
                        "JOB_NOT_COMPLETED",
                        "a job can be reviewed once it is completed",
                        "jobId",
                    ));
                }
            }
            match job {
                Some(j) => ReviewId::for_portal_job(j),
                None => ReviewId::from_uuid(uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_OID,
                    format!("portal-review:customer:{customer}").as_bytes(),
                )),
            }
        };
        let out = state
            .crm
            .reviews()
            .execute(
                id,
                actor,
                ReviewCommand::Receive {
                    review_id: id,
                    source: ReviewSource::Portal { job_id: job },
                    customer_id: Some(customer),
                    rating: input.rating,
                    comment: input.comment,
                },
                &context::with_key(meta, input.idempotency_key.as_ref()),
            )
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        Ok(ReviewPayload {
            review_id: ID(id.to_string()),
            position: settle(state, &out).await,
        })
    }
}
