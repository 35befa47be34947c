//! The message's decisions: [`OutboundMessage::decide`] hands each command to the function named
//! for the step, which checks its rules and returns the events. Pure: no clock, no I/O.

use chrono::{DateTime, Duration, Utc};

use super::{
    idempotency_key, Claim, DeliveryStatus, MessageCommand, MessageError, MessageEvent,
    MessageKind, MessageStatus, NotSentReason, OutboundMessage, Provider, Recipient, MAX_BODY_LEN,
    MAX_ERROR_LEN,
};
use crate::consent::{Channel, MarketingEligibility};
use crate::error::ValidationError;
use crate::ids::OutboundMessageId;
use crate::ports::CommandContext;

/// What a decision returns: the events to record, or why nothing is.
type Decision = Result<Vec<MessageEvent>, MessageError>;

/// The fields of `Queue`.
struct NewMessage {
    kind: MessageKind,
    channel: Channel,
    recipient: Recipient,
    cause: String,
    subject: Option<String>,
    body: String,
}

impl OutboundMessage {
    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`MessageError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: MessageCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<MessageEvent>, MessageError> {
        if !matches!(cmd, MessageCommand::Queue { .. }) && self.id.is_none() {
            return Err(MessageError::UnknownMessage);
        }
        let at = ctx.now;
        match cmd {
            MessageCommand::Queue {
                kind,
                channel,
                recipient,
                cause,
                subject,
                body,
            } => {
                let message = NewMessage {
                    kind,
                    channel,
                    recipient,
                    cause,
                    subject,
                    body,
                };
                self.queue(message, at)
            }
            MessageCommand::StartAttempt {
                provider,
                eligibility,
                claim_lease,
                idempotency_window,
                quiet_until,
            } => self.start_attempt(
                provider,
                eligibility,
                claim_lease,
                idempotency_window,
                quiet_until,
                at,
            ),
            MessageCommand::RecordAttemptFailed {
                error,
                retry_at,
                max_attempts,
            } => self.record_attempt_failed(&error, retry_at, max_attempts, at),
            MessageCommand::RecordOutcomeUnknown => self.record_outcome_unknown(at),
            MessageCommand::RecordSent {
                provider_message_id,
            } => self.record_sent(provider_message_id, at),
            MessageCommand::RecordRejected { status, error } => {
                self.record_rejected(status, &error, at)
            }
            MessageCommand::RecordDeliveryStatus {
                status,
                provider_event_id,
            } => self.record_delivery_status(status, provider_event_id, at),
        }
    }

    fn queue(&self, message: NewMessage, at: DateTime<Utc>) -> Decision {
        let NewMessage {
            kind,
            channel,
            recipient,
            cause,
            subject,
            body,
        } = message;
        if self.id.is_some() {
            return Err(MessageError::AlreadyQueued);
        }
        let cause = cause.trim().to_string();
        if cause.is_empty() {
            return Err(ValidationError::new("cause", "must not be empty").into());
        }
        if body.trim().is_empty() {
            return Err(ValidationError::new("body", "must not be empty").into());
        }
        if body.chars().count() > MAX_BODY_LEN {
            return Err(
                ValidationError::new("body", format!("at most {MAX_BODY_LEN} characters")).into(),
            );
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

    /// Claims the next attempt, or ends the message when it may not or cannot be sent; a
    /// marketing message in quiet hours is held until they end.
    fn start_attempt(
        &self,
        provider: Option<Provider>,
        eligibility: MarketingEligibility,
        claim_lease: Duration,
        idempotency_window: Duration,
        quiet_until: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Decision {
        if self.is_finished() {
            return Err(MessageError::AlreadyFinished);
        }
        if let Some(claim) = self.claim {
            return self.take_over_claim(claim, claim_lease, idempotency_window, at);
        }
        if let Some(due) = self.retry_at.filter(|due| *due > at) {
            return Err(MessageError::NotYetDue(due));
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

    /// A claim with no outcome: refused while its lease runs, then resumed with a vendor that
    /// deduplicates (inside its window), or else ended as `OutcomeUnknown`.
    fn take_over_claim(
        &self,
        claim: Claim,
        claim_lease: Duration,
        idempotency_window: Duration,
        at: DateTime<Utc>,
    ) -> Decision {
        if at - claim.at < claim_lease {
            return Err(MessageError::AttemptInProgress);
        }
        // The claimant died (or hung past its lease) between claiming and
        // recording: the vendor may have the message already.
        let within_window = self
            .first_claim_at
            .is_some_and(|first| at - first < idempotency_window);
        if claim.provider.dedupes_by_idempotency_key() && within_window {
            return Ok(vec![self.started(claim.attempt, claim.provider, true, at)]);
        }
        Ok(vec![MessageEvent::MessageNotSent {
            reason: NotSentReason::OutcomeUnknown {
                attempt: claim.attempt,
            },
            at,
        }])
    }

    fn record_attempt_failed(
        &self,
        error: &str,
        retry_at: DateTime<Utc>,
        max_attempts: u32,
        at: DateTime<Utc>,
    ) -> Decision {
        let claim = self.live_claim()?;
        let error = clip(error, MAX_ERROR_LEN);
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

    fn record_outcome_unknown(&self, at: DateTime<Utc>) -> Decision {
        let claim = self.live_claim()?;
        Ok(vec![MessageEvent::MessageNotSent {
            reason: NotSentReason::OutcomeUnknown {
                attempt: claim.attempt,
            },
            at,
        }])
    }

    /// A repeated report of the same send records nothing.
    fn record_sent(&self, provider_message_id: String, at: DateTime<Utc>) -> Decision {
        if self.status == MessageStatus::Sent
            && self.provider_message_id.as_deref() == Some(provider_message_id.as_str())
        {
            return Ok(vec![]);
        }
        let claim = self.live_claim()?;
        if provider_message_id.trim().is_empty() {
            return Err(ValidationError::new("provider_message_id", "must not be empty").into());
        }
        Ok(vec![MessageEvent::MessageSent {
            attempt: claim.attempt,
            provider: claim.provider,
            provider_message_id,
            at,
        }])
    }

    fn record_rejected(&self, status: u16, error: &str, at: DateTime<Utc>) -> Decision {
        self.live_claim()?;
        Ok(vec![MessageEvent::MessageNotSent {
            reason: NotSentReason::Rejected {
                status,
                error: clip(error, MAX_ERROR_LEN),
            },
            at,
        }])
    }

    /// Only a report that moves the message on is recorded (see [`DeliveryStatus::rank`]).
    fn record_delivery_status(
        &self,
        status: DeliveryStatus,
        provider_event_id: String,
        at: DateTime<Utc>,
    ) -> Decision {
        if self.status != MessageStatus::Sent {
            return Err(MessageError::NotSent);
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

    fn is_finished(&self) -> bool {
        matches!(self.status, MessageStatus::Sent | MessageStatus::NotSent)
    }

    fn live_claim(&self) -> Result<Claim, MessageError> {
        if self.is_finished() {
            return Err(MessageError::AlreadyFinished);
        }
        self.claim.ok_or(MessageError::NoAttemptInProgress)
    }
}

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
