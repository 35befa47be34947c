//! The CRM's read models. Each projection owns its tables; handlers read
//! event payloads by field name (see docs/events.md) so that an upcast or an
//! added field never breaks a rebuild.

use event_log::RecordedEvent;

use crate::db::{Param, ReadTx};
use crate::projection::{rfc3339, ApplyContext, BoxFut, Fields, Projection, ProjectionError};

/// Every projection the server runs, in a stable order.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(Customers),
        std::sync::Arc::new(Jobs),
        std::sync::Arc::new(Loyalty),
        std::sync::Arc::new(Pipeline),
        std::sync::Arc::new(Campaigns),
        std::sync::Arc::new(Reviews),
        std::sync::Arc::new(Activity),
        std::sync::Arc::new(Analytics),
        std::sync::Arc::new(Accounts),
        std::sync::Arc::new(Payments),
        std::sync::Arc::new(JobRuns),
        std::sync::Arc::new(ScheduledReports),
        std::sync::Arc::new(Messages),
        std::sync::Arc::new(Conversations),
    ]
}

async fn exec(
    tx: &mut ReadTx,
    ctx: ApplyContext,
    tables: &[&str],
    sql: &str,
    params: &[Param],
) -> Result<u64, ProjectionError> {
    Ok(tx.execute(&ctx.slot.sql(tables, sql), params).await?)
}

// ---------------------------------------------------------------- customers

/// Customer list, search and the customer-360 header.
#[derive(Debug)]
pub struct Customers;

const CUSTOMERS: &[&str] = &["customers"];

impl Projection for Customers {
    fn name(&self) -> &'static str {
        "customers"
    }
    fn version(&self) -> i64 {
        2
    }
    fn tables(&self) -> &'static [&'static str] {
        CUSTOMERS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {customers} (
                customer_id TEXT PRIMARY KEY, name TEXT, email TEXT, phone TEXT, birthday TEXT,
                customer_since TEXT, created_at TEXT NOT NULL, tags TEXT NOT NULL DEFAULT '[]',
                addresses TEXT NOT NULL DEFAULT '{}', notes BIGINT NOT NULL DEFAULT 0,
                sms_consent BIGINT NOT NULL DEFAULT 0, email_consent BIGINT NOT NULL DEFAULT 0,
                email_suppressed BIGINT NOT NULL DEFAULT 0, erased BIGINT NOT NULL DEFAULT 0,
                merged_into TEXT, stripe_customer_id TEXT, referral_code TEXT,
                jobs_completed BIGINT NOT NULL DEFAULT 0, total_spent_cents BIGINT NOT NULL DEFAULT 0,
                last_job_at TEXT, loyalty_points BIGINT NOT NULL DEFAULT 0, tier TEXT NOT NULL DEFAULT 'bronze',
                phone_confirmed BIGINT NOT NULL DEFAULT 1, email_confirmed BIGINT NOT NULL DEFAULT 1)",
            "CREATE INDEX {customers}_name_{gen} ON {customers} (name)",
            "CREATE INDEX {customers}_email_{gen} ON {customers} (email)",
            "CREATE INDEX {customers}_phone_{gen} ON {customers} (phone)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let f = Fields::of(e);
            let t = CUSTOMERS;
            let id = e.aggregate_id.clone();
            match (e.aggregate_type.as_str(), e.event_type.as_str()) {
                ("Customer", "CustomerCreated") => {
                    exec(tx, ctx, t,
                        "INSERT INTO {customers} (customer_id, name, email, phone, birthday, customer_since, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (customer_id) DO NOTHING",
                        &[id.into(), f.opt_str("name").into(), f.opt_str("email").into(), f.opt_str("phone").into(),
                          f.opt_str("birthday").into(), f.opt_str("customer_since").into(), f.at().into()]).await?;
                }
                ("Customer", "CustomerContactUpdated") => {
                    exec(tx, ctx, t, "UPDATE {customers} SET name = $2, email = $3, phone = $4 WHERE customer_id = $1",
                        &[id.into(), f.opt_str("name").into(), f.opt_str("email").into(), f.opt_str("phone").into()]).await?;
                }
                ("Customer", "CustomerBirthdaySet") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {customers} SET birthday = $2 WHERE customer_id = $1",
                        &[id.into(), f.opt_str("birthday").into()],
                    )
                    .await?;
                }
                ("Customer", "CustomerSinceSet") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {customers} SET customer_since = $2 WHERE customer_id = $1",
                        &[id.into(), f.opt_str("customer_since").into()],
                    )
                    .await?;
                }
                ("Customer", "CustomerAddressAdded" | "CustomerAddressRemoved") => {
                    let rows = tx
                        .query(
                            &ctx.slot.sql(
                                t,
                                "SELECT addresses FROM {customers} WHERE customer_id = $1",
                            ),
                            &[id.clone().into()],
                        )
                        .await?;
                    let mut map: serde_json::Map<String, serde_json::Value> = rows
                        .first()
                        .and_then(|r| r.get("addresses"))
                        .and_then(|v| v.as_str())
                        .and_then(|s| serde_json::from_str(s).ok())
                        .unwrap_or_default();
                    let label = f.str("label")?;
                    if e.event_type == "CustomerAddressAdded" {
                        map.insert(label, f.value("address").clone());
                    } else {
                        map.remove(&label);
                    }
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {customers} SET addresses = $2 WHERE customer_id = $1",
                        &[id.into(), serde_json::Value::Object(map).to_string().into()],
                    )
                    .await?;
                }
                ("Customer", "ContactConfirmationRequired" | "ContactConfirmed") => {
                    let column = match f.str("channel")?.as_str() {
                        "sms" => "phone_confirmed",
                        _ => "email_confirmed",
                    };
                    exec(
                        tx,
                        ctx,
                        t,
                        &format!("UPDATE {{customers}} SET {column} = $2 WHERE customer_id = $1"),
                        &[id.into(), (e.event_type == "ContactConfirmed").into()],
                    )
                    .await?;
                }
                ("Customer", "SmsConsentGranted" | "SmsConsentRevoked") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {customers} SET sms_consent = $2 WHERE customer_id = $1",
                        &[id.into(), (e.event_type == "SmsConsentGranted").into()],
                    )
                    .await?;
                }
                ("Customer", "EmailConsentGranted" | "EmailConsentRevoked") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {customers} SET email_consent = $2 WHERE customer_id = $1",
                        &[id.into(), (e.event_type == "EmailConsentGranted").into()],
                    )
                    .await?;
                }
                ("Customer", "EmailSuppressed" | "EmailSuppressionLifted") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {customers} SET email_suppressed = $2 WHERE customer_id = $1",
                        &[id.into(), (e.event_type == "EmailSuppressed").into()],
                    )
                    .await?;
                }
                ("Customer", "CustomerNoteAdded") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {customers} SET notes = notes + 1 WHERE customer_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                ("Customer", "CustomerTagged" | "CustomerUntagged") => {
                    let rows = tx
                        .query(
                            &ctx.slot
                                .sql(t, "SELECT tags FROM {customers} WHERE customer_id = $1"),
                            &[id.clone().into()],
                        )
                        .await?;
                    let mut tags: Vec<String> = rows
                        .first()
                        .and_then(|r| r.get("tags"))
                        .and_then(|v| v.as_str())
                        .and_then(|s| serde_json::from_str(s).ok())
                        .unwrap_or_default();
                    let tag = f.str("tag")?;
                    tags.retain(|x| *x != tag);
                    if e.event_type == "CustomerTagged" {
                        tags.push(tag);
                    }
                    tags.sort();
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {customers} SET tags = $2 WHERE customer_id = $1",
                        &[
                            id.into(),
                            serde_json::to_string(&tags).unwrap_or_default().into(),
                        ],
                    )
                    .await?;
                }
                ("Customer", "CustomerMergedInto") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {customers} SET merged_into = $2 WHERE customer_id = $1",
                        &[id.into(), f.opt_str("target_customer_id").into()],
                    )
                    .await?;
                }
                ("Customer", "CustomerPersonalDataErased") => {
                    // Erasure: nothing personal stays readable in the read model.
                    exec(tx, ctx, t, "UPDATE {customers} SET name = NULL, email = NULL, phone = NULL, birthday = NULL,
                        addresses = '{}', tags = '[]', erased = 1 WHERE customer_id = $1", &[id.into()]).await?;
                }
                ("Customer", "StripeCustomerLinked") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {customers} SET stripe_customer_id = $2 WHERE customer_id = $1",
                        &[id.into(), f.opt_str("stripe_customer_id").into()],
                    )
                    .await?;
                }
                ("Customer", "ReferralCodeIssued") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {customers} SET referral_code = $2 WHERE customer_id = $1",
                        &[id.into(), f.opt_str("code").into()],
                    )
                    .await?;
                }
                ("Job", "JobCompleted") => {
                    exec(tx, ctx, t, "UPDATE {customers} SET jobs_completed = jobs_completed + 1,
                        total_spent_cents = total_spent_cents + $2, last_job_at = $3 WHERE customer_id = $1",
                        &[f.str("customer_id")?.into(), f.int("amount").into(), f.at().into()]).await?;
                }
                (
                    "LoyaltyAccount",
                    "PointsEarned"
                    | "PointsAwarded"
                    | "BirthdayBonusAwarded"
                    | "AnniversaryBonusAwarded"
                    | "ReferralBonusAwarded",
                ) => {
                    exec(tx, ctx, t, "UPDATE {customers} SET loyalty_points = loyalty_points + $2 WHERE customer_id = $1",
                        &[f.str("customer_id")?.into(), f.int("points").into()]).await?;
                }
                ("LoyaltyAccount", "PointsRedeemed" | "PointsExpired") => {
                    exec(tx, ctx, t, "UPDATE {customers} SET loyalty_points = loyalty_points - $2 WHERE customer_id = $1",
                        &[f.str("customer_id")?.into(), f.int("points").into()]).await?;
                }
                ("LoyaltyAccount", "TierChanged") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {customers} SET tier = $2 WHERE customer_id = $1",
                        &[f.str("customer_id")?.into(), f.opt_str("to").into()],
                    )
                    .await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- jobs and vehicles

/// Jobs calendar, service history and the vehicle board.
#[derive(Debug)]
pub struct Jobs;

const JOBS: &[&str] = &["jobs", "vehicles"];

impl Projection for Jobs {
    fn name(&self) -> &'static str {
        "jobs"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        JOBS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {jobs} (
                job_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL, source TEXT,
                services TEXT NOT NULL DEFAULT '[]', scheduled_start TEXT, scheduled_end TEXT,
                reschedule_count BIGINT NOT NULL DEFAULT 0, technician_id TEXT, vehicle_id TEXT,
                amount_cents BIGINT, paid BIGINT NOT NULL DEFAULT 0, payment_failed BIGINT NOT NULL DEFAULT 0,
                booked_at TEXT NOT NULL, started_at TEXT, completed_at TEXT, cancelled_at TEXT, cancel_reason TEXT)",
            "CREATE INDEX {jobs}_customer_{gen} ON {jobs} (customer_id)",
            "CREATE INDEX {jobs}_start_{gen} ON {jobs} (scheduled_start)",
            "CREATE TABLE {vehicles} (
                vehicle_id TEXT PRIMARY KEY, name TEXT NOT NULL, plate TEXT, status TEXT NOT NULL,
                current_job_id TEXT, updated_at TEXT NOT NULL)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let f = Fields::of(e);
            let t = JOBS;
            let id = e.aggregate_id.clone();
            let window = |w: &serde_json::Value, k: &str| {
                w.get(k).and_then(|v| v.as_str()).map(str::to_string)
            };
            match (e.aggregate_type.as_str(), e.event_type.as_str()) {
                ("Job", "JobBooked") => {
                    exec(tx, ctx, t, "INSERT INTO {jobs} (job_id, customer_id, status, source, services, booked_at)
                        VALUES ($1, $2, 'booked', $3, $4, $5) ON CONFLICT (job_id) DO NOTHING",
                        &[id.into(), f.str("customer_id")?.into(), f.opt_str("source").into(), f.value("services").to_string().into(), f.at().into()]).await?;
                }
                ("Job", "JobScheduled") => {
                    let w = f.value("window");
                    exec(tx, ctx, t, "UPDATE {jobs} SET status = 'scheduled', scheduled_start = $2, scheduled_end = $3 WHERE job_id = $1",
                        &[id.into(), window(w, "start").into(), window(w, "end").into()]).await?;
                }
                ("Job", "JobRescheduled") => {
                    let w = f.value("window");
                    exec(tx, ctx, t, "UPDATE {jobs} SET scheduled_start = $2, scheduled_end = $3, reschedule_count = reschedule_count + 1 WHERE job_id = $1",
                        &[id.into(), window(w, "start").into(), window(w, "end").into()]).await?;
                }
                ("Job", "TechnicianAssigned") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {jobs} SET technician_id = $2 WHERE job_id = $1",
                        &[id.into(), f.opt_str("technician_id").into()],
                    )
                    .await?;
                }
                ("Job", "VehicleAssigned") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {jobs} SET vehicle_id = $2 WHERE job_id = $1",
                        &[id.into(), f.opt_str("vehicle_id").into()],
                    )
                    .await?;
                }
                ("Job", "JobStarted") => {
                    exec(tx, ctx, t, "UPDATE {jobs} SET status = 'in_progress', started_at = $2 WHERE job_id = $1", &[id.into(), f.at().into()]).await?;
                }
                ("Job", "JobCompleted") => {
                    exec(tx, ctx, t, "UPDATE {jobs} SET status = 'completed', completed_at = $2, amount_cents = $3, services = $4,
                        technician_id = $5, vehicle_id = COALESCE($6, vehicle_id) WHERE job_id = $1",
                        &[id.into(), f.at().into(), f.int("amount").into(), f.value("services").to_string().into(),
                          f.opt_str("technician_id").into(), f.opt_str("vehicle_id").into()]).await?;
                }
                ("Job", "JobCancelled") => {
                    exec(tx, ctx, t, "UPDATE {jobs} SET status = 'cancelled', cancelled_at = $2, cancel_reason = $3 WHERE job_id = $1",
                        &[id.into(), f.at().into(), f.opt_str("reason").into()]).await?;
                }
                ("Job", "JobPaid") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {jobs} SET paid = 1 WHERE job_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                ("Job", "JobPaymentFailed") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {jobs} SET payment_failed = payment_failed + 1 WHERE job_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                ("Vehicle", "VehicleRegistered") => {
                    exec(tx, ctx, t, "INSERT INTO {vehicles} (vehicle_id, name, plate, status, updated_at) VALUES ($1, $2, $3, 'available', $4)
                        ON CONFLICT (vehicle_id) DO NOTHING",
                        &[id.into(), f.str("name")?.into(), f.opt_str("plate").into(), f.at().into()]).await?;
                }
                ("Vehicle", "VehicleStatusChanged") => {
                    exec(tx, ctx, t, "UPDATE {vehicles} SET status = $2, current_job_id = $3, updated_at = $4 WHERE vehicle_id = $1",
                        &[id.into(), f.opt_str("to").into(), f.opt_str("job_id").into(), f.at().into()]).await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- loyalty and referrals

/// Loyalty accounts and referrals.
#[derive(Debug)]
pub struct Loyalty;

const LOYALTY: &[&str] = &["loyalty_accounts", "referrals"];

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
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let f = Fields::of(e);
            let t = LOYALTY;
            let earn = "UPDATE {loyalty_accounts} SET balance = balance + $2, earned = earned + $2 WHERE customer_id = $1";
            match (e.aggregate_type.as_str(), e.event_type.as_str()) {
                ("LoyaltyAccount", "LoyaltyAccountEnrolled") => {
                    exec(tx, ctx, t, "INSERT INTO {loyalty_accounts} (customer_id, account_id, enrolled_at) VALUES ($1, $2, $3)
                        ON CONFLICT (customer_id) DO NOTHING",
                        &[f.str("customer_id")?.into(), e.aggregate_id.clone().into(), f.at().into()]).await?;
                }
                ("LoyaltyAccount", "PointsEarned" | "PointsAwarded" | "ReferralBonusAwarded") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        earn,
                        &[f.str("customer_id")?.into(), f.int("points").into()],
                    )
                    .await?;
                }
                ("LoyaltyAccount", "BirthdayBonusAwarded") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        earn,
                        &[f.str("customer_id")?.into(), f.int("points").into()],
                    )
                    .await?;
                    exec(tx, ctx, t, "UPDATE {loyalty_accounts} SET last_birthday_bonus_year = $2 WHERE customer_id = $1",
                        &[f.str("customer_id")?.into(), f.int("year").into()]).await?;
                }
                ("LoyaltyAccount", "AnniversaryBonusAwarded") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        earn,
                        &[f.str("customer_id")?.into(), f.int("points").into()],
                    )
                    .await?;
                    exec(tx, ctx, t, "UPDATE {loyalty_accounts} SET last_anniversary_bonus_year = $2 WHERE customer_id = $1",
                        &[f.str("customer_id")?.into(), f.int("year").into()]).await?;
                }
                ("LoyaltyAccount", "PointsRedeemed") => {
                    exec(tx, ctx, t, "UPDATE {loyalty_accounts} SET balance = balance - $2, redeemed = redeemed + $2 WHERE customer_id = $1",
                        &[f.str("customer_id")?.into(), f.int("points").into()]).await?;
                }
                ("LoyaltyAccount", "PointsExpired") => {
                    exec(tx, ctx, t, "UPDATE {loyalty_accounts} SET balance = balance - $2, expired = expired + $2 WHERE customer_id = $1",
                        &[f.str("customer_id")?.into(), f.int("points").into()]).await?;
                }
                ("LoyaltyAccount", "TierChanged") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {loyalty_accounts} SET tier = $2 WHERE customer_id = $1",
                        &[f.str("customer_id")?.into(), f.opt_str("to").into()],
                    )
                    .await?;
                }
                ("Referral", "ReferralRecorded") => {
                    exec(tx, ctx, t, "INSERT INTO {referrals} (referral_id, referrer_customer_id, referee_customer_id, code, recorded_at)
                        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (referral_id) DO NOTHING",
                        &[e.aggregate_id.clone().into(), f.str("referrer_customer_id")?.into(), f.str("referee_customer_id")?.into(),
                          f.str("code")?.into(), f.at().into()]).await?;
                }
                ("Referral", "ReferralRewarded") => {
                    exec(tx, ctx, t, "UPDATE {referrals} SET rewarded_at = $2, referrer_points = $3, referee_points = $4 WHERE referral_id = $1",
                        &[e.aggregate_id.clone().into(), f.at().into(), f.int("referrer_points").into(), f.int("referee_points").into()]).await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- opportunities

/// The sales pipeline.
#[derive(Debug)]
pub struct Pipeline;

const PIPELINE: &[&str] = &["opportunities"];

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
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            if e.aggregate_type != "Opportunity" {
                return Ok(());
            }
            let f = Fields::of(e);
            let t = PIPELINE;
            let id = e.aggregate_id.clone();
            let at = f.at();
            match e.event_type.as_str() {
                "OpportunityCreated" => {
                    exec(tx, ctx, t, "INSERT INTO {opportunities} (opportunity_id, customer_id, title, value_cents, owner_id, stage, status, created_at, last_activity_at)
                        VALUES ($1, $2, $3, $4, $5, 'new', 'open', $6, $6) ON CONFLICT (opportunity_id) DO NOTHING",
                        &[id.into(), f.str("customer_id")?.into(), f.str("title")?.into(), f.int("value").into(), f.opt_str("owner").into(), at.into()]).await?;
                }
                "OpportunityStageChanged" => {
                    exec(tx, ctx, t, "UPDATE {opportunities} SET stage = $2, stale = 0, last_activity_at = $3 WHERE opportunity_id = $1",
                        &[id.into(), f.opt_str("to").into(), at.into()]).await?;
                }
                "OpportunityWon" => {
                    exec(tx, ctx, t, "UPDATE {opportunities} SET status = 'won', won_job_id = $2, closed_at = $3, last_activity_at = $3 WHERE opportunity_id = $1",
                        &[id.into(), f.opt_str("job_id").into(), at.into()]).await?;
                }
                "OpportunityLost" => {
                    exec(tx, ctx, t, "UPDATE {opportunities} SET status = 'lost', lost_reason = $2, closed_at = $3, last_activity_at = $3 WHERE opportunity_id = $1",
                        &[id.into(), f.opt_str("reason").into(), at.into()]).await?;
                }
                "AutoOfferConfigured" => {
                    exec(tx, ctx, t, "UPDATE {opportunities} SET offer_status = 'configured', offer_discount = $2, offer_expires_at = $3, last_activity_at = $4 WHERE opportunity_id = $1",
                        &[id.into(), f.value("discount").to_string().into(), f.opt_str("expires_at").into(), at.into()]).await?;
                }
                "OfferSent" | "OfferViewed" | "OfferAccepted" | "OfferExpired" => {
                    let status = match e.event_type.as_str() {
                        "OfferSent" => "sent",
                        "OfferViewed" => "viewed",
                        "OfferAccepted" => "accepted",
                        _ => "expired",
                    };
                    exec(tx, ctx, t, "UPDATE {opportunities} SET offer_status = $2, last_activity_at = $3 WHERE opportunity_id = $1",
                        &[id.into(), status.into(), at.into()]).await?;
                }
                "OpportunityFlaggedStale" => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {opportunities} SET stale = 1 WHERE opportunity_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                "OpportunityArchived" => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {opportunities} SET archived = 1 WHERE opportunity_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- promotions

/// Campaigns and their delivery statistics.
#[derive(Debug)]
pub struct Campaigns;

const CAMPAIGNS: &[&str] = &["promotions", "promotion_recipients"];

impl Projection for Campaigns {
    fn name(&self) -> &'static str {
        "promotions"
    }
    fn version(&self) -> i64 {
        1
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
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            if e.aggregate_type != "Promotion" {
                return Ok(());
            }
            let f = Fields::of(e);
            let t = CAMPAIGNS;
            let id = e.aggregate_id.clone();
            let at = f.at();
            let c = f.value("content");
            let s = |k: &str| {
                c.get(k)
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            };
            let counter = |col: &str| {
                format!("UPDATE {{promotions}} SET {col} = {col} + 1 WHERE promotion_id = $1")
            };
            let recipient = "INSERT INTO {promotion_recipients} (promotion_id, customer_id, status, occasion_year, redeemed_job_id, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (promotion_id, customer_id) DO UPDATE
                SET status = excluded.status, redeemed_job_id = COALESCE(excluded.redeemed_job_id, {promotion_recipients}.redeemed_job_id), updated_at = excluded.updated_at";
            match e.event_type.as_str() {
                "PromotionCreated" | "PromotionUpdated" => {
                    exec(tx, ctx, t, "INSERT INTO {promotions} (promotion_id, name, kind, channel, audience, discount_code, starts_at, ends_at, status, created_at)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'draft', $9) ON CONFLICT (promotion_id) DO UPDATE SET
                        name = excluded.name, kind = excluded.kind, channel = excluded.channel, audience = excluded.audience,
                        discount_code = excluded.discount_code, starts_at = excluded.starts_at, ends_at = excluded.ends_at",
                        &[id.into(), s("name").unwrap_or_default().into(), s("kind").into(), s("channel").into(), s("audience").into(),
                          s("discount_code").into(), s("starts_at").into(), s("ends_at").into(), at.into()]).await?;
                }
                "PromotionScheduled" => {
                    exec(tx, ctx, t, "UPDATE {promotions} SET status = CASE WHEN status IN ('paused', 'cancelled') THEN status ELSE 'scheduled' END, send_at = $2 WHERE promotion_id = $1",
                        &[id.into(), f.opt_str("send_at").into()]).await?;
                }
                "PromotionPaused" => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {promotions} SET status = 'paused' WHERE promotion_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                "PromotionResumed" => {
                    exec(tx, ctx, t, "UPDATE {promotions} SET status = CASE WHEN delivered > 0 THEN 'delivering'
                        WHEN send_at IS NULL THEN 'draft' ELSE 'scheduled' END WHERE promotion_id = $1", &[id.into()]).await?;
                }
                "PromotionCancelled" => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {promotions} SET status = 'cancelled' WHERE promotion_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                "PromotionDelivered"
                | "PromotionDeliverySkipped"
                | "PromotionDeliveryFailed"
                | "PromotionOpened"
                | "PromotionRedeemed" => {
                    let (col, status) = match e.event_type.as_str() {
                        "PromotionDelivered" => ("delivered", "delivered"),
                        "PromotionDeliverySkipped" => ("skipped", "skipped"),
                        "PromotionDeliveryFailed" => ("failed", "failed"),
                        "PromotionOpened" => ("opened", "opened"),
                        _ => ("redeemed", "redeemed"),
                    };
                    exec(tx, ctx, t, &counter(col), &[id.clone().into()]).await?;
                    if e.event_type == "PromotionDelivered" {
                        exec(tx, ctx, t, "UPDATE {promotions} SET status = 'delivering' WHERE promotion_id = $1 AND status IN ('draft', 'scheduled')", &[id.clone().into()]).await?;
                    }
                    let year: Option<i64> = f.value("occasion_year").as_i64();
                    exec(
                        tx,
                        ctx,
                        t,
                        recipient,
                        &[
                            id.into(),
                            f.str("customer_id")?.into(),
                            status.into(),
                            year.into(),
                            f.opt_str("job_id").into(),
                            at.into(),
                        ],
                    )
                    .await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- reviews

/// Review requests and reviews.
#[derive(Debug)]
pub struct Reviews;

const REVIEWS: &[&str] = &["review_requests", "reviews"];

impl Projection for Reviews {
    fn name(&self) -> &'static str {
        "reviews"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        REVIEWS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {review_requests} (
                review_request_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, customer_id TEXT NOT NULL, channel TEXT,
                status TEXT NOT NULL, reminders BIGINT NOT NULL DEFAULT 0, review_id TEXT, requested_at TEXT NOT NULL)",
            "CREATE TABLE {reviews} (
                review_id TEXT PRIMARY KEY, source TEXT NOT NULL, customer_id TEXT, job_id TEXT, rating BIGINT NOT NULL,
                comment TEXT, response TEXT, responder_id TEXT, received_at TEXT NOT NULL, responded_at TEXT)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let f = Fields::of(e);
            let t = REVIEWS;
            let id = e.aggregate_id.clone();
            match (e.aggregate_type.as_str(), e.event_type.as_str()) {
                ("ReviewRequest", "ReviewRequested") => {
                    exec(tx, ctx, t, "INSERT INTO {review_requests} (review_request_id, job_id, customer_id, channel, status, requested_at)
                        VALUES ($1, $2, $3, $4, 'requested', $5) ON CONFLICT (review_request_id) DO NOTHING",
                        &[id.into(), f.str("job_id")?.into(), f.str("customer_id")?.into(), f.opt_str("channel").into(), f.at().into()]).await?;
                }
                ("ReviewRequest", "ReviewReminderSent") => {
                    exec(tx, ctx, t, "UPDATE {review_requests} SET reminders = reminders + 1 WHERE review_request_id = $1", &[id.into()]).await?;
                }
                ("ReviewRequest", "ReviewRequestFulfilled") => {
                    exec(tx, ctx, t, "UPDATE {review_requests} SET status = 'fulfilled', review_id = $2 WHERE review_request_id = $1",
                        &[id.into(), f.opt_str("review_id").into()]).await?;
                }
                ("Review", "ReviewReceived") => {
                    let src = f.value("source");
                    exec(tx, ctx, t, "INSERT INTO {reviews} (review_id, source, customer_id, job_id, rating, comment, received_at)
                        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (review_id) DO NOTHING",
                        &[id.into(), src.get("kind").and_then(|v| v.as_str()).unwrap_or("portal").into(), f.opt_str("customer_id").into(),
                          src.get("job_id").and_then(|v| v.as_str()).map(str::to_string).into(), f.int("rating").into(),
                          f.opt_str("comment").into(), f.at().into()]).await?;
                }
                ("Review", "ReviewResponded") => {
                    exec(tx, ctx, t, "UPDATE {reviews} SET response = $2, responder_id = $3, responded_at = $4 WHERE review_id = $1",
                        &[id.into(), f.opt_str("text").into(), f.opt_str("responder").into(), f.at().into()]).await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- activity and audit

/// Portal activity and the audit trail (who did what, when, from where).
#[derive(Debug)]
pub struct Activity;

const ACTIVITY: &[&str] = &["portal_activity", "audit_trail"];

impl Projection for Activity {
    fn name(&self) -> &'static str {
        "activity"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        ACTIVITY
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {portal_activity} (
                aggregate_id TEXT NOT NULL, sequence BIGINT NOT NULL, customer_id TEXT NOT NULL, kind TEXT NOT NULL,
                detail TEXT, at TEXT NOT NULL, local_date TEXT NOT NULL, PRIMARY KEY (aggregate_id, sequence))",
            "CREATE INDEX {portal_activity}_date_{gen} ON {portal_activity} (local_date)",
            // Keyed by stream and sequence, not log position, so that an
            // export/import or a rebuild yields the same rows.
            "CREATE TABLE {audit_trail} (
                aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, sequence BIGINT NOT NULL, event_type TEXT NOT NULL,
                actor TEXT, request_id TEXT, correlation_id TEXT, client_ip TEXT, occurred_at TEXT,
                PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
            "CREATE INDEX {audit_trail}_actor_{gen} ON {audit_trail} (actor, occurred_at)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let m = |k: &str| {
                e.metadata
                    .get(k)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            exec(tx, ctx, ACTIVITY, "INSERT INTO {audit_trail} (aggregate_type, aggregate_id, sequence, event_type, actor, request_id, correlation_id, client_ip, occurred_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (aggregate_type, aggregate_id, sequence) DO NOTHING",
                &[e.aggregate_type.clone().into(), e.aggregate_id.clone().into(), (e.sequence as i64).into(), e.event_type.clone().into(),
                  m("actor").into(), m("request_id").into(), m("correlation_id").into(), m("client_ip").into(), m("occurred_at").into()]).await?;
            let f = Fields::of(e);
            let portal_kind = match (e.aggregate_type.as_str(), e.event_type.as_str()) {
                ("PortalAccount", "PortalAccountRegistered") => {
                    Some(("registered".to_string(), None))
                }
                ("PortalAccount", "PortalLoginRecorded") => Some(("login".to_string(), None)),
                ("PortalAccount", "PortalActivityRecorded") => {
                    let a = f.value("activity");
                    let kind = a
                        .get("kind")
                        .and_then(|v| v.as_str())
                        .unwrap_or("activity")
                        .to_string();
                    Some((kind, Some(a.to_string())))
                }
                ("Job", "JobBooked") if f.opt_str("source").as_deref() == Some("online") => {
                    Some(("booking".to_string(), None))
                }
                _ => None,
            };
            if let Some((kind, detail)) = portal_kind {
                let at = f.time("at");
                exec(tx, ctx, ACTIVITY, "INSERT INTO {portal_activity} (aggregate_id, sequence, customer_id, kind, detail, at, local_date)
                    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (aggregate_id, sequence) DO NOTHING",
                    &[e.aggregate_id.clone().into(), (e.sequence as i64).into(), f.str("customer_id")?.into(), kind.into(), detail.into(),
                      rfc3339(at).into(), ctx.local_date(at).to_string().into()]).await?;
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- analytics

/// Facts for analytics, dated in the business's time zone.
#[derive(Debug)]
pub struct Analytics;

const ANALYTICS: &[&str] = &[
    "revenue",
    "revenue_by_service",
    "customer_firsts",
    "daily_counts",
];

impl Projection for Analytics {
    fn name(&self) -> &'static str {
        "analytics"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        ANALYTICS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {revenue} (
                job_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, technician_id TEXT, local_date TEXT NOT NULL,
                amount_cents BIGINT NOT NULL, returning_customer BIGINT NOT NULL)",
            "CREATE INDEX {revenue}_date_{gen} ON {revenue} (local_date)",
            "CREATE TABLE {revenue_by_service} (
                job_id TEXT NOT NULL, service TEXT NOT NULL, local_date TEXT NOT NULL, amount_cents BIGINT NOT NULL,
                PRIMARY KEY (job_id, service))",
            "CREATE TABLE {customer_firsts} (
                customer_id TEXT PRIMARY KEY, created_date TEXT, first_job_date TEXT, last_job_date TEXT, jobs BIGINT NOT NULL DEFAULT 0)",
            "CREATE TABLE {daily_counts} (
                local_date TEXT NOT NULL, metric TEXT NOT NULL, value BIGINT NOT NULL, PRIMARY KEY (local_date, metric))",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let f = Fields::of(e);
            let t = ANALYTICS;
            let date = ctx.local_date(f.time("at")).to_string();
            let bump = "INSERT INTO {daily_counts} (local_date, metric, value) VALUES ($1, $2, $3)
                ON CONFLICT (local_date, metric) DO UPDATE SET value = {daily_counts}.value + excluded.value";
            let metric: Option<(&str, i64)> =
                match (e.aggregate_type.as_str(), e.event_type.as_str()) {
                    ("Customer", "CustomerCreated") => Some(("new_customers", 1)),
                    ("Job", "JobBooked") => Some((
                        if f.opt_str("source").as_deref() == Some("online") {
                            "online_bookings"
                        } else {
                            "staff_bookings"
                        },
                        1,
                    )),
                    ("Job", "JobCompleted") => Some(("jobs_completed", 1)),
                    ("Job", "JobCancelled") => Some(("jobs_cancelled", 1)),
                    ("Opportunity", "OpportunityCreated") => Some(("opportunities_created", 1)),
                    ("Opportunity", "OpportunityWon") => Some(("opportunities_won", 1)),
                    ("Opportunity", "OpportunityLost") => Some(("opportunities_lost", 1)),
                    ("Opportunity", "OfferSent") => Some(("offers_sent", 1)),
                    ("Opportunity", "OfferAccepted") => Some(("offers_accepted", 1)),
                    ("Promotion", "PromotionDelivered") => Some(("promotion_deliveries", 1)),
                    ("Promotion", "PromotionRedeemed") => Some(("promotion_redemptions", 1)),
                    ("ReviewRequest", "ReviewRequested") => Some(("review_requests", 1)),
                    ("Review", "ReviewReceived") => Some(("reviews_received", 1)),
                    ("Review", "ReviewResponded") => Some(("reviews_responded", 1)),
                    ("LoyaltyAccount", "LoyaltyAccountEnrolled") => Some(("loyalty_enrolments", 1)),
                    (
                        "LoyaltyAccount",
                        "PointsEarned"
                        | "PointsAwarded"
                        | "BirthdayBonusAwarded"
                        | "AnniversaryBonusAwarded"
                        | "ReferralBonusAwarded",
                    ) => Some(("points_issued", f.int("points"))),
                    ("LoyaltyAccount", "PointsRedeemed") => {
                        Some(("points_redeemed", f.int("points")))
                    }
                    ("LoyaltyAccount", "PointsExpired") => {
                        Some(("points_expired", f.int("points")))
                    }
                    ("Referral", "ReferralRecorded") => Some(("referrals", 1)),
                    ("PortalAccount", "PortalLoginRecorded") => Some(("portal_logins", 1)),
                    ("PortalAccount", "PortalAccountRegistered") => {
                        Some(("portal_registrations", 1))
                    }
                    _ => None,
                };
            if let Some((name, value)) = metric {
                exec(
                    tx,
                    ctx,
                    t,
                    bump,
                    &[date.clone().into(), name.into(), value.into()],
                )
                .await?;
            }
            match (e.aggregate_type.as_str(), e.event_type.as_str()) {
                ("Customer", "CustomerCreated") => {
                    exec(tx, ctx, t, "INSERT INTO {customer_firsts} (customer_id, created_date) VALUES ($1, $2)
                        ON CONFLICT (customer_id) DO UPDATE SET created_date = excluded.created_date",
                        &[e.aggregate_id.clone().into(), date.clone().into()]).await?;
                }
                ("Job", "JobCompleted") => {
                    let customer = f.str("customer_id")?;
                    let prior = tx
                        .query(
                            &ctx.slot.sql(
                                t,
                                "SELECT jobs FROM {customer_firsts} WHERE customer_id = $1",
                            ),
                            &[customer.clone().into()],
                        )
                        .await?;
                    let returning = prior
                        .first()
                        .and_then(|r| r.get("jobs"))
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(0)
                        > 0;
                    exec(tx, ctx, t, "INSERT INTO {customer_firsts} (customer_id, first_job_date, last_job_date, jobs) VALUES ($1, $2, $2, 1)
                        ON CONFLICT (customer_id) DO UPDATE SET first_job_date = COALESCE({customer_firsts}.first_job_date, excluded.first_job_date),
                        last_job_date = excluded.last_job_date, jobs = {customer_firsts}.jobs + 1",
                        &[customer.clone().into(), date.clone().into()]).await?;
                    let amount = f.int("amount");
                    exec(tx, ctx, t, "INSERT INTO {revenue} (job_id, customer_id, technician_id, local_date, amount_cents, returning_customer)
                        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id) DO NOTHING",
                        &[e.aggregate_id.clone().into(), customer.into(), f.opt_str("technician_id").into(), date.clone().into(), amount.into(), returning.into()]).await?;
                    // A job's amount is split evenly over its services, remainder to the first,
                    // so that revenue by service adds up to revenue.
                    let services: Vec<String> =
                        serde_json::from_value(f.value("services").clone()).unwrap_or_default();
                    let mut services: Vec<String> = services
                        .into_iter()
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    if services.is_empty() {
                        services.push("unspecified".into());
                    }
                    let n = services.len() as i64;
                    for (i, s) in services.iter().enumerate() {
                        let share = amount / n + if i == 0 { amount % n } else { 0 };
                        exec(tx, ctx, t, "INSERT INTO {revenue_by_service} (job_id, service, local_date, amount_cents) VALUES ($1, $2, $3, $4)
                            ON CONFLICT (job_id, service) DO NOTHING",
                            &[e.aggregate_id.clone().into(), s.clone().into(), date.clone().into(), share.into()]).await?;
                    }
                }
                _ => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- staff users and portal accounts

/// Staff users and portal accounts: who can log in, with which role.
/// Password hashes are argon2id strings (never plain text).
#[derive(Debug)]
pub struct Accounts;

const ACCOUNTS: &[&str] = &["staff_users", "portal_accounts"];

impl Projection for Accounts {
    fn name(&self) -> &'static str {
        "accounts"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        ACCOUNTS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {staff_users} (
                staff_user_id TEXT PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
                active BIGINT NOT NULL DEFAULT 1, password_hash TEXT, invited_at TEXT NOT NULL, last_login_at TEXT,
                reset_token_hash TEXT, reset_expires_at TEXT)",
            "CREATE INDEX {staff_users}_email_{gen} ON {staff_users} (email)",
            "CREATE TABLE {portal_accounts} (
                customer_id TEXT PRIMARY KEY, portal_account_id TEXT NOT NULL, password_hash TEXT NOT NULL,
                registered_at TEXT NOT NULL, last_login_at TEXT, logins BIGINT NOT NULL DEFAULT 0)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let f = Fields::of(e);
            let t = ACCOUNTS;
            let id = e.aggregate_id.clone();
            match (e.aggregate_type.as_str(), e.event_type.as_str()) {
                ("StaffUser", "StaffUserInvited") => {
                    exec(tx, ctx, t, "INSERT INTO {staff_users} (staff_user_id, email, name, role, invited_at) VALUES ($1, $2, $3, $4, $5)
                        ON CONFLICT (staff_user_id) DO NOTHING",
                        &[id.into(), f.str("email")?.into(), f.str("name")?.into(), f.str("role")?.into(), f.at().into()]).await?;
                }
                ("StaffUser", "StaffPasswordSet" | "PasswordResetCompleted") => {
                    exec(tx, ctx, t, "UPDATE {staff_users} SET password_hash = $2, reset_token_hash = NULL, reset_expires_at = NULL WHERE staff_user_id = $1",
                        &[id.into(), f.opt_str("password_hash").into()]).await?;
                }
                ("StaffUser", "PasswordResetRequested") => {
                    exec(tx, ctx, t, "UPDATE {staff_users} SET reset_token_hash = $2, reset_expires_at = $3 WHERE staff_user_id = $1",
                        &[id.into(), f.opt_str("token_hash").into(), f.opt_str("expires_at").into()]).await?;
                }
                ("StaffUser", "StaffRoleChanged") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {staff_users} SET role = $2 WHERE staff_user_id = $1",
                        &[id.into(), f.opt_str("to").into()],
                    )
                    .await?;
                }
                ("StaffUser", "StaffUserDeactivated") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {staff_users} SET active = 0 WHERE staff_user_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                ("StaffUser", "StaffLoginRecorded") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {staff_users} SET last_login_at = $2 WHERE staff_user_id = $1",
                        &[id.into(), f.at().into()],
                    )
                    .await?;
                }
                ("PortalAccount", "PortalAccountRegistered") => {
                    exec(tx, ctx, t, "INSERT INTO {portal_accounts} (customer_id, portal_account_id, password_hash, registered_at) VALUES ($1, $2, $3, $4)
                        ON CONFLICT (customer_id) DO NOTHING",
                        &[f.str("customer_id")?.into(), id.into(), f.str("password_hash")?.into(), f.at().into()]).await?;
                }
                ("PortalAccount", "PortalPasswordChanged") => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {portal_accounts} SET password_hash = $2 WHERE customer_id = $1",
                        &[f.str("customer_id")?.into(), f.str("password_hash")?.into()],
                    )
                    .await?;
                }
                ("PortalAccount", "PortalLoginRecorded") => {
                    exec(tx, ctx, t, "UPDATE {portal_accounts} SET last_login_at = $2, logins = logins + 1 WHERE customer_id = $1",
                        &[f.str("customer_id")?.into(), f.at().into()]).await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- payments

/// Payments by provider intent: what a Stripe webhook's intent id points at,
/// and the payment history of a job or customer.
#[derive(Debug)]
pub struct Payments;

const PAYMENTS: &[&str] = &["payments"];

impl Projection for Payments {
    fn name(&self) -> &'static str {
        "payments"
    }
    fn version(&self) -> i64 {
        // 2: in-person payments (`method`).
        2
    }
    fn tables(&self) -> &'static [&'static str] {
        PAYMENTS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {payments} (
                payment_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, customer_id TEXT NOT NULL,
                amount_cents BIGINT NOT NULL, provider_intent_id TEXT NOT NULL, status TEXT NOT NULL,
                failure_reason TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                method TEXT NOT NULL DEFAULT 'stripe', reference TEXT)",
            "CREATE INDEX {payments}_intent_{gen} ON {payments} (provider_intent_id)",
            "CREATE INDEX {payments}_job_{gen} ON {payments} (job_id)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            if e.aggregate_type != "Payment" {
                return Ok(());
            }
            let f = Fields::of(e);
            let t = PAYMENTS;
            let id = e.aggregate_id.clone();
            match e.event_type.as_str() {
                "PaymentIntentCreated" => {
                    exec(tx, ctx, t, "INSERT INTO {payments} (payment_id, job_id, customer_id, amount_cents, provider_intent_id, status, created_at, updated_at)
                        VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) ON CONFLICT (payment_id) DO NOTHING",
                        &[id.into(), f.str("job_id")?.into(), f.str("customer_id")?.into(), f.int("amount").into(),
                          f.str("provider_intent_id")?.into(), f.at().into()]).await?;
                }
                "PaymentReceived" => {
                    exec(tx, ctx, t, "INSERT INTO {payments} (payment_id, job_id, customer_id, amount_cents, provider_intent_id, status, created_at, updated_at, method, reference)
                        VALUES ($1, $2, $3, $4, '', 'succeeded', $5, $5, $6, $7) ON CONFLICT (payment_id) DO NOTHING",
                        &[id.into(), f.str("job_id")?.into(), f.str("customer_id")?.into(), f.int("amount").into(),
                          f.at().into(), f.str("method")?.into(), f.opt_str("reference").into()]).await?;
                }
                "PaymentSucceeded" => {
                    exec(tx, ctx, t, "UPDATE {payments} SET status = 'succeeded', failure_reason = NULL, updated_at = $2 WHERE payment_id = $1",
                        &[id.into(), f.at().into()]).await?;
                }
                "PaymentFailed" => {
                    exec(tx, ctx, t, "UPDATE {payments} SET status = 'failed', failure_reason = $2, updated_at = $3 WHERE payment_id = $1",
                        &[id.into(), f.opt_str("reason").into(), f.at().into()]).await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- scheduled-job runs

/// The scheduler's run log: one row per `JobRun` stream.
#[derive(Debug)]
pub struct JobRuns;

const JOB_RUNS: &[&str] = &["job_runs"];

/// RFC 3339 with milliseconds, UTC: run times are finer than a second.
fn rfc3339_millis(f: &Fields<'_>, field: &str) -> String {
    f.time(field)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Projection for JobRuns {
    fn name(&self) -> &'static str {
        "job_runs"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        JOB_RUNS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {job_runs} (
                run_id TEXT PRIMARY KEY, job TEXT NOT NULL, slot TEXT NOT NULL, trigger TEXT NOT NULL,
                started_at TEXT NOT NULL, ended_at TEXT, outcome TEXT NOT NULL,
                failed_attempts BIGINT NOT NULL DEFAULT 0, last_error TEXT,
                counts TEXT, figures TEXT NOT NULL DEFAULT '{}', note TEXT)",
            "CREATE INDEX {job_runs}_started_{gen} ON {job_runs} (started_at)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            if e.aggregate_type != "JobRun" {
                return Ok(());
            }
            let f = Fields::of(e);
            let t = JOB_RUNS;
            let id = e.aggregate_id.clone();
            match e.event_type.as_str() {
                "JobRunStarted" => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "INSERT INTO {job_runs} (run_id, job, slot, trigger, started_at, outcome)
                        VALUES ($1, $2, $3, $4, $5, 'running') ON CONFLICT (run_id) DO NOTHING",
                        &[
                            id.into(),
                            f.str("job")?.into(),
                            rfc3339_millis(&f, "slot").into(),
                            f.str("trigger")?.into(),
                            rfc3339_millis(&f, "at").into(),
                        ],
                    )
                    .await?;
                }
                "JobRunFinished" => {
                    exec(tx, ctx, t, "UPDATE {job_runs} SET outcome = 'finished', ended_at = $2, counts = $3, figures = $4, note = $5 WHERE run_id = $1",
                        &[id.into(), rfc3339_millis(&f, "at").into(), f.value("counts").to_string().into(),
                          f.value("figures").to_string().into(), f.opt_str("note").into()]).await?;
                }
                "JobRunFailed" => {
                    let last = !f.value("will_retry").as_bool().unwrap_or(false);
                    exec(tx, ctx, t, "UPDATE {job_runs} SET failed_attempts = failed_attempts + 1, last_error = $2,
                        outcome = CASE WHEN $3 = 1 THEN 'failed' ELSE outcome END,
                        ended_at = CASE WHEN $3 = 1 THEN $4 ELSE ended_at END WHERE run_id = $1",
                        &[id.into(), f.opt_str("error").into(), i64::from(last).into(), rfc3339_millis(&f, "at").into()]).await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- scheduled reports

/// Scheduled-report definitions and the periods each one was generated or sent for.
#[derive(Debug)]
pub struct ScheduledReports;

const SCHEDULED_REPORTS: &[&str] = &["scheduled_reports", "scheduled_report_periods"];

impl Projection for ScheduledReports {
    fn name(&self) -> &'static str {
        "scheduled_reports"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        SCHEDULED_REPORTS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {scheduled_reports} (
                report_id TEXT PRIMARY KEY, name TEXT NOT NULL, metrics TEXT NOT NULL, period TEXT NOT NULL,
                recipients TEXT NOT NULL, cron TEXT NOT NULL, defined_by TEXT, defined_at TEXT NOT NULL,
                deleted BIGINT NOT NULL DEFAULT 0, last_generated_at TEXT, last_period_start TEXT)",
            "CREATE TABLE {scheduled_report_periods} (
                report_id TEXT NOT NULL, period_start TEXT NOT NULL, period_end TEXT, row_count BIGINT,
                status TEXT NOT NULL, failure_reason TEXT, recipient_count BIGINT, at TEXT NOT NULL,
                PRIMARY KEY (report_id, period_start))",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            if e.aggregate_type != "ScheduledReport" {
                return Ok(());
            }
            let f = Fields::of(e);
            let t = SCHEDULED_REPORTS;
            let id = e.aggregate_id.clone();
            match e.event_type.as_str() {
                "ScheduledReportDefined" => {
                    exec(tx, ctx, t, "INSERT INTO {scheduled_reports} (report_id, name, metrics, period, recipients, cron, defined_by, defined_at)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (report_id) DO NOTHING",
                        &[id.into(), f.str("name")?.into(), f.value("metrics").to_string().into(), f.str("period")?.into(),
                          f.value("recipients").to_string().into(), f.str("cron")?.into(),
                          Some(f.value("defined_by").to_string()).into(), f.at().into()]).await?;
                }
                "ScheduledReportGenerated" => {
                    exec(tx, ctx, t, "INSERT INTO {scheduled_report_periods} (report_id, period_start, period_end, row_count, status, at)
                        VALUES ($1, $2, $3, $4, 'generated', $5)
                        ON CONFLICT (report_id, period_start) DO UPDATE SET period_end = $3, row_count = $4, status = 'generated', failure_reason = NULL, at = $5",
                        &[id.clone().into(), f.str("period_start")?.into(), f.opt_str("period_end").into(), f.int("row_count").into(), f.at().into()]).await?;
                    exec(tx, ctx, t, "UPDATE {scheduled_reports} SET last_generated_at = $2, last_period_start = $3 WHERE report_id = $1",
                        &[id.into(), f.at().into(), f.str("period_start")?.into()]).await?;
                }
                "ScheduledReportGenerationFailed" => {
                    exec(tx, ctx, t, "INSERT INTO {scheduled_report_periods} (report_id, period_start, status, failure_reason, at)
                        VALUES ($1, $2, 'failed', $3, $4)
                        ON CONFLICT (report_id, period_start) DO UPDATE SET failure_reason = $3, at = $4",
                        &[id.into(), f.str("period_start")?.into(), f.opt_str("reason").into(), f.at().into()]).await?;
                }
                "ScheduledReportSent" => {
                    exec(tx, ctx, t, "UPDATE {scheduled_report_periods} SET status = 'sent', recipient_count = $3, at = $4
                        WHERE report_id = $1 AND period_start = $2",
                        &[id.into(), f.str("period_start")?.into(), f.int("recipient_count").into(), f.at().into()]).await?;
                }
                "ScheduledReportRecipientsChanged" => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {scheduled_reports} SET recipients = $2 WHERE report_id = $1",
                        &[id.into(), f.value("recipients").to_string().into()],
                    )
                    .await?;
                }
                "ScheduledReportDeleted" => {
                    exec(
                        tx,
                        ctx,
                        t,
                        "UPDATE {scheduled_reports} SET deleted = 1 WHERE report_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- outbound messages

/// The outbound message log: what was queued, why, and what became of it. Bodies and
/// recipient addresses stay in the stream (they are personal data); the row says whose.
#[derive(Debug)]
pub struct Messages;

const MESSAGES: &[&str] = &["messages"];

impl Projection for Messages {
    fn name(&self) -> &'static str {
        "messages"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        MESSAGES
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {messages} (
                message_id TEXT PRIMARY KEY, kind TEXT NOT NULL, channel TEXT NOT NULL,
                customer_id TEXT, cause TEXT NOT NULL, status TEXT NOT NULL,
                attempts BIGINT NOT NULL DEFAULT 0, provider TEXT, provider_message_id TEXT,
                delivery_status TEXT, last_error TEXT, not_sent_reason TEXT,
                queued_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
            "CREATE INDEX {messages}_queued_{gen} ON {messages} (queued_at)",
            "CREATE INDEX {messages}_customer_{gen} ON {messages} (customer_id)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            if e.aggregate_type != "OutboundMessage" {
                return Ok(());
            }
            let f = Fields::of(e);
            let t = MESSAGES;
            let id = e.aggregate_id.clone();
            match e.event_type.as_str() {
                "MessageQueued" => {
                    let recipient = f.value("recipient");
                    let customer = recipient
                        .get("customer_id")
                        .and_then(|v| v.as_str())
                        .map(str::to_string);
                    exec(tx, ctx, t, "INSERT INTO {messages} (message_id, kind, channel, customer_id, cause, status, queued_at, updated_at)
                        VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6) ON CONFLICT (message_id) DO NOTHING",
                        &[id.into(), f.str("kind")?.into(), f.str("channel")?.into(), customer.into(),
                          f.str("cause")?.into(), f.at().into()]).await?;
                }
                "MessageSendStarted" => {
                    exec(tx, ctx, t, "UPDATE {messages} SET status = 'sending', attempts = $2, provider = $3, updated_at = $4 WHERE message_id = $1",
                        &[id.into(), f.int("attempt").into(), f.opt_str("provider").into(), f.at().into()]).await?;
                }
                "MessageSendAttemptFailed" => {
                    let status = if f.value("retry_at").is_null() {
                        "sending"
                    } else {
                        "retrying"
                    };
                    exec(tx, ctx, t, "UPDATE {messages} SET status = $2, last_error = $3, updated_at = $4 WHERE message_id = $1",
                        &[id.into(), status.into(), f.opt_str("error").into(), f.at().into()]).await?;
                }
                "MessageHeld" => {
                    exec(tx, ctx, t, "UPDATE {messages} SET status = 'held', updated_at = $2 WHERE message_id = $1",
                        &[id.into(), f.at().into()]).await?;
                }
                "MessageSent" => {
                    exec(tx, ctx, t, "UPDATE {messages} SET status = 'sent', provider = $2, provider_message_id = $3, updated_at = $4 WHERE message_id = $1",
                        &[id.into(), f.opt_str("provider").into(), f.opt_str("provider_message_id").into(), f.at().into()]).await?;
                }
                "MessageNotSent" => {
                    let reason = f.value("reason");
                    let kind = reason
                        .get("kind")
                        .and_then(|v| v.as_str())
                        .unwrap_or("unknown");
                    exec(tx, ctx, t, "UPDATE {messages} SET status = 'not_sent', not_sent_reason = $2, updated_at = $3 WHERE message_id = $1",
                        &[id.into(), kind.into(), f.at().into()]).await?;
                }
                "MessageDeliveryStatusChanged" => {
                    exec(tx, ctx, t, "UPDATE {messages} SET delivery_status = $2, updated_at = $3 WHERE message_id = $1",
                        &[id.into(), f.opt_str("to").into(), f.at().into()]).await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- conversations

/// Chat conversations from the portal widget: the inbox staff work from. Message text
/// stays in the stream; the row holds status, intent and counts.
#[derive(Debug)]
pub struct Conversations;

const CONVERSATIONS: &[&str] = &["conversations"];

impl Projection for Conversations {
    fn name(&self) -> &'static str {
        "conversations"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        CONVERSATIONS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {conversations} (
                conversation_id TEXT PRIMARY KEY, customer_id TEXT, status TEXT NOT NULL,
                intent TEXT, intent_confidence BIGINT, assigned_staff_id TEXT,
                message_count BIGINT NOT NULL DEFAULT 0, started_at TEXT NOT NULL,
                last_message_at TEXT, closed_at TEXT)",
            "CREATE INDEX {conversations}_started_{gen} ON {conversations} (started_at)",
            "CREATE INDEX {conversations}_customer_{gen} ON {conversations} (customer_id)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            if e.aggregate_type != "Conversation" {
                return Ok(());
            }
            let f = Fields::of(e);
            let t = CONVERSATIONS;
            let id = e.aggregate_id.clone();
            match e.event_type.as_str() {
                "ConversationStarted" => {
                    exec(tx, ctx, t, "INSERT INTO {conversations} (conversation_id, customer_id, status, started_at)
                        VALUES ($1, $2, 'open', $3) ON CONFLICT (conversation_id) DO NOTHING",
                        &[id.into(), f.opt_str("customer_id").into(), f.at().into()]).await?;
                }
                "MessageAdded" => {
                    exec(tx, ctx, t, "UPDATE {conversations} SET message_count = message_count + 1, last_message_at = $2 WHERE conversation_id = $1",
                        &[id.into(), f.at().into()]).await?;
                }
                "IntentDetected" => {
                    exec(tx, ctx, t, "UPDATE {conversations} SET intent = $2, intent_confidence = $3 WHERE conversation_id = $1",
                        &[id.into(), f.opt_str("intent").into(), f.int("confidence_percent").into()]).await?;
                }
                "ConversationHandedOff" => {
                    exec(tx, ctx, t, "UPDATE {conversations} SET status = 'handed_off', assigned_staff_id = $2 WHERE conversation_id = $1",
                        &[id.into(), f.opt_str("to_staff").into()]).await?;
                }
                "ConversationClosed" => {
                    exec(tx, ctx, t, "UPDATE {conversations} SET status = 'closed', closed_at = $2 WHERE conversation_id = $1",
                        &[id.into(), f.at().into()]).await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}
