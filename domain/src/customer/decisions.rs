//! The customer's decisions: [`Customer::decide`] hands each command to the function named for
//! the business action, which checks its rules and returns the events. Pure: no clock, no I/O.

use chrono::{DateTime, NaiveDate, Utc};

use super::{ConsentState, Customer, CustomerCommand, CustomerError, CustomerEvent};
use crate::consent::{
    parse_sms_keyword, Channel, ConsentKeyword, ConsentSource, SuppressionReason,
};
use crate::error::ValidationError;
use crate::ids::CustomerId;
use crate::ports::{Actor, CommandContext};
use crate::values::{
    Address, AddressInput, Email, NonEmptyText, PhoneNumber, Reason, ReferralCode, SecretHash, Tag,
};

const NAME_MAX: usize = 200;
const NOTE_MAX: usize = 5_000;

/// What a decision returns: the events to record, or why nothing is.
type Decision = Result<Vec<CustomerEvent>, CustomerError>;

/// Name, email and phone as given to `Create` and `UpdateContactDetails`.
struct ContactInput {
    name: String,
    email: Option<String>,
    phone: Option<String>,
}

impl ContactInput {
    /// Validates name, email and phone, in that order; a blank email or phone is none.
    fn parse(self) -> Result<(NonEmptyText, Option<Email>, Option<PhoneNumber>), ValidationError> {
        let name = NonEmptyText::parse("name", &self.name, NAME_MAX)?;
        let email = optional(self.email.as_deref(), Email::parse)?;
        let phone = optional(self.phone.as_deref(), PhoneNumber::parse)?;
        Ok((name, email, phone))
    }
}

impl Customer {
    /// Decides what happens when `cmd` is issued. Pure: no clock, no I/O.
    ///
    /// # Errors
    /// [`CustomerError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: CustomerCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<CustomerEvent>, CustomerError> {
        // Erasure must stay possible for a merged duplicate; repeating it is harmless.
        if !matches!(
            cmd,
            CustomerCommand::Create { .. } | CustomerCommand::ErasePersonalData { .. }
        ) {
            self.ensure_open()?;
        }
        let at = ctx.now;
        match cmd {
            CustomerCommand::Create {
                customer_id,
                name,
                email,
                phone,
                birthday,
                customer_since,
            } => {
                let contact = ContactInput { name, email, phone };
                self.create(customer_id, contact, birthday, customer_since, ctx)
            }
            CustomerCommand::UpdateContactDetails { name, email, phone } => {
                self.update_contact_details(ContactInput { name, email, phone }, ctx)
            }
            CustomerCommand::AddAddress { label, address } => {
                self.add_address(&label, &address, at)
            }
            CustomerCommand::RemoveAddress { label } => self.remove_address(&label, at),
            CustomerCommand::SetBirthday { birthday } => self.set_birthday(birthday, ctx),
            CustomerCommand::SetCustomerSince { customer_since } => {
                self.set_customer_since(customer_since, ctx)
            }
            CustomerCommand::GrantMarketingConsent { channel, source } => {
                self.grant_marketing_consent(channel, source, ctx)
            }
            CustomerCommand::RevokeMarketingConsent { channel, source } => {
                self.revoke_marketing_consent(channel, source, at)
            }
            CustomerCommand::IssueContactCode {
                channel,
                code_hash,
                expires_at,
            } => self.issue_contact_code(channel, &code_hash, expires_at, at),
            CustomerCommand::ConfirmContact { channel, code_hash } => {
                self.confirm_contact(channel, &code_hash, at)
            }
            CustomerCommand::ConfirmProvenEmail { email } => self.confirm_proven_email(&email, at),
            CustomerCommand::ApplyInboundSms { body } => self.apply_inbound_sms(&body, at),
            CustomerCommand::SuppressEmail {
                reason,
                provider_event_id,
            } => self.suppress_email(reason, provider_event_id, at),
            CustomerCommand::AddNote { text } => self.add_note(&text, ctx),
            CustomerCommand::AddTag { tag } => self.add_tag(&tag, at),
            CustomerCommand::RemoveTag { tag } => self.remove_tag(&tag, at),
            CustomerCommand::MergeInto { target } => self.merge_into(target, at),
            CustomerCommand::AbsorbDuplicate { source } => self.absorb_duplicate(source, at),
            CustomerCommand::ErasePersonalData { reason } => self.erase_personal_data(&reason, at),
            CustomerCommand::LinkStripeCustomer { stripe_customer_id } => {
                self.link_stripe_customer(&stripe_customer_id, at)
            }
            CustomerCommand::IssueReferralCode { attempt } => self.issue_referral_code(attempt, at),
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

    /// Creates the customer (`customer_since` defaults to today); a phone or email the
    /// customer entered themselves needs confirming.
    fn create(
        &self,
        customer_id: CustomerId,
        contact: ContactInput,
        birthday: Option<NaiveDate>,
        customer_since: Option<NaiveDate>,
        ctx: &CommandContext,
    ) -> Decision {
        if self.id.is_some() {
            return Err(CustomerError::AlreadyExists);
        }
        let (name, email, phone) = contact.parse()?;
        if let Some(b) = birthday {
            check_not_future("birthday", b, ctx)?;
        }
        let customer_since = customer_since.unwrap_or_else(|| ctx.today());
        check_not_future("customer_since", customer_since, ctx)?;
        let at = ctx.now;
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
                    .map(|(channel, _)| CustomerEvent::ContactConfirmationRequired { channel, at }),
            );
        }
        Ok(events)
    }

    /// Replaces name, email and phone; a new email ends its suppression, and who changed a
    /// contact decides whether it needs confirming.
    fn update_contact_details(&self, contact: ContactInput, ctx: &CommandContext) -> Decision {
        let (name, email, phone) = contact.parse()?;
        let at = ctx.now;
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
        Ok(events)
    }

    fn add_address(&self, label: &str, address: &AddressInput, at: DateTime<Utc>) -> Decision {
        Ok(vec![CustomerEvent::CustomerAddressAdded {
            label: NonEmptyText::parse("label", label, 50)?,
            address: Address::parse(address)?,
            at,
        }])
    }

    fn remove_address(&self, label: &str, at: DateTime<Utc>) -> Decision {
        let label = NonEmptyText::parse("label", label, 50)?;
        if !self.addresses.contains_key(label.as_str()) {
            return Err(ValidationError::new("label", "no address with this label").into());
        }
        Ok(vec![CustomerEvent::CustomerAddressRemoved { label, at }])
    }

    fn set_birthday(&self, birthday: NaiveDate, ctx: &CommandContext) -> Decision {
        check_not_future("birthday", birthday, ctx)?;
        Ok(vec![CustomerEvent::CustomerBirthdaySet {
            birthday: Some(birthday),
            at: ctx.now,
        }])
    }

    fn set_customer_since(&self, customer_since: NaiveDate, ctx: &CommandContext) -> Decision {
        check_not_future("customer_since", customer_since, ctx)?;
        Ok(vec![CustomerEvent::CustomerSinceSet {
            customer_since,
            at: ctx.now,
        }])
    }

    fn grant_marketing_consent(
        &self,
        channel: Channel,
        source: ConsentSource,
        ctx: &CommandContext,
    ) -> Decision {
        let at = ctx.now;
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
        Ok(events)
    }

    fn revoke_marketing_consent(
        &self,
        channel: Channel,
        source: ConsentSource,
        at: DateTime<Utc>,
    ) -> Decision {
        self.consent_change(channel, false, source, at)
    }

    fn consent_change(
        &self,
        channel: Channel,
        grant: bool,
        source: ConsentSource,
        at: DateTime<Utc>,
    ) -> Decision {
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

    fn issue_contact_code(
        &self,
        channel: Channel,
        code_hash: &str,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Decision {
        if self.is_confirmed(channel) {
            return Err(ValidationError::new(
                "channel",
                "this contact is already confirmed (or there is none)",
            )
            .into());
        }
        Ok(vec![CustomerEvent::ContactCodeIssued {
            channel,
            code_hash: SecretHash::parse(code_hash)?,
            expires_at,
            at,
        }])
    }

    fn confirm_contact(&self, channel: Channel, code_hash: &str, at: DateTime<Utc>) -> Decision {
        if self.is_confirmed(channel) {
            return Ok(vec![]);
        }
        match self.codes.get(&channel) {
            Some((hash, until)) if hash.expose() == code_hash && at < *until => {
                Ok(vec![CustomerEvent::ContactConfirmed { channel, at }])
            }
            _ => Err(ValidationError::new(
                "code",
                "the code is wrong or has expired; ask for a new one",
            )
            .into()),
        }
    }

    fn confirm_proven_email(&self, email: &str, at: DateTime<Utc>) -> Decision {
        let email = Email::parse(email)?;
        if self.email.as_ref() != Some(&email) {
            return Err(
                ValidationError::new("email", "the proven address is not the one on file").into(),
            );
        }
        if self.is_confirmed(Channel::Email) {
            Ok(vec![])
        } else {
            Ok(vec![CustomerEvent::ContactConfirmed {
                channel: Channel::Email,
                at,
            }])
        }
    }

    /// STOP-type keywords revoke SMS consent, START restores it, anything else changes nothing.
    fn apply_inbound_sms(&self, body: &str, at: DateTime<Utc>) -> Decision {
        let Some(keyword) = parse_sms_keyword(body) else {
            return Ok(vec![]);
        };
        let source = ConsentSource::SmsKeyword {
            keyword: body.trim().to_ascii_uppercase(),
        };
        match keyword {
            ConsentKeyword::Stop => self.consent_change(Channel::Sms, false, source, at),
            // START from a number we hold: the phone is on file by construction.
            // Not one the customer has not proven theirs: its owner may be someone
            // else. (STOP is always honoured.)
            ConsentKeyword::Start if !self.is_confirmed(Channel::Sms) => Ok(vec![]),
            ConsentKeyword::Start => self.consent_change(Channel::Sms, true, source, at),
        }
    }

    fn suppress_email(
        &self,
        reason: SuppressionReason,
        provider_event_id: String,
        at: DateTime<Utc>,
    ) -> Decision {
        match &self.email {
            None => Err(ValidationError::new("email", "the customer has no email address").into()),
            Some(email) if self.suppressed_email.as_ref() == Some(email) => Ok(vec![]),
            Some(email) => Ok(vec![CustomerEvent::EmailSuppressed {
                email: email.clone(),
                reason,
                provider_event_id,
                at,
            }]),
        }
    }

    fn add_note(&self, text: &str, ctx: &CommandContext) -> Decision {
        Ok(vec![CustomerEvent::CustomerNoteAdded {
            text: NonEmptyText::parse("text", text, NOTE_MAX)?,
            author: ctx.actor,
            at: ctx.now,
        }])
    }

    fn add_tag(&self, tag: &str, at: DateTime<Utc>) -> Decision {
        let tag = Tag::parse(tag)?;
        if self.tags.contains(&tag) {
            Ok(vec![])
        } else {
            Ok(vec![CustomerEvent::CustomerTagged { tag, at }])
        }
    }

    fn remove_tag(&self, tag: &str, at: DateTime<Utc>) -> Decision {
        let tag = Tag::parse(tag)?;
        if self.tags.contains(&tag) {
            Ok(vec![CustomerEvent::CustomerUntagged { tag, at }])
        } else {
            Ok(vec![])
        }
    }

    fn merge_into(&self, target: CustomerId, at: DateTime<Utc>) -> Decision {
        if Some(target) == self.id {
            return Err(ValidationError::new(
                "target_customer_id",
                "a customer cannot be merged into itself",
            )
            .into());
        }
        Ok(vec![CustomerEvent::CustomerMergedInto {
            target_customer_id: target,
            at,
        }])
    }

    fn absorb_duplicate(&self, source: CustomerId, at: DateTime<Utc>) -> Decision {
        if Some(source) == self.id {
            return Err(ValidationError::new(
                "source_customer_id",
                "a customer cannot absorb itself",
            )
            .into());
        }
        Ok(vec![CustomerEvent::DuplicateCustomerAbsorbed {
            source_customer_id: source,
            at,
        }])
    }

    /// Allowed on a merged customer too (see `decide`); a second erasure records nothing.
    fn erase_personal_data(&self, reason: &str, at: DateTime<Utc>) -> Decision {
        if self.id.is_none() {
            return Err(CustomerError::UnknownCustomer);
        }
        let reason = Reason::parse(reason)?;
        if self.erased {
            return Ok(vec![]);
        }
        Ok(vec![CustomerEvent::CustomerPersonalDataErased {
            reason,
            at,
        }])
    }

    fn link_stripe_customer(&self, stripe_customer_id: &str, at: DateTime<Utc>) -> Decision {
        let id = stripe_customer_id.trim();
        if !id.starts_with("cus_") || id.len() < 5 {
            return Err(ValidationError::new(
                "stripe_customer_id",
                "must be a Stripe customer id (cus_...)",
            )
            .into());
        }
        if self.stripe_customer_id.as_deref() == Some(id) {
            Ok(vec![])
        } else {
            Ok(vec![CustomerEvent::StripeCustomerLinked {
                stripe_customer_id: id.to_owned(),
                at,
            }])
        }
    }

    /// Derived from the id and `attempt`; once a code is issued, only a retry after a
    /// collision (attempt > 0) issues another.
    fn issue_referral_code(&self, attempt: u32, at: DateTime<Utc>) -> Decision {
        match (&self.referral_code, self.id) {
            (Some(_), _) if attempt == 0 => Ok(vec![]),
            (_, Some(id)) => Ok(vec![CustomerEvent::ReferralCodeIssued {
                code: ReferralCode::from_seed(id.0, attempt),
                at,
            }]),
            (_, None) => Err(CustomerError::UnknownCustomer),
        }
    }
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
