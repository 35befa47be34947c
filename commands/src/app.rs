//! The application service: one [`AggregateStore`] per aggregate, typed
//! dispatch per use case, the checks that need more than one aggregate, and
//! one error type ([`AppError`]) the API maps to responses.
//!
//! ```ignore
//! let crm = Crm::new(log, DomainServices::new(tz, LoyaltyRules::default()));
//! let outcome = crm.jobs().execute(job_id, actor, JobCommand::Book { .. }, &meta).await?;
//! ```

use std::fmt::{self, Display};
use std::sync::Arc;

use cqrs_es::Aggregate;
use domain::conversation::{Conversation, ConversationCommand, ConversationError};
use domain::customer::{Customer, CustomerCommand, CustomerError};
use domain::ids::{
    ConversationId, CustomerId, JobId, LoyaltyAccountId, OpportunityId, OutboundMessageId,
    PaymentId, PortalAccountId, PromotionId, ReferralId, ReviewId, ReviewRequestId,
    ScheduledReportId, StaffUserId, VehicleId,
};
use domain::job::{Job, JobCommand, JobError};
use domain::loyalty::{LoyaltyAccount, LoyaltyCommand, LoyaltyError};
use domain::message::{MessageCommand, MessageError, OutboundMessage};
use domain::opportunity::{Opportunity, OpportunityCommand, OpportunityError};
use domain::payment::{Payment, PaymentCommand, PaymentError};
use domain::portal::{PortalAccount, PortalAccountCommand, PortalAccountError};
use domain::promotion::{Promotion, PromotionCommand, PromotionError};
use domain::referral::{Referral, ReferralCommand, ReferralError};
use domain::review::{
    Review, ReviewCommand, ReviewError, ReviewRequest, ReviewRequestCommand, ReviewRequestError,
};
use domain::scheduled_report::{ScheduledReport, ScheduledReportCommand, ScheduledReportError};
use domain::staff::{StaffUser, StaffUserCommand, StaffUserError};
use domain::values::ReferralCode;
use domain::vehicle::{Vehicle, VehicleCommand, VehicleError};
use domain::{Actor as DomainActor, CommandEnvelope, DomainServices};

use crate::aggregate_store::{AggregateStore, CommandError, CommandOutcome, Loaded};
use crate::metadata::EventMetadata;
use crate::store::{EventLog, StoreError};

/// Snapshot interval of the long-lived aggregates (customers, loyalty
/// accounts, vans, campaigns): their streams grow for years.
pub const SNAPSHOT_EVERY: u64 = 50;

/// How many times a retry-safe command is re-decided after a concurrency conflict.
pub const CONFLICT_ATTEMPTS: u32 = 5;

/// Why a command did not take effect, as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A command field is invalid; `field` is the API (camelCase) field name.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The offending field, camelCase (`amountCents`, `phone`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The aggregate addressed, or one the command refers to, does not exist.
    #[error("{entity} {id} not found")]
    NotFound {
        /// What was looked for (`customer`, `job`, `referral code`…).
        entity: &'static str,
        /// The id (or code) that was not found.
        id: String,
        /// The command field that named it, when it came from a field (`customerId`).
        field: Option<String>,
    },
    /// Another command changed the aggregate first; nothing was written.
    #[error("{entity} {id} was changed by another request; reload and retry")]
    Conflict {
        /// Aggregate type.
        entity: String,
        /// Aggregate id.
        id: String,
    },
    /// The actor may not issue this command.
    #[error("forbidden: {message}")]
    Forbidden {
        /// Why.
        message: String,
    },
    /// A business rule refused the command.
    #[error("{message}")]
    Rule {
        /// The rule, SCREAMING_SNAKE (`INSUFFICIENT_POINTS`, `JOB_ALREADY_COMPLETED`).
        code: &'static str,
        /// For humans.
        message: String,
    },
    /// The idempotency key was already used for a different request.
    #[error("the idempotency key {key:?} was already used for another request")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppError {
    /// Stable machine-readable code: `VALIDATION`, `NOT_FOUND`, `CONFLICT`,
    /// `FORBIDDEN`, `RULE_VIOLATION`, `IDEMPOTENCY_KEY_REUSED`,
    /// `STORE_UNAVAILABLE` or `INTERNAL`.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Validation { .. } => "VALIDATION",
            AppError::NotFound { .. } => "NOT_FOUND",
            AppError::Conflict { .. } => "CONFLICT",
            AppError::Forbidden { .. } => "FORBIDDEN",
            AppError::Rule { .. } => "RULE_VIOLATION",
            AppError::IdempotencyKeyReused { .. } => "IDEMPOTENCY_KEY_REUSED",
            AppError::Store(StoreError::Unavailable(_)) => "STORE_UNAVAILABLE",
            AppError::Store(_) => "INTERNAL",
        }
    }

    /// The field at fault (camelCase), for validation and not-found errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            AppError::Validation { field, .. } => Some(field),
            AppError::NotFound { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The rule that refused the command, for [`AppError::Rule`].
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            AppError::Rule { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A validation error for a domain (snake_case) field name.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        AppError::Validation {
            field: camel_case(field),
            message: message.into(),
        }
    }

    fn not_found(entity: &'static str, id: impl Display) -> Self {
        AppError::NotFound {
            entity,
            id: id.to_string(),
            field: None,
        }
    }

    fn rule_of(code: &'static str, e: impl Display) -> Self {
        AppError::Rule {
            code,
            message: e.to_string(),
        }
    }

    fn forbidden(e: impl Display) -> Self {
        AppError::Forbidden {
            message: e.to_string(),
        }
    }
}

/// `amount_cents` → `amountCents`; dots are kept (`address.postal_code` → `address.postalCode`).
pub fn camel_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Another aggregate a command refers to, checked to exist before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// A customer, named by a field.
    Customer(CustomerId, &'static str),
    /// A staff user.
    StaffUser(StaffUserId, &'static str),
    /// A van.
    Vehicle(VehicleId, &'static str),
    /// A job.
    Job(JobId, &'static str),
}

/// What the application layer knows about an aggregate beyond cqrs-es: its
/// typed id, how its errors map to [`AppError`], which other aggregates its
/// commands refer to, and whether a command may be re-decided after a conflict.
pub trait AppAggregate:
    Aggregate<Command = CommandEnvelope<Self::Cmd>, Services = DomainServices> + 'static
{
    /// The typed aggregate id.
    type Id: Display + Copy + PartialEq + Send + Sync;
    /// The domain command.
    type Cmd: Clone + Send + Sync + 'static;
    /// Entity name in errors (`customer`).
    const ENTITY: &'static str;

    /// Maps a refusal of the aggregate with id `id`.
    fn app_error(error: Self::Error, id: &str) -> AppError;

    /// Other aggregates `cmd` names; each must exist.
    fn references(_cmd: &Self::Cmd) -> Vec<Reference> {
        Vec::new()
    }

    /// The only id `cmd` may be sent to, for aggregates with derived ids.
    fn required_id(_cmd: &Self::Cmd) -> Option<Self::Id> {
        None
    }

    /// Whether re-deciding `cmd` on fresh state after a conflict keeps the
    /// caller's intent. False for commands carrying state the caller read
    /// elsewhere (e.g. a marketing-eligibility verdict) that may be stale.
    fn retry_safe(_cmd: &Self::Cmd) -> bool {
        true
    }
}

macro_rules! map_errors {
    ($e:ident, $id:ident, $ty:ident { $($pat:pat => $out:expr),* $(,)? }) => {
        match $e {
            $ty::Validation { field, message } => AppError::Validation { field: camel_case(field), message },
            $($pat => $out),*
        }
    };
}

impl AppAggregate for Customer {
    type Id = CustomerId;
    type Cmd = CustomerCommand;
    const ENTITY: &'static str = "customer";
    fn app_error(e: CustomerError, id: &str) -> AppError {
        map_errors!(e, id, CustomerError {
            CustomerError::UnknownCustomer => AppError::not_found(Self::ENTITY, id),
            e @ CustomerError::AlreadyExists => AppError::rule_of("ALREADY_EXISTS", e),
            e @ CustomerError::Merged { .. } => AppError::rule_of("CUSTOMER_MERGED", e),
            e @ CustomerError::Erased => AppError::rule_of("CUSTOMER_ERASED", e),
            e @ CustomerError::ContactNotConfirmed { .. } => {
                AppError::rule_of("CONTACT_NOT_CONFIRMED", e)
            }
        })
    }
    fn references(cmd: &CustomerCommand) -> Vec<Reference> {
        match cmd {
            CustomerCommand::MergeInto { target } => {
                vec![Reference::Customer(*target, "target_customer_id")]
            }
            _ => vec![],
        }
    }
}

impl AppAggregate for Job {
    type Id = JobId;
    type Cmd = JobCommand;
    const ENTITY: &'static str = "job";
    fn app_error(e: JobError, id: &str) -> AppError {
        map_errors!(e, id, JobError {
            JobError::UnknownJob => AppError::not_found(Self::ENTITY, id),
            e @ JobError::NotYourJob => AppError::forbidden(e),
            e @ JobError::StaffOnly => AppError::forbidden(e),
            e @ JobError::AlreadyExists => AppError::rule_of("ALREADY_EXISTS", e),
            e @ JobError::NotScheduled => AppError::rule_of("JOB_NOT_SCHEDULED", e),
            e @ JobError::AlreadyScheduled => AppError::rule_of("JOB_ALREADY_SCHEDULED", e),
            e @ JobError::AlreadyStarted => AppError::rule_of("JOB_ALREADY_STARTED", e),
            e @ JobError::JobAlreadyCompleted => AppError::rule_of("JOB_ALREADY_COMPLETED", e),
            e @ JobError::JobCancelled => AppError::rule_of("JOB_CANCELLED", e),
            e @ JobError::AlreadyPaid => AppError::rule_of("JOB_ALREADY_PAID", e),
        })
    }
    fn references(cmd: &JobCommand) -> Vec<Reference> {
        match cmd {
            JobCommand::Book { customer_id, .. } => {
                vec![Reference::Customer(*customer_id, "customer_id")]
            }
            JobCommand::AssignTechnician { technician_id } => {
                vec![Reference::StaffUser(*technician_id, "technician_id")]
            }
            JobCommand::AssignVehicle { vehicle_id } => {
                vec![Reference::Vehicle(*vehicle_id, "vehicle_id")]
            }
            JobCommand::Complete {
                technician_id: Some(t),
                ..
            } => vec![Reference::StaffUser(*t, "technician_id")],
            _ => vec![],
        }
    }
}

impl AppAggregate for Vehicle {
    type Id = VehicleId;
    type Cmd = VehicleCommand;
    const ENTITY: &'static str = "vehicle";
    fn app_error(e: VehicleError, id: &str) -> AppError {
        map_errors!(e, id, VehicleError {
            VehicleError::UnknownVehicle => AppError::not_found(Self::ENTITY, id),
            e @ VehicleError::AlreadyExists => AppError::rule_of("ALREADY_EXISTS", e),
            e @ VehicleError::WrongStatus(_) => AppError::rule_of("VEHICLE_WRONG_STATUS", e),
        })
    }
    fn references(cmd: &VehicleCommand) -> Vec<Reference> {
        match cmd {
            VehicleCommand::Dispatch { job_id } => vec![Reference::Job(*job_id, "job_id")],
            _ => vec![],
        }
    }
}

impl AppAggregate for StaffUser {
    type Id = StaffUserId;
    type Cmd = StaffUserCommand;
    const ENTITY: &'static str = "staff user";
    fn app_error(e: StaffUserError, id: &str) -> AppError {
        map_errors!(e, id, StaffUserError {
            StaffUserError::UnknownStaffUser => AppError::not_found(Self::ENTITY, id),
            e @ StaffUserError::AdminRequired => AppError::forbidden(e),
            e @ StaffUserError::AlreadyExists => AppError::rule_of("ALREADY_EXISTS", e),
            e @ StaffUserError::Deactivated => AppError::rule_of("STAFF_USER_DEACTIVATED", e),
            e @ StaffUserError::CannotDeactivateSelf => AppError::rule_of("CANNOT_DEACTIVATE_SELF", e),
            e @ StaffUserError::NoPassword => AppError::rule_of("NO_PASSWORD", e),
            e @ StaffUserError::InvalidResetToken => AppError::rule_of("INVALID_RESET_TOKEN", e),
            e @ StaffUserError::ResetTokenExpired => AppError::rule_of("RESET_TOKEN_EXPIRED", e),
            e @ StaffUserError::ExportBySomeoneElse => AppError::forbidden(e),
        })
    }
    fn retry_safe(cmd: &StaffUserCommand) -> bool {
        // A reset token is single-use: a conflicting completion must be seen, not retried.
        !matches!(cmd, StaffUserCommand::CompletePasswordReset { .. })
    }
}

impl AppAggregate for PortalAccount {
    type Id = PortalAccountId;
    type Cmd = PortalAccountCommand;
    const ENTITY: &'static str = "portal account";
    fn app_error(e: PortalAccountError, id: &str) -> AppError {
        map_errors!(e, id, PortalAccountError {
            PortalAccountError::UnknownAccount => AppError::not_found(Self::ENTITY, id),
            e @ PortalAccountError::AlreadyRegistered => AppError::rule_of("ALREADY_REGISTERED", e),
        })
    }
    fn references(cmd: &PortalAccountCommand) -> Vec<Reference> {
        match cmd {
            PortalAccountCommand::Register { customer_id, .. } => {
                vec![Reference::Customer(*customer_id, "customer_id")]
            }
            _ => vec![],
        }
    }
    fn required_id(cmd: &PortalAccountCommand) -> Option<PortalAccountId> {
        match cmd {
            PortalAccountCommand::Register { customer_id, .. } => {
                Some(PortalAccountId::for_customer(*customer_id))
            }
            _ => None,
        }
    }
}

impl AppAggregate for Opportunity {
    type Id = OpportunityId;
    type Cmd = OpportunityCommand;
    const ENTITY: &'static str = "opportunity";
    fn app_error(e: OpportunityError, id: &str) -> AppError {
        use OpportunityError as E;
        map_errors!(e, id, OpportunityError {
            E::UnknownOpportunity => AppError::not_found(Self::ENTITY, id),
            e @ E::AlreadyExists => AppError::rule_of("ALREADY_EXISTS", e),
            e @ E::Closed => AppError::rule_of("OPPORTUNITY_CLOSED", e),
            e @ E::NotClosed => AppError::rule_of("OPPORTUNITY_NOT_CLOSED", e),
            e @ E::Archived => AppError::rule_of("OPPORTUNITY_ARCHIVED", e),
            e @ E::NoOffer => AppError::rule_of("NO_OFFER", e),
            e @ E::OfferAlreadySent => AppError::rule_of("OFFER_ALREADY_SENT", e),
            e @ E::OfferNotSent => AppError::rule_of("OFFER_NOT_SENT", e),
            e @ E::OfferExpired => AppError::rule_of("OFFER_EXPIRED", e),
            e @ E::OfferAlreadyAccepted => AppError::rule_of("OFFER_ALREADY_ACCEPTED", e),
            e @ E::OfferNotYetExpired => AppError::rule_of("OFFER_NOT_YET_EXPIRED", e),
            e @ E::CustomerNotReachable(_) => AppError::rule_of("CUSTOMER_NOT_REACHABLE", e),
        })
    }
    fn references(cmd: &OpportunityCommand) -> Vec<Reference> {
        match cmd {
            OpportunityCommand::Create {
                customer_id, owner, ..
            } => vec![
                Reference::Customer(*customer_id, "customer_id"),
                Reference::StaffUser(*owner, "owner"),
            ],
            OpportunityCommand::Win { job_id } => vec![Reference::Job(*job_id, "job_id")],
            _ => vec![],
        }
    }
    fn retry_safe(cmd: &OpportunityCommand) -> bool {
        !matches!(cmd, OpportunityCommand::SendOffer { .. })
    }
}

impl AppAggregate for Promotion {
    type Id = PromotionId;
    type Cmd = PromotionCommand;
    const ENTITY: &'static str = "promotion";
    fn app_error(e: PromotionError, id: &str) -> AppError {
        use PromotionError as E;
        map_errors!(e, id, PromotionError {
            E::UnknownPromotion => AppError::not_found(Self::ENTITY, id),
            e @ E::AlreadyExists => AppError::rule_of("ALREADY_EXISTS", e),
            e @ E::DeliveryAlreadyStarted => AppError::rule_of("DELIVERY_ALREADY_STARTED", e),
            e @ E::NotScheduled => AppError::rule_of("PROMOTION_NOT_SCHEDULED", e),
            e @ E::NotYetDue => AppError::rule_of("PROMOTION_NOT_YET_DUE", e),
            e @ E::Ended => AppError::rule_of("PROMOTION_ENDED", e),
            e @ E::AlreadyDelivered => AppError::rule_of("ALREADY_DELIVERED", e),
            e @ E::NotDelivered => AppError::rule_of("NOT_DELIVERED", e),
            e @ E::Paused => AppError::rule_of("PROMOTION_PAUSED", e),
            e @ E::Cancelled => AppError::rule_of("PROMOTION_CANCELLED", e),
            e @ E::NotPaused => AppError::rule_of("PROMOTION_NOT_PAUSED", e),
        })
    }
    fn retry_safe(cmd: &PromotionCommand) -> bool {
        !matches!(cmd, PromotionCommand::RecordDelivery { .. })
    }
}

impl AppAggregate for ReviewRequest {
    type Id = ReviewRequestId;
    type Cmd = ReviewRequestCommand;
    const ENTITY: &'static str = "review request";
    fn app_error(e: ReviewRequestError, id: &str) -> AppError {
        use ReviewRequestError as E;
        map_errors!(e, id, ReviewRequestError {
            E::UnknownRequest => AppError::not_found(Self::ENTITY, id),
            e @ E::AlreadyRequested => AppError::rule_of("ALREADY_REQUESTED", e),
            e @ E::CustomerNotReachable(_) => AppError::rule_of("CUSTOMER_NOT_REACHABLE", e),
            e @ E::NoRemindersLeft => AppError::rule_of("NO_REMINDERS_LEFT", e),
            e @ E::AlreadyFulfilled => AppError::rule_of("ALREADY_FULFILLED", e),
        })
    }
    fn references(cmd: &ReviewRequestCommand) -> Vec<Reference> {
        match cmd {
            ReviewRequestCommand::Request {
                job_id,
                customer_id,
                ..
            } => vec![
                Reference::Job(*job_id, "job_id"),
                Reference::Customer(*customer_id, "customer_id"),
            ],
            _ => vec![],
        }
    }
    fn required_id(cmd: &ReviewRequestCommand) -> Option<ReviewRequestId> {
        match cmd {
            ReviewRequestCommand::Request { job_id, .. } => Some(ReviewRequestId::for_job(*job_id)),
            _ => None,
        }
    }
    fn retry_safe(cmd: &ReviewRequestCommand) -> bool {
        matches!(cmd, ReviewRequestCommand::MarkFulfilled { .. })
    }
}

impl AppAggregate for Review {
    type Id = ReviewId;
    type Cmd = ReviewCommand;
    const ENTITY: &'static str = "review";
    fn app_error(e: ReviewError, id: &str) -> AppError {
        map_errors!(e, id, ReviewError {
            ReviewError::UnknownReview => AppError::not_found(Self::ENTITY, id),
            e @ ReviewError::StaffActorRequired => AppError::forbidden(e),
            e @ ReviewError::AlreadyExists => AppError::rule_of("ALREADY_EXISTS", e),
            e @ ReviewError::AlreadyResponded => AppError::rule_of("ALREADY_RESPONDED", e),
        })
    }
    fn references(cmd: &ReviewCommand) -> Vec<Reference> {
        match cmd {
            ReviewCommand::Receive {
                customer_id: Some(c),
                ..
            } => vec![Reference::Customer(*c, "customer_id")],
            _ => vec![],
        }
    }
}

impl AppAggregate for LoyaltyAccount {
    type Id = LoyaltyAccountId;
    type Cmd = LoyaltyCommand;
    const ENTITY: &'static str = "loyalty account";
    fn app_error(e: LoyaltyError, id: &str) -> AppError {
        use LoyaltyError as E;
        map_errors!(e, id, LoyaltyError {
            E::NotEnrolled => AppError::not_found(Self::ENTITY, id),
            e @ (E::StaffActorRequired | E::NotYourAccount) => AppError::forbidden(e),
            e @ E::AlreadyEnrolled => AppError::rule_of("ALREADY_ENROLLED", e),
            e @ E::InsufficientPoints { .. } => AppError::rule_of("INSUFFICIENT_POINTS", e),
            e @ E::NotTheCustomersDay { .. } => AppError::rule_of("NOT_THE_CUSTOMERS_DAY", e),
        })
    }
    fn references(cmd: &LoyaltyCommand) -> Vec<Reference> {
        match cmd {
            LoyaltyCommand::Enrol { customer_id } => {
                vec![Reference::Customer(*customer_id, "customer_id")]
            }
            _ => vec![],
        }
    }
    fn required_id(cmd: &LoyaltyCommand) -> Option<LoyaltyAccountId> {
        match cmd {
            LoyaltyCommand::Enrol { customer_id } => {
                Some(LoyaltyAccountId::for_customer(*customer_id))
            }
            _ => None,
        }
    }
}

impl AppAggregate for Referral {
    type Id = ReferralId;
    type Cmd = ReferralCommand;
    const ENTITY: &'static str = "referral";
    fn app_error(e: ReferralError, id: &str) -> AppError {
        map_errors!(e, id, ReferralError {
            ReferralError::UnknownReferral => AppError::not_found(Self::ENTITY, id),
            e @ ReferralError::SelfReferral => AppError::rule_of("SELF_REFERRAL", e),
            e @ ReferralError::AlreadyReferred => AppError::rule_of("ALREADY_REFERRED", e),
        })
    }
    fn references(cmd: &ReferralCommand) -> Vec<Reference> {
        match cmd {
            ReferralCommand::Record {
                referrer, referee, ..
            } => vec![
                Reference::Customer(*referrer, "referrer_customer_id"),
                Reference::Customer(*referee, "referee_customer_id"),
            ],
            ReferralCommand::RecordCompletedJob { job_id, .. } => {
                vec![Reference::Job(*job_id, "job_id")]
            }
        }
    }
    fn required_id(cmd: &ReferralCommand) -> Option<ReferralId> {
        match cmd {
            ReferralCommand::Record { referee, .. } => Some(ReferralId::for_referee(*referee)),
            ReferralCommand::RecordCompletedJob { .. } => None,
        }
    }
}

impl AppAggregate for Conversation {
    type Id = ConversationId;
    type Cmd = ConversationCommand;
    const ENTITY: &'static str = "conversation";
    fn app_error(e: ConversationError, id: &str) -> AppError {
        map_errors!(e, id, ConversationError {
            ConversationError::UnknownConversation => AppError::not_found(Self::ENTITY, id),
            e @ ConversationError::AlreadyExists => AppError::rule_of("ALREADY_EXISTS", e),
            e @ ConversationError::Closed => AppError::rule_of("CONVERSATION_CLOSED", e),
            e @ ConversationError::NotYourConversation => AppError::forbidden(e),
        })
    }
    fn references(cmd: &ConversationCommand) -> Vec<Reference> {
        match cmd {
            ConversationCommand::Start {
                customer_id: Some(c),
                ..
            } => vec![Reference::Customer(*c, "customer_id")],
            _ => vec![],
        }
    }
}

impl AppAggregate for Payment {
    type Id = PaymentId;
    type Cmd = PaymentCommand;
    const ENTITY: &'static str = "payment";
    fn app_error(e: PaymentError, id: &str) -> AppError {
        map_errors!(e, id, PaymentError {
            PaymentError::UnknownPayment => AppError::not_found(Self::ENTITY, id),
            e @ PaymentError::AlreadyExists => AppError::rule_of("ALREADY_EXISTS", e),
            e @ PaymentError::AlreadySucceeded => AppError::rule_of("PAYMENT_ALREADY_SUCCEEDED", e),
        })
    }
    fn references(cmd: &PaymentCommand) -> Vec<Reference> {
        match cmd {
            PaymentCommand::CreateIntent {
                job_id,
                customer_id,
                ..
            }
            | PaymentCommand::RecordInPerson {
                job_id,
                customer_id,
                ..
            } => vec![
                Reference::Job(*job_id, "job_id"),
                Reference::Customer(*customer_id, "customer_id"),
            ],
            _ => vec![],
        }
    }
}

impl AppAggregate for ScheduledReport {
    type Id = ScheduledReportId;
    type Cmd = ScheduledReportCommand;
    const ENTITY: &'static str = "scheduled report";
    fn app_error(e: ScheduledReportError, id: &str) -> AppError {
        use ScheduledReportError as E;
        map_errors!(e, id, ScheduledReportError {
            E::UnknownReport => AppError::not_found(Self::ENTITY, id),
            e @ E::ManagerRequired => AppError::forbidden(e),
            e @ E::AlreadyExists => AppError::rule_of("ALREADY_EXISTS", e),
            e @ E::NotGenerated => AppError::rule_of("REPORT_NOT_GENERATED", e),
        })
    }
}

impl AppAggregate for OutboundMessage {
    type Id = OutboundMessageId;
    type Cmd = MessageCommand;
    const ENTITY: &'static str = "message";
    fn app_error(e: MessageError, id: &str) -> AppError {
        use MessageError as E;
        map_errors!(e, id, MessageError {
            E::UnknownMessage => AppError::not_found(Self::ENTITY, id),
            e @ E::AlreadyQueued => AppError::rule_of("ALREADY_QUEUED", e),
            e @ E::AlreadyFinished => AppError::rule_of("MESSAGE_FINISHED", e),
            e @ E::AttemptInProgress => AppError::rule_of("ATTEMPT_IN_PROGRESS", e),
            e @ E::NotYetDue(_) => AppError::rule_of("ATTEMPT_NOT_DUE", e),
            e @ E::NoAttemptInProgress => AppError::rule_of("NO_ATTEMPT_IN_PROGRESS", e),
            e @ E::NotSent => AppError::rule_of("MESSAGE_NOT_SENT", e),
        })
    }
    fn references(cmd: &MessageCommand) -> Vec<Reference> {
        match cmd {
            MessageCommand::Queue {
                recipient: domain::message::Recipient::Customer { customer_id },
                ..
            } => vec![Reference::Customer(*customer_id, "customer_id")],
            _ => vec![],
        }
    }
    fn required_id(cmd: &MessageCommand) -> Option<OutboundMessageId> {
        match cmd {
            MessageCommand::Queue { cause, .. } => Some(OutboundMessageId::for_cause(cause.trim())),
            _ => None,
        }
    }
    fn retry_safe(cmd: &MessageCommand) -> bool {
        // A claim decided on stale state must lose: the winner is the one sending.
        !matches!(cmd, MessageCommand::StartAttempt { .. })
    }
}

/// Maps a store-level command error for aggregate `A` with id `id`.
pub fn map_command_error<A: AppAggregate>(e: CommandError<A::Error>, id: &str) -> AppError {
    match e {
        CommandError::Rejected(e) => A::app_error(e, id),
        CommandError::Conflict {
            aggregate_type,
            aggregate_id,
        } => AppError::Conflict {
            entity: aggregate_type,
            id: aggregate_id,
        },
        CommandError::IdempotencyKeyReused { key, .. } => AppError::IdempotencyKeyReused { key },
        CommandError::Store(e) => AppError::Store(e),
    }
}

struct Stores {
    log: EventLog,
    services: DomainServices,
    customers: AggregateStore<Customer>,
    jobs: AggregateStore<Job>,
    vehicles: AggregateStore<Vehicle>,
    staff_users: AggregateStore<StaffUser>,
    portal_accounts: AggregateStore<PortalAccount>,
    opportunities: AggregateStore<Opportunity>,
    promotions: AggregateStore<Promotion>,
    review_requests: AggregateStore<ReviewRequest>,
    reviews: AggregateStore<Review>,
    loyalty_accounts: AggregateStore<LoyaltyAccount>,
    referrals: AggregateStore<Referral>,
    conversations: AggregateStore<Conversation>,
    payments: AggregateStore<Payment>,
    scheduled_reports: AggregateStore<ScheduledReport>,
    messages: AggregateStore<OutboundMessage>,
}

/// The CRM's command side. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Crm {
    inner: Arc<Stores>,
}

impl fmt::Debug for Crm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crm")
            .field("engine", &self.inner.log.engine())
            .finish_non_exhaustive()
    }
}

impl Crm {
    /// One store per aggregate on `log`; snapshots for the long-lived ones.
    pub fn new(log: EventLog, services: DomainServices) -> Self {
        let s = |snap: bool| {
            (
                log.clone(),
                services.clone(),
                if snap { SNAPSHOT_EVERY } else { 0 },
            )
        };
        macro_rules! store {
            ($snap:expr) => {{
                let (l, sv, n) = s($snap);
                AggregateStore::new(l, sv).with_snapshots(n)
            }};
        }
        let inner = Stores {
            // No snapshots: a Customer's state holds personal data in clear,
            // which crypto-shredding must be able to make unreadable.
            customers: store!(false),
            jobs: store!(false),
            vehicles: store!(true),
            staff_users: store!(false),
            portal_accounts: store!(true),
            opportunities: store!(false),
            promotions: store!(true),
            review_requests: store!(false),
            reviews: store!(false),
            loyalty_accounts: store!(true),
            referrals: store!(false),
            conversations: store!(false),
            payments: store!(false),
            scheduled_reports: store!(false),
            messages: store!(false),
            log,
            services,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The same log with other services (e.g. a fixed clock for seeding).
    pub fn with_services(&self, services: DomainServices) -> Self {
        Self::new(self.inner.log.clone(), services)
    }

    /// The event log.
    pub fn log(&self) -> &EventLog {
        &self.inner.log
    }

    /// Clock, ids, time zone and loyalty rules.
    pub fn services(&self) -> &DomainServices {
        &self.inner.services
    }

    /// Customers.
    pub fn customers(&self) -> Commands<'_, Customer> {
        Commands {
            crm: self,
            store: &self.inner.customers,
        }
    }
    /// Jobs.
    pub fn jobs(&self) -> Commands<'_, Job> {
        Commands {
            crm: self,
            store: &self.inner.jobs,
        }
    }
    /// Vans.
    pub fn vehicles(&self) -> Commands<'_, Vehicle> {
        Commands {
            crm: self,
            store: &self.inner.vehicles,
        }
    }
    /// Staff users.
    pub fn staff_users(&self) -> Commands<'_, StaffUser> {
        Commands {
            crm: self,
            store: &self.inner.staff_users,
        }
    }
    /// Portal accounts (id: [`PortalAccountId::for_customer`]).
    pub fn portal_accounts(&self) -> Commands<'_, PortalAccount> {
        Commands {
            crm: self,
            store: &self.inner.portal_accounts,
        }
    }
    /// Opportunities.
    pub fn opportunities(&self) -> Commands<'_, Opportunity> {
        Commands {
            crm: self,
            store: &self.inner.opportunities,
        }
    }
    /// Promotions.
    pub fn promotions(&self) -> Commands<'_, Promotion> {
        Commands {
            crm: self,
            store: &self.inner.promotions,
        }
    }
    /// Review requests (id: [`ReviewRequestId::for_job`]).
    pub fn review_requests(&self) -> Commands<'_, ReviewRequest> {
        Commands {
            crm: self,
            store: &self.inner.review_requests,
        }
    }
    /// Reviews.
    pub fn reviews(&self) -> Commands<'_, Review> {
        Commands {
            crm: self,
            store: &self.inner.reviews,
        }
    }
    /// Loyalty accounts (id: [`LoyaltyAccountId::for_customer`]).
    pub fn loyalty_accounts(&self) -> Commands<'_, LoyaltyAccount> {
        Commands {
            crm: self,
            store: &self.inner.loyalty_accounts,
        }
    }
    /// Referrals (id: [`ReferralId::for_referee`]).
    pub fn referrals(&self) -> Commands<'_, Referral> {
        Commands {
            crm: self,
            store: &self.inner.referrals,
        }
    }
    /// Conversations.
    pub fn conversations(&self) -> Commands<'_, Conversation> {
        Commands {
            crm: self,
            store: &self.inner.conversations,
        }
    }
    /// Payments.
    pub fn payments(&self) -> Commands<'_, Payment> {
        Commands {
            crm: self,
            store: &self.inner.payments,
        }
    }
    /// Scheduled reports.
    pub fn scheduled_reports(&self) -> Commands<'_, ScheduledReport> {
        Commands {
            crm: self,
            store: &self.inner.scheduled_reports,
        }
    }
    /// Outbound messages (id: [`OutboundMessageId::for_cause`]).
    pub fn messages(&self) -> Commands<'_, OutboundMessage> {
        Commands {
            crm: self,
            store: &self.inner.messages,
        }
    }

    /// Checks that a referenced aggregate exists (and, for customers and
    /// staff, that it can still be acted on).
    ///
    /// # Errors
    /// [`AppError::NotFound`] naming the field; [`AppError::Rule`] for a
    /// merged or erased customer or a deactivated staff user.
    pub async fn check_reference(&self, reference: Reference) -> Result<(), AppError> {
        let missing = |entity: &'static str, id: String, field: &str| AppError::NotFound {
            entity,
            id,
            field: Some(camel_case(field)),
        };
        match reference {
            Reference::Customer(id, field) => {
                let c = self.inner.customers.load(&id.to_string()).await?.aggregate;
                if c.id().is_none() {
                    return Err(missing("customer", id.to_string(), field));
                }
                if let Some(target) = c.merged_into() {
                    return Err(AppError::Rule {
                        code: "CUSTOMER_MERGED",
                        message: format!("customer {id} was merged into {target}"),
                    });
                }
                if c.is_erased() {
                    return Err(AppError::Rule {
                        code: "CUSTOMER_ERASED",
                        message: format!("customer {id}'s personal data was erased"),
                    });
                }
            }
            Reference::StaffUser(id, field) => {
                let s = self
                    .inner
                    .staff_users
                    .load(&id.to_string())
                    .await?
                    .aggregate;
                if s.role().is_none() {
                    return Err(missing("staff user", id.to_string(), field));
                }
                if !s.is_active() {
                    return Err(AppError::Rule {
                        code: "STAFF_USER_DEACTIVATED",
                        message: format!("staff user {id} is deactivated"),
                    });
                }
            }
            Reference::Vehicle(id, field) => {
                if self.inner.vehicles.load(&id.to_string()).await?.sequence == 0 {
                    return Err(missing("vehicle", id.to_string(), field));
                }
            }
            Reference::Job(id, field) => {
                if self.inner.jobs.load(&id.to_string()).await?.sequence == 0 {
                    return Err(missing("job", id.to_string(), field));
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ referral codes

    /// Gives the customer a unique referral code (no-op when they have one).
    /// The code is claimed in `referral_code_claims` first; a code another
    /// customer holds makes us try the next derivation.
    ///
    /// # Errors
    /// [`AppError::NotFound`] for an unknown customer; the customer's refusals;
    /// [`AppError::Rule`] `REFERRAL_CODE_EXHAUSTED` after 16 collisions (never in practice).
    pub async fn issue_referral_code(
        &self,
        customer_id: CustomerId,
        actor: DomainActor,
        meta: &EventMetadata,
    ) -> Result<CommandOutcome, AppError> {
        let loaded = self.customers().load_existing(customer_id).await?;
        if loaded.aggregate.referral_code().is_some() {
            return Ok(CommandOutcome {
                aggregate_type: domain::customer::AGGREGATE_TYPE.into(),
                aggregate_id: customer_id.to_string(),
                events: vec![],
                replayed: false,
            });
        }
        for attempt in 0..16u32 {
            let code = ReferralCode::from_seed(customer_id.0, attempt);
            let owner = self.claim_referral_code(&code, customer_id).await?;
            if owner == customer_id {
                return self
                    .customers()
                    .execute(
                        customer_id,
                        actor,
                        CustomerCommand::IssueReferralCode { attempt },
                        meta,
                    )
                    .await;
            }
            tracing::info!(%customer_id, attempt, "referral code collision; trying the next one");
        }
        Err(AppError::Rule {
            code: "REFERRAL_CODE_EXHAUSTED",
            message: "no free referral code could be derived".into(),
        })
    }

    /// Claims `code` for `customer`; returns the code's owner (the customer
    /// when the claim succeeded or was theirs already).
    async fn claim_referral_code(
        &self,
        code: &ReferralCode,
        customer: CustomerId,
    ) -> Result<CustomerId, AppError> {
        let (code, customer) = (code.as_str(), customer.to_string());
        let owner: String = match self.log().read_model() {
            EventLog::Postgres(pg) => {
                sqlx::query("INSERT INTO referral_code_claims (code, customer_id) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING")
                    .bind(code)
                    .bind(&customer)
                    .execute(pg.pool())
                    .await
                    .map_err(sql_error)?;
                sqlx::query_scalar("SELECT customer_id FROM referral_code_claims WHERE code = $1")
                    .bind(code)
                    .fetch_one(pg.pool())
                    .await
                    .map_err(sql_error)?
            }
            EventLog::Sqlite(s) => {
                sqlx::query("INSERT INTO referral_code_claims (code, customer_id) VALUES (?, ?) ON CONFLICT (code) DO NOTHING")
                    .bind(code)
                    .bind(&customer)
                    .execute(s.writer())
                    .await
                    .map_err(sql_error)?;
                sqlx::query_scalar("SELECT customer_id FROM referral_code_claims WHERE code = ?")
                    .bind(code)
                    .fetch_one(s.writer())
                    .await
                    .map_err(sql_error)?
            }
            // EventStoreDB (whichever crate enabled it): read models are never there.
            #[allow(unreachable_patterns)]
            _ => return Err(AppError::Store(crate::store::esdb::read_model_is_not_esdb())),
        };
        CustomerId::parse(&owner).map_err(|e| AppError::Store(StoreError::Database(e.to_string())))
    }

    /// The customer a referral code belongs to, if any.
    ///
    /// # Errors
    /// [`AppError::Validation`] (`referralCode`) for a malformed code; [`AppError::Store`].
    pub async fn referral_code_owner(&self, code: &str) -> Result<Option<CustomerId>, AppError> {
        let code =
            ReferralCode::parse(code).map_err(|e| AppError::validation(e.field, e.message))?;
        let owner: Option<String> = match self.log().read_model() {
            EventLog::Postgres(pg) => {
                sqlx::query_scalar("SELECT customer_id FROM referral_code_claims WHERE code = $1")
                    .bind(code.as_str())
                    .fetch_optional(pg.pool())
                    .await
                    .map_err(sql_error)?
            }
            EventLog::Sqlite(s) => {
                sqlx::query_scalar("SELECT customer_id FROM referral_code_claims WHERE code = ?")
                    .bind(code.as_str())
                    .fetch_optional(s.reader())
                    .await
                    .map_err(sql_error)?
            }
            // EventStoreDB (whichever crate enabled it): read models are never there.
            #[allow(unreachable_patterns)]
            _ => return Err(AppError::Store(crate::store::esdb::read_model_is_not_esdb())),
        };
        let Some(owner) = owner else { return Ok(None) };
        let owner = CustomerId::parse(&owner)
            .map_err(|e| AppError::Store(StoreError::Database(e.to_string())))?;
        // A claim whose event never got appended (crash in between) is not a code yet.
        let customer = self
            .inner
            .customers
            .load(&owner.to_string())
            .await?
            .aggregate;
        Ok((customer.referral_code() == Some(&code)).then_some(owner))
    }

    /// Records that `referee` signed up with `code`.
    ///
    /// # Errors
    /// [`AppError::NotFound`] (`referralCode`) for a code nobody holds;
    /// [`AppError::Validation`] for a malformed code; the referral's refusals
    /// (`SELF_REFERRAL`, `ALREADY_REFERRED`).
    pub async fn record_referral(
        &self,
        referee: CustomerId,
        code: &str,
        actor: DomainActor,
        meta: &EventMetadata,
    ) -> Result<CommandOutcome, AppError> {
        let referrer = self
            .referral_code_owner(code)
            .await?
            .ok_or_else(|| AppError::NotFound {
                entity: "referral code",
                id: code.trim().to_string(),
                field: Some("referralCode".into()),
            })?;
        self.referrals()
            .execute(
                ReferralId::for_referee(referee),
                actor,
                ReferralCommand::Record {
                    referrer,
                    referee,
                    code: code.to_string(),
                },
                meta,
            )
            .await
    }
}

fn sql_error(e: sqlx::Error) -> AppError {
    AppError::Store(StoreError::Database(e.to_string()))
}

/// Typed dispatch to one aggregate type, with reference checks and error mapping.
pub struct Commands<'a, A: AppAggregate> {
    crm: &'a Crm,
    store: &'a AggregateStore<A>,
}

impl<A: AppAggregate> fmt::Debug for Commands<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commands")
            .field("aggregate", &A::TYPE)
            .finish()
    }
}

impl<A: AppAggregate> Commands<'_, A> {
    /// Runs `command` by `actor` on aggregate `id`: checks the aggregates it
    /// refers to, then loads, decides and appends; a retry-safe command is
    /// re-decided after a concurrency conflict.
    ///
    /// # Errors
    /// [`AppError`]; nothing is appended when an error is returned.
    pub async fn execute(
        &self,
        id: A::Id,
        actor: DomainActor,
        command: A::Cmd,
        meta: &EventMetadata,
    ) -> Result<CommandOutcome, AppError> {
        if let Some(required) = A::required_id(&command) {
            if required != id {
                return Err(AppError::Validation {
                    field: "id".into(),
                    message: format!("a {} for this command must have id {required}", A::ENTITY),
                });
            }
        }
        for r in A::references(&command) {
            self.crm.check_reference(r).await?;
        }
        let key = id.to_string();
        let retry = A::retry_safe(&command);
        let envelope = CommandEnvelope::new(actor, command);
        let result = if retry {
            self.store
                .execute_retrying(&key, envelope, meta, CONFLICT_ATTEMPTS)
                .await
        } else {
            self.store.execute(&key, envelope, meta).await
        };
        result.map_err(|e| map_command_error::<A>(e, &key))
    }

    /// The current state (the default state, sequence 0, when it does not exist).
    ///
    /// # Errors
    /// [`AppError::Store`].
    pub async fn load(&self, id: A::Id) -> Result<Loaded<A>, AppError> {
        Ok(self.store.load(&id.to_string()).await?)
    }

    /// The current state of an aggregate that must exist.
    ///
    /// # Errors
    /// [`AppError::NotFound`] when it has no events; [`AppError::Store`].
    pub async fn load_existing(&self, id: A::Id) -> Result<Loaded<A>, AppError> {
        let loaded = self.load(id).await?;
        if loaded.sequence == 0 {
            return Err(AppError::not_found(A::ENTITY, id));
        }
        Ok(loaded)
    }

    /// The underlying store (history, decoding).
    pub fn store(&self) -> &AggregateStore<A> {
        self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_field_names_become_api_field_names() {
        assert_eq!(camel_case("amount_cents"), "amountCents");
        assert_eq!(camel_case("customer_id"), "customerId");
        assert_eq!(camel_case("phone"), "phone");
        assert_eq!(camel_case("address.postal_code"), "address.postalCode");
    }

    #[test]
    fn domain_refusals_map_to_stable_codes() {
        let e = Job::app_error(JobError::UnknownJob, "j-1");
        assert_eq!((e.code(), e.field()), ("NOT_FOUND", None));
        let e = Job::app_error(
            JobError::Validation {
                field: "amount_cents",
                message: "must not be negative".into(),
            },
            "j-1",
        );
        assert_eq!((e.code(), e.field()), ("VALIDATION", Some("amountCents")));
        let e = LoyaltyAccount::app_error(
            LoyaltyError::InsufficientPoints {
                balance: 1,
                requested: 2,
            },
            "l",
        );
        assert_eq!(
            (e.code(), e.rule()),
            ("RULE_VIOLATION", Some("INSUFFICIENT_POINTS"))
        );
        let e = StaffUser::app_error(StaffUserError::AdminRequired, "s");
        assert_eq!(e.code(), "FORBIDDEN");
        let e = map_command_error::<Job>(
            CommandError::Conflict {
                aggregate_type: "Job".into(),
                aggregate_id: "j".into(),
            },
            "j",
        );
        assert_eq!(e.code(), "CONFLICT");
    }
}
