//! What happens to an outbound message: the events, from queueing to the vendor's delivery
//! reports.

use chrono::{DateTime, Utc};

use super::{DeliveryStatus, MessageKind, NotSentReason, Provider, Recipient, AGGREGATE_TYPE};
use crate::catalogue::domain_events;
use crate::consent::Channel;
use crate::ids::OutboundMessageId;

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`OutboundMessage`](super::OutboundMessage) aggregate.
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
