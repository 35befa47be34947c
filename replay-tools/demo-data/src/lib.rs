//! Demo data: a realistic two-year history of a carpet-cleaning business,
//! generated deterministically from a seed number and written through the
//! same commands a user would issue (and the policies, which award points,
//! request reviews and reward referrals as they would in production).
//!
//! Determinism: the plan comes from a ChaCha PRNG; every event's `at` comes
//! from a clock set per command (a task-local instant, so commands can run
//! concurrently); commands touching shared streams (job completions, vans,
//! campaigns) run in one deterministic order. Same seed → same aggregate ids,
//! sequences and payloads. Metadata (request ids, recording times) differs.
//!
//! Staff logins: `admin@dirtfree.example`, `manager@dirtfree.example`,
//! `staff@dirtfree.example`, with the placeholder password hash
//! [`DEMO_PASSWORD_HASH`]: the API layer owns password hashing and replaces it.
//!
//! Layout: `plan` draws the whole history up front (one random stream, in a
//! fixed order), `run` replays it week by week; each aggregate's module holds
//! both what is planned for it and the commands that carry the plan out.

mod campaigns;
mod clock;
mod conversations;
mod customers;
mod jobs;
mod loyalty;
mod names;
mod opportunities;
mod payments;
mod plan;
mod portal;
mod reports;
mod reviews;
mod run;
mod staff;
mod vans;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use commands::app::{AppError, Crm};
use domain::ports::FixedClock;
use domain::{DomainServices, Role};

use crate::clock::DemoClock;
use crate::plan::Plan;
use crate::run::Ctx;

/// The password hash stored for demo staff and portal logins. Not a hash:
/// the API layer hashes passwords and must set real ones.
pub const DEMO_PASSWORD_HASH: &str = "demo-not-hashed";

/// The demo's staff logins: (email, name, role).
pub const DEMO_LOGINS: [(&str, &str, Role); 3] = [
    ("admin@dirtfree.example", "Avery Admin", Role::Admin),
    ("manager@dirtfree.example", "Morgan Manager", Role::Manager),
    ("staff@dirtfree.example", "Sam Staff", Role::Staff),
];

/// How much data to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// 30 customers, 150 jobs: for tests.
    Small,
    /// 500 customers, 3,000 jobs: the demo.
    Full,
}

/// What [`seed`] made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedSummary {
    /// Customers created (duplicates included).
    pub customers: usize,
    /// Jobs booked.
    pub jobs: usize,
    /// Jobs completed.
    pub completed_jobs: usize,
    /// Jobs cancelled.
    pub cancelled_jobs: usize,
    /// Staff users.
    pub staff_users: usize,
    /// Vans.
    pub vehicles: usize,
    /// Opportunities.
    pub opportunities: usize,
    /// Campaigns.
    pub promotions: usize,
    /// Referrals recorded.
    pub referrals: usize,
    /// Portal accounts.
    pub portal_accounts: usize,
    /// Events in the log afterwards.
    pub events: u64,
}

/// The last instant of the default demo history.
pub fn default_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 23, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Fills an empty store with two years of business ending at [`default_end`].
///
/// # Errors
/// [`AppError::Rule`] `STORE_NOT_EMPTY` when the log has events; any command
/// error (a bug in the seed).
pub async fn seed(crm: &Crm, seed: u64, scale: Scale) -> Result<SeedSummary, AppError> {
    seed_until(crm, seed, scale, default_end()).await
}

/// As [`seed`], with the history ending at `end` (e.g. now, for a live demo).
///
/// # Errors
/// As [`seed`].
pub async fn seed_until(
    crm: &Crm,
    seed: u64,
    scale: Scale,
    end: DateTime<Utc>,
) -> Result<SeedSummary, AppError> {
    if crm.log().count().await? > 0 {
        return Err(AppError::Rule {
            code: "STORE_NOT_EMPTY",
            message: "the demo seed needs an empty store".into(),
        });
    }
    let start = end - Duration::days(730);
    // Policies read this clock; the seed's own commands a task-local instant.
    let base = Arc::new(FixedClock::new(start));
    let services = DomainServices {
        clock: Arc::new(DemoClock::new(Arc::clone(&base))),
        ..crm.services().clone()
    };
    let plan = Plan::generate(seed, scale, start, end, services.tz);
    let ctx = Ctx::new(crm.with_services(services), end, plan.manager);
    ctx.play(&plan, start, &base).await?;

    let mut summary = plan.summary.clone();
    summary.events = crm.log().count().await?;
    Ok(summary)
}
