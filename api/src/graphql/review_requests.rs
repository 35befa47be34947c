//! Review requests as staff follow them up: which jobs were asked, reminded, answered.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::ports::Role;
use projections::crm::reviews::{self, RequestFilter};

use super::command::settle;
use super::context::{self, parts, Allow};
use super::customers::MarketingChannel;
use super::dispatch::read_time;
use super::errors;
use super::paging::{self, Page, PageArgs};

/// Where a review request stands.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReviewRequestStatus {
    /// Asked (and maybe reminded); no review yet.
    Requested,
    /// The customer reviewed the job.
    Fulfilled,
}

/// A request for a review of a completed job (once per job; two reminders at most).
#[derive(SimpleObject, Debug)]
pub struct ReviewRequest {
    /// Id.
    pub id: ID,
    /// The job.
    pub job_id: ID,
    /// The customer asked.
    pub customer_id: ID,
    /// The channel asked on.
    pub channel: Option<MarketingChannel>,
    /// Where it stands.
    pub status: ReviewRequestStatus,
    /// Reminders sent.
    pub reminders: i64,
    /// The review that fulfilled it.
    pub review_id: Option<ID>,
    /// When it was asked.
    pub requested_at: DateTime<Utc>,
}

/// Review request queries.
#[derive(Debug, Default)]
pub struct ReviewRequestQuery;

#[Object]
impl ReviewRequestQuery {
    /// Review requests, newest first, optionally of one job or customer or in one status
    /// (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    #[allow(clippy::too_many_arguments)]
    async fn review_requests(
        &self,
        ctx: &Context<'_>,
        job_id: Option<ID>,
        customer_id: Option<ID>,
        status: Option<ReviewRequestStatus>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<ReviewRequest>> {
        let (state, rc) = parts(ctx)?;
        let filter = RequestFilter {
            job_id: job_id
                .map(|id| super::jobs::job_id("jobId", &id).map(|j| j.to_string()))
                .transpose()?,
            customer_id: customer_id
                .map(|id| super::customers::customer_id("customerId", &id).map(|c| c.to_string()))
                .transpose()?,
            fulfilled: status.map(|s| s == ReviewRequestStatus::Fulfilled),
        };
        let db = state.projections.db();
        paging::of_query(
            rc,
            PageArgs::new(after, before, first, last),
            reviews::request_count(db, &filter),
            |offset, limit| reviews::requests(db, &filter, offset, limit),
            |r| {
                Ok(ReviewRequest {
                    id: ID(r.review_request_id),
                    job_id: ID(r.job_id),
                    customer_id: ID(r.customer_id),
                    channel: r.channel.map(MarketingChannel::from),
                    status: if r.fulfilled {
                        ReviewRequestStatus::Fulfilled
                    } else {
                        ReviewRequestStatus::Requested
                    },
                    reminders: r.reminders,
                    review_id: r.review_id.map(ID),
                    requested_at: read_time(rc, &r.requested_at)?,
                })
            },
        )
        .await
    }
}

/// Asking a customer for a review of a completed job.
#[derive(InputObject, Debug)]
pub struct RequestReviewInput {
    /// The job.
    pub job_id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// The job's review request after asking.
#[derive(SimpleObject, Debug)]
pub struct RequestReviewPayload {
    /// The request (one per job).
    pub review_request_id: ID,
    /// Log position.
    pub position: String,
}

/// Review request mutations.
#[derive(Debug, Default)]
pub struct ReviewRequestMutation;

#[Object]
impl ReviewRequestMutation {
    /// Asks the customer for a review of a completed job (staff): the first ask is the
    /// request (SMS where they can be texted, else email), a later one a reminder on the
    /// same channel, at most two (`NO_REMINDERS_LEFT`); `ALREADY_FULFILLED` once reviewed,
    /// `CUSTOMER_NOT_REACHABLE` without consent or address, `JOB_NOT_COMPLETED` before.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn request_review(
        &self,
        ctx: &Context<'_>,
        input: RequestReviewInput,
    ) -> async_graphql::Result<RequestReviewPayload> {
        let (state, rc) = parts(ctx)?;
        let job = super::jobs::job_id("jobId", &input.job_id)?;
        let (actor, meta) = context::staff_actor(rc)?;
        let asked = state
            .crm
            .ask_for_review(
                job,
                actor,
                &context::with_key(meta, input.idempotency_key.as_ref()),
            )
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        Ok(RequestReviewPayload {
            review_request_id: ID(asked.review_request_id.to_string()),
            position: settle(state, &asked.outcome).await,
        })
    }
}
