//! Loyalty account: points earned on completed jobs and by staff, redeemed for rewards,
//! expired after a configurable period, tiers, and yearly birthday/anniversary bonuses.
//!
//! Points are integers. Earned points form "lots" consumed oldest first by redemptions, so
//! expiry removes exactly the points that are too old and still unspent.

use std::collections::{BTreeSet, VecDeque};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::error::{validation_error, ValidationError};
use crate::ids::{CustomerId, JobId, LoyaltyAccountId, ReferralId, StaffUserId};
use crate::ports::{Actor, CommandContext, CommandEnvelope, DomainServices};
use crate::values::{is_annual_day, Money, NonEmptyText, Reason};

/// `Aggregate::TYPE` of [`LoyaltyAccount`].
pub const AGGREGATE_TYPE: &str = "LoyaltyAccount";

/// Largest number of points one command may award or redeem (typo guard).
pub const MAX_POINTS_PER_COMMAND: i64 = 1_000_000;

/// Loyalty tiers, lowest first.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Everyone starts here.
    #[default]
    Bronze,
    /// Second tier.
    Silver,
    /// Third tier.
    Gold,
    /// Top tier.
    Platinum,
}

/// Points needed (earned within the tier window) for each tier above Bronze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierThresholds {
    silver: i64,
    gold: i64,
    platinum: i64,
}

impl TierThresholds {
    /// Thresholds must be positive and strictly increasing.
    ///
    /// # Errors
    /// `tier_thresholds` otherwise.
    pub fn new(silver: i64, gold: i64, platinum: i64) -> Result<Self, ValidationError> {
        if !(0 < silver && silver < gold && gold < platinum) {
            return Err(ValidationError::new(
                "tier_thresholds",
                "must satisfy 0 < silver < gold < platinum",
            ));
        }
        Ok(Self {
            silver,
            gold,
            platinum,
        })
    }

    /// The tier for `points`.
    pub fn tier_for(&self, points: i64) -> Tier {
        if points >= self.platinum {
            Tier::Platinum
        } else if points >= self.gold {
            Tier::Gold
        } else if points >= self.silver {
            Tier::Silver
        } else {
            Tier::Bronze
        }
    }
}

impl Default for TierThresholds {
    fn default() -> Self {
        Self {
            silver: 500,
            gold: 1_500,
            platinum: 3_000,
        }
    }
}

/// The programme's configuration (read at startup, passed in [`DomainServices`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoyaltyRules {
    /// Points per whole dollar of a completed job.
    pub points_per_dollar: u32,
    /// Points expire this many days after they were earned; 0 means never.
    pub expiry_days: u32,
    /// Tier thresholds.
    pub tiers: TierThresholds,
    /// Tiers count points earned over this many days (e.g. 365 = "over 12 months").
    pub tier_window_days: u32,
    /// Points given on the customer's birthday.
    pub birthday_bonus: u32,
    /// Points given on the customer-since anniversary.
    pub anniversary_bonus: u32,
    /// Points for the referrer when a referee completes their first job.
    pub referrer_bonus: u32,
    /// Points for the referee on their first completed job.
    pub referee_bonus: u32,
}

impl Default for LoyaltyRules {
    fn default() -> Self {
        Self {
            points_per_dollar: 1,
            expiry_days: 365,
            tiers: TierThresholds::default(),
            tier_window_days: 365,
            birthday_bonus: 100,
            anniversary_bonus: 100,
            referrer_bonus: 250,
            referee_bonus: 250,
        }
    }
}

impl LoyaltyRules {
    /// Points earned for a completed job of `amount` (whole dollars × rate; cents are dropped).
    /// Saturates rather than overflowing on absurd amounts.
    pub fn points_for(&self, amount: Money) -> i64 {
        amount
            .whole_dollars()
            .saturating_mul(i64::from(self.points_per_dollar))
    }

    fn expiry(&self) -> Option<chrono::Duration> {
        (self.expiry_days > 0).then(|| chrono::Duration::days(i64::from(self.expiry_days)))
    }
}

/// What can be asked of a loyalty account.
#[derive(Debug, Clone, PartialEq)]
pub enum LoyaltyCommand {
    /// Open the account (id: [`LoyaltyAccountId::for_customer`]).
    Enrol {
        /// The customer.
        customer_id: CustomerId,
    },
    /// Earn points for a completed job (policy on `JobCompleted`); once per job.
    EarnForJob {
        /// The job.
        job_id: JobId,
        /// The amount charged, in cents.
        amount_cents: i64,
    },
    /// Staff award points by hand.
    Award {
        /// Points, positive.
        points: i64,
        /// Why (required).
        reason: String,
    },
    /// Spend points on a reward.
    Redeem {
        /// Points, positive, at most the balance.
        points: i64,
        /// The reward, e.g. "$20 off".
        reward: String,
    },
    /// Expire points older than the configured period (daily job).
    ExpirePoints,
    /// Birthday bonus (daily job); once per calendar year in the business's time zone.
    AwardBirthdayBonus {
        /// The customer's birthday (from the Customer aggregate; not stored here).
        birthday: NaiveDate,
    },
    /// Anniversary bonus (daily job); once per calendar year.
    AwardAnniversaryBonus {
        /// The customer-since date.
        customer_since: NaiveDate,
    },
    /// Referral bonus (policy on `ReferralRewarded`); once per referral.
    AwardReferralBonus {
        /// The referral being rewarded.
        referral_id: ReferralId,
        /// Points, positive.
        points: i64,
    },
    /// Re-evaluate the tier (daily job; earned points leave the window over time).
    EvaluateTier,
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`LoyaltyAccount`] aggregate; all carry `customer_id`.
    pub enum LoyaltyEvent {
        /// The customer joined the programme (at Bronze).
        LoyaltyAccountEnrolled {
            /// The account.
            account_id: LoyaltyAccountId,
            /// The customer.
            customer_id: CustomerId,
            /// When.
            at: DateTime<Utc>,
        },
        /// Points earned for a completed job.
        PointsEarned {
            /// The customer.
            customer_id: CustomerId,
            /// The job.
            job_id: JobId,
            /// The job's amount.
            amount: Money,
            /// Points earned.
            points: i64,
            /// When.
            at: DateTime<Utc>,
        },
        /// Staff awarded points by hand.
        PointsAwarded {
            /// The customer.
            customer_id: CustomerId,
            /// Points awarded.
            points: i64,
            /// Why.
            reason: Reason,
            /// Who.
            awarded_by: StaffUserId,
            /// When.
            at: DateTime<Utc>,
        },
        /// Points were spent on a reward.
        PointsRedeemed {
            /// The customer.
            customer_id: CustomerId,
            /// Points spent.
            points: i64,
            /// The reward.
            reward: NonEmptyText,
            /// When.
            at: DateTime<Utc>,
        },
        /// Unspent points earned at or before `earned_before` expired.
        PointsExpired {
            /// The customer.
            customer_id: CustomerId,
            /// Points removed.
            points: i64,
            /// The cut-off: lots earned at or before it expired.
            earned_before: DateTime<Utc>,
            /// When.
            at: DateTime<Utc>,
        },
        /// Birthday bonus for `year` (business time zone).
        BirthdayBonusAwarded {
            /// The customer.
            customer_id: CustomerId,
            /// The calendar year.
            year: i32,
            /// Points.
            points: i64,
            /// When.
            at: DateTime<Utc>,
        },
        /// Anniversary bonus for `year`.
        AnniversaryBonusAwarded {
            /// The customer.
            customer_id: CustomerId,
            /// The calendar year.
            year: i32,
            /// Points.
            points: i64,
            /// When.
            at: DateTime<Utc>,
        },
        /// Bonus for a referral (either side).
        ReferralBonusAwarded {
            /// The customer.
            customer_id: CustomerId,
            /// The referral.
            referral_id: ReferralId,
            /// Points.
            points: i64,
            /// When.
            at: DateTime<Utc>,
        },
        /// The tier changed (up or down).
        TierChanged {
            /// The customer.
            customer_id: CustomerId,
            /// Previous tier.
            from: Tier,
            /// New tier.
            to: Tier,
            /// Points earned within the tier window that decided it.
            window_points: i64,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a loyalty command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoyaltyError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// `Enrol` on an existing account.
    #[error("the customer is already enrolled")]
    AlreadyEnrolled,
    /// Any command but `Enrol` on an account that does not exist.
    #[error("the customer is not enrolled in the loyalty programme")]
    NotEnrolled,
    /// Redemption above the balance.
    #[error("insufficient points: balance {balance}, requested {requested}")]
    InsufficientPoints {
        /// Current balance.
        balance: i64,
        /// Points asked for.
        requested: i64,
    },
    /// Manual awards are for staff only.
    #[error("points can only be awarded by a staff user")]
    StaffActorRequired,
    /// A customer acted on someone else's account.
    #[error("customers can only use their own loyalty account")]
    NotYourAccount,
    /// A birthday/anniversary bonus on another day.
    #[error("today is not the customer's {occasion}")]
    NotTheCustomersDay {
        /// "birthday" or "anniversary".
        occasion: &'static str,
    },
}
validation_error!(LoyaltyError);

/// What a decision returns: the events to record, or why nothing is.
type Decision = Result<Vec<LoyaltyEvent>, LoyaltyError>;

/// Unspent points earned at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Lot {
    earned_at: DateTime<Utc>,
    remaining: i64,
}

/// The account's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoyaltyAccount {
    customer_id: Option<CustomerId>,
    balance: i64,
    lots: VecDeque<Lot>,
    earned: Vec<(DateTime<Utc>, i64)>,
    tier: Tier,
    jobs: BTreeSet<JobId>,
    birthday_years: BTreeSet<i32>,
    anniversary_years: BTreeSet<i32>,
    referrals: BTreeSet<ReferralId>,
}

fn positive_points(points: i64) -> Result<i64, ValidationError> {
    if points <= 0 {
        return Err(ValidationError::new("points", "must be positive"));
    }
    if points > MAX_POINTS_PER_COMMAND {
        return Err(ValidationError::new(
            "points",
            format!("must be at most {MAX_POINTS_PER_COMMAND}"),
        ));
    }
    Ok(points)
}

impl LoyaltyAccount {
    /// Spendable points; never negative.
    pub fn balance(&self) -> i64 {
        self.balance
    }
    /// Current tier.
    pub fn tier(&self) -> Tier {
        self.tier
    }
    /// The customer.
    pub fn customer_id(&self) -> Option<CustomerId> {
        self.customer_id
    }

    /// Points earned in the tier window ending at `now`.
    pub fn window_points(&self, now: DateTime<Utc>, rules: &LoyaltyRules) -> i64 {
        let since = now - chrono::Duration::days(i64::from(rules.tier_window_days));
        self.earned
            .iter()
            .filter(|(at, _)| *at > since)
            .map(|(_, p)| *p)
            .sum()
    }

    fn tier_change(&self, ctx: &CommandContext, rules: &LoyaltyRules) -> Option<LoyaltyEvent> {
        let customer_id = self.customer_id?;
        let window_points = self.window_points(ctx.now, rules);
        let to = rules.tiers.tier_for(window_points);
        (to != self.tier).then_some(LoyaltyEvent::TierChanged {
            customer_id,
            from: self.tier,
            to,
            window_points,
            at: ctx.now,
        })
    }

    fn check_balance_room(&self, points: i64) -> Result<(), ValidationError> {
        self.balance
            .checked_add(points)
            .map(|_| ())
            .ok_or_else(|| ValidationError::new("points", "balance would overflow"))
    }

    /// Decides what happens when `cmd` is issued under `rules`. Pure.
    ///
    /// Every decision that changes earned points is followed by a `TierChanged` event when the
    /// tier moves, so each tier change is recorded.
    ///
    /// # Errors
    /// [`LoyaltyError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: LoyaltyCommand,
        ctx: &CommandContext,
        rules: &LoyaltyRules,
    ) -> Result<Vec<LoyaltyEvent>, LoyaltyError> {
        match cmd {
            LoyaltyCommand::Enrol { customer_id } => self.enrol(customer_id, ctx.now),
            LoyaltyCommand::EarnForJob {
                job_id,
                amount_cents,
            } => self.earn_for_job(job_id, amount_cents, ctx, rules),
            LoyaltyCommand::Award { points, reason } => self.award(points, &reason, ctx, rules),
            LoyaltyCommand::Redeem { points, reward } => self.redeem(points, &reward, ctx, rules),
            LoyaltyCommand::ExpirePoints => self.expire_points(ctx, rules),
            LoyaltyCommand::AwardBirthdayBonus { birthday } => {
                self.award_birthday_bonus(birthday, ctx, rules)
            }
            LoyaltyCommand::AwardAnniversaryBonus { customer_since } => {
                self.award_anniversary_bonus(customer_since, ctx, rules)
            }
            LoyaltyCommand::AwardReferralBonus {
                referral_id,
                points,
            } => self.award_referral_bonus(referral_id, points, ctx, rules),
            LoyaltyCommand::EvaluateTier => self.evaluate_tier(ctx, rules),
        }
    }

    /// Earned points leave the tier window as time passes, with no event to show it.
    fn evaluate_tier(&self, ctx: &CommandContext, rules: &LoyaltyRules) -> Decision {
        self.account_holder(ctx.actor)?;
        Ok(self.with_tier_change(vec![], ctx, rules))
    }

    /// The account's customer, when `actor` may use the account: every command but `Enrol`
    /// needs one.
    fn account_holder(&self, actor: Actor) -> Result<CustomerId, LoyaltyError> {
        let customer_id = self.customer_id.ok_or(LoyaltyError::NotEnrolled)?;
        if let Actor::Customer { id } = actor {
            if id != customer_id {
                return Err(LoyaltyError::NotYourAccount);
            }
        }
        Ok(customer_id)
    }

    /// `events` followed by a `TierChanged` when, with them, the tier moves (earned points
    /// also leave the window as time passes).
    fn with_tier_change(
        &self,
        mut events: Vec<LoyaltyEvent>,
        ctx: &CommandContext,
        rules: &LoyaltyRules,
    ) -> Vec<LoyaltyEvent> {
        let mut next = self.clone();
        for e in &events {
            next.apply_event(e.clone());
        }
        if let Some(change) = next.tier_change(ctx, rules) {
            events.push(change);
        }
        events
    }

    fn enrol(&self, customer_id: CustomerId, at: DateTime<Utc>) -> Decision {
        if self.customer_id.is_some() {
            return Err(LoyaltyError::AlreadyEnrolled);
        }
        Ok(vec![LoyaltyEvent::LoyaltyAccountEnrolled {
            account_id: LoyaltyAccountId::for_customer(customer_id),
            customer_id,
            at,
        }])
    }

    fn earn_for_job(
        &self,
        job_id: JobId,
        amount_cents: i64,
        ctx: &CommandContext,
        rules: &LoyaltyRules,
    ) -> Decision {
        let customer_id = self.account_holder(ctx.actor)?;
        let amount = Money::from_cents(amount_cents)?;
        let points = rules.points_for(amount);
        // Retried policies must not pay twice; a zero-point job records nothing.
        if self.jobs.contains(&job_id) || points == 0 {
            return Ok(vec![]);
        }
        self.check_balance_room(points)?;
        let earned = LoyaltyEvent::PointsEarned {
            customer_id,
            job_id,
            amount,
            points,
            at: ctx.now,
        };
        Ok(self.with_tier_change(vec![earned], ctx, rules))
    }

    fn award(
        &self,
        points: i64,
        reason: &str,
        ctx: &CommandContext,
        rules: &LoyaltyRules,
    ) -> Decision {
        let customer_id = self.account_holder(ctx.actor)?;
        let awarded_by = ctx
            .actor
            .staff_id()
            .ok_or(LoyaltyError::StaffActorRequired)?;
        let points = positive_points(points)?;
        let reason = Reason::parse(reason)?;
        self.check_balance_room(points)?;
        let awarded = LoyaltyEvent::PointsAwarded {
            customer_id,
            points,
            reason,
            awarded_by,
            at: ctx.now,
        };
        Ok(self.with_tier_change(vec![awarded], ctx, rules))
    }

    fn redeem(
        &self,
        points: i64,
        reward: &str,
        ctx: &CommandContext,
        rules: &LoyaltyRules,
    ) -> Decision {
        let customer_id = self.account_holder(ctx.actor)?;
        let points = positive_points(points)?;
        let reward = NonEmptyText::parse("reward", reward, 200)?;
        if points > self.balance {
            return Err(LoyaltyError::InsufficientPoints {
                balance: self.balance,
                requested: points,
            });
        }
        let redeemed = LoyaltyEvent::PointsRedeemed {
            customer_id,
            points,
            reward,
            at: ctx.now,
        };
        Ok(self.with_tier_change(vec![redeemed], ctx, rules))
    }

    /// Expires what is left of points earned more than the rules' period ago.
    fn expire_points(&self, ctx: &CommandContext, rules: &LoyaltyRules) -> Decision {
        let customer_id = self.account_holder(ctx.actor)?;
        let at = ctx.now;
        let events = match rules.expiry() {
            None => vec![],
            Some(period) => {
                let earned_before = at - period;
                let points: i64 = self
                    .lots
                    .iter()
                    .filter(|l| l.earned_at <= earned_before)
                    .map(|l| l.remaining)
                    .sum();
                if points == 0 {
                    vec![]
                } else {
                    vec![LoyaltyEvent::PointsExpired {
                        customer_id,
                        points,
                        earned_before,
                        at,
                    }]
                }
            }
        };
        Ok(self.with_tier_change(events, ctx, rules))
    }

    /// Once per calendar year, on the birthday (in the business's time zone).
    fn award_birthday_bonus(
        &self,
        birthday: NaiveDate,
        ctx: &CommandContext,
        rules: &LoyaltyRules,
    ) -> Decision {
        let customer_id = self.account_holder(ctx.actor)?;
        let today = ctx.today();
        if !is_annual_day(birthday, today) {
            return Err(LoyaltyError::NotTheCustomersDay {
                occasion: "birthday",
            });
        }
        let points = i64::from(rules.birthday_bonus);
        if self.birthday_years.contains(&today.year()) || points == 0 {
            return Ok(vec![]);
        }
        let bonus = LoyaltyEvent::BirthdayBonusAwarded {
            customer_id,
            year: today.year(),
            points,
            at: ctx.now,
        };
        Ok(self.with_tier_change(vec![bonus], ctx, rules))
    }

    /// Once per calendar year, on the anniversary (not in the year the customer joined).
    fn award_anniversary_bonus(
        &self,
        customer_since: NaiveDate,
        ctx: &CommandContext,
        rules: &LoyaltyRules,
    ) -> Decision {
        let customer_id = self.account_holder(ctx.actor)?;
        let today = ctx.today();
        if today.year() <= customer_since.year() || !is_annual_day(customer_since, today) {
            return Err(LoyaltyError::NotTheCustomersDay {
                occasion: "anniversary",
            });
        }
        let points = i64::from(rules.anniversary_bonus);
        if self.anniversary_years.contains(&today.year()) || points == 0 {
            return Ok(vec![]);
        }
        let bonus = LoyaltyEvent::AnniversaryBonusAwarded {
            customer_id,
            year: today.year(),
            points,
            at: ctx.now,
        };
        Ok(self.with_tier_change(vec![bonus], ctx, rules))
    }

    /// Once per referral.
    fn award_referral_bonus(
        &self,
        referral_id: ReferralId,
        points: i64,
        ctx: &CommandContext,
        rules: &LoyaltyRules,
    ) -> Decision {
        let customer_id = self.account_holder(ctx.actor)?;
        let points = positive_points(points)?;
        if self.referrals.contains(&referral_id) {
            return Ok(vec![]);
        }
        self.check_balance_room(points)?;
        let bonus = LoyaltyEvent::ReferralBonusAwarded {
            customer_id,
            referral_id,
            points,
            at: ctx.now,
        };
        Ok(self.with_tier_change(vec![bonus], ctx, rules))
    }

    fn earn(&mut self, at: DateTime<Utc>, points: i64) {
        self.balance += points;
        self.lots.push_back(Lot {
            earned_at: at,
            remaining: points,
        });
        self.earned.push((at, points));
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: LoyaltyEvent) {
        match event {
            LoyaltyEvent::LoyaltyAccountEnrolled { customer_id, .. } => {
                self.customer_id = Some(customer_id);
            }
            LoyaltyEvent::PointsEarned {
                job_id, points, at, ..
            } => {
                self.jobs.insert(job_id);
                self.earn(at, points);
            }
            LoyaltyEvent::PointsAwarded { points, at, .. } => self.earn(at, points),
            LoyaltyEvent::BirthdayBonusAwarded {
                year, points, at, ..
            } => {
                self.birthday_years.insert(year);
                self.earn(at, points);
            }
            LoyaltyEvent::AnniversaryBonusAwarded {
                year, points, at, ..
            } => {
                self.anniversary_years.insert(year);
                self.earn(at, points);
            }
            LoyaltyEvent::ReferralBonusAwarded {
                referral_id,
                points,
                at,
                ..
            } => {
                self.referrals.insert(referral_id);
                self.earn(at, points);
            }
            LoyaltyEvent::PointsRedeemed { points, .. } => {
                self.balance -= points;
                // Oldest points are spent first, so the freshest ones survive expiry.
                let mut left = points;
                while left > 0 {
                    let Some(lot) = self.lots.front_mut() else {
                        break;
                    };
                    let used = lot.remaining.min(left);
                    lot.remaining -= used;
                    left -= used;
                    if lot.remaining == 0 {
                        self.lots.pop_front();
                    }
                }
            }
            LoyaltyEvent::PointsExpired {
                points,
                earned_before,
                ..
            } => {
                self.balance -= points;
                self.lots.retain(|l| l.earned_at > earned_before);
            }
            LoyaltyEvent::TierChanged { to, .. } => self.tier = to,
        }
    }
}

impl cqrs_es::Aggregate for LoyaltyAccount {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = CommandEnvelope<LoyaltyCommand>;
    type Event = LoyaltyEvent;
    type Error = LoyaltyError;
    type Services = DomainServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let ctx = services.context(command.actor);
        let events = self.decide(command.command, &ctx, &services.loyalty)?;
        crate::ports::write_all(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.apply_event(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, test_now, TEST_TZ};
    use chrono::TimeZone;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn customer() -> CustomerId {
        CustomerId(Uuid::from_u128(1))
    }
    fn enrolled() -> LoyaltyEvent {
        LoyaltyEvent::LoyaltyAccountEnrolled {
            account_id: LoyaltyAccountId::for_customer(customer()),
            customer_id: customer(),
            at: test_now(),
        }
    }
    fn awarded(points: i64, at: DateTime<Utc>) -> LoyaltyEvent {
        LoyaltyEvent::PointsAwarded {
            customer_id: customer(),
            points,
            reason: Reason::parse("goodwill").expect("ok"),
            awarded_by: StaffUserId(Uuid::from_u128(1001)),
            at,
        }
    }
    fn when(
        given: Vec<LoyaltyEvent>,
        cmd: LoyaltyCommand,
    ) -> Result<Vec<LoyaltyEvent>, LoyaltyError> {
        testing::run::<LoyaltyAccount, _>(testing::test_services(), given, testing::staff(), cmd)
    }
    fn when_at(
        now: DateTime<Utc>,
        given: Vec<LoyaltyEvent>,
        cmd: LoyaltyCommand,
    ) -> Result<Vec<LoyaltyEvent>, LoyaltyError> {
        testing::run::<LoyaltyAccount, _>(testing::services_at(now), given, Actor::System, cmd)
    }
    fn local(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        TEST_TZ
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("local time")
            .with_timezone(&Utc)
    }
    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    #[test]
    fn it_should_earn_points_per_dollar_of_a_completed_job() {
        let job_id = JobId(Uuid::from_u128(10));
        let events = when(
            vec![enrolled()],
            LoyaltyCommand::EarnForJob {
                job_id,
                amount_cents: 25_099,
            },
        );
        assert_eq!(
            events,
            Ok(vec![LoyaltyEvent::PointsEarned {
                customer_id: customer(),
                job_id,
                amount: Money::from_cents(25_099).expect("ok"),
                points: 250,
                at: test_now(),
            }])
        );
    }

    #[test]
    fn it_should_earn_at_the_configured_rate() {
        let rules = LoyaltyRules {
            points_per_dollar: 3,
            ..LoyaltyRules::default()
        };
        assert_eq!(rules.points_for(Money::from_cents(1_050).expect("ok")), 30);
        let mut services = testing::test_services();
        services.loyalty = rules;
        let cmd = LoyaltyCommand::EarnForJob {
            job_id: JobId(Uuid::from_u128(10)),
            amount_cents: 10_000,
        };
        let events =
            testing::run::<LoyaltyAccount, _>(services, vec![enrolled()], Actor::System, cmd)
                .expect("ok");
        assert!(matches!(
            events.as_slice(),
            [LoyaltyEvent::PointsEarned { points: 300, .. }]
        ));
    }

    #[test]
    fn it_should_earn_points_for_a_job_only_once() {
        let job_id = JobId(Uuid::from_u128(10));
        let cmd = LoyaltyCommand::EarnForJob {
            job_id,
            amount_cents: 10_000,
        };
        let first = when(vec![enrolled()], cmd.clone()).expect("ok");
        let mut given = vec![enrolled()];
        given.extend(first);
        assert_eq!(when(given, cmd), Ok(vec![]));
    }

    #[test]
    fn it_should_refuse_a_negative_job_amount_naming_the_field() {
        let cmd = LoyaltyCommand::EarnForJob {
            job_id: JobId(Uuid::from_u128(10)),
            amount_cents: -5,
        };
        assert_eq!(
            when(vec![enrolled()], cmd).expect_err("neg").field(),
            Some("amount_cents")
        );
    }

    #[test]
    fn it_should_refuse_a_manual_award_without_a_reason() {
        let cmd = LoyaltyCommand::Award {
            points: 50,
            reason: "  ".into(),
        };
        assert_eq!(
            when(vec![enrolled()], cmd).expect_err("empty").field(),
            Some("reason")
        );
    }

    #[test]
    fn it_should_refuse_a_manual_award_not_made_by_staff() {
        let cmd = LoyaltyCommand::Award {
            points: 50,
            reason: "goodwill".into(),
        };
        let by_system = testing::run::<LoyaltyAccount, _>(
            testing::test_services(),
            vec![enrolled()],
            Actor::System,
            cmd.clone(),
        );
        assert_eq!(by_system, Err(LoyaltyError::StaffActorRequired));
        let by_customer = testing::run::<LoyaltyAccount, _>(
            testing::test_services(),
            vec![enrolled()],
            testing::customer_actor(1),
            cmd,
        );
        assert_eq!(by_customer, Err(LoyaltyError::StaffActorRequired));
    }

    #[test]
    fn it_should_record_the_staff_user_who_awarded_points() {
        let cmd = LoyaltyCommand::Award {
            points: 50,
            reason: "goodwill".into(),
        };
        assert_eq!(
            when(vec![enrolled()], cmd),
            Ok(vec![awarded(50, test_now())])
        );
    }

    #[test]
    fn it_should_not_redeem_more_points_than_the_balance() {
        let cmd = LoyaltyCommand::Redeem {
            points: 51,
            reward: "$5 off".into(),
        };
        assert_eq!(
            when(vec![enrolled(), awarded(50, test_now())], cmd),
            Err(LoyaltyError::InsufficientPoints {
                balance: 50,
                requested: 51
            })
        );
    }

    #[test]
    fn it_should_redeem_the_whole_balance() {
        let cmd = LoyaltyCommand::Redeem {
            points: 50,
            reward: "$5 off".into(),
        };
        let events = when(vec![enrolled(), awarded(50, test_now())], cmd).expect("ok");
        assert!(matches!(
            events.as_slice(),
            [LoyaltyEvent::PointsRedeemed { points: 50, .. }]
        ));
    }

    #[test]
    fn it_should_not_let_a_customer_redeem_from_someone_elses_account() {
        let cmd = LoyaltyCommand::Redeem {
            points: 10,
            reward: "$1 off".into(),
        };
        let result = testing::run::<LoyaltyAccount, _>(
            testing::test_services(),
            vec![enrolled(), awarded(50, test_now())],
            testing::customer_actor(2),
            cmd,
        );
        assert_eq!(result, Err(LoyaltyError::NotYourAccount));
    }

    #[test]
    fn it_should_expire_unspent_points_after_the_configured_period() {
        let old = test_now() - chrono::Duration::days(400);
        let recent = test_now() - chrono::Duration::days(10);
        let given = vec![
            enrolled(),
            awarded(100, old),
            awarded(40, recent),
            // Spends 30 of the old lot first.
            LoyaltyEvent::PointsRedeemed {
                customer_id: customer(),
                points: 30,
                reward: NonEmptyText::parse("reward", "mug", 200).expect("ok"),
                at: recent,
            },
        ];
        let events = when(given.clone(), LoyaltyCommand::ExpirePoints).expect("ok");
        assert_eq!(
            events,
            vec![LoyaltyEvent::PointsExpired {
                customer_id: customer(),
                points: 70,
                earned_before: test_now() - chrono::Duration::days(365),
                at: test_now(),
            }]
        );
        let mut account = LoyaltyAccount::default();
        given
            .into_iter()
            .chain(events)
            .for_each(|e| account.apply_event(e));
        assert_eq!(account.balance(), 40);
    }

    #[test]
    fn it_should_not_expire_points_when_expiry_is_disabled() {
        let mut services = testing::test_services();
        services.loyalty.expiry_days = 0;
        let given = vec![
            enrolled(),
            awarded(100, test_now() - chrono::Duration::days(4000)),
        ];
        let result = testing::run::<LoyaltyAccount, _>(
            services,
            given,
            Actor::System,
            LoyaltyCommand::ExpirePoints,
        );
        assert_eq!(result, Ok(vec![]));
    }

    #[test]
    fn it_should_record_a_tier_change_when_points_cross_a_threshold() {
        let cmd = LoyaltyCommand::Award {
            points: 500,
            reason: "goodwill".into(),
        };
        let events = when(vec![enrolled()], cmd).expect("ok");
        assert_eq!(
            events,
            vec![
                awarded(500, test_now()),
                LoyaltyEvent::TierChanged {
                    customer_id: customer(),
                    from: Tier::Bronze,
                    to: Tier::Silver,
                    window_points: 500,
                    at: test_now(),
                },
            ]
        );
    }

    #[test]
    fn it_should_use_configurable_tier_thresholds() {
        let mut services = testing::test_services();
        services.loyalty.tiers = TierThresholds::new(10, 20, 30).expect("valid");
        let cmd = LoyaltyCommand::Award {
            points: 25,
            reason: "goodwill".into(),
        };
        let events =
            testing::run::<LoyaltyAccount, _>(services, vec![enrolled()], testing::staff(), cmd)
                .expect("ok");
        assert!(matches!(
            events.last(),
            Some(LoyaltyEvent::TierChanged { to: Tier::Gold, .. })
        ));
        assert!(TierThresholds::new(30, 20, 10).is_err());
    }

    #[test]
    fn it_should_downgrade_the_tier_when_points_leave_the_window() {
        let long_ago = test_now() - chrono::Duration::days(500);
        let given = vec![
            enrolled(),
            awarded(600, long_ago),
            LoyaltyEvent::TierChanged {
                customer_id: customer(),
                from: Tier::Bronze,
                to: Tier::Silver,
                window_points: 600,
                at: long_ago,
            },
        ];
        let events = when(given, LoyaltyCommand::EvaluateTier).expect("ok");
        assert_eq!(
            events,
            vec![LoyaltyEvent::TierChanged {
                customer_id: customer(),
                from: Tier::Silver,
                to: Tier::Bronze,
                window_points: 0,
                at: test_now(),
            }]
        );
    }

    #[test]
    fn it_should_award_the_birthday_bonus_on_the_local_birthday() {
        // 2025-07-04 00:30 in Chicago is still July 3rd... in UTC it is 05:30 July 4th.
        let now = local(2025, 7, 4, 0) + chrono::Duration::minutes(30);
        let cmd = LoyaltyCommand::AwardBirthdayBonus {
            birthday: date(1990, 7, 4),
        };
        let events = when_at(now, vec![enrolled()], cmd).expect("ok");
        assert!(matches!(
            events.as_slice(),
            [LoyaltyEvent::BirthdayBonusAwarded {
                year: 2025,
                points: 100,
                ..
            }]
        ));
    }

    #[test]
    fn it_should_use_the_business_time_zone_to_decide_the_day() {
        // 2025-07-04 03:00 UTC is still July 3rd in Chicago.
        let now = Utc
            .with_ymd_and_hms(2025, 7, 4, 3, 0, 0)
            .single()
            .expect("time");
        let cmd = LoyaltyCommand::AwardBirthdayBonus {
            birthday: date(1990, 7, 4),
        };
        assert_eq!(
            when_at(now, vec![enrolled()], cmd),
            Err(LoyaltyError::NotTheCustomersDay {
                occasion: "birthday"
            })
        );
    }

    #[test]
    fn it_should_award_the_birthday_bonus_at_most_once_per_calendar_year() {
        let now = local(2025, 7, 4, 9);
        let given = vec![
            enrolled(),
            LoyaltyEvent::BirthdayBonusAwarded {
                customer_id: customer(),
                year: 2025,
                points: 100,
                at: now,
            },
        ];
        let cmd = LoyaltyCommand::AwardBirthdayBonus {
            birthday: date(1990, 7, 4),
        };
        assert_eq!(
            when_at(now + chrono::Duration::hours(2), given.clone(), cmd.clone()),
            Ok(vec![])
        );
        let next_year = when_at(local(2026, 7, 4, 9), given, cmd).expect("ok");
        assert!(matches!(
            next_year.as_slice(),
            [LoyaltyEvent::BirthdayBonusAwarded { year: 2026, .. }]
        ));
    }

    #[test]
    fn it_should_award_a_feb_29_birthday_bonus_on_feb_28_in_a_non_leap_year() {
        let cmd = LoyaltyCommand::AwardBirthdayBonus {
            birthday: date(2000, 2, 29),
        };
        let events = when_at(local(2025, 2, 28, 9), vec![enrolled()], cmd.clone()).expect("ok");
        assert!(matches!(
            events.as_slice(),
            [LoyaltyEvent::BirthdayBonusAwarded { year: 2025, .. }]
        ));
        assert!(when_at(local(2025, 3, 1, 9), vec![enrolled()], cmd).is_err());
    }

    #[test]
    fn it_should_award_the_anniversary_bonus_at_most_once_per_calendar_year() {
        let now = local(2025, 3, 10, 9);
        let cmd = LoyaltyCommand::AwardAnniversaryBonus {
            customer_since: date(2021, 3, 10),
        };
        let events = when_at(now, vec![enrolled()], cmd.clone()).expect("ok");
        assert!(matches!(
            events.as_slice(),
            [LoyaltyEvent::AnniversaryBonusAwarded { year: 2025, .. }]
        ));
        let mut given = vec![enrolled()];
        given.extend(events);
        assert_eq!(when_at(now, given, cmd), Ok(vec![]));
    }

    #[test]
    fn it_should_not_award_an_anniversary_bonus_in_the_joining_year() {
        let cmd = LoyaltyCommand::AwardAnniversaryBonus {
            customer_since: date(2025, 3, 10),
        };
        assert!(when_at(local(2025, 3, 10, 9), vec![enrolled()], cmd).is_err());
    }

    #[test]
    fn it_should_award_a_referral_bonus_once_per_referral() {
        let referral_id = ReferralId(Uuid::from_u128(9));
        let cmd = LoyaltyCommand::AwardReferralBonus {
            referral_id,
            points: 250,
        };
        let events = when_at(test_now(), vec![enrolled()], cmd.clone()).expect("ok");
        assert_eq!(
            events,
            vec![LoyaltyEvent::ReferralBonusAwarded {
                customer_id: customer(),
                referral_id,
                points: 250,
                at: test_now()
            }]
        );
        let mut given = vec![enrolled()];
        given.extend(events);
        assert_eq!(when_at(test_now(), given, cmd), Ok(vec![]));
    }

    #[test]
    fn it_should_refuse_commands_before_enrolment() {
        assert_eq!(
            when(vec![], LoyaltyCommand::EvaluateTier),
            Err(LoyaltyError::NotEnrolled)
        );
    }

    #[test]
    fn it_should_not_enrol_twice() {
        assert_eq!(
            when(
                vec![enrolled()],
                LoyaltyCommand::Enrol {
                    customer_id: customer()
                }
            ),
            Err(LoyaltyError::AlreadyEnrolled)
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Earn(i64),
        Award(i64),
        Redeem(i64),
        Expire,
        Wait(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0i64..100_000).prop_map(Op::Earn),
            (1i64..800).prop_map(Op::Award),
            (1i64..1_500).prop_map(Op::Redeem),
            Just(Op::Expire),
            (1i64..200).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// With earnings, awards, redemptions, expiry and time passing, the balance never goes
        /// negative, always equals the unspent lots, and tier changes chain (from = previous to).
        #[test]
        fn balance_matches_unspent_lots_through_expiry_and_time(ops in proptest::collection::vec(op(), 0..80)) {
            let rules = LoyaltyRules::default();
            let mut now = test_now();
            let mut account = LoyaltyAccount::default();
            account.apply_event(enrolled());
            let mut tier = Tier::Bronze;
            for (i, op) in ops.into_iter().enumerate() {
                let cmd = match op {
                    Op::Earn(cents) => LoyaltyCommand::EarnForJob {
                        job_id: JobId(Uuid::from_u128(i as u128 + 100)),
                        amount_cents: cents,
                    },
                    Op::Award(points) => LoyaltyCommand::Award { points, reason: "prop".into() },
                    Op::Redeem(points) => LoyaltyCommand::Redeem { points, reward: "prop".into() },
                    Op::Expire => LoyaltyCommand::ExpirePoints,
                    Op::Wait(days) => {
                        now += chrono::Duration::days(days);
                        LoyaltyCommand::EvaluateTier
                    }
                };
                let ctx = CommandContext { now, tz: TEST_TZ, actor: testing::staff() };
                if let Ok(events) = account.decide(cmd, &ctx, &rules) {
                    for e in events {
                        if let LoyaltyEvent::TierChanged { from, to, .. } = &e {
                            prop_assert_eq!(*from, tier);
                            tier = *to;
                        }
                        account.apply_event(e);
                    }
                }
                prop_assert!(account.balance() >= 0);
                let unspent: i64 = account.lots.iter().map(|l| l.remaining).sum();
                prop_assert_eq!(account.balance(), unspent);
                prop_assert!(account.lots.iter().all(|l| l.remaining > 0));
            }
        }

        /// Random awards and redemptions: the balance never goes negative and always equals
        /// the points awarded minus the points redeemed (successful commands only).
        #[test]
        fn balance_is_never_negative_and_equals_awards_minus_redemptions(
            ops in proptest::collection::vec((any::<bool>(), -50i64..2_000), 0..60)
        ) {
            let rules = LoyaltyRules::default();
            let ctx = testing::test_services().context(testing::staff());
            let mut account = LoyaltyAccount::default();
            account.apply_event(enrolled());
            let mut expected = 0i64;
            for (is_award, points) in ops {
                let cmd = if is_award {
                    LoyaltyCommand::Award { points, reason: "prop".into() }
                } else {
                    LoyaltyCommand::Redeem { points, reward: "prop".into() }
                };
                match account.decide(cmd, &ctx, &rules) {
                    Ok(events) => {
                        for e in events {
                            match &e {
                                LoyaltyEvent::PointsAwarded { points, .. } => expected += points,
                                LoyaltyEvent::PointsRedeemed { points, .. } => expected -= points,
                                _ => {}
                            }
                            account.apply_event(e);
                        }
                    }
                    Err(_) => prop_assert!(points <= 0 || (!is_award && points > account.balance())),
                }
                prop_assert!(account.balance() >= 0);
                prop_assert_eq!(account.balance(), expected);
            }
        }
    }
}
