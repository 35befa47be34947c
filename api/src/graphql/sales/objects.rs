//! What the pipeline, campaign and review queries answer, and how a read-model row maps
//! to each.

// The parts share their parent's imports.
use super::*;

pub(super) fn s(r: &JsonRow, k: &str) -> Option<String> {
    r.get(k).and_then(|v| v.as_str()).map(str::to_string)
}
pub(super) fn i(r: &JsonRow, k: &str) -> i64 {
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

pub(super) fn opportunity(r: &JsonRow) -> Opportunity {
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

pub(super) fn promotion(r: &JsonRow) -> Promotion {
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

pub(super) fn review(r: &JsonRow) -> Review {
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
