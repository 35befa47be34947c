//! The opportunities read model.

use domain::opportunity::OpportunityEvent;

use super::prelude::*;

/// The sales pipeline.
#[derive(Debug)]
pub struct Pipeline;

const PIPELINE: &[&str] = &["opportunities"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[domain::opportunity::AGGREGATE_TYPE];

impl Projection for Pipeline {
    fn name(&self) -> &'static str {
        "opportunities"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        PIPELINE
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {opportunities} (
                opportunity_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, title TEXT NOT NULL, value_cents BIGINT NOT NULL,
                owner_id TEXT, stage TEXT NOT NULL, status TEXT NOT NULL, lost_reason TEXT, won_job_id TEXT,
                offer_status TEXT, offer_discount TEXT, offer_expires_at TEXT, stale BIGINT NOT NULL DEFAULT 0,
                archived BIGINT NOT NULL DEFAULT 0, created_at TEXT NOT NULL, last_activity_at TEXT NOT NULL, closed_at TEXT)",
            "CREATE INDEX {opportunities}_stage_{gen} ON {opportunities} (status, stage)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(Event::Opportunity(event)) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let t = PIPELINE;
            let id = e.aggregate_id.clone();
            match event {
                OpportunityEvent::OpportunityCreated {
                    customer_id,
                    title,
                    value,
                    owner,
                    at,
                    ..
                } => {
                    exec(tx, ctx, t, "INSERT INTO {opportunities} (opportunity_id, customer_id, title, value_cents, owner_id, stage, status, created_at, last_activity_at)
                        VALUES ($1, $2, $3, $4, $5, 'new', 'open', $6, $6) ON CONFLICT (opportunity_id) DO NOTHING",
                        &[id.into(), customer_id.to_string().into(), title.to_string().into(), value.cents().into(), owner.to_string().into(), rfc3339(*at).into()]).await?;
                }
                OpportunityEvent::OpportunityStageChanged { to, at, .. } => {
                    exec(tx, ctx, t, "UPDATE {opportunities} SET stage = $2, stale = 0, last_activity_at = $3 WHERE opportunity_id = $1",
                        &[id.into(), text(to).into(), rfc3339(*at).into()]).await?;
                }
                OpportunityEvent::OpportunityWon { job_id, at, .. } => {
                    exec(tx, ctx, t, "UPDATE {opportunities} SET status = 'won', won_job_id = $2, closed_at = $3, last_activity_at = $3 WHERE opportunity_id = $1",
                        &[id.into(), job_id.to_string().into(), rfc3339(*at).into()]).await?;
                }
                OpportunityEvent::OpportunityLost { reason, at, .. } => {
                    exec(tx, ctx, t, "UPDATE {opportunities} SET status = 'lost', lost_reason = $2, closed_at = $3, last_activity_at = $3 WHERE opportunity_id = $1",
                        &[id.into(), reason.as_str().into(), rfc3339(*at).into()]).await?;
                }
                OpportunityEvent::AutoOfferConfigured {
                    discount,
                    expires_at,
                    at,
                    ..
                } => {
                    // `offer_expires_at` is the timestamp as the payload stored it (not normalised to seconds).
                    exec(tx, ctx, t, "UPDATE {opportunities} SET offer_status = 'configured', offer_discount = $2, offer_expires_at = $3, last_activity_at = $4 WHERE opportunity_id = $1",
                        &[id.into(), json(discount).into(), text(expires_at).into(), rfc3339(*at).into()]).await?;
                }
                OpportunityEvent::OfferSent { at, .. }
                | OpportunityEvent::OfferViewed { at, .. }
                | OpportunityEvent::OfferAccepted { at, .. }
                | OpportunityEvent::OfferExpired { at, .. } => {
                    let status = match event {
                        OpportunityEvent::OfferSent { .. } => "sent",
                        OpportunityEvent::OfferViewed { .. } => "viewed",
                        OpportunityEvent::OfferAccepted { .. } => "accepted",
                        _ => "expired",
                    };
                    exec(tx, ctx, t, "UPDATE {opportunities} SET offer_status = $2, last_activity_at = $3 WHERE opportunity_id = $1",
                        &[id.into(), status.into(), rfc3339(*at).into()]).await?;
                }
                OpportunityEvent::OpportunityFlaggedStale { .. } => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {opportunities} SET stale = 1 WHERE opportunity_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                OpportunityEvent::OpportunityArchived { .. } => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {opportunities} SET archived = 1 WHERE opportunity_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- queries

/// One opportunity as the pipeline holds it. Instants are RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpportunityRow {
    /// Its id.
    pub opportunity_id: String,
    /// The customer.
    pub customer_id: String,
    /// What it is.
    pub title: String,
    /// Expected value, cents.
    pub value_cents: i64,
    /// Responsible staff user.
    pub owner_id: Option<String>,
    /// `new`, `contacted`, `quoted`, `negotiating`.
    pub stage: String,
    /// `open`, `won` or `lost`.
    pub status: String,
    /// Why it was lost.
    pub lost_reason: Option<String>,
    /// The job it became.
    pub won_job_id: Option<String>,
    /// Auto-offer: `configured`, `sent`, `viewed`, `accepted`, `expired`.
    pub offer_status: Option<String>,
    /// Offer expiry.
    pub offer_expires_at: Option<String>,
    /// Flagged for no activity.
    pub stale: bool,
    /// Archived.
    pub archived: bool,
    /// Created.
    pub created_at: String,
}

impl crate::row::FromRow for OpportunityRow {
    fn from_row(r: &crate::JsonRow) -> Result<Self, crate::DbError> {
        use crate::row::{int, opt_text, text};
        Ok(OpportunityRow {
            opportunity_id: text(r, "opportunity_id")?,
            customer_id: text(r, "customer_id")?,
            title: text(r, "title")?,
            value_cents: int(r, "value_cents")?,
            owner_id: opt_text(r, "owner_id")?,
            stage: text(r, "stage")?,
            status: text(r, "status")?,
            lost_reason: opt_text(r, "lost_reason")?,
            won_job_id: opt_text(r, "won_job_id")?,
            offer_status: opt_text(r, "offer_status")?,
            offer_expires_at: opt_text(r, "offer_expires_at")?,
            stale: int(r, "stale")? == 1,
            archived: int(r, "archived")? == 1,
            created_at: text(r, "created_at")?,
        })
    }
}

/// The opportunity `id`, if the read model has it.
///
/// # Errors
/// [`crate::DbError`].
pub async fn get(db: &crate::ReadDb, id: &str) -> Result<Option<OpportunityRow>, crate::DbError> {
    crate::listing::by_key(db, "rm_opportunities", "opportunity_id", id).await
}

/// Opportunities in `status` of `customer` (empty: any), newest first; archived ones only
/// when `include_archived`.
pub fn list(
    status: &str,
    customer: &str,
    include_archived: bool,
) -> crate::Listing<OpportunityRow> {
    crate::Listing::new(
        "rm_opportunities WHERE ($1 = '' OR status = $1) AND ($2 = '' OR customer_id = $2) AND ($3 = 1 OR archived = 0)",
        "created_at DESC, opportunity_id",
        vec![status.into(), customer.into(), include_archived.into()],
    )
}
