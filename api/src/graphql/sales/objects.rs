//! What the pipeline, campaign and review queries answer, and how a read-model row maps
//! to each.

// The parts share their parent's imports.
use super::*;
use projections::crm::campaigns::PromotionRow;
use projections::crm::pipeline::OpportunityRow;
use projections::crm::reviews::ReviewRow;

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

pub(super) fn opportunity(r: &OpportunityRow) -> Opportunity {
    Opportunity {
        id: ID(r.opportunity_id.clone()),
        customer_id: ID(r.customer_id.clone()),
        title: r.title.clone(),
        value: Money::usd(r.value_cents),
        owner_id: r.owner_id.clone().map(ID),
        stage: r.stage.clone(),
        status: r.status.clone(),
        lost_reason: r.lost_reason.clone(),
        won_job_id: r.won_job_id.clone().map(ID),
        offer_status: r.offer_status.clone(),
        offer_expires_at: r.offer_expires_at.clone(),
        stale: r.stale,
        archived: r.archived,
        created_at: r.created_at.clone(),
    }
}

pub(super) async fn load_opportunity(state: &AppState, id: &str) -> Option<Opportunity> {
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

pub(super) fn promotion(r: &PromotionRow) -> Promotion {
    Promotion {
        id: ID(r.promotion_id.clone()),
        name: r.name.clone(),
        kind: r.kind.clone(),
        channel: r.channel.clone(),
        status: r.status.clone(),
        discount_code: r.discount_code.clone(),
        delivered: r.delivered,
        skipped: r.skipped,
        failed: r.failed,
        opened: r.opened,
        redeemed: r.redeemed,
        conversion_bp: (r.delivered > 0).then(|| r.redeemed * 10_000 / r.delivered),
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

pub(super) fn review(r: &ReviewRow) -> Review {
    Review {
        id: ID(r.review_id.clone()),
        source: r.source.clone(),
        customer_id: r.customer_id.clone().map(ID),
        rating: r.rating,
        comment: r.comment.clone(),
        response: r.response.clone(),
        received_at: r.received_at.clone(),
    }
}
