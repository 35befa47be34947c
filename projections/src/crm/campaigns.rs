//! The promotions read model.

use domain::promotion::PromotionEvent;

use super::prelude::*;

/// Campaigns and their delivery statistics.
#[derive(Debug)]
pub struct Campaigns;

const CAMPAIGNS: &[&str] = &["promotions", "promotion_recipients"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[domain::promotion::AGGREGATE_TYPE];

impl Projection for Campaigns {
    fn name(&self) -> &'static str {
        "promotions"
    }
    fn version(&self) -> i64 {
        // 2: a promotion without a discount code has none (1 stored the text "null").
        2
    }
    fn tables(&self) -> &'static [&'static str] {
        CAMPAIGNS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {promotions} (
                promotion_id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT, channel TEXT, audience TEXT, discount_code TEXT,
                starts_at TEXT, ends_at TEXT, status TEXT NOT NULL, send_at TEXT, created_at TEXT NOT NULL,
                delivered BIGINT NOT NULL DEFAULT 0, skipped BIGINT NOT NULL DEFAULT 0, failed BIGINT NOT NULL DEFAULT 0,
                opened BIGINT NOT NULL DEFAULT 0, redeemed BIGINT NOT NULL DEFAULT 0)",
            "CREATE TABLE {promotion_recipients} (
                promotion_id TEXT NOT NULL, customer_id TEXT NOT NULL, status TEXT NOT NULL, occasion_year BIGINT,
                redeemed_job_id TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (promotion_id, customer_id))",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(Event::Promotion(event)) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let t = CAMPAIGNS;
            let id = e.aggregate_id.clone();
            let counter = |col: &str| {
                format!("UPDATE {{promotions}} SET {col} = {col} + 1 WHERE promotion_id = $1")
            };
            let recipient = "INSERT INTO {promotion_recipients} (promotion_id, customer_id, status, occasion_year, redeemed_job_id, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (promotion_id, customer_id) DO UPDATE
                SET status = excluded.status, redeemed_job_id = COALESCE(excluded.redeemed_job_id, {promotion_recipients}.redeemed_job_id), updated_at = excluded.updated_at";
            match event {
                PromotionEvent::PromotionCreated { content, at, .. }
                | PromotionEvent::PromotionUpdated { content, at } => {
                    // Version 2: no discount code is NULL (version 1 stored the text "null").
                    let discount_code = text(&content.discount_code);
                    exec(tx, ctx, t, "INSERT INTO {promotions} (promotion_id, name, kind, channel, audience, discount_code, starts_at, ends_at, status, created_at)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'draft', $9) ON CONFLICT (promotion_id) DO UPDATE SET
                        name = excluded.name, kind = excluded.kind, channel = excluded.channel, audience = excluded.audience,
                        discount_code = excluded.discount_code, starts_at = excluded.starts_at, ends_at = excluded.ends_at",
                        &[id.into(), content.name.to_string().into(), text(&content.kind).into(), text(&content.channel).into(),
                          text(&content.audience).into(), discount_code.into(), text(&content.starts_at).into(),
                          text(&content.ends_at).into(), rfc3339(*at).into()]).await?;
                }
                PromotionEvent::PromotionScheduled { send_at, .. } => {
                    exec(tx, ctx, t, "UPDATE {promotions} SET status = CASE WHEN status IN ('paused', 'cancelled') THEN status ELSE 'scheduled' END, send_at = $2 WHERE promotion_id = $1",
                        &[id.into(), text(send_at).into()]).await?;
                }
                PromotionEvent::PromotionPaused { .. } => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {promotions} SET status = 'paused' WHERE promotion_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                PromotionEvent::PromotionResumed { .. } => {
                    exec(tx, ctx, t, "UPDATE {promotions} SET status = CASE WHEN delivered > 0 THEN 'delivering'
                        WHEN send_at IS NULL THEN 'draft' ELSE 'scheduled' END WHERE promotion_id = $1", &[id.into()]).await?;
                }
                PromotionEvent::PromotionCancelled { .. } => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {promotions} SET status = 'cancelled' WHERE promotion_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                PromotionEvent::PromotionDelivered {
                    customer_id, at, ..
                }
                | PromotionEvent::PromotionDeliverySkipped {
                    customer_id, at, ..
                }
                | PromotionEvent::PromotionDeliveryFailed {
                    customer_id, at, ..
                }
                | PromotionEvent::PromotionOpened { customer_id, at }
                | PromotionEvent::PromotionRedeemed {
                    customer_id, at, ..
                } => {
                    let (col, status) = match event {
                        PromotionEvent::PromotionDelivered { .. } => ("delivered", "delivered"),
                        PromotionEvent::PromotionDeliverySkipped { .. } => ("skipped", "skipped"),
                        PromotionEvent::PromotionDeliveryFailed { .. } => ("failed", "failed"),
                        PromotionEvent::PromotionOpened { .. } => ("opened", "opened"),
                        _ => ("redeemed", "redeemed"),
                    };
                    exec(tx, ctx, t, &counter(col), &[id.clone().into()]).await?;
                    if matches!(event, PromotionEvent::PromotionDelivered { .. }) {
                        exec(tx, ctx, t, "UPDATE {promotions} SET status = 'delivering' WHERE promotion_id = $1 AND status IN ('draft', 'scheduled')", &[id.clone().into()]).await?;
                    }
                    let year: Option<i64> = match event {
                        PromotionEvent::PromotionDelivered { occasion_year, .. }
                        | PromotionEvent::PromotionDeliverySkipped { occasion_year, .. } => {
                            occasion_year.map(i64::from)
                        }
                        _ => None,
                    };
                    let job_id = match event {
                        PromotionEvent::PromotionRedeemed { job_id, .. } => {
                            job_id.as_ref().map(ToString::to_string)
                        }
                        _ => None,
                    };
                    exec(
                        tx,
                        ctx,
                        t,
                        recipient,
                        &[
                            id.into(),
                            customer_id.to_string().into(),
                            status.into(),
                            year.into(),
                            job_id.into(),
                            rfc3339(*at).into(),
                        ],
                    )
                    .await?;
                }
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- queries

/// The campaign `id`, if the read model has it.
///
/// # Errors
/// [`crate::DbError`].
pub async fn get(db: &crate::ReadDb, id: &str) -> Result<Option<PromotionRow>, crate::DbError> {
    crate::listing::by_key(db, "rm_promotions", "promotion_id", id).await
}

/// One campaign and its counts, as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionRow {
    /// Its id.
    pub promotion_id: String,
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
    /// Customers skipped.
    pub skipped: i64,
    /// Failed deliveries.
    pub failed: i64,
    /// Opened.
    pub opened: i64,
    /// Redeemed.
    pub redeemed: i64,
}

impl crate::row::FromRow for PromotionRow {
    fn from_row(r: &crate::JsonRow) -> Result<Self, crate::DbError> {
        use crate::row::{int, opt_text, text};
        Ok(PromotionRow {
            promotion_id: text(r, "promotion_id")?,
            name: text(r, "name")?,
            kind: opt_text(r, "kind")?,
            channel: opt_text(r, "channel")?,
            status: text(r, "status")?,
            discount_code: opt_text(r, "discount_code")?,
            delivered: int(r, "delivered")?,
            skipped: int(r, "skipped")?,
            failed: int(r, "failed")?,
            opened: int(r, "opened")?,
            redeemed: int(r, "redeemed")?,
        })
    }
}

/// Campaigns, newest first.
pub fn list() -> crate::Listing<PromotionRow> {
    crate::Listing::new("rm_promotions", "created_at DESC, promotion_id", vec![])
}

/// The newest campaign whose discount code is `code` (case-insensitive, trimmed).
///
/// # Errors
/// [`crate::DbError`].
pub async fn with_discount_code(
    db: &crate::ReadDb,
    code: &str,
) -> Result<Option<String>, crate::DbError> {
    let rows = db
        .query(
            "SELECT promotion_id FROM rm_promotions WHERE upper(discount_code) = $1 ORDER BY created_at DESC, promotion_id LIMIT 1",
            &[crate::Param::from(code.trim().to_uppercase())],
        )
        .await?;
    rows.first()
        .map(|r| crate::row::text(r, "promotion_id"))
        .transpose()
}
