//! What the application layer needs of each aggregate (`AppAggregate`): its store's name, how its errors map to [`AppError`], the references it checks; one impl per aggregate.

// The parts share their parent's imports.
use super::*;

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
