//! Customer: contact details, addresses, dates, marketing consent, notes, tags, merging,
//! erasure, Stripe link, email suppression and the referral code.
//!
//! All customer PII lives in this aggregate's events and nowhere else (see `docs/events.md`,
//! "Personal data"), so a later step can encrypt this stream per customer and erase the key.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::consent::{Channel, MarketingEligibility};
use crate::ids::CustomerId;
use crate::ports::cqrs_aggregate;
use crate::values::{Address, Email, NonEmptyText, PhoneNumber, ReferralCode, SecretHash, Tag};

mod commands;
mod decisions;
mod events;

pub use commands::{CustomerCommand, CustomerError};
pub use events::CustomerEvent;

/// `Aggregate::TYPE` of [`Customer`].
pub const AGGREGATE_TYPE: &str = "Customer";

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

cqrs_aggregate!(
    Customer,
    AGGREGATE_TYPE,
    CustomerCommand,
    CustomerEvent,
    CustomerError
);

#[cfg(test)]
mod tests;
