//! Payment: one provider payment intent for a job; webhook outcomes are idempotent by the
//! provider's event id (Stripe retries deliveries).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::error::{validation_error, ValidationError};
use crate::ids::{CustomerId, JobId, PaymentId};
use crate::ports::{cqrs_aggregate, CommandContext};
use crate::values::Money;

/// `Aggregate::TYPE` of [`Payment`].
pub const AGGREGATE_TYPE: &str = "Payment";

/// What can be asked of a payment.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    /// A payment intent was created with the provider.
    CreateIntent {
        /// The id (the aggregate id).
        payment_id: PaymentId,
        /// The job paid for.
        job_id: JobId,
        /// The customer.
        customer_id: CustomerId,
        /// Amount, in cents.
        amount_cents: i64,
        /// The provider's intent id (`pi_...`).
        provider_intent_id: String,
    },
    /// Money taken in person (cash, cheque, a card terminal): recorded by staff, paid at once.
    RecordInPerson {
        /// The id (the aggregate id).
        payment_id: PaymentId,
        /// The job paid for.
        job_id: JobId,
        /// The customer.
        customer_id: CustomerId,
        /// Amount, in cents.
        amount_cents: i64,
        /// How it was paid.
        method: PaymentMethod,
        /// Cheque number or terminal receipt, if any.
        reference: Option<String>,
    },
    /// Webhook: the payment succeeded.
    RecordSucceeded {
        /// The provider's event id (`evt_...`).
        provider_event_id: String,
    },
    /// Webhook: the payment failed.
    RecordFailed {
        /// The provider's event id.
        provider_event_id: String,
        /// The provider's failure reason.
        reason: String,
    },
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`Payment`] aggregate; all carry job and customer for projections.
    pub enum PaymentEvent {
        /// A payment intent was created.
        PaymentIntentCreated {
            /// The payment.
            payment_id: PaymentId,
            /// The job.
            job_id: JobId,
            /// The customer.
            customer_id: CustomerId,
            /// Amount.
            amount: Money,
            /// The provider's intent id.
            provider_intent_id: String,
            /// When.
            at: DateTime<Utc>,
        },
        /// The payment succeeded.
        PaymentSucceeded {
            /// The job.
            job_id: JobId,
            /// The customer.
            customer_id: CustomerId,
            /// Amount.
            amount: Money,
            /// The provider's event id.
            provider_event_id: String,
            /// When.
            at: DateTime<Utc>,
        },
        /// Money was taken in person and recorded by staff.
        PaymentReceived {
            /// The payment.
            payment_id: PaymentId,
            /// The job.
            job_id: JobId,
            /// The customer.
            customer_id: CustomerId,
            /// Amount.
            amount: Money,
            /// Cash, cheque or card terminal.
            method: PaymentMethod,
            /// Cheque number or terminal receipt, if any.
            reference: Option<String>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The payment failed.
        PaymentFailed {
            /// The job.
            job_id: JobId,
            /// The customer.
            customer_id: CustomerId,
            /// Amount.
            amount: Money,
            /// The provider's event id.
            provider_event_id: String,
            /// The provider's reason.
            reason: String,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// How money taken in person was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Cash.
    Cash,
    /// A cheque.
    Check,
    /// A card on the technician's terminal (not through Stripe).
    CardTerminal,
}

/// Why a payment command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Already created.
    #[error("the payment already exists")]
    AlreadyExists,
    /// Unknown payment.
    #[error("unknown payment")]
    UnknownPayment,
    /// A failure reported after success.
    #[error("the payment already succeeded")]
    AlreadySucceeded,
}
validation_error!(PaymentError);

/// The payment's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    job_id: Option<JobId>,
    customer_id: Option<CustomerId>,
    amount: Money,
    succeeded: bool,
    seen_provider_events: BTreeSet<String>,
}

fn provider_event_id(raw: String) -> Result<String, ValidationError> {
    let id = raw.trim();
    if id.is_empty() {
        return Err(ValidationError::new(
            "provider_event_id",
            "must not be empty",
        ));
    }
    Ok(id.to_owned())
}

impl Payment {
    /// Whether the payment succeeded.
    pub fn is_succeeded(&self) -> bool {
        self.succeeded
    }

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`PaymentError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: PaymentCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<PaymentEvent>, PaymentError> {
        let at = ctx.now;
        if let PaymentCommand::CreateIntent {
            payment_id,
            job_id,
            customer_id,
            amount_cents,
            provider_intent_id,
        } = cmd
        {
            if self.job_id.is_some() {
                return Err(PaymentError::AlreadyExists);
            }
            let amount = Money::from_cents(amount_cents)?;
            if amount == Money::ZERO {
                return Err(ValidationError::new("amount_cents", "must be positive").into());
            }
            let provider_intent_id = provider_intent_id.trim().to_owned();
            if provider_intent_id.is_empty() {
                return Err(ValidationError::new("provider_intent_id", "must not be empty").into());
            }
            return Ok(vec![PaymentEvent::PaymentIntentCreated {
                payment_id,
                job_id,
                customer_id,
                amount,
                provider_intent_id,
                at,
            }]);
        }
        if let PaymentCommand::RecordInPerson {
            payment_id,
            job_id,
            customer_id,
            amount_cents,
            method,
            reference,
        } = cmd
        {
            if self.job_id.is_some() {
                return Err(PaymentError::AlreadyExists);
            }
            let amount = Money::from_cents(amount_cents)?;
            if amount == Money::ZERO {
                return Err(ValidationError::new("amount_cents", "must be positive").into());
            }
            let reference = reference
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty());
            if reference.as_ref().is_some_and(|r| r.chars().count() > 100) {
                return Err(ValidationError::new("reference", "at most 100 characters").into());
            }
            return Ok(vec![PaymentEvent::PaymentReceived {
                payment_id,
                job_id,
                customer_id,
                amount,
                method,
                reference,
                at,
            }]);
        }
        let (Some(job_id), Some(customer_id)) = (self.job_id, self.customer_id) else {
            return Err(PaymentError::UnknownPayment);
        };
        let amount = self.amount;
        match cmd {
            PaymentCommand::CreateIntent { .. } => Ok(vec![]),
            // An in-person payment is complete when recorded: nothing to add.
            PaymentCommand::RecordInPerson { .. } => Err(PaymentError::AlreadyExists),
            PaymentCommand::RecordSucceeded {
                provider_event_id: raw,
            } => {
                let provider_event_id = provider_event_id(raw)?;
                // Redelivered webhooks and late duplicates change nothing.
                if self.seen_provider_events.contains(&provider_event_id) || self.succeeded {
                    return Ok(vec![]);
                }
                Ok(vec![PaymentEvent::PaymentSucceeded {
                    job_id,
                    customer_id,
                    amount,
                    provider_event_id,
                    at,
                }])
            }
            PaymentCommand::RecordFailed {
                provider_event_id: raw,
                reason,
            } => {
                let provider_event_id = provider_event_id(raw)?;
                if self.seen_provider_events.contains(&provider_event_id) {
                    return Ok(vec![]);
                }
                if self.succeeded {
                    return Err(PaymentError::AlreadySucceeded);
                }
                Ok(vec![PaymentEvent::PaymentFailed {
                    job_id,
                    customer_id,
                    amount,
                    provider_event_id,
                    reason,
                    at,
                }])
            }
        }
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: PaymentEvent) {
        match event {
            PaymentEvent::PaymentIntentCreated {
                job_id,
                customer_id,
                amount,
                ..
            } => {
                self.job_id = Some(job_id);
                self.customer_id = Some(customer_id);
                self.amount = amount;
            }
            PaymentEvent::PaymentReceived {
                job_id,
                customer_id,
                amount,
                ..
            } => {
                self.job_id = Some(job_id);
                self.customer_id = Some(customer_id);
                self.amount = amount;
                self.succeeded = true;
            }
            PaymentEvent::PaymentSucceeded {
                provider_event_id, ..
            } => {
                self.succeeded = true;
                self.seen_provider_events.insert(provider_event_id);
            }
            PaymentEvent::PaymentFailed {
                provider_event_id, ..
            } => {
                self.seen_provider_events.insert(provider_event_id);
            }
        }
    }
}

cqrs_aggregate!(
    Payment,
    AGGREGATE_TYPE,
    PaymentCommand,
    PaymentEvent,
    PaymentError
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, test_now};
    use uuid::Uuid;

    fn created() -> PaymentEvent {
        PaymentEvent::PaymentIntentCreated {
            payment_id: PaymentId(Uuid::from_u128(60)),
            job_id: JobId(Uuid::from_u128(10)),
            customer_id: CustomerId(Uuid::from_u128(1)),
            amount: Money::from_cents(25_000).expect("ok"),
            provider_intent_id: "pi_1".into(),
            at: test_now(),
        }
    }
    fn succeeded(evt: &str) -> PaymentEvent {
        PaymentEvent::PaymentSucceeded {
            job_id: JobId(Uuid::from_u128(10)),
            customer_id: CustomerId(Uuid::from_u128(1)),
            amount: Money::from_cents(25_000).expect("ok"),
            provider_event_id: evt.into(),
            at: test_now(),
        }
    }
    fn when(
        given: Vec<PaymentEvent>,
        cmd: PaymentCommand,
    ) -> Result<Vec<PaymentEvent>, PaymentError> {
        testing::run::<Payment, _>(testing::test_services(), given, crate::Actor::System, cmd)
    }

    #[test]
    fn it_should_refuse_a_negative_amount_naming_the_field() {
        let cmd = PaymentCommand::CreateIntent {
            payment_id: PaymentId(Uuid::from_u128(60)),
            job_id: JobId(Uuid::from_u128(10)),
            customer_id: CustomerId(Uuid::from_u128(1)),
            amount_cents: -100,
            provider_intent_id: "pi_1".into(),
        };
        assert_eq!(
            when(vec![], cmd).expect_err("neg").field(),
            Some("amount_cents")
        );
    }

    #[test]
    fn it_should_record_a_succeeded_payment() {
        let cmd = PaymentCommand::RecordSucceeded {
            provider_event_id: "evt_1".into(),
        };
        assert_eq!(when(vec![created()], cmd), Ok(vec![succeeded("evt_1")]));
    }

    #[test]
    fn it_should_ignore_a_redelivered_webhook_event() {
        let cmd = PaymentCommand::RecordSucceeded {
            provider_event_id: "evt_1".into(),
        };
        assert_eq!(when(vec![created(), succeeded("evt_1")], cmd), Ok(vec![]));
    }

    #[test]
    fn it_should_accept_success_after_a_failed_attempt() {
        let failed = PaymentEvent::PaymentFailed {
            job_id: JobId(Uuid::from_u128(10)),
            customer_id: CustomerId(Uuid::from_u128(1)),
            amount: Money::from_cents(25_000).expect("ok"),
            provider_event_id: "evt_0".into(),
            reason: "card_declined".into(),
            at: test_now(),
        };
        let cmd = PaymentCommand::RecordSucceeded {
            provider_event_id: "evt_1".into(),
        };
        assert_eq!(
            when(vec![created(), failed], cmd),
            Ok(vec![succeeded("evt_1")])
        );
    }

    #[test]
    fn it_should_refuse_a_failure_after_success() {
        let cmd = PaymentCommand::RecordFailed {
            provider_event_id: "evt_2".into(),
            reason: "late".into(),
        };
        assert_eq!(
            when(vec![created(), succeeded("evt_1")], cmd),
            Err(PaymentError::AlreadySucceeded)
        );
    }

    #[test]
    fn it_should_record_money_taken_in_person_once_as_paid() {
        let cmd = |amount_cents, reference: Option<&str>| PaymentCommand::RecordInPerson {
            payment_id: PaymentId(Uuid::from_u128(61)),
            job_id: JobId(Uuid::from_u128(10)),
            customer_id: CustomerId(Uuid::from_u128(1)),
            amount_cents,
            method: PaymentMethod::Check,
            reference: reference.map(str::to_string),
        };
        let events = testing::run::<Payment, _>(
            testing::test_services(),
            vec![],
            crate::Actor::System,
            cmd(12_000, Some(" 1042 ")),
        )
        .expect("recorded");
        let [PaymentEvent::PaymentReceived {
            amount, reference, ..
        }] = events.as_slice()
        else {
            panic!("{events:?}")
        };
        assert_eq!(
            (amount.cents(), reference.as_deref()),
            (12_000, Some("1042"))
        );
        let mut p = Payment::default();
        p.apply_event(events[0].clone());
        assert!(p.is_succeeded());
        assert_eq!(
            testing::run::<Payment, _>(
                testing::test_services(),
                events.clone(),
                crate::Actor::System,
                cmd(12_000, None)
            ),
            Err(PaymentError::AlreadyExists)
        );
        assert!(matches!(
            testing::run::<Payment, _>(
                testing::test_services(),
                vec![],
                crate::Actor::System,
                cmd(0, None)
            ),
            Err(PaymentError::Validation {
                field: "amount_cents",
                ..
            })
        ));
    }
}
