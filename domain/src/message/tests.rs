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
fn when(given: Vec<MessageEvent>, cmd: MessageCommand) -> Result<Vec<MessageEvent>, MessageError> {
    testing::run::<OutboundMessage, _>(testing::test_services(), given, crate::Actor::System, cmd)
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
