//! Opportunity: the sales pipeline (New → Contacted → Quoted → Negotiating → won/lost), its
//! auto-offer (discount with an expiry, sent/viewed/accepted/expired), staleness and archiving.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::consent::{Channel, MarketingEligibility};
use crate::error::{validation_error, ValidationError};
use crate::ids::{CustomerId, JobId, OpportunityId, StaffUserId};
use crate::ports::{cqrs_aggregate, CommandContext};
use crate::values::{Discount, Money, NonEmptyText, Reason};

/// `Aggregate::TYPE` of [`Opportunity`].
pub const AGGREGATE_TYPE: &str = "Opportunity";

/// Open pipeline stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineStage {
    /// Just identified.
    New,
    /// The customer was contacted.
    Contacted,
    /// A quote was given.
    Quoted,
    /// Terms under discussion.
    Negotiating,
}

/// What can be asked of an opportunity.
#[derive(Debug, Clone, PartialEq)]
pub enum OpportunityCommand {
    /// Open an opportunity at stage New.
    Create {
        /// The id (the aggregate id).
        opportunity_id: OpportunityId,
        /// The customer.
        customer_id: CustomerId,
        /// What it is, e.g. "upsell pet-odour treatment".
        title: String,
        /// Expected value, in cents.
        value_cents: i64,
        /// The staff user responsible.
        owner: StaffUserId,
    },
    /// Move to another open stage (forwards or back).
    MoveStage {
        /// The new stage.
        stage: PipelineStage,
    },
    /// Won: converted to a booked job.
    Win {
        /// The job booked for it.
        job_id: JobId,
    },
    /// Lost, with a reason.
    Lose {
        /// Why (required).
        reason: String,
    },
    /// Configure (or replace, before sending) the automatic offer.
    ConfigureAutoOffer {
        /// The discount.
        discount: Discount,
        /// When the offer stops being valid.
        expires_at: DateTime<Utc>,
    },
    /// The offer was sent to the customer.
    SendOffer {
        /// SMS or email.
        channel: Channel,
        /// The customer's eligibility on that channel (from the Customer aggregate).
        eligibility: MarketingEligibility,
    },
    /// The customer opened the offer.
    RecordOfferViewed,
    /// The customer accepted the offer.
    AcceptOffer,
    /// The offer's expiry passed (scheduled job).
    ExpireOffer,
    /// Flag as stale when there was no activity for `inactive_days` (daily job).
    FlagStale {
        /// Days without activity that make an opportunity stale.
        inactive_days: u32,
    },
    /// Archive a closed opportunity (weekly job).
    Archive,
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`Opportunity`] aggregate.
    pub enum OpportunityEvent {
        /// An opportunity was opened at stage New.
        OpportunityCreated {
            /// The opportunity.
            opportunity_id: OpportunityId,
            /// The customer.
            customer_id: CustomerId,
            /// What it is.
            title: NonEmptyText,
            /// Expected value.
            value: Money,
            /// Responsible staff user.
            owner: StaffUserId,
            /// When.
            at: DateTime<Utc>,
        },
        /// The opportunity moved to another stage.
        OpportunityStageChanged {
            /// The customer.
            customer_id: CustomerId,
            /// Previous stage.
            from: PipelineStage,
            /// New stage.
            to: PipelineStage,
            /// When.
            at: DateTime<Utc>,
        },
        /// Won: converted to a booked job.
        OpportunityWon {
            /// The customer.
            customer_id: CustomerId,
            /// The booked job.
            job_id: JobId,
            /// The opportunity's value.
            value: Money,
            /// When.
            at: DateTime<Utc>,
        },
        /// Lost.
        OpportunityLost {
            /// The customer.
            customer_id: CustomerId,
            /// Why.
            reason: Reason,
            /// When.
            at: DateTime<Utc>,
        },
        /// The auto-offer was configured.
        AutoOfferConfigured {
            /// The customer.
            customer_id: CustomerId,
            /// The discount.
            discount: Discount,
            /// Valid until.
            expires_at: DateTime<Utc>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The offer was sent.
        OfferSent {
            /// The customer.
            customer_id: CustomerId,
            /// SMS or email.
            channel: Channel,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer opened the offer.
        OfferViewed {
            /// The customer.
            customer_id: CustomerId,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer accepted the offer.
        OfferAccepted {
            /// The customer.
            customer_id: CustomerId,
            /// The accepted discount.
            discount: Discount,
            /// When.
            at: DateTime<Utc>,
        },
        /// The offer expired unaccepted.
        OfferExpired {
            /// The customer.
            customer_id: CustomerId,
            /// When it expired.
            expires_at: DateTime<Utc>,
            /// When recorded.
            at: DateTime<Utc>,
        },
        /// No activity for a while.
        OpportunityFlaggedStale {
            /// The customer.
            customer_id: CustomerId,
            /// Last activity.
            last_activity_at: DateTime<Utc>,
            /// The threshold used.
            inactive_days: u32,
            /// When.
            at: DateTime<Utc>,
        },
        /// A closed opportunity was archived.
        OpportunityArchived {
            /// The customer.
            customer_id: CustomerId,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why an opportunity command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpportunityError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// `Create` on an existing opportunity.
    #[error("the opportunity already exists")]
    AlreadyExists,
    /// Unknown opportunity.
    #[error("unknown opportunity")]
    UnknownOpportunity,
    /// Won or lost already.
    #[error("the opportunity is closed")]
    Closed,
    /// Archive of an open opportunity.
    #[error("only closed opportunities can be archived")]
    NotClosed,
    /// Archived: read-only.
    #[error("the opportunity is archived")]
    Archived,
    /// No offer configured.
    #[error("no offer is configured")]
    NoOffer,
    /// The offer was already sent and can no longer be changed.
    #[error("the offer was already sent")]
    OfferAlreadySent,
    /// Viewed/accepted before being sent.
    #[error("the offer has not been sent")]
    OfferNotSent,
    /// The offer is past its expiry.
    #[error("the offer has expired")]
    OfferExpired,
    /// The offer was already accepted.
    #[error("the offer was already accepted")]
    OfferAlreadyAccepted,
    /// `ExpireOffer` before the expiry.
    #[error("the offer has not reached its expiry")]
    OfferNotYetExpired,
    /// The customer may not be messaged on that channel.
    #[error("the customer cannot be sent the offer: {0:?}")]
    CustomerNotReachable(MarketingEligibility),
}
validation_error!(OpportunityError);

/// What a decision returns: the events to record, or why nothing is.
type Decision = Result<Vec<OpportunityEvent>, OpportunityError>;

/// Where the opportunity stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpportunityStatus {
    /// Not created.
    #[default]
    New,
    /// In the pipeline.
    Open,
    /// Won.
    Won,
    /// Lost.
    Lost,
}

/// The state of the offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferStatus {
    /// No offer configured.
    #[default]
    None,
    /// Configured, not sent.
    Configured,
    /// Sent (maybe viewed).
    Sent,
    /// Accepted.
    Accepted,
    /// Expired.
    Expired,
}

/// The opportunity's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Opportunity {
    customer_id: Option<CustomerId>,
    status: OpportunityStatus,
    stage: Option<PipelineStage>,
    value: Money,
    offer: OfferStatus,
    offer_viewed: bool,
    discount: Option<Discount>,
    expires_at: Option<DateTime<Utc>>,
    last_activity_at: Option<DateTime<Utc>>,
    stale: bool,
    archived: bool,
}

impl Opportunity {
    /// The customer it is for (None before it is created).
    pub fn customer_id(&self) -> Option<CustomerId> {
        self.customer_id
    }

    /// Current status.
    pub fn status(&self) -> OpportunityStatus {
        self.status
    }
    /// Current stage while open.
    pub fn stage(&self) -> Option<PipelineStage> {
        self.stage
    }
    /// Offer status.
    pub fn offer(&self) -> OfferStatus {
        self.offer
    }

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`OpportunityError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: OpportunityCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<OpportunityEvent>, OpportunityError> {
        let at = ctx.now;
        match cmd {
            OpportunityCommand::Create {
                opportunity_id,
                customer_id,
                title,
                value_cents,
                owner,
            } => self.create(opportunity_id, customer_id, &title, value_cents, owner, at),
            OpportunityCommand::MoveStage { stage } => self.move_stage(stage, at),
            OpportunityCommand::Win { job_id } => self.win(job_id, at),
            OpportunityCommand::Lose { reason } => self.lose(&reason, at),
            OpportunityCommand::ConfigureAutoOffer {
                discount,
                expires_at,
            } => self.configure_auto_offer(discount, expires_at, at),
            OpportunityCommand::SendOffer {
                channel,
                eligibility,
            } => self.send_offer(channel, eligibility, at),
            OpportunityCommand::RecordOfferViewed => self.record_offer_viewed(at),
            OpportunityCommand::AcceptOffer => self.accept_offer(at),
            OpportunityCommand::ExpireOffer => self.expire_offer(at),
            OpportunityCommand::FlagStale { inactive_days } => self.flag_stale(inactive_days, at),
            OpportunityCommand::Archive => self.archive(at),
        }
    }

    /// The customer of an opportunity that exists and is not archived: what every command but
    /// `Create` needs.
    fn ensure_current(&self) -> Result<CustomerId, OpportunityError> {
        let customer_id = self
            .customer_id
            .ok_or(OpportunityError::UnknownOpportunity)?;
        if self.archived {
            return Err(OpportunityError::Archived);
        }
        Ok(customer_id)
    }

    fn is_open(&self) -> bool {
        self.status == OpportunityStatus::Open
    }

    /// Whether the offer has expired, recorded or not.
    fn offer_expired(&self, at: DateTime<Utc>) -> bool {
        self.offer == OfferStatus::Expired || self.expires_at.is_some_and(|e| at >= e)
    }

    fn create(
        &self,
        opportunity_id: OpportunityId,
        customer_id: CustomerId,
        title: &str,
        value_cents: i64,
        owner: StaffUserId,
        at: DateTime<Utc>,
    ) -> Decision {
        if self.customer_id.is_some() {
            return Err(OpportunityError::AlreadyExists);
        }
        Ok(vec![OpportunityEvent::OpportunityCreated {
            opportunity_id,
            customer_id,
            title: NonEmptyText::parse("title", title, 200)?,
            value: Money::from_cents(value_cents).map_err(|e| e.in_field("value_cents"))?,
            owner,
            at,
        }])
    }

    fn move_stage(&self, stage: PipelineStage, at: DateTime<Utc>) -> Decision {
        let customer_id = self.ensure_current()?;
        let from = self
            .stage
            .filter(|_| self.is_open())
            .ok_or(OpportunityError::Closed)?;
        if from == stage {
            return Ok(vec![]);
        }
        Ok(vec![OpportunityEvent::OpportunityStageChanged {
            customer_id,
            from,
            to: stage,
            at,
        }])
    }

    fn win(&self, job_id: JobId, at: DateTime<Utc>) -> Decision {
        let customer_id = self.ensure_current()?;
        if !self.is_open() {
            return Err(OpportunityError::Closed);
        }
        Ok(vec![OpportunityEvent::OpportunityWon {
            customer_id,
            job_id,
            value: self.value,
            at,
        }])
    }

    fn lose(&self, reason: &str, at: DateTime<Utc>) -> Decision {
        let customer_id = self.ensure_current()?;
        if !self.is_open() {
            return Err(OpportunityError::Closed);
        }
        Ok(vec![OpportunityEvent::OpportunityLost {
            customer_id,
            reason: Reason::parse(reason)?,
            at,
        }])
    }

    /// Sets (or replaces, until it is sent) the offer's discount and expiry.
    fn configure_auto_offer(
        &self,
        discount: Discount,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Decision {
        let customer_id = self.ensure_current()?;
        if !self.is_open() {
            return Err(OpportunityError::Closed);
        }
        if !matches!(self.offer, OfferStatus::None | OfferStatus::Configured) {
            return Err(OpportunityError::OfferAlreadySent);
        }
        let discount = discount.validate()?;
        if expires_at <= at {
            return Err(ValidationError::new("expires_at", "must be in the future").into());
        }
        Ok(vec![OpportunityEvent::AutoOfferConfigured {
            customer_id,
            discount,
            expires_at,
            at,
        }])
    }

    /// Sends a configured, unexpired offer to a customer who may be messaged on `channel`.
    fn send_offer(
        &self,
        channel: Channel,
        eligibility: MarketingEligibility,
        at: DateTime<Utc>,
    ) -> Decision {
        let customer_id = self.ensure_current()?;
        if !self.is_open() {
            return Err(OpportunityError::Closed);
        }
        match self.offer {
            OfferStatus::None => return Err(OpportunityError::NoOffer),
            OfferStatus::Configured => {}
            OfferStatus::Accepted => return Err(OpportunityError::OfferAlreadyAccepted),
            OfferStatus::Sent | OfferStatus::Expired => {
                return Err(OpportunityError::OfferAlreadySent)
            }
        }
        if self.offer_expired(at) {
            return Err(OpportunityError::OfferExpired);
        }
        if !eligibility.is_eligible() {
            return Err(OpportunityError::CustomerNotReachable(eligibility));
        }
        Ok(vec![OpportunityEvent::OfferSent {
            customer_id,
            channel,
            at,
        }])
    }

    fn record_offer_viewed(&self, at: DateTime<Utc>) -> Decision {
        let customer_id = self.ensure_current()?;
        match self.offer {
            OfferStatus::None | OfferStatus::Configured => Err(OpportunityError::OfferNotSent),
            _ if self.offer_viewed => Ok(vec![]),
            _ => Ok(vec![OpportunityEvent::OfferViewed { customer_id, at }]),
        }
    }

    fn accept_offer(&self, at: DateTime<Utc>) -> Decision {
        let customer_id = self.ensure_current()?;
        match self.offer {
            OfferStatus::None => return Err(OpportunityError::NoOffer),
            OfferStatus::Configured => return Err(OpportunityError::OfferNotSent),
            OfferStatus::Accepted => return Err(OpportunityError::OfferAlreadyAccepted),
            OfferStatus::Expired => return Err(OpportunityError::OfferExpired),
            OfferStatus::Sent => {}
        }
        if self.offer_expired(at) {
            return Err(OpportunityError::OfferExpired);
        }
        let discount = self.discount.ok_or(OpportunityError::NoOffer)?;
        Ok(vec![OpportunityEvent::OfferAccepted {
            customer_id,
            discount,
            at,
        }])
    }

    /// Records the expiry once it has passed; an offer already expired records nothing.
    fn expire_offer(&self, at: DateTime<Utc>) -> Decision {
        let customer_id = self.ensure_current()?;
        match (self.offer, self.expires_at) {
            (OfferStatus::None, _) | (_, None) => Err(OpportunityError::NoOffer),
            (OfferStatus::Accepted, _) => Err(OpportunityError::OfferAlreadyAccepted),
            (OfferStatus::Expired, _) => Ok(vec![]),
            (_, Some(expires_at)) if at >= expires_at => Ok(vec![OpportunityEvent::OfferExpired {
                customer_id,
                expires_at,
                at,
            }]),
            _ => Err(OpportunityError::OfferNotYetExpired),
        }
    }

    /// Flags an open opportunity idle for `inactive_days`, once until its next activity.
    fn flag_stale(&self, inactive_days: u32, at: DateTime<Utc>) -> Decision {
        let customer_id = self.ensure_current()?;
        let last = self.last_activity_at.unwrap_or(at);
        let idle = at - last >= chrono::Duration::days(i64::from(inactive_days));
        if self.is_open() && idle && !self.stale {
            Ok(vec![OpportunityEvent::OpportunityFlaggedStale {
                customer_id,
                last_activity_at: last,
                inactive_days,
                at,
            }])
        } else {
            Ok(vec![])
        }
    }

    fn archive(&self, at: DateTime<Utc>) -> Decision {
        let customer_id = self.ensure_current()?;
        if self.is_open() {
            return Err(OpportunityError::NotClosed);
        }
        Ok(vec![OpportunityEvent::OpportunityArchived {
            customer_id,
            at,
        }])
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: OpportunityEvent) {
        let is_activity = !matches!(
            event,
            OpportunityEvent::OpportunityFlaggedStale { .. }
                | OpportunityEvent::OpportunityArchived { .. }
        );
        let at = match &event {
            OpportunityEvent::OpportunityCreated { at, .. }
            | OpportunityEvent::OpportunityStageChanged { at, .. }
            | OpportunityEvent::OpportunityWon { at, .. }
            | OpportunityEvent::OpportunityLost { at, .. }
            | OpportunityEvent::AutoOfferConfigured { at, .. }
            | OpportunityEvent::OfferSent { at, .. }
            | OpportunityEvent::OfferViewed { at, .. }
            | OpportunityEvent::OfferAccepted { at, .. }
            | OpportunityEvent::OfferExpired { at, .. }
            | OpportunityEvent::OpportunityFlaggedStale { at, .. }
            | OpportunityEvent::OpportunityArchived { at, .. } => *at,
        };
        if is_activity {
            self.last_activity_at = Some(at);
            self.stale = false;
        }
        match event {
            OpportunityEvent::OpportunityCreated {
                customer_id, value, ..
            } => {
                self.customer_id = Some(customer_id);
                self.status = OpportunityStatus::Open;
                self.stage = Some(PipelineStage::New);
                self.value = value;
            }
            OpportunityEvent::OpportunityStageChanged { to, .. } => self.stage = Some(to),
            OpportunityEvent::OpportunityWon { .. } => self.status = OpportunityStatus::Won,
            OpportunityEvent::OpportunityLost { .. } => self.status = OpportunityStatus::Lost,
            OpportunityEvent::AutoOfferConfigured {
                discount,
                expires_at,
                ..
            } => {
                self.offer = OfferStatus::Configured;
                self.discount = Some(discount);
                self.expires_at = Some(expires_at);
            }
            OpportunityEvent::OfferSent { .. } => self.offer = OfferStatus::Sent,
            OpportunityEvent::OfferViewed { .. } => self.offer_viewed = true,
            OpportunityEvent::OfferAccepted { .. } => self.offer = OfferStatus::Accepted,
            OpportunityEvent::OfferExpired { .. } => self.offer = OfferStatus::Expired,
            OpportunityEvent::OpportunityFlaggedStale { .. } => self.stale = true,
            OpportunityEvent::OpportunityArchived { .. } => self.archived = true,
        }
    }
}

cqrs_aggregate!(
    Opportunity,
    AGGREGATE_TYPE,
    OpportunityCommand,
    OpportunityEvent,
    OpportunityError
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, test_now};
    use uuid::Uuid;

    fn customer() -> CustomerId {
        CustomerId(Uuid::from_u128(1))
    }
    fn created() -> OpportunityEvent {
        OpportunityEvent::OpportunityCreated {
            opportunity_id: OpportunityId(Uuid::from_u128(30)),
            customer_id: customer(),
            title: NonEmptyText::parse("title", "pet-odour treatment", 200).expect("ok"),
            value: Money::from_cents(15_000).expect("ok"),
            owner: StaffUserId(Uuid::from_u128(1001)),
            at: test_now(),
        }
    }
    fn expiry() -> DateTime<Utc> {
        test_now() + chrono::Duration::days(7)
    }
    fn configured() -> OpportunityEvent {
        OpportunityEvent::AutoOfferConfigured {
            customer_id: customer(),
            discount: Discount::Percent(15),
            expires_at: expiry(),
            at: test_now(),
        }
    }
    fn sent() -> OpportunityEvent {
        OpportunityEvent::OfferSent {
            customer_id: customer(),
            channel: Channel::Sms,
            at: test_now(),
        }
    }
    fn accepted() -> OpportunityEvent {
        OpportunityEvent::OfferAccepted {
            customer_id: customer(),
            discount: Discount::Percent(15),
            at: test_now(),
        }
    }
    fn when(
        given: Vec<OpportunityEvent>,
        cmd: OpportunityCommand,
    ) -> Result<Vec<OpportunityEvent>, OpportunityError> {
        testing::run::<Opportunity, _>(testing::test_services(), given, testing::staff(), cmd)
    }
    fn when_at(
        now: DateTime<Utc>,
        given: Vec<OpportunityEvent>,
        cmd: OpportunityCommand,
    ) -> Result<Vec<OpportunityEvent>, OpportunityError> {
        testing::run::<Opportunity, _>(testing::services_at(now), given, crate::Actor::System, cmd)
    }

    #[test]
    fn it_should_open_an_opportunity_with_value_and_owner() {
        let cmd = OpportunityCommand::Create {
            opportunity_id: OpportunityId(Uuid::from_u128(30)),
            customer_id: customer(),
            title: "pet-odour treatment".into(),
            value_cents: 15_000,
            owner: StaffUserId(Uuid::from_u128(1001)),
        };
        assert_eq!(when(vec![], cmd), Ok(vec![created()]));
    }

    #[test]
    fn it_should_refuse_a_negative_value_naming_the_field() {
        let cmd = OpportunityCommand::Create {
            opportunity_id: OpportunityId(Uuid::from_u128(30)),
            customer_id: customer(),
            title: "x".into(),
            value_cents: -1,
            owner: StaffUserId(Uuid::from_u128(1001)),
        };
        assert_eq!(
            when(vec![], cmd).expect_err("neg").field(),
            Some("value_cents")
        );
    }

    #[test]
    fn it_should_move_through_the_pipeline_stages() {
        let events = when(
            vec![created()],
            OpportunityCommand::MoveStage {
                stage: PipelineStage::Quoted,
            },
        );
        assert_eq!(
            events,
            Ok(vec![OpportunityEvent::OpportunityStageChanged {
                customer_id: customer(),
                from: PipelineStage::New,
                to: PipelineStage::Quoted,
                at: test_now(),
            }])
        );
    }

    #[test]
    fn it_should_convert_a_won_opportunity_to_a_booked_job() {
        let job_id = JobId(Uuid::from_u128(10));
        assert_eq!(
            when(vec![created()], OpportunityCommand::Win { job_id }),
            Ok(vec![OpportunityEvent::OpportunityWon {
                customer_id: customer(),
                job_id,
                value: Money::from_cents(15_000).expect("ok"),
                at: test_now(),
            }])
        );
    }

    #[test]
    fn it_should_refuse_to_lose_an_opportunity_without_a_reason() {
        let err = when(
            vec![created()],
            OpportunityCommand::Lose { reason: "".into() },
        )
        .expect_err("empty");
        assert_eq!(err.field(), Some("reason"));
    }

    #[test]
    fn it_should_not_move_a_closed_opportunity() {
        let lost = OpportunityEvent::OpportunityLost {
            customer_id: customer(),
            reason: Reason::parse("price").expect("ok"),
            at: test_now(),
        };
        assert_eq!(
            when(
                vec![created(), lost],
                OpportunityCommand::MoveStage {
                    stage: PipelineStage::Quoted
                }
            ),
            Err(OpportunityError::Closed)
        );
    }

    #[test]
    fn it_should_accept_a_sent_offer_before_it_expires() {
        assert_eq!(
            when(
                vec![created(), configured(), sent()],
                OpportunityCommand::AcceptOffer
            ),
            Ok(vec![accepted()])
        );
    }

    #[test]
    fn it_should_not_accept_an_offer_twice() {
        assert_eq!(
            when(
                vec![created(), configured(), sent(), accepted()],
                OpportunityCommand::AcceptOffer
            ),
            Err(OpportunityError::OfferAlreadyAccepted)
        );
    }

    #[test]
    fn it_should_not_accept_an_offer_after_its_expiry() {
        let later = expiry() + chrono::Duration::minutes(1);
        assert_eq!(
            when_at(
                later,
                vec![created(), configured(), sent()],
                OpportunityCommand::AcceptOffer
            ),
            Err(OpportunityError::OfferExpired)
        );
    }

    #[test]
    fn it_should_expire_an_offer_once_its_expiry_passes() {
        let later = expiry() + chrono::Duration::minutes(1);
        let given = vec![created(), configured(), sent()];
        assert_eq!(
            when_at(test_now(), given.clone(), OpportunityCommand::ExpireOffer),
            Err(OpportunityError::OfferNotYetExpired)
        );
        assert_eq!(
            when_at(later, given, OpportunityCommand::ExpireOffer),
            Ok(vec![OpportunityEvent::OfferExpired {
                customer_id: customer(),
                expires_at: expiry(),
                at: later
            }])
        );
    }

    #[test]
    fn it_should_not_accept_an_expired_offer() {
        let expired = OpportunityEvent::OfferExpired {
            customer_id: customer(),
            expires_at: expiry(),
            at: expiry(),
        };
        assert_eq!(
            when(
                vec![created(), configured(), sent(), expired],
                OpportunityCommand::AcceptOffer
            ),
            Err(OpportunityError::OfferExpired)
        );
    }

    #[test]
    fn it_should_refuse_an_offer_expiring_in_the_past() {
        let cmd = OpportunityCommand::ConfigureAutoOffer {
            discount: Discount::Percent(10),
            expires_at: test_now() - chrono::Duration::hours(1),
        };
        assert_eq!(
            when(vec![created()], cmd).expect_err("past").field(),
            Some("expires_at")
        );
    }

    #[test]
    fn it_should_not_send_an_offer_to_a_customer_who_opted_out() {
        let cmd = OpportunityCommand::SendOffer {
            channel: Channel::Sms,
            eligibility: MarketingEligibility::OptedOut,
        };
        assert_eq!(
            when(vec![created(), configured()], cmd),
            Err(OpportunityError::CustomerNotReachable(
                MarketingEligibility::OptedOut
            ))
        );
    }

    #[test]
    fn it_should_record_an_offer_viewed_once() {
        let given = vec![created(), configured(), sent()];
        let events = when(given.clone(), OpportunityCommand::RecordOfferViewed).expect("ok");
        assert_eq!(
            events,
            vec![OpportunityEvent::OfferViewed {
                customer_id: customer(),
                at: test_now()
            }]
        );
        let mut all = given;
        all.extend(events);
        assert_eq!(when(all, OpportunityCommand::RecordOfferViewed), Ok(vec![]));
    }

    #[test]
    fn it_should_flag_an_inactive_opportunity_as_stale_once() {
        let later = test_now() + chrono::Duration::days(15);
        let cmd = OpportunityCommand::FlagStale { inactive_days: 14 };
        let events = when_at(later, vec![created()], cmd.clone()).expect("ok");
        assert_eq!(
            events,
            vec![OpportunityEvent::OpportunityFlaggedStale {
                customer_id: customer(),
                last_activity_at: test_now(),
                inactive_days: 14,
                at: later,
            }]
        );
        let mut given = vec![created()];
        given.extend(events);
        assert_eq!(when_at(later, given, cmd.clone()), Ok(vec![]));
        assert_eq!(
            when_at(test_now() + chrono::Duration::days(3), vec![created()], cmd),
            Ok(vec![])
        );
    }

    #[test]
    fn it_should_archive_only_closed_opportunities() {
        assert_eq!(
            when(vec![created()], OpportunityCommand::Archive),
            Err(OpportunityError::NotClosed)
        );
        let won = OpportunityEvent::OpportunityWon {
            customer_id: customer(),
            job_id: JobId(Uuid::from_u128(10)),
            value: Money::ZERO,
            at: test_now(),
        };
        assert_eq!(
            when(vec![created(), won], OpportunityCommand::Archive),
            Ok(vec![OpportunityEvent::OpportunityArchived {
                customer_id: customer(),
                at: test_now()
            }])
        );
    }
}
