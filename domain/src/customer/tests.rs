use super::*;
use crate::consent::{ConsentSource, SuppressionReason};
use crate::testing::{self, test_now};
use uuid::Uuid;

fn id() -> CustomerId {
    CustomerId(Uuid::from_u128(1))
}

fn when(
    given: Vec<CustomerEvent>,
    cmd: CustomerCommand,
) -> Result<Vec<CustomerEvent>, CustomerError> {
    testing::run::<Customer, _>(testing::test_services(), given, testing::staff(), cmd)
}

fn created() -> CustomerEvent {
    CustomerEvent::CustomerCreated {
        customer_id: id(),
        name: NonEmptyText::parse("name", "Jane Doe", 200).expect("valid"),
        email: Some(Email::parse("jane@example.com").expect("valid")),
        phone: Some(PhoneNumber::parse("+15125550100").expect("valid")),
        birthday: None,
        customer_since: NaiveDate::from_ymd_opt(2020, 1, 1).expect("date"),
        at: test_now(),
    }
}

fn create_cmd(phone: &str) -> CustomerCommand {
    CustomerCommand::Create {
        customer_id: id(),
        name: "Jane Doe".into(),
        email: Some("Jane@Example.com".into()),
        phone: Some(phone.into()),
        birthday: None,
        customer_since: None,
    }
}

#[test]
fn it_should_create_a_customer_with_normalised_contact_details() {
    let events = when(vec![], create_cmd("(512) 555-0100")).expect("created");
    assert_eq!(
        events,
        vec![CustomerEvent::CustomerCreated {
            customer_id: id(),
            name: NonEmptyText::parse("name", "Jane Doe", 200).expect("valid"),
            email: Some(Email::parse("jane@example.com").expect("valid")),
            phone: Some(PhoneNumber::parse("+15125550100").expect("valid")),
            birthday: None,
            // 10:00 in Chicago on 2025-06-15.
            customer_since: NaiveDate::from_ymd_opt(2025, 6, 15).expect("date"),
            at: test_now(),
        }]
    );
}

#[test]
fn it_should_refuse_an_invalid_phone_naming_the_field() {
    let err = when(vec![], create_cmd("call me")).expect_err("invalid");
    assert_eq!(err.field(), Some("phone"));
}

#[test]
fn it_should_refuse_an_empty_name_naming_the_field() {
    let cmd = CustomerCommand::Create {
        customer_id: id(),
        name: "  ".into(),
        email: None,
        phone: None,
        birthday: None,
        customer_since: None,
    };
    assert_eq!(when(vec![], cmd).expect_err("empty").field(), Some("name"));
}

#[test]
fn it_should_refuse_commands_for_an_unknown_customer() {
    let err = when(vec![], CustomerCommand::AddTag { tag: "vip".into() }).expect_err("unknown");
    assert_eq!(err, CustomerError::UnknownCustomer);
}

#[test]
fn it_should_not_create_a_customer_twice() {
    assert_eq!(
        when(vec![created()], create_cmd("+15125550100")),
        Err(CustomerError::AlreadyExists)
    );
}

#[test]
fn it_should_revoke_sms_consent_when_the_customer_texts_stop() {
    let given = vec![
        created(),
        CustomerEvent::SmsConsentGranted {
            source: ConsentSource::Portal,
            at: test_now(),
        },
    ];
    let events = when(
        given,
        CustomerCommand::ApplyInboundSms {
            body: " stop ".into(),
        },
    )
    .expect("ok");
    assert_eq!(
        events,
        vec![CustomerEvent::SmsConsentRevoked {
            source: ConsentSource::SmsKeyword {
                keyword: "STOP".into()
            },
            at: test_now(),
        }]
    );
}

#[test]
fn it_should_restore_sms_consent_when_the_customer_texts_start() {
    let given = vec![
        created(),
        CustomerEvent::SmsConsentRevoked {
            source: ConsentSource::Portal,
            at: test_now(),
        },
    ];
    let events = when(
        given,
        CustomerCommand::ApplyInboundSms {
            body: "START".into(),
        },
    )
    .expect("ok");
    assert_eq!(
        events,
        vec![CustomerEvent::SmsConsentGranted {
            source: ConsentSource::SmsKeyword {
                keyword: "START".into()
            },
            at: test_now(),
        }]
    );
}

#[test]
fn it_should_record_nothing_for_an_ordinary_inbound_sms() {
    let events = when(
        vec![created()],
        CustomerCommand::ApplyInboundSms {
            body: "stop by at 3?".into(),
        },
    );
    assert_eq!(events, Ok(vec![]));
}

#[test]
fn it_should_record_nothing_when_stop_is_repeated() {
    let given = vec![
        created(),
        CustomerEvent::SmsConsentRevoked {
            source: ConsentSource::Portal,
            at: test_now(),
        },
    ];
    assert_eq!(
        when(
            given,
            CustomerCommand::ApplyInboundSms {
                body: "QUIT".into()
            }
        ),
        Ok(vec![])
    );
}

#[test]
fn it_should_suppress_email_on_a_hard_bounce_and_report_it_in_eligibility() {
    let given = vec![
        created(),
        CustomerEvent::EmailConsentGranted {
            source: ConsentSource::Portal,
            at: test_now(),
        },
    ];
    let cmd = CustomerCommand::SuppressEmail {
        reason: SuppressionReason::HardBounce,
        provider_event_id: "evt_1".into(),
    };
    let events = when(given.clone(), cmd).expect("ok");
    assert_eq!(
        events,
        vec![CustomerEvent::EmailSuppressed {
            email: Email::parse("jane@example.com").expect("valid"),
            reason: SuppressionReason::HardBounce,
            provider_event_id: "evt_1".into(),
            at: test_now(),
        }]
    );
    let mut customer = Customer::default();
    given
        .into_iter()
        .chain(events)
        .for_each(|e| customer.apply_event(e));
    assert_eq!(
        customer.marketing_eligibility(Channel::Email),
        MarketingEligibility::Suppressed
    );
}

#[test]
fn it_should_suppress_email_on_a_complaint() {
    let cmd = CustomerCommand::SuppressEmail {
        reason: SuppressionReason::Complaint,
        provider_event_id: "evt_2".into(),
    };
    let events = when(vec![created()], cmd).expect("ok");
    assert!(matches!(
        events.as_slice(),
        [CustomerEvent::EmailSuppressed {
            reason: SuppressionReason::Complaint,
            ..
        }]
    ));
}

#[test]
fn it_should_lift_the_suppression_when_the_email_address_changes() {
    let given = vec![
        created(),
        CustomerEvent::EmailSuppressed {
            email: Email::parse("jane@example.com").expect("valid"),
            reason: SuppressionReason::HardBounce,
            provider_event_id: "evt_1".into(),
            at: test_now(),
        },
    ];
    let cmd = CustomerCommand::UpdateContactDetails {
        name: "Jane Doe".into(),
        email: Some("jane@new.example.com".into()),
        phone: None,
    };
    let events = when(given, cmd).expect("ok");
    assert_eq!(
        events.last(),
        Some(&CustomerEvent::EmailSuppressionLifted { at: test_now() })
    );
}

#[test]
fn it_should_report_eligibility_from_consent_and_opt_out() {
    let mut c = Customer::default();
    c.apply_event(created());
    assert_eq!(
        c.marketing_eligibility(Channel::Sms),
        MarketingEligibility::NoConsent
    );
    c.apply_event(CustomerEvent::SmsConsentGranted {
        source: ConsentSource::Staff,
        at: test_now(),
    });
    assert_eq!(
        c.marketing_eligibility(Channel::Sms),
        MarketingEligibility::Eligible
    );
    c.apply_event(CustomerEvent::SmsConsentRevoked {
        source: ConsentSource::SmsKeyword {
            keyword: "STOP".into(),
        },
        at: test_now(),
    });
    assert_eq!(
        c.marketing_eligibility(Channel::Sms),
        MarketingEligibility::OptedOut
    );
}

#[test]
fn it_should_refuse_sms_consent_without_a_phone_number() {
    let mut no_phone = created();
    if let CustomerEvent::CustomerCreated { phone, .. } = &mut no_phone {
        *phone = None;
    }
    let cmd = CustomerCommand::GrantMarketingConsent {
        channel: Channel::Sms,
        source: ConsentSource::Staff,
    };
    assert_eq!(
        when(vec![no_phone], cmd).expect_err("no phone").field(),
        Some("phone")
    );
}

#[test]
fn it_should_erase_personal_data_and_refuse_later_changes() {
    let cmd = CustomerCommand::ErasePersonalData {
        reason: "customer request".into(),
    };
    let events = when(vec![created()], cmd).expect("ok");
    assert!(matches!(
        events.as_slice(),
        [CustomerEvent::CustomerPersonalDataErased { .. }]
    ));
    let mut given = vec![created()];
    given.extend(events);
    assert_eq!(
        when(given, CustomerCommand::AddNote { text: "hi".into() }),
        Err(CustomerError::Erased)
    );
}

#[test]
fn it_should_refuse_erasure_without_a_reason() {
    let cmd = CustomerCommand::ErasePersonalData { reason: "".into() };
    assert_eq!(
        when(vec![created()], cmd).expect_err("empty").field(),
        Some("reason")
    );
}

#[test]
fn it_should_close_a_merged_duplicate_and_point_at_the_survivor() {
    let target = CustomerId(Uuid::from_u128(2));
    let events = when(vec![created()], CustomerCommand::MergeInto { target }).expect("ok");
    let mut given = vec![created()];
    given.extend(events);
    assert_eq!(
        when(given, CustomerCommand::AddTag { tag: "vip".into() }),
        Err(CustomerError::Merged { target })
    );
}

#[test]
fn it_should_not_merge_a_customer_into_itself() {
    let err = when(vec![created()], CustomerCommand::MergeInto { target: id() }).expect_err("self");
    assert_eq!(err.field(), Some("target_customer_id"));
}

#[test]
fn it_should_refuse_a_birthday_in_the_future() {
    let cmd = CustomerCommand::SetBirthday {
        birthday: NaiveDate::from_ymd_opt(2030, 1, 1).expect("date"),
    };
    assert_eq!(
        when(vec![created()], cmd).expect_err("future").field(),
        Some("birthday")
    );
}

#[test]
fn it_should_issue_a_referral_code_derived_from_the_customer_id() {
    let events = when(
        vec![created()],
        CustomerCommand::IssueReferralCode { attempt: 0 },
    )
    .expect("ok");
    assert_eq!(
        events,
        vec![CustomerEvent::ReferralCodeIssued {
            code: ReferralCode::from_seed(id().0, 0),
            at: test_now()
        }]
    );
}

#[test]
fn it_should_tag_once_and_untag() {
    let given = vec![
        created(),
        CustomerEvent::CustomerTagged {
            tag: Tag::parse("vip").expect("ok"),
            at: test_now(),
        },
    ];
    assert_eq!(
        when(given.clone(), CustomerCommand::AddTag { tag: "VIP".into() }),
        Ok(vec![])
    );
    assert_eq!(
        when(given, CustomerCommand::RemoveTag { tag: "vip".into() }),
        Ok(vec![CustomerEvent::CustomerUntagged {
            tag: Tag::parse("vip").expect("ok"),
            at: test_now()
        }])
    );
}

#[test]
fn it_should_link_a_stripe_customer() {
    let cmd = CustomerCommand::LinkStripeCustomer {
        stripe_customer_id: "cus_123".into(),
    };
    assert_eq!(
        when(vec![created()], cmd),
        Ok(vec![CustomerEvent::StripeCustomerLinked {
            stripe_customer_id: "cus_123".into(),
            at: test_now()
        }])
    );
    let bad = CustomerCommand::LinkStripeCustomer {
        stripe_customer_id: "123".into(),
    };
    assert_eq!(
        when(vec![created()], bad).expect_err("bad").field(),
        Some("stripe_customer_id")
    );
}

/// As the customer themselves (the portal).
fn by_customer(
    given: Vec<CustomerEvent>,
    cmd: CustomerCommand,
) -> Result<Vec<CustomerEvent>, CustomerError> {
    testing::run::<Customer, _>(
        testing::test_services(),
        given,
        testing::customer_actor(id().0.as_u128()),
        cmd,
    )
}

fn required(channel: Channel) -> CustomerEvent {
    CustomerEvent::ContactConfirmationRequired {
        channel,
        at: test_now(),
    }
}

fn code_issued(hash: &str, minutes: i64) -> CustomerEvent {
    CustomerEvent::ContactCodeIssued {
        channel: Channel::Sms,
        code_hash: SecretHash::parse(hash).expect("hash"),
        expires_at: test_now() + chrono::Duration::minutes(minutes),
        at: test_now(),
    }
}

fn confirm(hash: &str) -> CustomerCommand {
    CustomerCommand::ConfirmContact {
        channel: Channel::Sms,
        code_hash: hash.into(),
    }
}

fn state(events: Vec<CustomerEvent>) -> Customer {
    let mut c = Customer::default();
    for e in events {
        c.apply_event(e);
    }
    c
}

#[test]
fn it_should_require_confirmation_of_contacts_a_customer_enters_at_sign_up() {
    let events = by_customer(vec![], create_cmd("+15125550100")).expect("created");
    assert!(events.contains(&required(Channel::Sms)), "{events:?}");
    // Staff-entered contacts are trusted as before.
    let events = when(vec![], create_cmd("+15125550100")).expect("created");
    assert_eq!(events.len(), 1, "{events:?}");
}

#[test]
fn it_should_require_confirmation_again_when_the_customer_changes_their_phone() {
    let update = |phone: &str| CustomerCommand::UpdateContactDetails {
        name: "Jane Doe".into(),
        email: Some("jane@example.com".into()),
        phone: Some(phone.into()),
    };
    let events = by_customer(vec![created()], update("+15125550199")).expect("updated");
    assert_eq!(events.last(), Some(&required(Channel::Sms)), "{events:?}");
    // The same phone again changes nothing about its confirmation.
    let events = by_customer(vec![created()], update("+15125550100")).expect("updated");
    assert_eq!(events.len(), 1, "{events:?}");
    // Staff replacing an unconfirmed phone vouch for the new one.
    let events = when(
        vec![created(), required(Channel::Sms)],
        update("+15125550177"),
    )
    .expect("updated");
    assert_eq!(
        events.last(),
        Some(&CustomerEvent::ContactConfirmed {
            channel: Channel::Sms,
            at: test_now()
        })
    );
}

#[test]
fn it_should_confirm_an_email_proven_at_sign_up_only_when_it_is_the_one_on_file() {
    let prove = |email: &str| CustomerCommand::ConfirmProvenEmail {
        email: email.into(),
    };
    let given = vec![created(), required(Channel::Email)];
    let events = by_customer(given.clone(), prove("JANE@example.com")).expect("proven");
    assert_eq!(
        events,
        vec![CustomerEvent::ContactConfirmed {
            channel: Channel::Email,
            at: test_now()
        }]
    );
    let err = by_customer(given, prove("other@example.com")).expect_err("not on file");
    assert_eq!(err.field(), Some("email"));
    // Proven already (staff entered it): nothing to record.
    assert_eq!(
        by_customer(vec![created()], prove("jane@example.com")),
        Ok(vec![])
    );
}

#[test]
fn it_should_confirm_a_contact_only_with_the_latest_unexpired_code() {
    let given = vec![created(), required(Channel::Sms), code_issued("h1", 15)];
    let err = by_customer(given.clone(), confirm("h0")).expect_err("wrong code");
    assert_eq!(err.field(), Some("code"));
    let events = by_customer(given, confirm("h1")).expect("confirmed");
    assert_eq!(
        events,
        vec![CustomerEvent::ContactConfirmed {
            channel: Channel::Sms,
            at: test_now()
        }]
    );
    let expired = vec![created(), required(Channel::Sms), code_issued("h1", -1)];
    let err = by_customer(expired, confirm("h1")).expect_err("expired");
    assert_eq!(err.field(), Some("code"));
}

#[test]
fn it_should_take_staff_recording_consent_as_vouching_for_the_contact() {
    let given = vec![created(), required(Channel::Sms)];
    let grant = CustomerCommand::GrantMarketingConsent {
        channel: Channel::Sms,
        source: ConsentSource::Portal,
    };
    let events = when(given, grant).expect("granted");
    assert_eq!(
        events[0],
        CustomerEvent::ContactConfirmed {
            channel: Channel::Sms,
            at: test_now()
        }
    );
    assert_eq!(events.len(), 2, "{events:?}");
}

#[test]
fn it_should_not_let_a_customer_opt_in_an_unconfirmed_phone() {
    let given = vec![created(), required(Channel::Sms)];
    let grant = CustomerCommand::GrantMarketingConsent {
        channel: Channel::Sms,
        source: ConsentSource::Portal,
    };
    let err = by_customer(given.clone(), grant).expect_err("unconfirmed");
    assert_eq!(
        err,
        CustomerError::ContactNotConfirmed {
            channel: Channel::Sms
        }
    );
    let start = CustomerCommand::ApplyInboundSms {
        body: "START".into(),
    };
    assert_eq!(when(given.clone(), start), Ok(vec![]));
    let mut consented = given;
    consented.push(CustomerEvent::SmsConsentGranted {
        source: ConsentSource::Portal,
        at: test_now(),
    });
    assert_eq!(
        state(consented).marketing_eligibility(Channel::Sms),
        MarketingEligibility::Unconfirmed
    );
}
