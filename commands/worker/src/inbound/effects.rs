//! What a verified, newly recorded delivery does: domain commands through
//! [`commands::Crm`], each with an idempotency key derived from the vendor's
//! id, so a delivery processed twice (takeover after a crash) still has one
//! effect.

use projections::ProjectionRunner;
use std::fmt;

use async_trait::async_trait;
use commands::{AppError, CommandOutcome, Crm, EventMetadata, StoreError};
use domain::consent::{parse_sms_keyword, SuppressionReason};
use domain::conversation::{ConversationCommand, Sender};
use domain::customer::CustomerCommand;
use domain::ids::{ConversationId, CustomerId, JobId, OutboundMessageId};
use domain::message::{DeliveryStatus, MessageCommand, Provider as MessageProvider};
use domain::payment::PaymentCommand;
use domain::values::{Email, PhoneNumber};
use domain::Actor as DomainActor;
use uuid::Uuid;

use super::lookup;
use super::{Delivery, EmailStatus, SmsStatus, WebhookEvent};

/// What a delivery did, as stored in `webhook_deliveries.outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Domain events were appended.
    Applied {
        /// How many.
        events: usize,
    },
    /// The commands ran and changed nothing (already so).
    NoChange,
    /// An event type we do not act on.
    Ignored,
    /// Recorded, but nothing in the CRM can take it yet (reason).
    Unmapped(String),
    /// The domain refused the command (reason); retrying will not help.
    Rejected(String),
}

impl Outcome {
    /// The stored form: `applied`, `no_change`, `ignored`, `unmapped: …`, `rejected: …`.
    pub fn record(&self) -> String {
        match self {
            Outcome::Applied { events } => format!("applied: {events} event(s)"),
            Outcome::NoChange => "no_change".into(),
            Outcome::Ignored => "ignored".into(),
            Outcome::Unmapped(why) => format!("unmapped: {why}"),
            Outcome::Rejected(why) => format!("rejected: {why}"),
        }
    }
}

/// A failure worth a retry by the vendor (store down, contention): the
/// delivery stays unprocessed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(pub String);

/// The port between the ingress and the CRM: turns a delivery into commands.
#[async_trait]
pub trait WebhookEffects: Send + Sync + fmt::Debug {
    /// Carries out `delivery`; `meta` is the request's metadata (actor
    /// `webhook:<provider>`, request id) without an idempotency key.
    ///
    /// # Errors
    /// [`Transient`] when a retry may succeed; permanent refusals are an
    /// [`Outcome::Rejected`], not an error.
    async fn apply(&self, delivery: &Delivery, meta: &EventMetadata) -> Result<Outcome, Transient>;
}

/// The effects on the CRM's aggregates.
#[derive(Debug, Clone)]
pub struct CrmEffects {
    crm: Crm,
    projections: ProjectionRunner,
}

impl CrmEffects {
    /// Effects through `crm`; lookups read `projections`' read models.
    pub fn new(crm: Crm, projections: ProjectionRunner) -> Self {
        Self { crm, projections }
    }
}

/// Namespace of the ids derived for SMS conversations (one per number).
const SMS_CONVERSATIONS: Uuid = Uuid::from_u128(0x5d1e_7a2c_9b34_4c1f_8e0a_2b6d_3f9c_1a70);

/// The SMS conversation with `phone`; a closed one is followed by the next
/// `generation`.
fn sms_conversation(phone: &PhoneNumber, generation: u32) -> ConversationId {
    ConversationId(Uuid::new_v5(
        &SMS_CONVERSATIONS,
        format!("sms:{}:{generation}", phone.as_str()).as_bytes(),
    ))
}

/// Sorts a command's result into applied / unchanged, a permanent refusal,
/// or a transient failure.
enum Step {
    Done(usize),
    Refused(AppError),
}

fn step(r: Result<CommandOutcome, AppError>) -> Result<Step, Transient> {
    match r {
        Ok(o) if o.replayed => Ok(Step::Done(0)),
        Ok(o) => Ok(Step::Done(o.events.len())),
        Err(e @ (AppError::Store(_) | AppError::Conflict { .. })) => Err(Transient(e.to_string())),
        Err(e) => Ok(Step::Refused(e)),
    }
}

fn transient(e: StoreError) -> Transient {
    Transient(e.to_string())
}

/// Both effects of one delivery (a hard bounce suppresses the address and marks the message).
fn both(a: Outcome, b: Outcome) -> Outcome {
    match (a, b) {
        (Outcome::Applied { events: x }, Outcome::Applied { events: y }) => total(x + y),
        (a @ Outcome::Applied { .. }, _) | (_, a @ Outcome::Applied { .. }) => a,
        (Outcome::Unmapped(_), b) => b,
        (a, _) => a,
    }
}

fn sms_delivery_status(s: SmsStatus) -> DeliveryStatus {
    match s {
        SmsStatus::Queued => DeliveryStatus::Queued,
        SmsStatus::Sending => DeliveryStatus::Sending,
        SmsStatus::Sent => DeliveryStatus::Sent,
        SmsStatus::Delivered => DeliveryStatus::Delivered,
        SmsStatus::Undelivered => DeliveryStatus::Undelivered,
        SmsStatus::Failed => DeliveryStatus::Failed,
        SmsStatus::Read => DeliveryStatus::Read,
    }
}

fn total(events: usize) -> Outcome {
    if events == 0 {
        Outcome::NoChange
    } else {
        Outcome::Applied { events }
    }
}

impl CrmEffects {
    async fn payment(
        &self,
        intent_id: &str,
        job_id: Option<&str>,
        command: PaymentCommand,
        meta: &EventMetadata,
    ) -> Result<Outcome, Transient> {
        let job = match job_id.map(JobId::parse) {
            Some(Ok(j)) => Some(j),
            Some(Err(_)) => return Ok(Outcome::Unmapped("metadata.job_id is not a job id".into())),
            None => None,
        };
        let Some(payment) = lookup::payment_for_intent(&self.projections, intent_id, job)
            .await
            .map_err(transient)?
        else {
            return Ok(Outcome::Unmapped(format!(
                "no payment recorded for intent {intent_id}"
            )));
        };
        Ok(
            match step(
                self.crm
                    .payments()
                    .execute(payment, DomainActor::System, command, meta)
                    .await,
            )? {
                Step::Done(n) => total(n),
                Step::Refused(e) => Outcome::Rejected(e.to_string()),
            },
        )
    }

    async fn inbound_sms(
        &self,
        sid: &str,
        from: &str,
        body: &str,
        meta: &EventMetadata,
    ) -> Result<Outcome, Transient> {
        let Ok(phone) = PhoneNumber::parse(from) else {
            return Ok(Outcome::Unmapped("sender is not a phone number".into()));
        };
        // STOP is honoured for everyone holding the number; START and the conversation go only
        // to customers whose number it provably is.
        let keyword = parse_sms_keyword(body);
        let stop = keyword == Some(domain::consent::ConsentKeyword::Stop);
        let customers = lookup::customers_by_phone(&self.projections, &phone, !stop)
            .await
            .map_err(transient)?;
        if keyword.is_some() {
            if customers.is_empty() {
                return Ok(Outcome::Unmapped(
                    "consent keyword from a number no customer has".into(),
                ));
            }
            // A number that says STOP is opted out on every customer holding it.
            let mut events = 0;
            let mut refused = Vec::new();
            for c in customers {
                let m = meta
                    .clone()
                    .with_idempotency_key(format!("twilio:{sid}:{c}"));
                let cmd = CustomerCommand::ApplyInboundSms {
                    body: body.to_string(),
                };
                match step(
                    self.crm
                        .customers()
                        .execute(c, DomainActor::System, cmd, &m)
                        .await,
                )? {
                    Step::Done(n) => events += n,
                    Step::Refused(e) => refused.push(e.to_string()),
                }
            }
            return Ok(match (events, refused.is_empty()) {
                (0, false) => Outcome::Rejected(refused.join("; ")),
                (n, _) => total(n),
            });
        }
        if body.trim().is_empty() {
            return Ok(Outcome::Unmapped(
                "message without text (media only)".into(),
            ));
        }
        let customer = match customers.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        self.sms_to_conversation(sid, &phone, customer, body, meta)
            .await
    }

    /// Adds the SMS to the number's conversation (started and handed to
    /// staff on first contact; a new one when staff closed the last).
    async fn sms_to_conversation(
        &self,
        sid: &str,
        phone: &PhoneNumber,
        customer: Option<CustomerId>,
        body: &str,
        meta: &EventMetadata,
    ) -> Result<Outcome, Transient> {
        let conversations = self.crm.conversations();
        for generation in 0..1_000u32 {
            let id = sms_conversation(phone, generation);
            let mut events = 0;
            let loaded = conversations
                .load(id)
                .await
                .map_err(|e| Transient(e.to_string()))?;
            if loaded.sequence == 0 {
                let m = meta
                    .clone()
                    .with_idempotency_key(format!("twilio:{sid}:start:{generation}"));
                let cmd = ConversationCommand::Start {
                    conversation_id: id,
                    customer_id: customer,
                };
                match step(
                    conversations
                        .execute(id, DomainActor::System, cmd, &m)
                        .await,
                )? {
                    Step::Done(n) => events += n,
                    // Another message from the number started it meanwhile.
                    Step::Refused(e) if e.rule() == Some("ALREADY_EXISTS") => {}
                    Step::Refused(e) => return Ok(Outcome::Rejected(e.to_string())),
                }
            }
            let m = meta
                .clone()
                .with_idempotency_key(format!("twilio:{sid}:message"));
            let cmd = ConversationCommand::AddMessage {
                sender: Sender::Customer,
                text: body.to_string(),
            };
            match step(
                conversations
                    .execute(id, DomainActor::System, cmd, &m)
                    .await,
            )? {
                Step::Done(n) => events += n,
                Step::Refused(e) if e.rule() == Some("CONVERSATION_CLOSED") => continue,
                Step::Refused(e) => return Ok(Outcome::Rejected(e.to_string())),
            }
            let m = meta
                .clone()
                .with_idempotency_key(format!("twilio:{sid}:handoff"));
            match step(
                conversations
                    .execute(
                        id,
                        DomainActor::System,
                        ConversationCommand::HandOff { to_staff: None },
                        &m,
                    )
                    .await,
            )? {
                Step::Done(n) => events += n,
                Step::Refused(e) => return Ok(Outcome::Rejected(e.to_string())),
            }
            return Ok(total(events));
        }
        Ok(Outcome::Unmapped(
            "too many closed conversations with this number".into(),
        ))
    }

    /// Moves the outbound message the vendor's id belongs to on to `status` (never back: a
    /// late `sent` after `delivered` changes nothing), idempotent by the delivery id.
    async fn message_status(
        &self,
        provider: MessageProvider,
        provider_message_id: &str,
        status: DeliveryStatus,
        delivery_id: &str,
        meta: &EventMetadata,
    ) -> Result<Outcome, Transient> {
        let Some(raw) = crate::outbox::index::message_for_provider_id(
            self.crm.log(),
            provider,
            provider_message_id,
        )
        .await
        .map_err(transient)?
        else {
            return Ok(Outcome::Unmapped(
                "no outbound message has this id (sent before the outbox, or not indexed yet)"
                    .into(),
            ));
        };
        let Ok(id) = OutboundMessageId::parse(&raw) else {
            return Ok(Outcome::Unmapped("indexed message id is not a UUID".into()));
        };
        let m = meta
            .clone()
            .with_idempotency_key(format!("{}:{delivery_id}", provider.as_str()));
        let cmd = MessageCommand::RecordDeliveryStatus {
            status,
            provider_event_id: delivery_id.to_string(),
        };
        Ok(
            match step(
                self.crm
                    .messages()
                    .execute(id, DomainActor::System, cmd, &m)
                    .await,
            )? {
                Step::Done(n) => total(n),
                Step::Refused(e) => Outcome::Rejected(e.to_string()),
            },
        )
    }

    async fn suppress(
        &self,
        svix_id: &str,
        to: &[String],
        reason: SuppressionReason,
        meta: &EventMetadata,
    ) -> Result<Outcome, Transient> {
        let mut events = 0;
        let mut found = false;
        let mut refused = Vec::new();
        for address in to {
            let Ok(email) = Email::parse(address) else {
                continue;
            };
            for c in lookup::customers_by_email(&self.projections, &email)
                .await
                .map_err(transient)?
            {
                found = true;
                let m = meta
                    .clone()
                    .with_idempotency_key(format!("resend:{svix_id}:{c}"));
                let cmd = CustomerCommand::SuppressEmail {
                    reason,
                    provider_event_id: svix_id.to_string(),
                };
                match step(
                    self.crm
                        .customers()
                        .execute(c, DomainActor::System, cmd, &m)
                        .await,
                )? {
                    Step::Done(n) => events += n,
                    Step::Refused(e) => refused.push(e.to_string()),
                }
            }
        }
        Ok(match (found, events, refused.is_empty()) {
            (false, ..) => Outcome::Unmapped("no customer has the recipient's address".into()),
            (true, 0, false) => Outcome::Rejected(refused.join("; ")),
            (true, n, _) => total(n),
        })
    }
}

#[async_trait]
impl WebhookEffects for CrmEffects {
    async fn apply(&self, d: &Delivery, meta: &EventMetadata) -> Result<Outcome, Transient> {
        match &d.event {
            WebhookEvent::PaymentSucceeded {
                event_id,
                intent_id,
                job_id,
            } => {
                let m = meta
                    .clone()
                    .with_idempotency_key(format!("stripe:{event_id}"));
                let cmd = PaymentCommand::RecordSucceeded {
                    provider_event_id: event_id.clone(),
                };
                self.payment(intent_id, job_id.as_deref(), cmd, &m).await
            }
            WebhookEvent::PaymentFailed {
                event_id,
                intent_id,
                job_id,
                reason,
            } => {
                let m = meta
                    .clone()
                    .with_idempotency_key(format!("stripe:{event_id}"));
                let cmd = PaymentCommand::RecordFailed {
                    provider_event_id: event_id.clone(),
                    reason: reason.clone(),
                };
                self.payment(intent_id, job_id.as_deref(), cmd, &m).await
            }
            WebhookEvent::StripeCustomer {
                event_id,
                stripe_customer_id,
                customer_id,
            } => {
                let Some(Ok(customer)) = customer_id.as_deref().map(CustomerId::parse) else {
                    return Ok(Outcome::Unmapped(
                        "the Stripe customer has no metadata.customer_id".into(),
                    ));
                };
                let m = meta
                    .clone()
                    .with_idempotency_key(format!("stripe:{event_id}"));
                let cmd = CustomerCommand::LinkStripeCustomer {
                    stripe_customer_id: stripe_customer_id.clone(),
                };
                Ok(
                    match step(
                        self.crm
                            .customers()
                            .execute(customer, DomainActor::System, cmd, &m)
                            .await,
                    )? {
                        Step::Done(n) => total(n),
                        Step::Refused(e) => Outcome::Rejected(e.to_string()),
                    },
                )
            }
            WebhookEvent::InboundSms {
                message_sid,
                from,
                body,
            } => self.inbound_sms(message_sid, from, body, meta).await,
            WebhookEvent::SmsStatus {
                message_sid,
                status,
                ..
            } => {
                self.message_status(
                    MessageProvider::Twilio,
                    message_sid,
                    sms_delivery_status(*status),
                    &d.delivery_id,
                    meta,
                )
                .await
            }
            WebhookEvent::Email {
                email_id,
                to,
                status,
            } => {
                let delivery = match (email_id, status) {
                    (_, EmailStatus::Bounced { permanent: false }) => {
                        Outcome::Unmapped("soft bounce: the email may still be delivered".into())
                    }
                    (None, _) => Outcome::Unmapped("no email_id".into()),
                    (Some(email_id), status) => {
                        let s = match status {
                            EmailStatus::Delivered => DeliveryStatus::Delivered,
                            EmailStatus::Bounced { .. } => DeliveryStatus::Bounced,
                            EmailStatus::Complained => DeliveryStatus::Complained,
                            EmailStatus::Opened => DeliveryStatus::Opened,
                        };
                        self.message_status(
                            MessageProvider::Resend,
                            email_id,
                            s,
                            &d.delivery_id,
                            meta,
                        )
                        .await?
                    }
                };
                let suppression = match status {
                    EmailStatus::Bounced { permanent: true } => {
                        self.suppress(&d.delivery_id, to, SuppressionReason::HardBounce, meta)
                            .await?
                    }
                    EmailStatus::Complained => {
                        self.suppress(&d.delivery_id, to, SuppressionReason::Complaint, meta)
                            .await?
                    }
                    _ => return Ok(delivery),
                };
                Ok(both(suppression, delivery))
            }
            WebhookEvent::Ignored => Ok(Outcome::Ignored),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_number_has_its_own_conversation_and_generations_differ() {
        let a = PhoneNumber::parse("+15125550100").expect("phone");
        let b = PhoneNumber::parse("+15125550101").expect("phone");
        assert_eq!(sms_conversation(&a, 0), sms_conversation(&a, 0));
        assert_ne!(sms_conversation(&a, 0), sms_conversation(&b, 0));
        assert_ne!(sms_conversation(&a, 0), sms_conversation(&a, 1));
    }

    #[test]
    fn outcomes_are_stored_as_short_text() {
        assert_eq!(
            Outcome::Applied { events: 1 }.record(),
            "applied: 1 event(s)"
        );
        assert_eq!(Outcome::Unmapped("x".into()).record(), "unmapped: x");
    }
}
