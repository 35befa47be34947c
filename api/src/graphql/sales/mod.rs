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

use super::auth::check_len;
use super::command;
use super::context::{self, parts, Allow};
use super::customers::{customer_id, MarketingChannel, Money, StaffOnly};
use super::errors;
use super::paging::{self, Page, PageArgs};
use crate::state::AppState;

mod inputs;
mod objects;
mod steps;

pub use inputs::*;
pub use objects::*;
use steps::*;

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
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
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
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn promotions(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Promotion>> {
        let (state, rc) = parts(ctx)?;
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
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
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
        let owner = match &input.owner_id {
            Some(o) => StaffUserId::parse(o)
                .map_err(|_| errors::invalid("ownerId", "not a staff user id"))?,
            None => context::staff_actor(rc)?
                .0
                .staff_id()
                .ok_or_else(errors::unauthenticated)?,
        };
        let id = OpportunityId::from_uuid(
            context::id_for_create(state, rc, input.idempotency_key.as_ref()).await,
        );
        run_opp(
            ctx,
            id,
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
        offer_step(ctx, &input, OpportunityCommand::AcceptOffer).await
    }

    /// Records that the customer opened the offer: the portal's offer page calls it as the
    /// customer (or staff on their behalf), so the pipeline shows sent → viewed → accepted.
    #[graphql(guard = "Allow::StaffOrCustomer(Role::Staff)")]
    async fn record_offer_viewed(
        &self,
        ctx: &Context<'_>,
        input: OpportunityRefInput,
    ) -> async_graphql::Result<OpportunityPayload> {
        offer_step(ctx, &input, OpportunityCommand::RecordOfferViewed).await
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
        let by = context::staff_actor(rc)?;
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
        let booked = state
            .crm
            .jobs()
            .load(job)
            .await
            .map(|l| l.sequence > 0)
            .unwrap_or(false);
        if !booked {
            let book = JobCommand::Book {
                job_id: job,
                customer_id: customer,
                source: BookingSource::Staff,
                services: input.services,
                window,
            };
            // Without the key: it is the win's, and the booking is found by its id.
            command::run(rc, state.crm.jobs(), job, by.clone(), None, book).await?;
        }
        let win = OpportunityCommand::Win { job_id: job };
        let key = input.idempotency_key.as_ref();
        let on = state.crm.opportunities();
        let done = command::execute(state, rc, on, id, by, key, win).await?;
        Ok(OpportunityPayload {
            opportunity: load_opportunity(state, &id.to_string()).await,
            position: done.position,
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
        let by = context::staff_actor(rc)?;
        let id = ReviewId::parse(&input.review_id)
            .map_err(|_| errors::invalid("reviewId", "not a review id"))?;
        let respond = ReviewCommand::Respond { text: input.text };
        let key = input.idempotency_key.as_ref();
        let done = command::execute(state, rc, state.crm.reviews(), id, by, key, respond).await?;
        Ok(ReviewPayload {
            review_id: input.review_id,
            position: done.position,
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
        let receive = ReviewCommand::Receive {
            review_id: id,
            source: ReviewSource::Portal { job_id: job },
            customer_id: Some(customer),
            rating: input.rating,
            comment: input.comment,
        };
        let on = state.crm.reviews();
        let done = command::execute(state, rc, on, id, (actor, meta), key, receive).await?;
        Ok(ReviewPayload {
            review_id: ID(id.to_string()),
            position: done.position,
        })
    }
}
