//! Customer: contact details, addresses, dates, marketing consent, notes, tags, merging,
//! erasure, Stripe link, email suppression and the referral code.
//!
//! All customer PII lives in this aggregate's events and nowhere else (see `docs/events.md`,
//! "Personal data"), so a later step can encrypt this stream per customer and erase the key.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::consent::{
    parse_sms_keyword, Channel, ConsentKeyword, ConsentSource, MarketingEligibility,
    SuppressionReason,
};
use crate::error::{validation_error, ValidationError};
use crate::ids::CustomerId;
use crate::ports::{cqrs_aggregate, Actor, CommandContext};
use crate::values::{
    Address, AddressInput, Email, NonEmptyText, PhoneNumber, Reason, ReferralCode, SecretHash, Tag,
};

/// `Aggregate::TYPE` of [`Customer`].
pub const AGGREGATE_TYPE: &str = "Customer";

const NAME_MAX: usize = 200;
const NOTE_MAX: usize = 5_000;

/// What can be asked of a customer. Raw input is validated by `decide`.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerCommand {
    /// Create the customer (`customer_since` defaults to today in the business's zone).
    Create {
        /// The new customer's id (the aggregate id).
        customer_id: CustomerId,
        /// Full name.
        name: String,
        /// Email address, if known.
        email: Option<String>,
        /// Phone number, if known (E.164 or a US number).
        phone: Option<String>,
        /// Birthday, if known.
        birthday: Option<NaiveDate>,
        /// Customer since, if not today (imports).
        customer_since: Option<NaiveDate>,
    },
    /// Replace name, email and phone.
    UpdateContactDetails {
        /// Full name.
        name: String,
        /// Email address (None removes it).
        email: Option<String>,
        /// Phone number (None removes it).
        phone: Option<String>,
    },
    /// Add or replace the address under `label` ("home", "rental"...).
    AddAddress {
        /// Label, unique per customer.
        label: String,
        /// The address.
        address: AddressInput,
    },
    /// Remove the address under `label`.
    RemoveAddress {
        /// Label of the address.
        label: String,
    },
    /// Set the birthday.
    SetBirthday {
        /// The date of birth (only month and day are used for greetings).
        birthday: NaiveDate,
    },
    /// Set the customer-since (anniversary) date.
    SetCustomerSince {
        /// The date.
        customer_since: NaiveDate,
    },
    /// Record marketing consent on a channel.
    GrantMarketingConsent {
        /// SMS or email.
        channel: Channel,
        /// Proof of where it came from.
        source: ConsentSource,
    },
    /// Record withdrawal of marketing consent on a channel.
    RevokeMarketingConsent {
        /// SMS or email.
        channel: Channel,
        /// Where it came from.
        source: ConsentSource,
    },
    /// An inbound SMS from this customer's number: STOP-type keywords revoke SMS consent,
    /// Send a code to a contact the customer entered themselves (the caller delivers it).
    IssueContactCode {
        /// Phone (`Sms`) or email.
        channel: Channel,
        /// SHA-256 of the code (the code itself never enters the log).
        code_hash: String,
        /// When the code stops working.
        expires_at: DateTime<Utc>,
    },
    /// The customer proves a contact is theirs with the code sent to it.
    ConfirmContact {
        /// Phone (`Sms`) or email.
        channel: Channel,
        /// SHA-256 of the code they typed.
        code_hash: String,
    },
    /// The customer proved the email with a code the transport checked (a portal sign-up or
    /// an email change, whose codes live outside the log until the address is the customer's).
    ConfirmProvenEmail {
        /// The address the code went to; must be the one on file.
        email: String,
    },
    /// START restores it, anything else changes nothing.
    ApplyInboundSms {
        /// The message body.
        body: String,
    },
    /// Stop emailing this customer's address (provider webhook: hard bounce or complaint).
    SuppressEmail {
        /// Bounce or complaint.
        reason: SuppressionReason,
        /// The provider's event id, for tracing.
        provider_event_id: String,
    },
    /// Add a staff note.
    AddNote {
        /// The note.
        text: String,
    },
    /// Tag the customer.
    AddTag {
        /// The tag.
        tag: String,
    },
    /// Remove a tag.
    RemoveTag {
        /// The tag.
        tag: String,
    },
    /// This customer is a duplicate of `target`: close it, pointing at the survivor.
    MergeInto {
        /// The surviving customer.
        target: CustomerId,
    },
    /// Record on the survivor that `source` was merged into it.
    AbsorbDuplicate {
        /// The duplicate that was closed.
        source: CustomerId,
    },
    /// GDPR erasure of personal data.
    ErasePersonalData {
        /// Why (e.g. "customer request 2025-06-01").
        reason: String,
    },
    /// Link the Stripe customer object.
    LinkStripeCustomer {
        /// Stripe's `cus_...` id.
        stripe_customer_id: String,
    },
    /// Give the customer a referral code derived from their id; `attempt` is bumped by the
    /// commands layer when the code collides with another customer's.
    IssueReferralCode {
        /// 0 first, then 1, 2... on collisions.
        attempt: u32,
    },
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`Customer`] aggregate.
    pub enum CustomerEvent {
        /// A customer was created.
        CustomerCreated {
            /// The customer.
            customer_id: CustomerId,
            /// Full name (PII).
            name: NonEmptyText,
            /// Email (PII).
            email: Option<Email>,
            /// Phone, E.164 (PII).
            phone: Option<PhoneNumber>,
            /// Birthday (PII).
            birthday: Option<NaiveDate>,
            /// Customer-since date (anniversary).
            customer_since: NaiveDate,
            /// When.
            at: DateTime<Utc>,
        },
        /// Name, email and phone were replaced (the full new values).
        CustomerContactUpdated {
            /// Full name (PII).
            name: NonEmptyText,
            /// Email (PII).
            email: Option<Email>,
            /// Phone, E.164 (PII).
            phone: Option<PhoneNumber>,
            /// When.
            at: DateTime<Utc>,
        },
        /// An address was added or replaced under a label.
        CustomerAddressAdded {
            /// Label ("home").
            label: NonEmptyText,
            /// The address (PII).
            address: Address,
            /// When.
            at: DateTime<Utc>,
        },
        /// An address was removed.
        CustomerAddressRemoved {
            /// Label.
            label: NonEmptyText,
            /// When.
            at: DateTime<Utc>,
        },
        /// The birthday was set.
        CustomerBirthdaySet {
            /// Date of birth (PII; `None` once erased: optional so that an erased
            /// event still reads).
            birthday: Option<NaiveDate>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer-since date was set.
        CustomerSinceSet {
            /// The date.
            customer_since: NaiveDate,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer agreed to marketing SMS.
        SmsConsentGranted {
            /// Where the consent came from.
            source: ConsentSource,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer withdrew SMS consent (e.g. replied STOP).
        SmsConsentRevoked {
            /// Where the withdrawal came from.
            source: ConsentSource,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer agreed to marketing email.
        EmailConsentGranted {
            /// Where the consent came from.
            source: ConsentSource,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer withdrew email consent.
        EmailConsentRevoked {
            /// Where the withdrawal came from.
            source: ConsentSource,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer's email address must not be sent to (hard bounce or complaint).
        EmailSuppressed {
            /// The suppressed address (PII).
            email: Email,
            /// Bounce or complaint.
            reason: SuppressionReason,
            /// The provider's webhook event id.
            provider_event_id: String,
            /// When.
            at: DateTime<Utc>,
        },
        /// The suppression ended because the customer's email address changed.
        EmailSuppressionLifted {
            /// When.
            at: DateTime<Utc>,
        },
        /// Staff added a note.
        CustomerNoteAdded {
            /// The note (may contain PII).
            text: NonEmptyText,
            /// Who wrote it.
            author: Actor,
            /// When.
            at: DateTime<Utc>,
        },
        /// A tag was added.
        CustomerTagged {
            /// The tag.
            tag: Tag,
            /// When.
            at: DateTime<Utc>,
        },
        /// A tag was removed.
        CustomerUntagged {
            /// The tag.
            tag: Tag,
            /// When.
            at: DateTime<Utc>,
        },
        /// This customer was a duplicate and is closed; its history continues on the target.
        CustomerMergedInto {
            /// The surviving customer.
            target_customer_id: CustomerId,
            /// When.
            at: DateTime<Utc>,
        },
        /// A duplicate customer was merged into this one.
        DuplicateCustomerAbsorbed {
            /// The closed duplicate.
            source_customer_id: CustomerId,
            /// When.
            at: DateTime<Utc>,
        },
        /// Personal data was erased (GDPR); earlier events' PII is to be crypto-shredded.
        CustomerPersonalDataErased {
            /// Why.
            reason: Reason,
            /// When.
            at: DateTime<Utc>,
        },
        /// The Stripe customer object was linked.
        StripeCustomerLinked {
            /// Stripe's `cus_...` id.
            stripe_customer_id: String,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer entered this phone or email themselves: it counts as theirs (inbound
        /// SMS, marketing consent) only once confirmed with a code sent to it.
        ContactConfirmationRequired {
            /// Phone (`sms`) or email.
            channel: Channel,
            /// When.
            at: DateTime<Utc>,
        },
        /// A confirmation code was sent to the contact (only its hash is kept).
        ContactCodeIssued {
            /// Phone (`sms`) or email.
            channel: Channel,
            /// SHA-256 of the code.
            code_hash: SecretHash,
            /// When the code stops working.
            expires_at: DateTime<Utc>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The contact counts as the customer's: they confirmed the code, or staff entered a
        /// new value in place of an unconfirmed one.
        ContactConfirmed {
            /// Phone (`sms`) or email.
            channel: Channel,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer received a referral code.
        ReferralCodeIssued {
            /// The code.
            code: ReferralCode,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a customer command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// `Create` on an existing customer.
    #[error("the customer already exists")]
    AlreadyExists,
    /// Any command but `Create` on a customer that does not exist.
    #[error("unknown customer")]
    UnknownCustomer,
    /// The customer was merged into another and is closed.
    #[error("the customer was merged into {target}")]
    Merged {
        /// The survivor, where the command should go.
        target: CustomerId,
    },
    /// The customer's personal data was erased.
    #[error("the customer's personal data was erased")]
    Erased,
    /// The customer entered this contact and has not confirmed it yet.
    #[error("confirm this {} first with the code sent to it", contact_name(*channel))]
    ContactNotConfirmed {
        /// Phone (`Sms`) or email.
        channel: Channel,
    },
}

/// What a channel's contact is called in messages.
fn contact_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => "phone number",
        Channel::Email => "email address",
    }
}
validation_error!(CustomerError);

/// Consent on one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    /// Never asked.
    #[default]
    Unknown,
    /// Consented.
    Granted,
    /// Withdrawn.
    Revoked,
}

/// The customer's current state (rebuilt from its events).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    id: Option<CustomerId>,
    name: Option<NonEmptyText>,
    email: Option<Email>,
    phone: Option<PhoneNumber>,
    addresses: BTreeMap<String, Address>,
    birthday: Option<NaiveDate>,
    customer_since: Option<NaiveDate>,
    sms_consent: ConsentState,
    email_consent: ConsentState,
    suppressed_email: Option<Email>,
    tags: BTreeSet<Tag>,
    merged_into: Option<CustomerId>,
    erased: bool,
    stripe_customer_id: Option<String>,
    referral_code: Option<ReferralCode>,
    /// Contacts the customer entered and has not confirmed yet.
    #[serde(default)]
    unconfirmed: BTreeSet<Channel>,
    /// The latest code sent per unconfirmed contact, and until when it works.
    #[serde(default)]
    codes: BTreeMap<Channel, (SecretHash, DateTime<Utc>)>,
}

fn optional<T>(
    raw: Option<&str>,
    parse: impl Fn(&str) -> Result<T, ValidationError>,
) -> Result<Option<T>, ValidationError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => parse(v).map(Some),
    }
}

impl Customer {
    /// The customer's id, once created.
    pub fn id(&self) -> Option<CustomerId> {
        self.id
    }
    /// The name (a placeholder once erased).
    pub fn name(&self) -> Option<&NonEmptyText> {
        self.name.as_ref()
    }
    /// The email on file.
    pub fn email(&self) -> Option<&Email> {
        self.email.as_ref()
    }
    /// The phone on file.
    pub fn phone(&self) -> Option<&PhoneNumber> {
        self.phone.as_ref()
    }
    /// The birthday, if known (for birthday promotions and bonuses).
    pub fn birthday(&self) -> Option<NaiveDate> {
        self.birthday
    }
    /// The customer-since date (for anniversary promotions and bonuses).
    pub fn customer_since(&self) -> Option<NaiveDate> {
        self.customer_since
    }
    /// Whether personal data was erased.
    pub fn is_erased(&self) -> bool {
        self.erased
    }
    /// The survivor, if this customer was merged away.
    pub fn merged_into(&self) -> Option<CustomerId> {
        self.merged_into
    }
    /// The referral code, once issued.
    pub fn referral_code(&self) -> Option<&ReferralCode> {
        self.referral_code.as_ref()
    }
    /// Consent on `channel`.
    pub fn consent(&self, channel: Channel) -> ConsentState {
        match channel {
            Channel::Sms => self.sms_consent,
            Channel::Email => self.email_consent,
        }
    }

    /// Whether the customer's contact on `channel` counts as theirs: entered by staff, or
    /// entered by the customer and confirmed with a code.
    pub fn is_confirmed(&self, channel: Channel) -> bool {
        !self.unconfirmed.contains(&channel)
    }

    /// Whether marketing may be sent on `channel` — the verdict promotions and review requests
    /// must be given.
    pub fn marketing_eligibility(&self, channel: Channel) -> MarketingEligibility {
        if self.erased || self.merged_into.is_some() || self.id.is_none() {
            return MarketingEligibility::NoAddress;
        }
        let (has_address, consent) = match channel {
            Channel::Sms => (self.phone.is_some(), self.sms_consent),
            Channel::Email => (self.email.is_some(), self.email_consent),
        };
        if !has_address {
            return MarketingEligibility::NoAddress;
        }
        if !self.is_confirmed(channel) {
            return MarketingEligibility::Unconfirmed;
        }
        if channel == Channel::Email && self.suppressed_email.is_some() {
            return MarketingEligibility::Suppressed;
        }
        match consent {
            ConsentState::Granted => MarketingEligibility::Eligible,
            ConsentState::Revoked => MarketingEligibility::OptedOut,
            ConsentState::Unknown => MarketingEligibility::NoConsent,
        }
    }

    fn ensure_open(&self) -> Result<(), CustomerError> {
        if self.id.is_none() {
            return Err(CustomerError::UnknownCustomer);
        }
        if self.erased {
            return Err(CustomerError::Erased);
        }
        if let Some(target) = self.merged_into {
            return Err(CustomerError::Merged { target });
        }
        Ok(())
    }

    fn consent_change(
        &self,
        channel: Channel,
        grant: bool,
        source: ConsentSource,
        at: DateTime<Utc>,
    ) -> Result<Vec<CustomerEvent>, CustomerError> {
        let wanted = if grant {
            ConsentState::Granted
        } else {
            ConsentState::Revoked
        };
        // Repeated STOPs or double clicks are not news: nothing to record.
        if self.consent(channel) == wanted {
            return Ok(vec![]);
        }
        let event = match (channel, grant) {
            (Channel::Sms, true) => {
                if self.phone.is_none() {
                    return Err(ValidationError::new(
                        "phone",
                        "SMS consent needs a phone number on file",
                    )
                    .into());
                }
                CustomerEvent::SmsConsentGranted { source, at }
            }
            (Channel::Sms, false) => CustomerEvent::SmsConsentRevoked { source, at },
            (Channel::Email, true) => {
                if self.email.is_none() {
                    return Err(ValidationError::new(
                        "email",
                        "email consent needs an email address on file",
                    )
                    .into());
                }
                CustomerEvent::EmailConsentGranted { source, at }
            }
            (Channel::Email, false) => CustomerEvent::EmailConsentRevoked { source, at },
        };
        Ok(vec![event])
    }

    /// Decides what happens when `cmd` is issued. Pure: no clock, no I/O.
    ///
    /// # Errors
    /// [`CustomerError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: CustomerCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<CustomerEvent>, CustomerError> {
        let at = ctx.now;
        if let CustomerCommand::Create {
            customer_id,
            name,
            email,
            phone,
            birthday,
            customer_since,
        } = cmd
        {
            if self.id.is_some() {
                return Err(CustomerError::AlreadyExists);
            }
            let name = NonEmptyText::parse("name", &name, NAME_MAX)?;
            let email = optional(email.as_deref(), Email::parse)?;
            let phone = optional(phone.as_deref(), PhoneNumber::parse)?;
            if let Some(b) = birthday {
                check_not_future("birthday", b, ctx)?;
            }
            let customer_since = customer_since.unwrap_or_else(|| ctx.today());
            check_not_future("customer_since", customer_since, ctx)?;
            let by_customer = matches!(ctx.actor, Actor::Customer { .. });
            let entered = [
                (Channel::Email, email.is_some()),
                (Channel::Sms, phone.is_some()),
            ];
            let mut events = vec![CustomerEvent::CustomerCreated {
                customer_id,
                name,
                email,
                phone,
                birthday,
                customer_since,
                at,
            }];
            if by_customer {
                events.extend(
                    entered
                        .into_iter()
                        .filter(|(_, some)| *some)
                        .map(|(channel, _)| CustomerEvent::ContactConfirmationRequired {
                            channel,
                            at,
                        }),
                );
            }
            return Ok(events);
        }

        // Erasure must stay possible for a merged duplicate; repeating it is harmless.
        if let CustomerCommand::ErasePersonalData { reason } = cmd {
            if self.id.is_none() {
                return Err(CustomerError::UnknownCustomer);
            }
            let reason = Reason::parse(&reason)?;
            if self.erased {
                return Ok(vec![]);
            }
            return Ok(vec![CustomerEvent::CustomerPersonalDataErased {
                reason,
                at,
            }]);
        }

        self.ensure_open()?;
        let events = match cmd {
            CustomerCommand::Create { .. } | CustomerCommand::ErasePersonalData { .. } => vec![],
            CustomerCommand::UpdateContactDetails { name, email, phone } => {
                let name = NonEmptyText::parse("name", &name, NAME_MAX)?;
                let email = optional(email.as_deref(), Email::parse)?;
                let phone = optional(phone.as_deref(), PhoneNumber::parse)?;
                let lifts = self.suppressed_email.is_some() && self.suppressed_email != email;
                let changed = [
                    (Channel::Email, email.is_some(), self.email != email),
                    (Channel::Sms, phone.is_some(), self.phone != phone),
                ];
                let mut events = vec![CustomerEvent::CustomerContactUpdated {
                    name,
                    email,
                    phone,
                    at,
                }];
                if lifts {
                    events.push(CustomerEvent::EmailSuppressionLifted { at });
                }
                let by_customer = matches!(ctx.actor, Actor::Customer { .. });
                for (channel, some, changed) in changed {
                    let unconfirmed = !self.is_confirmed(channel);
                    if by_customer && some && changed {
                        // A new value of theirs: proven again, and an earlier code is void.
                        events.push(CustomerEvent::ContactConfirmationRequired { channel, at });
                    } else if !by_customer && changed && unconfirmed {
                        // Staff replaced (or removed) what the customer entered.
                        events.push(CustomerEvent::ContactConfirmed { channel, at });
                    } else if by_customer && !some && unconfirmed {
                        // Removed: nothing is left to confirm.
                        events.push(CustomerEvent::ContactConfirmed { channel, at });
                    }
                }
                events
            }
            CustomerCommand::AddAddress { label, address } => {
                vec![CustomerEvent::CustomerAddressAdded {
                    label: NonEmptyText::parse("label", &label, 50)?,
                    address: Address::parse(&address)?,
                    at,
                }]
            }
            CustomerCommand::RemoveAddress { label } => {
                let label = NonEmptyText::parse("label", &label, 50)?;
                if !self.addresses.contains_key(label.as_str()) {
                    return Err(ValidationError::new("label", "no address with this label").into());
                }
                vec![CustomerEvent::CustomerAddressRemoved { label, at }]
            }
            CustomerCommand::SetBirthday { birthday } => {
                check_not_future("birthday", birthday, ctx)?;
                vec![CustomerEvent::CustomerBirthdaySet {
                    birthday: Some(birthday),
                    at,
                }]
            }
            CustomerCommand::SetCustomerSince { customer_since } => {
                check_not_future("customer_since", customer_since, ctx)?;
                vec![CustomerEvent::CustomerSinceSet { customer_since, at }]
            }
            CustomerCommand::GrantMarketingConsent { channel, source } => {
                // The customer may opt in only a contact proven theirs (staff vouch for theirs).
                let mut events = Vec::new();
                if !self.is_confirmed(channel) {
                    match ctx.actor {
                        Actor::Customer { .. } => {
                            return Err(CustomerError::ContactNotConfirmed { channel })
                        }
                        // Staff recording consent (on the phone, at the door) vouch for the
                        // contact it is given for.
                        Actor::Staff { .. } => {
                            events.push(CustomerEvent::ContactConfirmed { channel, at });
                        }
                        _ => {}
                    }
                }
                events.extend(self.consent_change(channel, true, source, at)?);
                events
            }
            CustomerCommand::IssueContactCode {
                channel,
                code_hash,
                expires_at,
            } => {
                if self.is_confirmed(channel) {
                    return Err(ValidationError::new(
                        "channel",
                        "this contact is already confirmed (or there is none)",
                    )
                    .into());
                }
                vec![CustomerEvent::ContactCodeIssued {
                    channel,
                    code_hash: SecretHash::parse(&code_hash)?,
                    expires_at,
                    at,
                }]
            }
            CustomerCommand::ConfirmProvenEmail { email } => {
                let email = Email::parse(&email)?;
                if self.email.as_ref() != Some(&email) {
                    return Err(ValidationError::new(
                        "email",
                        "the proven address is not the one on file",
                    )
                    .into());
                }
                if self.is_confirmed(Channel::Email) {
                    vec![]
                } else {
                    vec![CustomerEvent::ContactConfirmed {
                        channel: Channel::Email,
                        at,
                    }]
                }
            }
            CustomerCommand::ConfirmContact { channel, code_hash } => {
                if self.is_confirmed(channel) {
                    return Ok(vec![]);
                }
                match self.codes.get(&channel) {
                    Some((hash, until)) if hash.expose() == code_hash && at < *until => {
                        vec![CustomerEvent::ContactConfirmed { channel, at }]
                    }
                    _ => {
                        return Err(ValidationError::new(
                            "code",
                            "the code is wrong or has expired; ask for a new one",
                        )
                        .into())
                    }
                }
            }
            CustomerCommand::RevokeMarketingConsent { channel, source } => {
                self.consent_change(channel, false, source, at)?
            }
            CustomerCommand::ApplyInboundSms { body } => match parse_sms_keyword(&body) {
                None => vec![],
                Some(keyword) => {
                    let source = ConsentSource::SmsKeyword {
                        keyword: body.trim().to_ascii_uppercase(),
                    };
                    match keyword {
                        ConsentKeyword::Stop => {
                            self.consent_change(Channel::Sms, false, source, at)?
                        }
                        // START from a number we hold: the phone is on file by construction.
                        // Not one the customer has not proven theirs: its owner may be someone
                        // else. (STOP is always honoured.)
                        ConsentKeyword::Start if !self.is_confirmed(Channel::Sms) => vec![],
                        ConsentKeyword::Start => {
                            self.consent_change(Channel::Sms, true, source, at)?
                        }
                    }
                }
            },
            CustomerCommand::SuppressEmail {
                reason,
                provider_event_id,
            } => match &self.email {
                None => {
                    return Err(
                        ValidationError::new("email", "the customer has no email address").into(),
                    )
                }
                Some(email) if self.suppressed_email.as_ref() == Some(email) => vec![],
                Some(email) => vec![CustomerEvent::EmailSuppressed {
                    email: email.clone(),
                    reason,
                    provider_event_id,
                    at,
                }],
            },
            CustomerCommand::AddNote { text } => vec![CustomerEvent::CustomerNoteAdded {
                text: NonEmptyText::parse("text", &text, NOTE_MAX)?,
                author: ctx.actor,
                at,
            }],
            CustomerCommand::AddTag { tag } => {
                let tag = Tag::parse(&tag)?;
                if self.tags.contains(&tag) {
                    vec![]
                } else {
                    vec![CustomerEvent::CustomerTagged { tag, at }]
                }
            }
            CustomerCommand::RemoveTag { tag } => {
                let tag = Tag::parse(&tag)?;
                if self.tags.contains(&tag) {
                    vec![CustomerEvent::CustomerUntagged { tag, at }]
                } else {
                    vec![]
                }
            }
            CustomerCommand::MergeInto { target } => {
                if Some(target) == self.id {
                    return Err(ValidationError::new(
                        "target_customer_id",
                        "a customer cannot be merged into itself",
                    )
                    .into());
                }
                vec![CustomerEvent::CustomerMergedInto {
                    target_customer_id: target,
                    at,
                }]
            }
            CustomerCommand::AbsorbDuplicate { source } => {
                if Some(source) == self.id {
                    return Err(ValidationError::new(
                        "source_customer_id",
                        "a customer cannot absorb itself",
                    )
                    .into());
                }
                vec![CustomerEvent::DuplicateCustomerAbsorbed {
                    source_customer_id: source,
                    at,
                }]
            }
            CustomerCommand::LinkStripeCustomer { stripe_customer_id } => {
                let id = stripe_customer_id.trim();
                if !id.starts_with("cus_") || id.len() < 5 {
                    return Err(ValidationError::new(
                        "stripe_customer_id",
                        "must be a Stripe customer id (cus_...)",
                    )
                    .into());
                }
                if self.stripe_customer_id.as_deref() == Some(id) {
                    vec![]
                } else {
                    vec![CustomerEvent::StripeCustomerLinked {
                        stripe_customer_id: id.to_owned(),
                        at,
                    }]
                }
            }
            CustomerCommand::IssueReferralCode { attempt } => {
                match (&self.referral_code, self.id) {
                    (Some(_), _) if attempt == 0 => vec![],
                    (_, Some(id)) => vec![CustomerEvent::ReferralCodeIssued {
                        code: ReferralCode::from_seed(id.0, attempt),
                        at,
                    }],
                    (_, None) => return Err(CustomerError::UnknownCustomer),
                }
            }
        };
        Ok(events)
    }

    /// Folds one event into the state. No rules here: events are facts.
    pub fn apply_event(&mut self, event: CustomerEvent) {
        match event {
            CustomerEvent::CustomerCreated {
                customer_id,
                name,
                email,
                phone,
                birthday,
                customer_since,
                ..
            } => {
                self.id = Some(customer_id);
                self.name = Some(name);
                self.email = email;
                self.phone = phone;
                self.birthday = birthday;
                self.customer_since = Some(customer_since);
            }
            CustomerEvent::CustomerContactUpdated {
                name, email, phone, ..
            } => {
                self.name = Some(name);
                self.email = email;
                self.phone = phone;
            }
            CustomerEvent::CustomerAddressAdded { label, address, .. } => {
                self.addresses.insert(label.as_str().to_owned(), address);
            }
            CustomerEvent::CustomerAddressRemoved { label, .. } => {
                self.addresses.remove(label.as_str());
            }
            CustomerEvent::CustomerBirthdaySet { birthday, .. } => self.birthday = birthday,
            CustomerEvent::CustomerSinceSet { customer_since, .. } => {
                self.customer_since = Some(customer_since);
            }
            CustomerEvent::SmsConsentGranted { .. } => self.sms_consent = ConsentState::Granted,
            CustomerEvent::SmsConsentRevoked { .. } => self.sms_consent = ConsentState::Revoked,
            CustomerEvent::EmailConsentGranted { .. } => self.email_consent = ConsentState::Granted,
            CustomerEvent::EmailConsentRevoked { .. } => self.email_consent = ConsentState::Revoked,
            CustomerEvent::EmailSuppressed { email, .. } => self.suppressed_email = Some(email),
            CustomerEvent::EmailSuppressionLifted { .. } => self.suppressed_email = None,
            CustomerEvent::CustomerNoteAdded { .. } => {}
            CustomerEvent::CustomerTagged { tag, .. } => {
                self.tags.insert(tag);
            }
            CustomerEvent::CustomerUntagged { tag, .. } => {
                self.tags.remove(&tag);
            }
            CustomerEvent::CustomerMergedInto {
                target_customer_id, ..
            } => self.merged_into = Some(target_customer_id),
            CustomerEvent::DuplicateCustomerAbsorbed { .. } => {}
            CustomerEvent::CustomerPersonalDataErased { .. } => {
                self.erased = true;
                self.name = None;
                self.email = None;
                self.phone = None;
                self.addresses.clear();
                self.birthday = None;
                self.suppressed_email = None;
                self.unconfirmed.clear();
                self.codes.clear();
            }
            CustomerEvent::StripeCustomerLinked {
                stripe_customer_id, ..
            } => self.stripe_customer_id = Some(stripe_customer_id),
            CustomerEvent::ReferralCodeIssued { code, .. } => self.referral_code = Some(code),
            CustomerEvent::ContactConfirmationRequired { channel, .. } => {
                self.unconfirmed.insert(channel);
                self.codes.remove(&channel);
            }
            CustomerEvent::ContactCodeIssued {
                channel,
                code_hash,
                expires_at,
                ..
            } => {
                self.codes.insert(channel, (code_hash, expires_at));
            }
            CustomerEvent::ContactConfirmed { channel, .. } => {
                self.unconfirmed.remove(&channel);
                self.codes.remove(&channel);
            }
        }
    }
}

fn check_not_future(
    field: &'static str,
    date: NaiveDate,
    ctx: &CommandContext,
) -> Result<(), ValidationError> {
    if date > ctx.today() {
        return Err(ValidationError::new(field, "must not be in the future"));
    }
    Ok(())
}

cqrs_aggregate!(
    Customer,
    AGGREGATE_TYPE,
    CustomerCommand,
    CustomerEvent,
    CustomerError
);

#[cfg(test)]
mod tests {
    use super::*;
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
        let err =
            when(vec![created()], CustomerCommand::MergeInto { target: id() }).expect_err("self");
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
}
