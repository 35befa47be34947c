//! What can be asked of an outbound message, and why it may be refused.

use chrono::{DateTime, Duration, Utc};

use super::{DeliveryStatus, MessageKind, Provider, Recipient};
use crate::consent::{Channel, MarketingEligibility};
use crate::error::validation_error;

/// What can be asked of an outbound message.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageCommand {
    /// Queue a message (the aggregate id must be [`OutboundMessageId::for_cause`] of `cause`).
    Queue {
        /// Why it is sent.
        kind: MessageKind,
        /// SMS or email.
        channel: Channel,
        /// To whom.
        recipient: Recipient,
        /// The event that caused it (`Type:id:sequence[:part]`).
        cause: String,
        /// Email subject.
        subject: Option<String>,
        /// The text.
        body: String,
    },
    /// Claim the next send attempt (or resume one a dead worker left), or end the message when
    /// it may not or cannot be sent.
    StartAttempt {
        /// The vendor configured for the channel; `None` when there is none.
        provider: Option<Provider>,
        /// The recipient's eligibility now (transactional messages: whether there is an address).
        eligibility: MarketingEligibility,
        /// A claim older than this is taken to be a dead worker's (longer than a request lasts).
        claim_lease: Duration,
        /// How long the vendor remembers idempotency keys.
        idempotency_window: Duration,
        /// When now is inside the business's quiet hours, their end
        /// ([`crate::quiet_hours::QuietHours::until`]): a marketing message waits until then.
        quiet_until: Option<DateTime<Utc>>,
    },
    /// The claimed attempt failed in a way a retry may fix (timeout before sending, 5xx, 429).
    RecordAttemptFailed {
        /// The vendor's error.
        error: String,
        /// When to try again (the worker's back-off, at least the vendor's `Retry-After`).
        retry_at: DateTime<Utc>,
        /// Attempts allowed in all.
        max_attempts: u32,
    },
    /// The claimed attempt may or may not have reached the vendor (a timeout after sending to a
    /// vendor that cannot deduplicate).
    RecordOutcomeUnknown,
    /// The vendor accepted the message.
    RecordSent {
        /// The vendor's id (`SM…`, Resend's email id).
        provider_message_id: String,
    },
    /// The vendor refused the message for good.
    RecordRejected {
        /// HTTP status.
        status: u16,
        /// The vendor's error.
        error: String,
    },
    /// A vendor delivery report.
    RecordDeliveryStatus {
        /// The reported status.
        status: DeliveryStatus,
        /// The vendor's id of the report (`MessageSid:status`, `svix-id`).
        provider_event_id: String,
    },
}

/// Why a message command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Already queued.
    #[error("the message was already queued")]
    AlreadyQueued,
    /// Never queued.
    #[error("unknown message")]
    UnknownMessage,
    /// Sent or not sent already.
    #[error("the message was already sent or given up")]
    AlreadyFinished,
    /// Another worker holds a live claim.
    #[error("a send attempt is in progress")]
    AttemptInProgress,
    /// The next attempt is not due yet.
    #[error("the next attempt is due at {0}")]
    NotYetDue(DateTime<Utc>),
    /// An outcome for an attempt nobody claimed.
    #[error("no send attempt is in progress")]
    NoAttemptInProgress,
    /// A delivery report for a message that was not sent.
    #[error("the message was not sent")]
    NotSent,
}
validation_error!(MessageError);
