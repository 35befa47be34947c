//! Vendor webhooks once verified and parsed (the api owns their wire formats and
//! signatures): what a delivery asks of the CRM ([`Delivery`]), the ledger that makes a
//! delivery take effect once ([`ledger`]), the lookups from a vendor's id to our aggregates
//! ([`lookup`]) and the domain commands each delivery becomes ([`effects`]).

pub mod effects;
pub mod ledger;
pub mod lookup;

use std::fmt;

use serde_json::Value;

pub use effects::{CrmEffects, Outcome, Transient, WebhookEffects};

/// The vendor a delivery came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Stripe (payments, customers).
    Stripe,
    /// Twilio (SMS).
    Twilio,
    /// Resend (email, signed by Svix).
    Resend,
}

impl Provider {
    /// The name stored in `webhook_deliveries.provider` and in idempotency keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::Twilio => "twilio",
            Provider::Resend => "resend",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An SMS's delivery status as Twilio reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsStatus {
    /// Accepted, scheduled or queued at Twilio.
    Queued,
    /// Being handed to the carrier.
    Sending,
    /// Handed to the carrier.
    Sent,
    /// The carrier confirmed delivery.
    Delivered,
    /// The carrier could not deliver it.
    Undelivered,
    /// Twilio could not send it (or it was cancelled).
    Failed,
    /// Read by the recipient (channels that report it).
    Read,
}

impl SmsStatus {
    /// Parses Twilio's `MessageStatus`; `None` for statuses we do not track.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "accepted" | "scheduled" | "queued" => SmsStatus::Queued,
            "sending" => SmsStatus::Sending,
            "sent" => SmsStatus::Sent,
            "delivered" => SmsStatus::Delivered,
            "undelivered" => SmsStatus::Undelivered,
            "failed" | "canceled" => SmsStatus::Failed,
            "read" => SmsStatus::Read,
            _ => return None,
        })
    }

    /// Progress order: queued < sending < sent < delivered / undelivered /
    /// failed < read. Callbacks arrive out of order; only a higher rank moves
    /// a message on, so a late `sent` never overwrites `delivered`.
    pub fn rank(self) -> u8 {
        match self {
            SmsStatus::Queued => 0,
            SmsStatus::Sending => 1,
            SmsStatus::Sent => 2,
            SmsStatus::Delivered | SmsStatus::Undelivered | SmsStatus::Failed => 3,
            SmsStatus::Read => 4,
        }
    }

    /// Whether `self` replaces `current` as the message's status.
    pub fn supersedes(self, current: Option<SmsStatus>) -> bool {
        current.is_none_or(|c| self.rank() > c.rank())
    }

    /// Twilio's name for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            SmsStatus::Queued => "queued",
            SmsStatus::Sending => "sending",
            SmsStatus::Sent => "sent",
            SmsStatus::Delivered => "delivered",
            SmsStatus::Undelivered => "undelivered",
            SmsStatus::Failed => "failed",
            SmsStatus::Read => "read",
        }
    }
}

/// What Resend reports about an email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailStatus {
    /// Accepted by the recipient's server.
    Delivered,
    /// Rejected by the recipient's server; `permanent` for a hard bounce.
    Bounced {
        /// Hard bounce: the address does not exist.
        permanent: bool,
    },
    /// The recipient marked it as spam.
    Complained,
    /// Opened (tracking pixel).
    Opened,
}

/// What a verified delivery asks of the CRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// Stripe `payment_intent.succeeded`.
    PaymentSucceeded {
        /// `evt_…`.
        event_id: String,
        /// `pi_…`.
        intent_id: String,
        /// `metadata.job_id` of the intent, when set.
        job_id: Option<String>,
    },
    /// Stripe `payment_intent.payment_failed`.
    PaymentFailed {
        /// `evt_…`.
        event_id: String,
        /// `pi_…`.
        intent_id: String,
        /// `metadata.job_id` of the intent, when set.
        job_id: Option<String>,
        /// Stripe's `last_payment_error` message or code.
        reason: String,
    },
    /// Stripe `customer.created` / `customer.updated`.
    StripeCustomer {
        /// `evt_…`.
        event_id: String,
        /// `cus_…`.
        stripe_customer_id: String,
        /// `metadata.customer_id`: our customer, when set.
        customer_id: Option<String>,
    },
    /// An SMS a customer (or anyone) sent to our number.
    InboundSms {
        /// `SM…`.
        message_sid: String,
        /// The sender's number as Twilio gives it (E.164).
        from: String,
        /// The text (may be empty for a picture message).
        body: String,
    },
    /// A delivery status callback for an SMS we sent.
    SmsStatus {
        /// `SM…`.
        message_sid: String,
        /// The reported status.
        status: SmsStatus,
        /// Twilio's `ErrorCode`, for failures.
        error_code: Option<String>,
    },
    /// A Resend email event.
    Email {
        /// Resend's `email_id`.
        email_id: Option<String>,
        /// The recipients.
        to: Vec<String>,
        /// What happened.
        status: EmailStatus,
    },
    /// A well-formed event of a type we do not act on.
    Ignored,
}

/// A verified delivery: the vendor's id for it, its type, its body as JSON
/// (stored in `webhook_deliveries`) and what it asks. The api's parsers clean every text in
/// it: no NUL or other control character but tab and line breaks, and no field longer than
/// its maximum.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The vendor.
    pub provider: Provider,
    /// The vendor's id of the delivery: the de-duplication key.
    pub delivery_id: String,
    /// The vendor's event type (`payment_intent.succeeded`, `inbound_sms`…).
    pub event_type: String,
    /// The verified body (Twilio's form parameters as an object).
    pub payload: Value,
    /// What it asks.
    pub event: WebhookEvent,
}
