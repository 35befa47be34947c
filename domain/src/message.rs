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

use crate::catalogue::domain_events;
use crate::consent::{Channel, MarketingEligibility};
use crate::error::{validation_error, ValidationError};
use crate::ids::{CustomerId, OutboundMessageId};
use crate::ports::{cqrs_aggregate, CommandContext};
use crate::values::{Email, PhoneNumber};

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

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`OutboundMessage`] aggregate.
    pub enum MessageEvent {
        /// A message was queued for sending.
        MessageQueued {
            /// The message (derived from the cause).
            message_id: OutboundMessageId,
            /// Why it is sent.
            kind: MessageKind,
            /// SMS or email.
            channel: Channel,
            /// To whom.
            recipient: Recipient,
            /// The event that caused it.
            cause: String,
            /// Email subject.
            subject: Option<String>,
            /// The text.
            body: String,
            /// When.
            at: DateTime<Utc>,
        },
        /// A marketing message due in the business's quiet hours waits until they end.
        MessageHeld {
            /// When it may be sent.
            until: DateTime<Utc>,
            /// When.
            at: DateTime<Utc>,
        },
        /// A worker claimed a send attempt and is about to call the vendor.
        MessageSendStarted {
            /// 1 for the first attempt; a resumed claim keeps its number.
            attempt: u32,
            /// The vendor.
            provider: Provider,
            /// The `Idempotency-Key` sent (the same for every attempt).
            idempotency_key: String,
            /// True when resuming a dead worker's claim with the same key.
            resumed: bool,
            /// When.
            at: DateTime<Utc>,
        },
        /// An attempt failed transiently.
        MessageSendAttemptFailed {
            /// The attempt.
            attempt: u32,
            /// The vendor's error.
            error: String,
            /// When the next attempt is due; `None` when none is left.
            retry_at: Option<DateTime<Utc>>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The vendor accepted the message.
        MessageSent {
            /// The attempt that succeeded.
            attempt: u32,
            /// The vendor.
            provider: Provider,
            /// The vendor's message id.
            provider_message_id: String,
            /// When.
            at: DateTime<Utc>,
        },
        /// The message was not sent, for good.
        MessageNotSent {
            /// Why.
            reason: NotSentReason,
            /// When.
            at: DateTime<Utc>,
        },
        /// A vendor reported delivery progress that moves the message on.
        MessageDeliveryStatusChanged {
            /// The previous status.
            from: DeliveryStatus,
            /// The new status.
            to: DeliveryStatus,
            /// The vendor's id of the report.
            provider_event_id: String,
            /// When.
            at: DateTime<Utc>,
        },
    }
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

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
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

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`MessageError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: MessageCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<MessageEvent>, MessageError> {
        use MessageError as E;
        let at = ctx.now;
        if !matches!(cmd, MessageCommand::Queue { .. }) && self.id.is_none() {
            return Err(E::UnknownMessage);
        }
        let finished = matches!(self.status, MessageStatus::Sent | MessageStatus::NotSent);
        match cmd {
            MessageCommand::Queue {
                kind,
                channel,
                recipient,
                cause,
                subject,
                body,
            } => {
                if self.id.is_some() {
                    return Err(E::AlreadyQueued);
                }
                let cause = cause.trim().to_string();
                if cause.is_empty() {
                    return Err(ValidationError::new("cause", "must not be empty").into());
                }
                if body.trim().is_empty() {
                    return Err(ValidationError::new("body", "must not be empty").into());
                }
                if body.chars().count() > MAX_BODY_LEN {
                    return Err(ValidationError::new(
                        "body",
                        format!("at most {MAX_BODY_LEN} characters"),
                    )
                    .into());
                }
                let fits = matches!(
                    (&recipient, channel),
                    (Recipient::Customer { .. }, _)
                        | (
                            Recipient::Email { .. } | Recipient::Withheld,
                            Channel::Email
                        )
                        | (Recipient::Phone { .. }, Channel::Sms)
                );
                if !fits {
                    return Err(ValidationError::new(
                        "recipient",
                        "the address does not match the channel",
                    )
                    .into());
                }
                Ok(vec![MessageEvent::MessageQueued {
                    message_id: OutboundMessageId::for_cause(&cause),
                    kind,
                    channel,
                    recipient,
                    cause,
                    subject: subject.filter(|s| !s.trim().is_empty()),
                    body,
                    at,
                }])
            }
            MessageCommand::StartAttempt {
                provider,
                eligibility,
                claim_lease,
                idempotency_window,
                quiet_until,
            } => {
                if finished {
                    return Err(E::AlreadyFinished);
                }
                if let Some(claim) = self.claim {
                    if at - claim.at < claim_lease {
                        return Err(E::AttemptInProgress);
                    }
                    // The claimant died (or hung past its lease) between claiming and
                    // recording: the vendor may have the message already.
                    let within_window = self
                        .first_claim_at
                        .is_some_and(|first| at - first < idempotency_window);
                    if claim.provider.dedupes_by_idempotency_key() && within_window {
                        return Ok(vec![self.started(claim.attempt, claim.provider, true, at)]);
                    }
                    return Ok(vec![MessageEvent::MessageNotSent {
                        reason: NotSentReason::OutcomeUnknown {
                            attempt: claim.attempt,
                        },
                        at,
                    }]);
                }
                if let Some(due) = self.retry_at.filter(|due| *due > at) {
                    return Err(E::NotYetDue(due));
                }
                if !eligibility.is_eligible() {
                    return Ok(vec![MessageEvent::MessageNotSent {
                        reason: NotSentReason::NotEligible { eligibility },
                        at,
                    }]);
                }
                let Some(provider) = provider else {
                    return Ok(vec![MessageEvent::MessageNotSent {
                        reason: NotSentReason::NoProviderConfigured,
                        at,
                    }]);
                };
                let marketing = self.kind.is_some_and(|k| k.is_marketing());
                if let Some(until) = quiet_until.filter(|u| marketing && *u > at) {
                    return Ok(vec![MessageEvent::MessageHeld { until, at }]);
                }
                Ok(vec![self.started(self.attempts + 1, provider, false, at)])
            }
            MessageCommand::RecordAttemptFailed {
                error,
                retry_at,
                max_attempts,
            } => {
                let claim = self.live_claim(finished)?;
                let error = clip(&error, MAX_ERROR_LEN);
                let exhausted = claim.attempt >= max_attempts;
                let mut events = vec![MessageEvent::MessageSendAttemptFailed {
                    attempt: claim.attempt,
                    error: error.clone(),
                    retry_at: (!exhausted).then_some(retry_at),
                    at,
                }];
                if exhausted {
                    events.push(MessageEvent::MessageNotSent {
                        reason: NotSentReason::RetriesExhausted {
                            attempts: claim.attempt,
                            last_error: error,
                        },
                        at,
                    });
                }
                Ok(events)
            }
            MessageCommand::RecordOutcomeUnknown => {
                let claim = self.live_claim(finished)?;
                Ok(vec![MessageEvent::MessageNotSent {
                    reason: NotSentReason::OutcomeUnknown {
                        attempt: claim.attempt,
                    },
                    at,
                }])
            }
            MessageCommand::RecordSent {
                provider_message_id,
            } => {
                if self.status == MessageStatus::Sent
                    && self.provider_message_id.as_deref() == Some(provider_message_id.as_str())
                {
                    return Ok(vec![]);
                }
                let claim = self.live_claim(finished)?;
                if provider_message_id.trim().is_empty() {
                    return Err(
                        ValidationError::new("provider_message_id", "must not be empty").into(),
                    );
                }
                Ok(vec![MessageEvent::MessageSent {
                    attempt: claim.attempt,
                    provider: claim.provider,
                    provider_message_id,
                    at,
                }])
            }
            MessageCommand::RecordRejected { status, error } => {
                self.live_claim(finished)?;
                Ok(vec![MessageEvent::MessageNotSent {
                    reason: NotSentReason::Rejected {
                        status,
                        error: clip(&error, MAX_ERROR_LEN),
                    },
                    at,
                }])
            }
            MessageCommand::RecordDeliveryStatus {
                status,
                provider_event_id,
            } => {
                if self.status != MessageStatus::Sent {
                    return Err(E::NotSent);
                }
                let from = self.delivery.unwrap_or(DeliveryStatus::Accepted);
                if status.rank() <= from.rank() {
                    return Ok(vec![]);
                }
                Ok(vec![MessageEvent::MessageDeliveryStatusChanged {
                    from,
                    to: status,
                    provider_event_id,
                    at,
                }])
            }
        }
    }

    fn started(
        &self,
        attempt: u32,
        provider: Provider,
        resumed: bool,
        at: DateTime<Utc>,
    ) -> MessageEvent {
        MessageEvent::MessageSendStarted {
            attempt,
            provider,
            idempotency_key: self.id.map(idempotency_key).unwrap_or_default(),
            resumed,
            at,
        }
    }

    fn live_claim(&self, finished: bool) -> Result<Claim, MessageError> {
        if finished {
            return Err(MessageError::AlreadyFinished);
        }
        self.claim.ok_or(MessageError::NoAttemptInProgress)
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
mod tests {
    use super::*;
    use crate::testing::{self, test_now};
    use uuid::Uuid;

    const CAUSE: &str = "Opportunity:1:7";

    fn id() -> OutboundMessageId {
        OutboundMessageId::for_cause(CAUSE)
    }
    fn queue() -> MessageCommand {
        MessageCommand::Queue {
            kind: MessageKind::Offer,
            channel: Channel::Sms,
            recipient: Recipient::Customer {
                customer_id: CustomerId(Uuid::from_u128(1)),
            },
            cause: CAUSE.into(),
            subject: None,
            body: "15% off".into(),
        }
    }
    fn queued() -> MessageEvent {
        MessageEvent::MessageQueued {
            message_id: id(),
            kind: MessageKind::Offer,
            channel: Channel::Sms,
            recipient: Recipient::Customer {
                customer_id: CustomerId(Uuid::from_u128(1)),
            },
            cause: CAUSE.into(),
            subject: None,
            body: "15% off".into(),
            at: test_now(),
        }
    }
    fn start(provider: Option<Provider>, eligibility: MarketingEligibility) -> MessageCommand {
        MessageCommand::StartAttempt {
            provider,
            eligibility,
            claim_lease: Duration::minutes(2),
            idempotency_window: Duration::hours(23),
            quiet_until: None,
        }
    }

    #[test]
    fn it_should_hold_a_marketing_message_in_quiet_hours_and_send_it_after() {
        let morning = test_now() + Duration::hours(9);
        let quiet = MessageCommand::StartAttempt {
            provider: Some(Provider::Twilio),
            eligibility: MarketingEligibility::Eligible,
            claim_lease: Duration::minutes(2),
            idempotency_window: Duration::hours(23),
            quiet_until: Some(morning),
        };
        let events = when(vec![queued()], quiet).expect("held");
        assert_eq!(
            events,
            vec![MessageEvent::MessageHeld {
                until: morning,
                at: test_now()
            }]
        );
        // Not before the morning, whoever asks.
        let held = vec![queued(), events[0].clone()];
        let early = when(
            held.clone(),
            start(Some(Provider::Twilio), MarketingEligibility::Eligible),
        );
        assert!(early.is_err(), "{early:?}");
    }

    #[test]
    fn it_should_not_hold_a_transactional_message_in_quiet_hours() {
        let reset = MessageEvent::MessageQueued {
            message_id: id(),
            kind: MessageKind::PasswordReset,
            channel: Channel::Email,
            recipient: Recipient::Email {
                address: crate::values::Email::parse("kim@dirtfree.example").expect("email"),
            },
            cause: CAUSE.into(),
            subject: None,
            body: "reset".into(),
            at: test_now(),
        };
        let quiet = MessageCommand::StartAttempt {
            provider: Some(Provider::Resend),
            eligibility: MarketingEligibility::Eligible,
            claim_lease: Duration::minutes(2),
            idempotency_window: Duration::hours(23),
            quiet_until: Some(test_now() + Duration::hours(9)),
        };
        let events = when(vec![reset], quiet).expect("started");
        assert!(
            matches!(events[..], [MessageEvent::MessageSendStarted { .. }]),
            "{events:?}"
        );
    }

    fn started(attempt: u32, provider: Provider, at: DateTime<Utc>) -> MessageEvent {
        MessageEvent::MessageSendStarted {
            attempt,
            provider,
            idempotency_key: idempotency_key(id()),
            resumed: false,
            at,
        }
    }
    fn when(
        given: Vec<MessageEvent>,
        cmd: MessageCommand,
    ) -> Result<Vec<MessageEvent>, MessageError> {
        testing::run::<OutboundMessage, _>(
            testing::test_services(),
            given,
            crate::Actor::System,
            cmd,
        )
    }

    #[test]
    fn it_should_queue_a_message_once_per_cause() {
        assert_eq!(when(vec![], queue()), Ok(vec![queued()]));
        assert_eq!(
            when(vec![queued()], queue()),
            Err(MessageError::AlreadyQueued)
        );
    }

    #[test]
    fn it_should_claim_the_first_attempt_with_the_message_idempotency_key() {
        assert_eq!(
            when(
                vec![queued()],
                start(Some(Provider::Twilio), MarketingEligibility::Eligible)
            ),
            Ok(vec![started(1, Provider::Twilio, test_now())])
        );
    }

    #[test]
    fn it_should_not_send_when_no_provider_is_configured() {
        assert_eq!(
            when(vec![queued()], start(None, MarketingEligibility::Eligible)),
            Ok(vec![MessageEvent::MessageNotSent {
                reason: NotSentReason::NoProviderConfigured,
                at: test_now()
            }])
        );
    }

    #[test]
    fn it_should_not_send_to_a_customer_who_opted_out_since_it_was_queued() {
        assert_eq!(
            when(
                vec![queued()],
                start(Some(Provider::Twilio), MarketingEligibility::OptedOut)
            ),
            Ok(vec![MessageEvent::MessageNotSent {
                reason: NotSentReason::NotEligible {
                    eligibility: MarketingEligibility::OptedOut
                },
                at: test_now()
            }])
        );
    }

    #[test]
    fn it_should_refuse_a_second_claim_while_the_first_is_live() {
        let given = vec![
            queued(),
            started(1, Provider::Resend, test_now() - Duration::seconds(10)),
        ];
        assert_eq!(
            when(
                given,
                start(Some(Provider::Resend), MarketingEligibility::Eligible)
            ),
            Err(MessageError::AttemptInProgress)
        );
    }

    #[test]
    fn it_should_resume_a_dead_workers_claim_with_the_same_key_when_the_vendor_dedupes() {
        let given = vec![
            queued(),
            started(1, Provider::Resend, test_now() - Duration::minutes(5)),
        ];
        assert_eq!(
            when(
                given,
                start(Some(Provider::Resend), MarketingEligibility::Eligible)
            ),
            Ok(vec![MessageEvent::MessageSendStarted {
                attempt: 1,
                provider: Provider::Resend,
                idempotency_key: idempotency_key(id()),
                resumed: true,
                at: test_now()
            }])
        );
    }

    #[test]
    fn it_should_not_resend_a_dead_workers_twilio_claim() {
        let given = vec![
            queued(),
            started(1, Provider::Twilio, test_now() - Duration::minutes(5)),
        ];
        assert_eq!(
            when(
                given,
                start(Some(Provider::Twilio), MarketingEligibility::Eligible)
            ),
            Ok(vec![MessageEvent::MessageNotSent {
                reason: NotSentReason::OutcomeUnknown { attempt: 1 },
                at: test_now()
            }])
        );
    }

    #[test]
    fn it_should_not_resume_a_claim_past_the_vendors_idempotency_window() {
        let given = vec![
            queued(),
            started(1, Provider::Resend, test_now() - Duration::hours(30)),
        ];
        assert_eq!(
            when(
                given,
                start(Some(Provider::Resend), MarketingEligibility::Eligible)
            ),
            Ok(vec![MessageEvent::MessageNotSent {
                reason: NotSentReason::OutcomeUnknown { attempt: 1 },
                at: test_now()
            }])
        );
    }

    #[test]
    fn it_should_schedule_a_retry_and_give_up_after_the_last_attempt() {
        let retry_at = test_now() + Duration::seconds(4);
        let fail = MessageCommand::RecordAttemptFailed {
            error: "500".into(),
            retry_at,
            max_attempts: 2,
        };
        assert_eq!(
            when(
                vec![queued(), started(1, Provider::Twilio, test_now())],
                fail.clone()
            ),
            Ok(vec![MessageEvent::MessageSendAttemptFailed {
                attempt: 1,
                error: "500".into(),
                retry_at: Some(retry_at),
                at: test_now()
            }])
        );
        let second = vec![
            queued(),
            started(1, Provider::Twilio, test_now()),
            MessageEvent::MessageSendAttemptFailed {
                attempt: 1,
                error: "500".into(),
                retry_at: Some(test_now()),
                at: test_now(),
            },
            started(2, Provider::Twilio, test_now()),
        ];
        assert_eq!(
            when(second, fail),
            Ok(vec![
                MessageEvent::MessageSendAttemptFailed {
                    attempt: 2,
                    error: "500".into(),
                    retry_at: None,
                    at: test_now()
                },
                MessageEvent::MessageNotSent {
                    reason: NotSentReason::RetriesExhausted {
                        attempts: 2,
                        last_error: "500".into()
                    },
                    at: test_now()
                }
            ])
        );
    }

    #[test]
    fn it_should_not_start_an_attempt_before_the_retry_is_due() {
        let due = test_now() + Duration::seconds(30);
        let given = vec![
            queued(),
            started(1, Provider::Twilio, test_now()),
            MessageEvent::MessageSendAttemptFailed {
                attempt: 1,
                error: "429".into(),
                retry_at: Some(due),
                at: test_now(),
            },
        ];
        assert_eq!(
            when(
                given,
                start(Some(Provider::Twilio), MarketingEligibility::Eligible)
            ),
            Err(MessageError::NotYetDue(due))
        );
    }

    #[test]
    fn it_should_record_the_send_once() {
        let sent = MessageEvent::MessageSent {
            attempt: 1,
            provider: Provider::Twilio,
            provider_message_id: "SM1".into(),
            at: test_now(),
        };
        let record = MessageCommand::RecordSent {
            provider_message_id: "SM1".into(),
        };
        let given = vec![queued(), started(1, Provider::Twilio, test_now())];
        assert_eq!(when(given.clone(), record.clone()), Ok(vec![sent.clone()]));
        let mut after = given;
        after.push(sent);
        assert_eq!(when(after.clone(), record), Ok(vec![]));
        assert_eq!(
            when(
                after,
                start(Some(Provider::Twilio), MarketingEligibility::Eligible)
            ),
            Err(MessageError::AlreadyFinished)
        );
    }

    #[test]
    fn it_should_never_let_a_late_sent_report_overwrite_delivered() {
        let given = vec![
            queued(),
            started(1, Provider::Twilio, test_now()),
            MessageEvent::MessageSent {
                attempt: 1,
                provider: Provider::Twilio,
                provider_message_id: "SM1".into(),
                at: test_now(),
            },
            MessageEvent::MessageDeliveryStatusChanged {
                from: DeliveryStatus::Accepted,
                to: DeliveryStatus::Delivered,
                provider_event_id: "SM1:delivered".into(),
                at: test_now(),
            },
        ];
        let late = MessageCommand::RecordDeliveryStatus {
            status: DeliveryStatus::Sent,
            provider_event_id: "SM1:sent".into(),
        };
        assert_eq!(when(given, late), Ok(vec![]));
    }

    #[test]
    fn it_should_back_off_exponentially_up_to_the_cap() {
        let (base, cap) = (Duration::seconds(2), Duration::seconds(60));
        let delays: Vec<i64> = (1..=7)
            .map(|a| backoff(a, base, cap).num_seconds())
            .collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 60, 60]);
    }
}
