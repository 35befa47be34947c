//! OutboundMessage: one SMS or email the business sends, from the event that caused it to the
//! vendor's delivery report. The outbox worker (commands/worker/src/outbox) drives it; every step is an
//! event, so "what did we send, to whom, why, and what happened" is in the log.
//!
//! The aggregate id is derived from the cause ([`OutboundMessageId::for_cause`]): a policy that
//! re-handles its trigger addresses the same stream and is refused, so a message is queued once.
//!
//! At most one successful send per message rests on the *claim*: before calling a vendor the
//! worker records [`MessageEvent::MessageSendStarted`] (optimistic concurrency makes one worker
//! win). A claim without an outcome after a crash is resumed only with a vendor that
//! deduplicates by `Idempotency-Key` (the key is the same for every attempt of a message);
//! with any other vendor (Twilio) it ends as [`NotSentReason::OutcomeUnknown`], never re-sent.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::consent::{Channel, MarketingEligibility};
use crate::ids::{CustomerId, OutboundMessageId};
use crate::ports::cqrs_aggregate;
use crate::values::{Email, PhoneNumber};

mod commands;
mod decisions;
mod events;

pub use commands::{MessageCommand, MessageError};
pub use events::MessageEvent;

/// `Aggregate::TYPE` of [`OutboundMessage`].
pub const AGGREGATE_TYPE: &str = "OutboundMessage";

/// Longest body kept (an SMS is at most 10 segments; emails here are short notices).
pub const MAX_BODY_LEN: usize = 10_000;
/// Longest vendor error text kept in an event.
pub const MAX_ERROR_LEN: usize = 1_000;

/// Why a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// An opportunity's auto-offer.
    Offer,
    /// A promotion delivered to a customer.
    Promotion,
    /// A review request after a completed job.
    ReviewRequest,
    /// A review-request reminder.
    ReviewReminder,
    /// A staff password-reset link.
    PasswordReset,
    /// A generated scheduled report, to a staff recipient.
    ScheduledReport,
    /// An admin's test send.
    Test,
    /// A one-time code proving a phone or email is the customer's.
    ContactConfirmation,
    /// An operational alert (or its recovery) to `ALERT_EMAIL`.
    Alert,
}

impl MessageKind {
    /// Marketing needs the customer's consent on the channel (and no opt-out or suppression)
    /// at send time; transactional messages only need an address.
    pub fn is_marketing(self) -> bool {
        matches!(
            self,
            MessageKind::Offer
                | MessageKind::Promotion
                | MessageKind::ReviewRequest
                | MessageKind::ReviewReminder
        )
    }
}

/// Who receives the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recipient {
    /// A customer: address and consent are read from the Customer at send time.
    Customer {
        /// The customer.
        customer_id: CustomerId,
    },
    /// An email address (staff recipients of reports and resets).
    Email {
        /// The address.
        address: Email,
    },
    /// A phone number (an admin's test send).
    Phone {
        /// E.164.
        number: PhoneNumber,
    },
    /// An email address nobody has proven theirs yet (a sign-up or email-change code): the
    /// address is kept out of the log, beside the message's code, until it is sent.
    Withheld,
}

/// The vendor that sent (or was asked to send) a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Twilio Messages API (SMS). Has no idempotency key.
    Twilio,
    /// Resend Emails API. Honours `Idempotency-Key` for 24 hours.
    Resend,
}

impl Provider {
    /// Whether a request repeated with the same `Idempotency-Key` is answered with the first
    /// result instead of being carried out again.
    pub fn dedupes_by_idempotency_key(self) -> bool {
        matches!(self, Provider::Resend)
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Twilio => "twilio",
            Provider::Resend => "resend",
        }
    }
}

/// Why a message was not sent (final).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotSentReason {
    /// No vendor is configured for the channel (no keys: the offline default).
    NoProviderConfigured,
    /// The recipient may not be messaged now (no consent, opted out, suppressed, no address).
    NotEligible {
        /// The verdict at send time.
        eligibility: MarketingEligibility,
    },
    /// The vendor refused the message for good (a 4xx other than 409/429).
    Rejected {
        /// HTTP status.
        status: u16,
        /// The vendor's error.
        error: String,
    },
    /// Every attempt failed transiently.
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last_error: String,
    },
    /// A worker died (or the request timed out) after claiming a send with a vendor that cannot
    /// deduplicate, or after the vendor's idempotency window: it may have gone out, so it is
    /// not sent again. An operator can check the vendor's log.
    OutcomeUnknown {
        /// The attempt whose outcome is unknown.
        attempt: u32,
    },
}

/// Delivery progress as vendors report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Accepted by the vendor (the state [`MessageEvent::MessageSent`] leaves).
    Accepted,
    /// Queued at the vendor.
    Queued,
    /// Being handed to the carrier.
    Sending,
    /// Handed to the carrier.
    Sent,
    /// Delivered.
    Delivered,
    /// The carrier could not deliver it.
    Undelivered,
    /// The vendor could not send it.
    Failed,
    /// Bounced (email).
    Bounced,
    /// The recipient marked it as spam.
    Complained,
    /// Opened (email).
    Opened,
    /// Read (SMS channels that report it).
    Read,
}

impl DeliveryStatus {
    /// Progress order: accepted < queued < sending < sent < delivered / undelivered / failed /
    /// bounced < complained / opened / read. Reports arrive out of order; only a higher rank
    /// moves a message on, so a late `sent` never overwrites `delivered`.
    pub fn rank(self) -> u8 {
        match self {
            DeliveryStatus::Accepted => 0,
            DeliveryStatus::Queued => 1,
            DeliveryStatus::Sending => 2,
            DeliveryStatus::Sent => 3,
            DeliveryStatus::Delivered
            | DeliveryStatus::Undelivered
            | DeliveryStatus::Failed
            | DeliveryStatus::Bounced => 4,
            DeliveryStatus::Complained | DeliveryStatus::Opened | DeliveryStatus::Read => 5,
        }
    }
}

/// The exponential back-off before attempt `attempt + 1` after attempt `attempt` failed:
/// `base · 2^(attempt-1)`, at most `cap`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let factor = 1i32 << attempt.saturating_sub(1).min(20);
    (base * factor).min(cap)
}

/// The `Idempotency-Key` of every attempt of a message.
pub fn idempotency_key(id: OutboundMessageId) -> String {
    format!("dirtfree-msg-{id}")
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Not queued.
    #[default]
    None,
    /// Waiting for an attempt.
    Pending,
    /// A worker claimed an attempt.
    Sending,
    /// The vendor accepted it.
    Sent,
    /// Given up.
    NotSent,
}

/// A claimed attempt with no outcome yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The attempt.
    pub attempt: u32,
    /// The vendor.
    pub provider: Provider,
    /// When it was claimed (or resumed).
    pub at: DateTime<Utc>,
}

/// The message's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    id: Option<OutboundMessageId>,
    kind: Option<MessageKind>,
    channel: Option<Channel>,
    recipient: Option<Recipient>,
    cause: String,
    subject: Option<String>,
    body: String,
    status: MessageStatus,
    attempts: u32,
    claim: Option<Claim>,
    first_claim_at: Option<DateTime<Utc>>,
    retry_at: Option<DateTime<Utc>>,
    provider_message_id: Option<String>,
    delivery: Option<DeliveryStatus>,
    not_sent: Option<NotSentReason>,
}

impl OutboundMessage {
    /// The id, once queued.
    pub fn id(&self) -> Option<OutboundMessageId> {
        self.id
    }
    /// Why it is sent.
    pub fn kind(&self) -> Option<MessageKind> {
        self.kind
    }
    /// SMS or email.
    pub fn channel(&self) -> Option<Channel> {
        self.channel
    }
    /// To whom.
    pub fn recipient(&self) -> Option<&Recipient> {
        self.recipient.as_ref()
    }
    /// The event that caused it (`Type:id:sequence[:part]`).
    pub fn cause(&self) -> &str {
        &self.cause
    }
    /// Email subject.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    /// The text.
    pub fn body(&self) -> &str {
        &self.body
    }
    /// Where it stands.
    pub fn status(&self) -> MessageStatus {
        self.status
    }
    /// Attempts claimed so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// The claim in progress, if any.
    pub fn claim(&self) -> Option<Claim> {
        self.claim
    }
    /// When the next attempt is due (pending messages).
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        self.retry_at
    }
    /// The vendor's id once sent.
    pub fn provider_message_id(&self) -> Option<&str> {
        self.provider_message_id.as_deref()
    }
    /// The latest delivery status once sent.
    pub fn delivery_status(&self) -> Option<DeliveryStatus> {
        self.delivery
    }
    /// Why it was not sent.
    pub fn not_sent_reason(&self) -> Option<&NotSentReason> {
        self.not_sent.as_ref()
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: MessageEvent) {
        match event {
            MessageEvent::MessageQueued {
                message_id,
                kind,
                channel,
                recipient,
                cause,
                subject,
                body,
                ..
            } => {
                self.id = Some(message_id);
                self.cause = cause;
                self.kind = Some(kind);
                self.channel = Some(channel);
                self.recipient = Some(recipient);
                self.subject = subject;
                self.body = body;
                self.status = MessageStatus::Pending;
            }
            MessageEvent::MessageSendStarted {
                attempt,
                provider,
                at,
                ..
            } => {
                self.attempts = self.attempts.max(attempt);
                self.claim = Some(Claim {
                    attempt,
                    provider,
                    at,
                });
                self.first_claim_at.get_or_insert(at);
                self.retry_at = None;
                self.status = MessageStatus::Sending;
            }
            MessageEvent::MessageSendAttemptFailed { retry_at, .. } => {
                self.claim = None;
                self.retry_at = retry_at;
                self.status = MessageStatus::Pending;
            }
            MessageEvent::MessageHeld { until, .. } => {
                self.retry_at = Some(until);
            }
            MessageEvent::MessageSent {
                provider_message_id,
                ..
            } => {
                self.claim = None;
                self.provider_message_id = Some(provider_message_id);
                self.delivery = Some(DeliveryStatus::Accepted);
                self.status = MessageStatus::Sent;
            }
            MessageEvent::MessageNotSent { reason, .. } => {
                self.claim = None;
                self.retry_at = None;
                self.not_sent = Some(reason);
                self.status = MessageStatus::NotSent;
            }
            MessageEvent::MessageDeliveryStatusChanged { to, .. } => {
                self.delivery = Some(to);
            }
        }
    }
}

cqrs_aggregate!(
    OutboundMessage,
    AGGREGATE_TYPE,
    MessageCommand,
    MessageEvent,
    MessageError
);

#[cfg(test)]
mod tests;
