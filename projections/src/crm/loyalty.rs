//! The loyalty and referrals read model.

use domain::loyalty::LoyaltyEvent;
use domain::referral::ReferralEvent;

use super::prelude::*;

/// Loyalty accounts and referrals.
#[derive(Debug)]
pub struct Loyalty;

const LOYALTY: &[&str] = &["loyalty_accounts", "referrals"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[
    domain::loyalty::AGGREGATE_TYPE,
    domain::referral::AGGREGATE_TYPE,
];

impl Projection for Loyalty {
    fn name(&self) -> &'static str {
        "loyalty"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        LOYALTY
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {loyalty_accounts} (
                customer_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, enrolled_at TEXT NOT NULL,
                balance BIGINT NOT NULL DEFAULT 0, earned BIGINT NOT NULL DEFAULT 0, redeemed BIGINT NOT NULL DEFAULT 0,
                expired BIGINT NOT NULL DEFAULT 0, tier TEXT NOT NULL DEFAULT 'bronze', last_birthday_bonus_year BIGINT,
                last_anniversary_bonus_year BIGINT)",
            "CREATE TABLE {referrals} (
                referral_id TEXT PRIMARY KEY, referrer_customer_id TEXT NOT NULL, referee_customer_id TEXT NOT NULL,
                code TEXT NOT NULL, recorded_at TEXT NOT NULL, rewarded_at TEXT, referrer_points BIGINT, referee_points BIGINT)",
            "CREATE INDEX {referrals}_referrer_{gen} ON {referrals} (referrer_customer_id)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(event) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let id = e.aggregate_id.clone();
            match event {
                Event::Loyalty(event) => loyalty_account(tx, ctx, id, event).await?,
                Event::Referral(event) => referral(tx, ctx, id, event).await?,
                _ => {}
            }
            Ok(())
        })
    }
}

/// A loyalty account's own events.
async fn loyalty_account(
    tx: &mut ReadTx,
    ctx: ApplyContext,
    id: String,
    event: &LoyaltyEvent,
) -> Result<(), ProjectionError> {
    let t = LOYALTY;
    let earn = "UPDATE {loyalty_accounts} SET balance = balance + $2, earned = earned + $2 WHERE customer_id = $1";
    match event {
        LoyaltyEvent::LoyaltyAccountEnrolled {
            customer_id, at, ..
        } => {
            exec(tx, ctx, t, "INSERT INTO {loyalty_accounts} (customer_id, account_id, enrolled_at) VALUES ($1, $2, $3)
                ON CONFLICT (customer_id) DO NOTHING",
                &[customer_id.to_string().into(), id.into(), rfc3339(*at).into()]).await?;
        }
        LoyaltyEvent::PointsEarned {
            customer_id,
            points,
            ..
        }
        | LoyaltyEvent::PointsAwarded {
            customer_id,
            points,
            ..
        }
        | LoyaltyEvent::ReferralBonusAwarded {
            customer_id,
            points,
            ..
        } => {
            exec(
                tx,
                ctx,
                t,
                earn,
                &[customer_id.to_string().into(), (*points).into()],
            )
            .await?;
        }
        LoyaltyEvent::BirthdayBonusAwarded {
            customer_id,
            year,
            points,
            ..
        } => {
            exec(
                tx,
                ctx,
                t,
                earn,
                &[customer_id.to_string().into(), (*points).into()],
            )
            .await?;
            exec(tx, ctx, t, "UPDATE {loyalty_accounts} SET last_birthday_bonus_year = $2 WHERE customer_id = $1",
                &[customer_id.to_string().into(), i64::from(*year).into()]).await?;
        }
        LoyaltyEvent::AnniversaryBonusAwarded {
            customer_id,
            year,
            points,
            ..
        } => {
            exec(
                tx,
                ctx,
                t,
                earn,
                &[customer_id.to_string().into(), (*points).into()],
            )
            .await?;
            exec(tx, ctx, t, "UPDATE {loyalty_accounts} SET last_anniversary_bonus_year = $2 WHERE customer_id = $1",
                &[customer_id.to_string().into(), i64::from(*year).into()]).await?;
        }
        LoyaltyEvent::PointsRedeemed {
            customer_id,
            points,
            ..
        } => {
            exec(tx, ctx, t, "UPDATE {loyalty_accounts} SET balance = balance - $2, redeemed = redeemed + $2 WHERE customer_id = $1",
                &[customer_id.to_string().into(), (*points).into()]).await?;
        }
        LoyaltyEvent::PointsExpired {
            customer_id,
            points,
            ..
        } => {
            exec(tx, ctx, t, "UPDATE {loyalty_accounts} SET balance = balance - $2, expired = expired + $2 WHERE customer_id = $1",
                &[customer_id.to_string().into(), (*points).into()]).await?;
        }
        LoyaltyEvent::TierChanged {
            customer_id, to, ..
        } => {
            exec(
                tx,
                ctx,
                t,
                "UPDATE {loyalty_accounts} SET tier = $2 WHERE customer_id = $1",
                &[customer_id.to_string().into(), text(to).into()],
            )
            .await?;
        }
    }
    Ok(())
}

/// A referral's own events.
async fn referral(
    tx: &mut ReadTx,
    ctx: ApplyContext,
    id: String,
    event: &ReferralEvent,
) -> Result<(), ProjectionError> {
    let t = LOYALTY;
    match event {
        ReferralEvent::ReferralRecorded {
            referrer_customer_id,
            referee_customer_id,
            code,
            at,
            ..
        } => {
            exec(tx, ctx, t, "INSERT INTO {referrals} (referral_id, referrer_customer_id, referee_customer_id, code, recorded_at)
                VALUES ($1, $2, $3, $4, $5) ON CONFLICT (referral_id) DO NOTHING",
                &[id.into(), referrer_customer_id.to_string().into(), referee_customer_id.to_string().into(),
                  code.to_string().into(), rfc3339(*at).into()]).await?;
        }
        ReferralEvent::ReferralRewarded {
            referrer_points,
            referee_points,
            at,
            ..
        } => {
            exec(tx, ctx, t, "UPDATE {referrals} SET rewarded_at = $2, referrer_points = $3, referee_points = $4 WHERE referral_id = $1",
                &[id.into(), rfc3339(*at).into(), (*referrer_points).into(), (*referee_points).into()]).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- queries

/// How many loyalty accounts each tier holds (tiers without one absent).
///
/// # Errors
/// When the read model cannot be read.
pub async fn accounts_by_tier(
    db: &crate::db::ReadDb,
) -> Result<std::collections::BTreeMap<String, i64>, crate::db::DbError> {
    db.query(
        "SELECT tier, CAST(COUNT(*) AS BIGINT) AS n FROM rm_loyalty_accounts GROUP BY tier",
        &[],
    )
    .await?
    .iter()
    .map(|r| Ok((crate::row::text(r, "tier")?, crate::row::int(r, "n")?)))
    .collect()
}

// ---------------------------------------------------------------- queries

/// A customer's loyalty account as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoyaltyAccountRow {
    /// The customer.
    pub customer_id: String,
    /// Points to spend.
    pub balance: i64,
    /// Points earned.
    pub earned: i64,
    /// Points redeemed.
    pub redeemed: i64,
    /// Points expired.
    pub expired: i64,
    /// Tier.
    pub tier: String,
    /// Enrolled (RFC 3339 UTC).
    pub enrolled_at: String,
}

impl crate::row::FromRow for LoyaltyAccountRow {
    fn from_row(r: &crate::JsonRow) -> Result<Self, crate::DbError> {
        use crate::row::{int, text};
        Ok(LoyaltyAccountRow {
            customer_id: text(r, "customer_id")?,
            balance: int(r, "balance")?,
            earned: int(r, "earned")?,
            redeemed: int(r, "redeemed")?,
            expired: int(r, "expired")?,
            tier: text(r, "tier")?,
            enrolled_at: text(r, "enrolled_at")?,
        })
    }
}

/// The loyalty account of `customer`, if the read model has it.
///
/// # Errors
/// [`crate::DbError`].
pub async fn account(
    db: &crate::ReadDb,
    customer: &str,
) -> Result<Option<LoyaltyAccountRow>, crate::DbError> {
    crate::listing::by_key(db, "rm_loyalty_accounts", "customer_id", customer).await
}

/// Referrals made by `referrer` (empty: anyone), newest first.
pub fn referrals(referrer: &str) -> crate::Listing {
    crate::Listing::new(
        "rm_referrals WHERE ($1 = '' OR referrer_customer_id = $1)",
        "recorded_at DESC, referral_id",
        vec![referrer.into()],
    )
}
