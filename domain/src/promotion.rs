//! Promotion: a marketing campaign (or a standing birthday/anniversary promotion) — audience,
//! channel, template, discount code, period — scheduled, delivered in batches at most once per
//! customer (per year for birthday/anniversary kinds), and tracked (failed, opened, redeemed).
//!
//! Consent is respected by construction: every delivery command carries the customer's
//! [`MarketingEligibility`] and a customer who is not eligible is recorded as skipped.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::consent::{Channel, MarketingEligibility};
use crate::error::{validation_error, ValidationError};
use crate::ids::{CustomerId, JobId, PromotionId};
use crate::loyalty::Tier;
use crate::ports::{cqrs_aggregate, CommandContext};
use crate::values::{NonEmptyText, Tag};

/// `Aggregate::TYPE` of [`Promotion`].
pub const AGGREGATE_TYPE: &str = "Promotion";

/// Kinds of promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionKind {
    /// A one-off campaign: each customer gets it at most once.
    Campaign,
    /// Sent on customers' birthdays: at most once per customer per year.
    Birthday,
    /// Sent on customer-since anniversaries: at most once per customer per year.
    Anniversary,
}

/// Who a promotion is for (resolved to customers by the commands layer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AudienceSegment {
    /// Every customer (who consented).
    AllCustomers,
    /// Customers with a tag.
    Tagged {
        /// The tag.
        tag: Tag,
    },
    /// Loyalty members at a tier.
    LoyaltyTier {
        /// The tier.
        tier: Tier,
    },
    /// Customers without a job for `days` days.
    Inactive {
        /// Days since the last completed job.
        days: u32,
    },
    /// Customers whose birthday falls in the week (Monday–Sunday) or month of the day the
    /// campaign is sent, in the business's time zone (a campaign: once per customer).
    BirthdayIn {
        /// This week or this month.
        window: BirthdayWindow,
    },
    /// Customers whose birthday is today (business time zone).
    BirthdayToday,
    /// Customers whose customer-since anniversary is today.
    AnniversaryToday,
}

/// The span of a [`AudienceSegment::BirthdayIn`] audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BirthdayWindow {
    /// Monday to Sunday of the sending day's week.
    ThisWeek,
    /// The sending day's calendar month.
    ThisMonth,
}

impl BirthdayWindow {
    /// The birthdays (`MM-DD`) the window around `day` holds. 29 February counts on
    /// 28 February in common years, as the birthday job has it.
    pub fn month_days(self, day: chrono::NaiveDate) -> Vec<String> {
        use chrono::Datelike;
        let days: Vec<chrono::NaiveDate> = match self {
            BirthdayWindow::ThisWeek => {
                let monday =
                    day - chrono::Duration::days(i64::from(day.weekday().num_days_from_monday()));
                (0..7).map(|i| monday + chrono::Duration::days(i)).collect()
            }
            BirthdayWindow::ThisMonth => {
                let first = day.with_day(1).unwrap_or(day);
                first
                    .iter_days()
                    .take_while(|d| d.month() == first.month())
                    .collect()
            }
        };
        let mut out: Vec<String> = days.iter().map(|d| d.format("%m-%d").to_string()).collect();
        let common_feb_28 = days
            .iter()
            .any(|d| d.month() == 2 && d.day() == 28 && !crate::values::is_leap_year(d.year()));
        if common_feb_28 && !out.iter().any(|d| d == "02-29") {
            out.push("02-29".into());
        }
        out
    }
}

/// The editable content of a promotion, as it arrives in a command.
#[derive(Debug, Clone, PartialEq)]
pub struct PromotionDraft {
    /// Internal name.
    pub name: String,
    /// Campaign, birthday or anniversary.
    pub kind: PromotionKind,
    /// Who gets it.
    pub audience: AudienceSegment,
    /// SMS or email.
    pub channel: Channel,
    /// Message template ([`crate::template`]: variables are filled at send time).
    pub template: String,
    /// Discount code to quote, if any.
    pub discount_code: Option<String>,
    /// The discount as customers read it (`20%`, `$25`), for the template's `discount`.
    pub discount: Option<String>,
    /// Valid from.
    pub starts_at: DateTime<Utc>,
    /// Valid until.
    pub ends_at: DateTime<Utc>,
}

/// Validated promotion content, as recorded in events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionContent {
    /// Internal name.
    pub name: NonEmptyText,
    /// Campaign, birthday or anniversary.
    pub kind: PromotionKind,
    /// Who gets it.
    pub audience: AudienceSegment,
    /// SMS or email.
    pub channel: Channel,
    /// Message template.
    pub template: NonEmptyText,
    /// Discount code, if any.
    pub discount_code: Option<NonEmptyText>,
    /// The discount as customers read it, if any (absent in promotions created before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<NonEmptyText>,
    /// Valid from.
    pub starts_at: DateTime<Utc>,
    /// Valid until.
    pub ends_at: DateTime<Utc>,
}

impl PromotionDraft {
    /// Validates the draft.
    ///
    /// # Errors
    /// The first invalid field (`name`, `template`, `discount_code`, `ends_at`, `audience`).
    pub fn validate(self) -> Result<PromotionContent, ValidationError> {
        let name = NonEmptyText::parse("name", &self.name, 200)?;
        let max_template = crate::template::max_len(self.channel);
        NonEmptyText::parse("template", &self.template, max_template)?;
        let discount_code = match self.discount_code.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(code) => Some(NonEmptyText::parse("discount_code", code, 40)?),
        };
        let discount = match self.discount.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) => Some(NonEmptyText::parse("discount", d, 40)?),
        };
        let template = crate::template::check(
            &self.template,
            crate::template::Offers {
                channel: self.channel,
                code: discount_code.is_some(),
                discount: discount.is_some(),
            },
        )?;
        let template = NonEmptyText::parse("template", &template, max_template + 200)?;
        if self.ends_at <= self.starts_at {
            return Err(ValidationError::new("ends_at", "must be after starts_at"));
        }
        let audience_fits = match self.kind {
            PromotionKind::Campaign => !matches!(
                self.audience,
                AudienceSegment::BirthdayToday | AudienceSegment::AnniversaryToday
            ),
            PromotionKind::Birthday => self.audience == AudienceSegment::BirthdayToday,
            PromotionKind::Anniversary => self.audience == AudienceSegment::AnniversaryToday,
        };
        if !audience_fits {
            return Err(ValidationError::new(
                "audience",
                "birthday/anniversary audiences go with the matching promotion kind",
            ));
        }
        Ok(PromotionContent {
            name,
            kind: self.kind,
            audience: self.audience,
            channel: self.channel,
            template,
            discount_code,
            discount,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
        })
    }
}

/// What can be asked of a promotion.
#[derive(Debug, Clone, PartialEq)]
pub enum PromotionCommand {
    /// Create a draft promotion.
    Create {
        /// The id (the aggregate id).
        promotion_id: PromotionId,
        /// The content.
        draft: PromotionDraft,
    },
    /// Replace the content (only before delivery started).
    Update {
        /// The new content.
        draft: PromotionDraft,
    },
    /// Schedule (or move) the first send; not in the past.
    Schedule {
        /// When delivery may begin.
        send_at: DateTime<Utc>,
    },
    /// Deliver to one customer (batch job), given their eligibility on the promotion's channel.
    RecordDelivery {
        /// The customer.
        customer_id: CustomerId,
        /// From the Customer aggregate: consent, opt-out, suppression.
        eligibility: MarketingEligibility,
    },
    /// The provider reported a failed delivery.
    RecordDeliveryFailed {
        /// The customer.
        customer_id: CustomerId,
        /// The provider's reason.
        reason: String,
    },
    /// The customer opened the message.
    RecordOpened {
        /// The customer.
        customer_id: CustomerId,
    },
    /// The customer used the promotion.
    RecordRedeemed {
        /// The customer.
        customer_id: CustomerId,
        /// The job booked with it, if known.
        job_id: Option<JobId>,
    },
    /// Stop delivering until resumed (messages already queued still go).
    Pause,
    /// Deliver again after a pause.
    Resume,
    /// Stop for good: nothing more is delivered or sent; what was sent stays counted.
    Cancel,
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`Promotion`] aggregate.
    pub enum PromotionEvent {
        /// A promotion was created (draft).
        PromotionCreated {
            /// The promotion.
            promotion_id: PromotionId,
            /// Its content.
            content: PromotionContent,
            /// When.
            at: DateTime<Utc>,
        },
        /// The content was replaced before delivery started.
        PromotionUpdated {
            /// The new content.
            content: PromotionContent,
            /// When.
            at: DateTime<Utc>,
        },
        /// Delivery was scheduled.
        PromotionScheduled {
            /// When delivery may begin.
            send_at: DateTime<Utc>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The promotion was sent to a customer.
        PromotionDelivered {
            /// The customer.
            customer_id: CustomerId,
            /// SMS or email.
            channel: Channel,
            /// For birthday/anniversary kinds, the calendar year (business time zone).
            occasion_year: Option<i32>,
            /// When.
            at: DateTime<Utc>,
        },
        /// A customer in the audience was not sent the promotion (no consent, opted out,
        /// suppressed, no address); counts as their one delivery attempt.
        PromotionDeliverySkipped {
            /// The customer.
            customer_id: CustomerId,
            /// Why.
            eligibility: MarketingEligibility,
            /// For birthday/anniversary kinds, the calendar year.
            occasion_year: Option<i32>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The provider could not deliver.
        PromotionDeliveryFailed {
            /// The customer.
            customer_id: CustomerId,
            /// The provider's reason.
            reason: String,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer opened the message.
        PromotionOpened {
            /// The customer.
            customer_id: CustomerId,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer redeemed the promotion.
        PromotionRedeemed {
            /// The customer.
            customer_id: CustomerId,
            /// The job booked with it, if known.
            job_id: Option<JobId>,
            /// When.
            at: DateTime<Utc>,
        },
        /// Delivery was paused.
        PromotionPaused {
            /// When.
            at: DateTime<Utc>,
        },
        /// Delivery resumed after a pause.
        PromotionResumed {
            /// When.
            at: DateTime<Utc>,
        },
        /// The promotion was cancelled: nothing more is delivered or sent.
        PromotionCancelled {
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a promotion command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromotionError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// `Create` on an existing promotion.
    #[error("the promotion already exists")]
    AlreadyExists,
    /// Unknown promotion.
    #[error("unknown promotion")]
    UnknownPromotion,
    /// Edit or reschedule after the first delivery.
    #[error("delivery has started; the promotion can no longer be edited")]
    DeliveryAlreadyStarted,
    /// Delivery before scheduling.
    #[error("the promotion is not scheduled")]
    NotScheduled,
    /// Delivery before the scheduled time.
    #[error("the promotion is not due yet")]
    NotYetDue,
    /// Delivery after the end.
    #[error("the promotion has ended")]
    Ended,
    /// The customer already got (or was skipped for) this promotion.
    #[error("the customer was already sent this promotion")]
    AlreadyDelivered,
    /// Tracking for a customer the promotion was never sent to.
    #[error("the promotion was not delivered to this customer")]
    NotDelivered,
    /// Delivery while paused.
    #[error("the promotion is paused")]
    Paused,
    /// Anything but tracking after a cancellation.
    #[error("the promotion was cancelled")]
    Cancelled,
    /// Resume without a pause.
    #[error("the promotion is not paused")]
    NotPaused,
}
validation_error!(PromotionError);

/// What a decision returns: the events to record, or why nothing is.
type Decision = Result<Vec<PromotionEvent>, PromotionError>;

/// The promotion's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    content: Option<PromotionContent>,
    send_at: Option<DateTime<Utc>>,
    attempted: BTreeSet<(CustomerId, Option<i32>)>,
    delivered: BTreeSet<CustomerId>,
    opened: BTreeSet<CustomerId>,
    redeemed: BTreeSet<CustomerId>,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    cancelled: bool,
}

impl Promotion {
    /// The current content (none before creation).
    pub fn content(&self) -> Option<&PromotionContent> {
        self.content.as_ref()
    }

    /// Whether it was cancelled (nothing more is sent).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// Whether any delivery happened (content is frozen from then on).
    pub fn delivery_started(&self) -> bool {
        !self.attempted.is_empty()
    }

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`PromotionError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: PromotionCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<PromotionEvent>, PromotionError> {
        let at = ctx.now;
        match cmd {
            PromotionCommand::Create {
                promotion_id,
                draft,
            } => self.create(promotion_id, draft, at),
            PromotionCommand::Update { draft } => self.update(draft, at),
            PromotionCommand::Schedule { send_at } => self.schedule(send_at, at),
            PromotionCommand::RecordDelivery {
                customer_id,
                eligibility,
            } => self.record_delivery(customer_id, eligibility, ctx),
            PromotionCommand::RecordDeliveryFailed {
                customer_id,
                reason,
            } => self.record_delivery_failed(customer_id, reason, at),
            PromotionCommand::RecordOpened { customer_id } => self.record_opened(customer_id, at),
            PromotionCommand::RecordRedeemed {
                customer_id,
                job_id,
            } => self.record_redeemed(customer_id, job_id, at),
            PromotionCommand::Pause => self.pause(at),
            PromotionCommand::Resume => self.resume(at),
            PromotionCommand::Cancel => self.cancel(at),
        }
    }

    /// The content of a promotion that exists.
    fn created(&self) -> Result<&PromotionContent, PromotionError> {
        self.content
            .as_ref()
            .ok_or(PromotionError::UnknownPromotion)
    }

    /// The content of a promotion that exists and is not cancelled. After a cancellation only
    /// the tracking of what was sent goes on (and a repeated `Cancel` records nothing).
    fn live(&self) -> Result<&PromotionContent, PromotionError> {
        let content = self.created()?;
        if self.cancelled {
            return Err(PromotionError::Cancelled);
        }
        Ok(content)
    }

    fn create(
        &self,
        promotion_id: PromotionId,
        draft: PromotionDraft,
        at: DateTime<Utc>,
    ) -> Decision {
        if self.content.is_some() {
            return Err(PromotionError::AlreadyExists);
        }
        Ok(vec![PromotionEvent::PromotionCreated {
            promotion_id,
            content: draft.validate()?,
            at,
        }])
    }

    /// The content is frozen once delivery has started.
    fn update(&self, draft: PromotionDraft, at: DateTime<Utc>) -> Decision {
        self.live()?;
        if self.delivery_started() {
            return Err(PromotionError::DeliveryAlreadyStarted);
        }
        Ok(vec![PromotionEvent::PromotionUpdated {
            content: draft.validate()?,
            at,
        }])
    }

    fn schedule(&self, send_at: DateTime<Utc>, at: DateTime<Utc>) -> Decision {
        let content = self.live()?;
        if self.delivery_started() {
            return Err(PromotionError::DeliveryAlreadyStarted);
        }
        if send_at < at {
            return Err(ValidationError::new("send_at", "must not be in the past").into());
        }
        if send_at >= content.ends_at {
            return Err(
                ValidationError::new("send_at", "must be before the promotion ends").into(),
            );
        }
        Ok(vec![PromotionEvent::PromotionScheduled { send_at, at }])
    }

    /// Delivers to one customer while the promotion runs, once per customer (per year for
    /// birthday and anniversary promotions); an ineligible customer is skipped.
    fn record_delivery(
        &self,
        customer_id: CustomerId,
        eligibility: MarketingEligibility,
        ctx: &CommandContext,
    ) -> Decision {
        let content = self.live()?;
        let at = ctx.now;
        if self.paused {
            return Err(PromotionError::Paused);
        }
        let send_at = self.send_at.ok_or(PromotionError::NotScheduled)?;
        if at < send_at || at < content.starts_at {
            return Err(PromotionError::NotYetDue);
        }
        if at >= content.ends_at {
            return Err(PromotionError::Ended);
        }
        let occasion_year = match content.kind {
            PromotionKind::Campaign => None,
            PromotionKind::Birthday | PromotionKind::Anniversary => Some(ctx.today().year()),
        };
        if self.attempted.contains(&(customer_id, occasion_year)) {
            return Err(PromotionError::AlreadyDelivered);
        }
        if eligibility.is_eligible() {
            Ok(vec![PromotionEvent::PromotionDelivered {
                customer_id,
                channel: content.channel,
                occasion_year,
                at,
            }])
        } else {
            Ok(vec![PromotionEvent::PromotionDeliverySkipped {
                customer_id,
                eligibility,
                occasion_year,
                at,
            }])
        }
    }

    fn record_delivery_failed(
        &self,
        customer_id: CustomerId,
        reason: String,
        at: DateTime<Utc>,
    ) -> Decision {
        self.created()?;
        if !self.delivered.contains(&customer_id) {
            return Err(PromotionError::NotDelivered);
        }
        Ok(vec![PromotionEvent::PromotionDeliveryFailed {
            customer_id,
            reason,
            at,
        }])
    }

    fn record_opened(&self, customer_id: CustomerId, at: DateTime<Utc>) -> Decision {
        self.created()?;
        if !self.delivered.contains(&customer_id) {
            return Err(PromotionError::NotDelivered);
        }
        if self.opened.contains(&customer_id) {
            return Ok(vec![]);
        }
        Ok(vec![PromotionEvent::PromotionOpened { customer_id, at }])
    }

    fn record_redeemed(
        &self,
        customer_id: CustomerId,
        job_id: Option<JobId>,
        at: DateTime<Utc>,
    ) -> Decision {
        self.created()?;
        if !self.delivered.contains(&customer_id) {
            return Err(PromotionError::NotDelivered);
        }
        if self.redeemed.contains(&customer_id) {
            return Ok(vec![]);
        }
        Ok(vec![PromotionEvent::PromotionRedeemed {
            customer_id,
            job_id,
            at,
        }])
    }

    fn pause(&self, at: DateTime<Utc>) -> Decision {
        self.live()?;
        if self.paused {
            return Ok(vec![]);
        }
        Ok(vec![PromotionEvent::PromotionPaused { at }])
    }

    fn resume(&self, at: DateTime<Utc>) -> Decision {
        self.live()?;
        if !self.paused {
            return Err(PromotionError::NotPaused);
        }
        Ok(vec![PromotionEvent::PromotionResumed { at }])
    }

    fn cancel(&self, at: DateTime<Utc>) -> Decision {
        self.created()?;
        if self.cancelled {
            return Ok(vec![]);
        }
        Ok(vec![PromotionEvent::PromotionCancelled { at }])
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: PromotionEvent) {
        match event {
            PromotionEvent::PromotionCreated { content, .. }
            | PromotionEvent::PromotionUpdated { content, .. } => self.content = Some(content),
            PromotionEvent::PromotionScheduled { send_at, .. } => self.send_at = Some(send_at),
            PromotionEvent::PromotionPaused { .. } => self.paused = true,
            PromotionEvent::PromotionResumed { .. } => self.paused = false,
            PromotionEvent::PromotionCancelled { .. } => self.cancelled = true,
            PromotionEvent::PromotionDelivered {
                customer_id,
                occasion_year,
                ..
            } => {
                self.attempted.insert((customer_id, occasion_year));
                self.delivered.insert(customer_id);
            }
            PromotionEvent::PromotionDeliverySkipped {
                customer_id,
                occasion_year,
                ..
            } => {
                self.attempted.insert((customer_id, occasion_year));
            }
            PromotionEvent::PromotionDeliveryFailed { .. } => {}
            PromotionEvent::PromotionOpened { customer_id, .. } => {
                self.opened.insert(customer_id);
            }
            PromotionEvent::PromotionRedeemed { customer_id, .. } => {
                self.redeemed.insert(customer_id);
            }
        }
    }
}

cqrs_aggregate!(
    Promotion,
    AGGREGATE_TYPE,
    PromotionCommand,
    PromotionEvent,
    PromotionError
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, test_now};
    use uuid::Uuid;

    fn c(n: u128) -> CustomerId {
        CustomerId(Uuid::from_u128(n))
    }
    fn draft(kind: PromotionKind, audience: AudienceSegment) -> PromotionDraft {
        PromotionDraft {
            name: "Spring clean".into(),
            kind,
            audience,
            channel: Channel::Sms,
            template: "Hi {first_name}, 20% off with SPRING20".into(),
            discount_code: Some("SPRING20".into()),
            discount: Some("20%".into()),
            starts_at: test_now() - chrono::Duration::days(1),
            ends_at: test_now() + chrono::Duration::days(30),
        }
    }
    fn created(kind: PromotionKind, audience: AudienceSegment) -> PromotionEvent {
        PromotionEvent::PromotionCreated {
            promotion_id: PromotionId(Uuid::from_u128(40)),
            content: draft(kind, audience).validate().expect("valid"),
            at: test_now(),
        }
    }
    fn campaign() -> PromotionEvent {
        created(PromotionKind::Campaign, AudienceSegment::AllCustomers)
    }
    fn scheduled() -> PromotionEvent {
        PromotionEvent::PromotionScheduled {
            send_at: test_now(),
            at: test_now(),
        }
    }
    fn delivered(n: u128) -> PromotionEvent {
        PromotionEvent::PromotionDelivered {
            customer_id: c(n),
            channel: Channel::Sms,
            occasion_year: None,
            at: test_now(),
        }
    }
    fn deliver(n: u128, eligibility: MarketingEligibility) -> PromotionCommand {
        PromotionCommand::RecordDelivery {
            customer_id: c(n),
            eligibility,
        }
    }
    fn when(
        given: Vec<PromotionEvent>,
        cmd: PromotionCommand,
    ) -> Result<Vec<PromotionEvent>, PromotionError> {
        testing::run::<Promotion, _>(testing::test_services(), given, testing::manager(), cmd)
    }

    #[test]
    fn a_birthday_week_runs_monday_to_sunday_and_holds_29_february_in_common_years() {
        let d = |y, m, day| chrono::NaiveDate::from_ymd_opt(y, m, day).expect("date");
        // Thursday 26 February 2026: the week is 23 February to 1 March.
        assert_eq!(
            BirthdayWindow::ThisWeek.month_days(d(2026, 2, 26)),
            ["02-23", "02-24", "02-25", "02-26", "02-27", "02-28", "03-01", "02-29"]
        );
        // In a leap year 29 February is a day of its own week.
        assert_eq!(
            BirthdayWindow::ThisWeek.month_days(d(2028, 2, 29)),
            ["02-28", "02-29", "03-01", "03-02", "03-03", "03-04", "03-05"]
        );
        let december = BirthdayWindow::ThisMonth.month_days(d(2026, 12, 7));
        assert_eq!(
            (december.len(), december[0].as_str(), december[30].as_str()),
            (31, "12-01", "12-31")
        );
        assert_eq!(
            BirthdayWindow::ThisMonth.month_days(d(2027, 2, 1)).len(),
            29
        );
    }

    #[test]
    fn it_should_create_a_campaign() {
        let cmd = PromotionCommand::Create {
            promotion_id: PromotionId(Uuid::from_u128(40)),
            draft: draft(PromotionKind::Campaign, AudienceSegment::AllCustomers),
        };
        assert_eq!(when(vec![], cmd), Ok(vec![campaign()]));
    }

    #[test]
    fn it_should_refuse_an_empty_template_naming_the_field() {
        let mut d = draft(PromotionKind::Campaign, AudienceSegment::AllCustomers);
        d.template = " ".into();
        let cmd = PromotionCommand::Create {
            promotion_id: PromotionId(Uuid::from_u128(40)),
            draft: d,
        };
        assert_eq!(
            when(vec![], cmd).expect_err("empty").field(),
            Some("template")
        );
    }

    #[test]
    fn it_should_not_schedule_a_promotion_in_the_past() {
        let cmd = PromotionCommand::Schedule {
            send_at: test_now() - chrono::Duration::minutes(5),
        };
        assert_eq!(
            when(vec![campaign()], cmd).expect_err("past").field(),
            Some("send_at")
        );
    }

    #[test]
    fn it_should_schedule_a_promotion_in_the_future() {
        let send_at = test_now() + chrono::Duration::hours(2);
        assert_eq!(
            when(vec![campaign()], PromotionCommand::Schedule { send_at }),
            Ok(vec![PromotionEvent::PromotionScheduled {
                send_at,
                at: test_now()
            }])
        );
    }

    #[test]
    fn it_should_not_edit_a_promotion_after_delivery_started() {
        let cmd = PromotionCommand::Update {
            draft: draft(PromotionKind::Campaign, AudienceSegment::AllCustomers),
        };
        assert_eq!(
            when(vec![campaign(), scheduled(), delivered(1)], cmd),
            Err(PromotionError::DeliveryAlreadyStarted)
        );
    }

    #[test]
    fn it_should_edit_a_promotion_before_delivery_started() {
        let cmd = PromotionCommand::Update {
            draft: draft(PromotionKind::Campaign, AudienceSegment::AllCustomers),
        };
        assert!(when(vec![campaign(), scheduled()], cmd).is_ok());
    }

    #[test]
    fn it_should_deliver_a_campaign_to_an_eligible_customer() {
        assert_eq!(
            when(
                vec![campaign(), scheduled()],
                deliver(1, MarketingEligibility::Eligible)
            ),
            Ok(vec![delivered(1)])
        );
    }

    #[test]
    fn it_should_not_deliver_while_paused_and_deliver_again_when_resumed() {
        let paused = PromotionEvent::PromotionPaused { at: test_now() };
        let given = vec![campaign(), scheduled(), delivered(1), paused.clone()];
        assert_eq!(
            when(given.clone(), deliver(2, MarketingEligibility::Eligible)),
            Err(PromotionError::Paused)
        );
        assert_eq!(when(given.clone(), PromotionCommand::Pause), Ok(vec![]));
        let resumed = PromotionEvent::PromotionResumed { at: test_now() };
        assert_eq!(
            when(given.clone(), PromotionCommand::Resume),
            Ok(vec![resumed.clone()])
        );
        let mut again = given;
        again.push(resumed);
        assert_eq!(
            when(again, deliver(2, MarketingEligibility::Eligible)),
            Ok(vec![delivered(2)])
        );
    }

    #[test]
    fn it_should_deliver_nothing_more_after_a_cancellation_but_keep_tracking() {
        let cancelled = PromotionEvent::PromotionCancelled { at: test_now() };
        let given = vec![campaign(), scheduled(), delivered(1), cancelled];
        assert_eq!(
            when(given.clone(), deliver(2, MarketingEligibility::Eligible)),
            Err(PromotionError::Cancelled)
        );
        assert_eq!(
            when(given.clone(), PromotionCommand::Resume),
            Err(PromotionError::Cancelled)
        );
        assert_eq!(when(given.clone(), PromotionCommand::Cancel), Ok(vec![]));
        // What was sent is still counted.
        let opened = PromotionCommand::RecordOpened { customer_id: c(1) };
        assert_eq!(
            when(given, opened),
            Ok(vec![PromotionEvent::PromotionOpened {
                customer_id: c(1),
                at: test_now()
            }])
        );
    }

    #[test]
    fn it_should_deliver_a_campaign_to_each_customer_at_most_once() {
        assert_eq!(
            when(
                vec![campaign(), scheduled(), delivered(1)],
                deliver(1, MarketingEligibility::Eligible)
            ),
            Err(PromotionError::AlreadyDelivered)
        );
    }

    #[test]
    fn it_should_skip_customers_without_consent_opted_out_or_suppressed() {
        for eligibility in [
            MarketingEligibility::NoConsent,
            MarketingEligibility::OptedOut,
            MarketingEligibility::Suppressed,
            MarketingEligibility::NoAddress,
        ] {
            assert_eq!(
                when(vec![campaign(), scheduled()], deliver(2, eligibility)),
                Ok(vec![PromotionEvent::PromotionDeliverySkipped {
                    customer_id: c(2),
                    eligibility,
                    occasion_year: None,
                    at: test_now(),
                }])
            );
        }
    }

    #[test]
    fn it_should_not_deliver_before_being_scheduled() {
        assert_eq!(
            when(vec![campaign()], deliver(1, MarketingEligibility::Eligible)),
            Err(PromotionError::NotScheduled)
        );
    }

    #[test]
    fn it_should_send_a_birthday_promotion_once_per_customer_per_year() {
        let birthday = created(PromotionKind::Birthday, AudienceSegment::BirthdayToday);
        let events = when(
            vec![birthday.clone(), scheduled()],
            deliver(1, MarketingEligibility::Eligible),
        )
        .expect("ok");
        assert_eq!(
            events,
            vec![PromotionEvent::PromotionDelivered {
                customer_id: c(1),
                channel: Channel::Sms,
                occasion_year: Some(2025),
                at: test_now(),
            }]
        );
        let mut given = vec![birthday, scheduled()];
        given.extend(events);
        assert_eq!(
            when(given, deliver(1, MarketingEligibility::Eligible)),
            Err(PromotionError::AlreadyDelivered)
        );
    }

    #[test]
    fn it_should_refuse_a_birthday_audience_on_a_campaign() {
        let d = draft(PromotionKind::Campaign, AudienceSegment::BirthdayToday);
        assert_eq!(d.validate().expect_err("mismatch").field, "audience");
    }

    #[test]
    fn it_should_track_opened_and_redeemed_once_per_delivered_customer() {
        let given = vec![campaign(), scheduled(), delivered(1)];
        assert_eq!(
            when(
                given.clone(),
                PromotionCommand::RecordOpened { customer_id: c(1) }
            ),
            Ok(vec![PromotionEvent::PromotionOpened {
                customer_id: c(1),
                at: test_now()
            }])
        );
        let redeemed = PromotionEvent::PromotionRedeemed {
            customer_id: c(1),
            job_id: None,
            at: test_now(),
        };
        let mut all = given.clone();
        all.push(redeemed);
        assert_eq!(
            when(
                all,
                PromotionCommand::RecordRedeemed {
                    customer_id: c(1),
                    job_id: None
                }
            ),
            Ok(vec![])
        );
        assert_eq!(
            when(given, PromotionCommand::RecordOpened { customer_id: c(9) }),
            Err(PromotionError::NotDelivered)
        );
    }

    #[test]
    fn it_should_record_a_failed_delivery() {
        let cmd = PromotionCommand::RecordDeliveryFailed {
            customer_id: c(1),
            reason: "30003 unreachable".into(),
        };
        assert!(matches!(
            when(vec![campaign(), scheduled(), delivered(1)], cmd)
                .expect("ok")
                .as_slice(),
            [PromotionEvent::PromotionDeliveryFailed { .. }]
        ));
    }
}
